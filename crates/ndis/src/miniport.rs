//! The adapter lifecycle: what a NIC driver implements per adapter ([`Miniport`]) and what the
//! framework keeps for it ([`NdisAdapter`]).
//!
//! `MiniportInitializeEx` runs [`MiniportDriver::initialize`](crate::driver::MiniportDriver)
//! with an [`Init`] context; the framework has already set the registration attributes (its own
//! per-adapter block is the adapter context) and sets the general attributes from the returned
//! [`AdapterInfo`]. Every other handler casts the context back and calls the trait. The framework
//! answers the general OIDs ([`crate::oid`]), keeps the statistics NDIS asks for, refuses sends
//! while paused, and owns the order of teardown: halt first has the driver stop its device
//! ([`Miniport::quiesce`]), then consumes the driver's adapter, and then releases what initialize
//! made (interrupts, shared memory, the DMA registration, mappings) in that order, whatever the
//! driver's field order (see [`crate::resources`]).

use alloc::boxed::Box;

use ndis_sys as sys;

use crate::Status;
use crate::adapter::AdapterHandle;
use crate::config::Configuration;
use crate::dma::DmaRegistration;
use crate::heap::Shared;
use crate::interrupt::{InterruptHandler, InterruptRegistration, RegisterError};
use crate::io::{IoSpace, MemoryResource, PciConfig, Resources};
use crate::irql::{Dispatch, DispatchOrBelow, Passive};
use crate::nbl::{Returned, SendLists, SendNbl};
use crate::offload::{ChecksumOffload, LargeSendOffload, OffloadInfo};
use crate::oid::{PendingSlot, QueryBuffer, SetData, SetRequest};
use crate::power::{DevicePowerState, PowerCapabilities};
use crate::resources::AdapterResources;
use crate::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Multicast addresses the framework keeps (`OID_802_3_MAXIMUM_LIST_SIZE`).
pub const MAX_MULTICAST: usize = 32;

/// What NDIS needs to know about an adapter once it is initialized (the general attributes).
#[derive(Debug, Clone)]
pub struct AdapterInfo {
    pub permanent_address: [u8; 6],
    pub current_address: [u8; 6],
    /// Largest payload (Ethernet: 1500).
    pub mtu: u32,
    /// Bits per second while the link is up.
    pub link_speed: u64,
    pub link_up: bool,
    pub supported_packet_filters: u32,
    pub mac_options: u32,
    pub transmit_buffer_space: u32,
    pub receive_buffer_space: u32,
    pub description: &'static str,
    /// Filled by the framework: the NDIS version registered (negotiated at `DriverEntry`) and
    /// the driver's own version.
    pub ndis_version: (u8, u8),
    pub driver_version: (u8, u8),
    /// Checksum offload, if the device does any (see [`crate::offload`]).
    pub offload: Option<OffloadInfo>,
    /// Receive side scaling, if the driver does it (see [`crate::rss`]); None also when the
    /// user switched it off (`*RSS` = 0).
    pub rss: Option<crate::rss::RssCapabilities>,
}

impl AdapterInfo {
    /// An Ethernet adapter with the usual filters and options.
    pub fn ethernet(address: [u8; 6], mtu: u32, link_speed: u64, link_up: bool) -> Self {
        AdapterInfo {
            permanent_address: address,
            current_address: address,
            mtu,
            link_speed,
            link_up,
            supported_packet_filters: sys::NDIS_PACKET_TYPE_DIRECTED
                | sys::NDIS_PACKET_TYPE_MULTICAST
                | sys::NDIS_PACKET_TYPE_ALL_MULTICAST
                | sys::NDIS_PACKET_TYPE_BROADCAST
                | sys::NDIS_PACKET_TYPE_PROMISCUOUS,
            mac_options: sys::NDIS_MAC_OPTION_COPY_LOOKAHEAD_DATA
                | sys::NDIS_MAC_OPTION_TRANSFERS_NOT_PEND
                | sys::NDIS_MAC_OPTION_NO_LOOPBACK,
            transmit_buffer_space: 0,
            receive_buffer_space: 0,
            description: "",
            ndis_version: (6, 0),
            driver_version: (0, 0),
            offload: None,
            rss: None,
        }
    }
}

/// Frame and byte counters for `OID_GEN_STATISTICS`, kept by the framework (sends it completes,
/// receives a [`ReceivePool`](crate::nbl::ReceivePool) indicates) and by the driver for what only
/// it sees (drops, device errors).
#[derive(Debug, Default)]
pub struct Statistics {
    counters: [AtomicU64; 14],
}

/// A consistent-enough copy of the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatisticsSnapshot {
    pub rx_unicast: u64,
    pub rx_multicast: u64,
    pub rx_broadcast: u64,
    pub rx_unicast_bytes: u64,
    pub rx_multicast_bytes: u64,
    pub rx_broadcast_bytes: u64,
    pub rx_discards: u64,
    pub rx_errors: u64,
    pub tx_unicast: u64,
    pub tx_multicast: u64,
    pub tx_broadcast: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
    pub tx_discards: u64,
}

enum Counter {
    RxUnicast,
    RxMulticast,
    RxBroadcast,
    RxUnicastBytes,
    RxMulticastBytes,
    RxBroadcastBytes,
    RxDiscards,
    RxErrors,
    TxUnicast,
    TxMulticast,
    TxBroadcast,
    TxBytes,
    TxErrors,
    TxDiscards,
}

/// 0 unicast, 1 multicast, 2 broadcast, by destination address.
pub(crate) fn cast_kind(destination: &[u8]) -> usize {
    match destination {
        [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, ..] => 2,
        [first, ..] if first & 1 == 1 => 1,
        _ => 0,
    }
}

impl Statistics {
    fn add(&self, c: Counter, n: u64) {
        self.counters[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// A received frame of `bytes` whose destination address starts `destination`.
    pub fn received(&self, destination: &[u8], bytes: u64) {
        let mut per_kind = [(0, 0); 3];
        per_kind[cast_kind(destination)] = (1, bytes);
        self.received_batch(&per_kind);
    }

    /// Received frames and bytes per kind (unicast, multicast, broadcast; see `cast_kind`).
    pub fn received_batch(&self, per_kind: &[(u64, u64); 3]) {
        let counters = [
            (Counter::RxUnicast, Counter::RxUnicastBytes),
            (Counter::RxMulticast, Counter::RxMulticastBytes),
            (Counter::RxBroadcast, Counter::RxBroadcastBytes),
        ];
        for ((frames, octets), &(n, bytes)) in counters.into_iter().zip(per_kind) {
            if n > 0 {
                self.add(frames, n);
                self.add(octets, bytes);
            }
        }
    }

    pub fn sent(&self, destination: &[u8], bytes: u64) {
        let mut per_kind = [(0, 0); 3];
        per_kind[cast_kind(destination)] = (1, bytes);
        self.sent_batch(&per_kind);
    }

    /// Sent frames and bytes per kind (unicast, multicast, broadcast).
    pub fn sent_batch(&self, per_kind: &[(u64, u64); 3]) {
        let counters = [
            Counter::TxUnicast,
            Counter::TxMulticast,
            Counter::TxBroadcast,
        ];
        for (frames, &(n, bytes)) in counters.into_iter().zip(per_kind) {
            if n > 0 {
                self.add(frames, n);
                self.add(Counter::TxBytes, bytes);
            }
        }
    }

    pub fn rx_discards(&self, n: u64) {
        self.add(Counter::RxDiscards, n)
    }
    pub fn rx_errors(&self, n: u64) {
        self.add(Counter::RxErrors, n)
    }
    pub fn tx_errors(&self, n: u64) {
        self.add(Counter::TxErrors, n)
    }
    pub fn tx_discards(&self, n: u64) {
        self.add(Counter::TxDiscards, n)
    }

    pub fn snapshot(&self) -> StatisticsSnapshot {
        let c = |i: Counter| self.counters[i as usize].load(Ordering::Relaxed);
        StatisticsSnapshot {
            rx_unicast: c(Counter::RxUnicast),
            rx_multicast: c(Counter::RxMulticast),
            rx_broadcast: c(Counter::RxBroadcast),
            rx_unicast_bytes: c(Counter::RxUnicastBytes),
            rx_multicast_bytes: c(Counter::RxMulticastBytes),
            rx_broadcast_bytes: c(Counter::RxBroadcastBytes),
            rx_discards: c(Counter::RxDiscards),
            rx_errors: c(Counter::RxErrors),
            tx_unicast: c(Counter::TxUnicast),
            tx_multicast: c(Counter::TxMulticast),
            tx_broadcast: c(Counter::TxBroadcast),
            tx_bytes: c(Counter::TxBytes),
            tx_errors: c(Counter::TxErrors),
            tx_discards: c(Counter::TxDiscards),
        }
    }
}

impl StatisticsSnapshot {
    pub fn rx_frames(&self) -> u64 {
        self.rx_unicast + self.rx_multicast + self.rx_broadcast
    }
    pub fn tx_frames(&self) -> u64 {
        self.tx_unicast + self.tx_multicast + self.tx_broadcast
    }

    pub(crate) fn to_ndis(self) -> sys::NDIS_STATISTICS_INFO {
        sys::NDIS_STATISTICS_INFO {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_DEFAULT,
                Revision: sys::NDIS_STATISTICS_INFO_REVISION_1,
                Size: sys::NDIS_SIZEOF_STATISTICS_INFO_REVISION_1,
            },
            SupportedStatistics: sys::NDIS_STATISTICS_FLAGS_VALID_DIRECTED_FRAMES_RCV
                | sys::NDIS_STATISTICS_FLAGS_VALID_MULTICAST_FRAMES_RCV
                | sys::NDIS_STATISTICS_FLAGS_VALID_BROADCAST_FRAMES_RCV
                | sys::NDIS_STATISTICS_FLAGS_VALID_BYTES_RCV
                | sys::NDIS_STATISTICS_FLAGS_VALID_RCV_DISCARDS
                | sys::NDIS_STATISTICS_FLAGS_VALID_RCV_ERROR
                | sys::NDIS_STATISTICS_FLAGS_VALID_DIRECTED_FRAMES_XMIT
                | sys::NDIS_STATISTICS_FLAGS_VALID_MULTICAST_FRAMES_XMIT
                | sys::NDIS_STATISTICS_FLAGS_VALID_BROADCAST_FRAMES_XMIT
                | sys::NDIS_STATISTICS_FLAGS_VALID_BYTES_XMIT
                | sys::NDIS_STATISTICS_FLAGS_VALID_XMIT_ERROR
                | sys::NDIS_STATISTICS_FLAGS_VALID_XMIT_DISCARDS,
            ifInDiscards: self.rx_discards,
            ifInErrors: self.rx_errors,
            ifHCInOctets: self.rx_unicast_bytes + self.rx_multicast_bytes + self.rx_broadcast_bytes,
            ifHCInUcastPkts: self.rx_unicast,
            ifHCInMulticastPkts: self.rx_multicast,
            ifHCInBroadcastPkts: self.rx_broadcast,
            ifHCOutOctets: self.tx_bytes,
            ifHCOutUcastPkts: self.tx_unicast,
            ifHCOutMulticastPkts: self.tx_multicast,
            ifHCOutBroadcastPkts: self.tx_broadcast,
            ifOutErrors: self.tx_errors,
            ifOutDiscards: self.tx_discards,
            ifHCInUcastOctets: self.rx_unicast_bytes,
            ifHCInMulticastOctets: self.rx_multicast_bytes,
            ifHCInBroadcastOctets: self.rx_broadcast_bytes,
            ifHCOutUcastOctets: 0,
            ifHCOutMulticastOctets: 0,
            ifHCOutBroadcastOctets: 0,
        }
    }
}

/// The framework's per-adapter state, shared ([`Shared`]) with whatever driver code needs it from
/// a DPC: whether the adapter is running, filters, link state and counters.
///
/// Nothing reaches NDIS through it once `MiniportHaltEx` has returned: indications made through
/// a reference kept past halt are dropped (NDIS forbids any call with a halted adapter's
/// handle), and halt waits for indications already under way.
pub struct NdisAdapter {
    handle: AdapterHandle,
    /// Calls into NDIS through the handle; run down when halt begins.
    rundown: crate::sync::Rundown,
    /// What initialize made (interrupts, shared memory, DMA, mappings), released after halt.
    pub(crate) resources: AdapterResources,
    packet_filter: AtomicU32,
    lookahead: AtomicU32,
    /// Taken only around `Miniport::reset`, to run it at a known IRQL (DISPATCH_LEVEL).
    reset_lock: crate::sync::SpinLock<()>,
    /// What NDIS was told about the link, and the latest state the driver reported; see
    /// [`NdisAdapter::indicate_link_state`].
    link_report: crate::sync::SpinLock<LinkReport>,
    /// `LinkReport::latest` for readers at any IRQL: bit 63 up, the rest the speed.
    link_now: AtomicU64,
    /// [`NdisAdapter::link_changed`]: a reader is reading and reporting / a change came since
    /// it last read.
    link_reading: AtomicBool,
    link_dirty: AtomicBool,
    multicast: crate::sync::SpinLock<([[u8; 6]; MAX_MULTICAST], usize)>,
    info: crate::sync::Once<AdapterInfo>,
    /// Running flag, receives lent to NDIS and a pending pause, decided under one lock so that
    /// a pause can never complete while an indication or a send is under way. The sends are
    /// counted outside it, in [`sends`](Self::sends), so that the send path takes no lock.
    gate: crate::sync::SpinLock<Gate>,
    /// The send gate, lock-free: [`SENDS_CLOSED`] while sends are refused (not running, or out
    /// of D0; kept equal to `!(running && !low_power)` under the gate lock), plus the
    /// `MiniportSendNetBufferLists` calls under way ([`SEND_CALL`] each) and the lists a driver
    /// holds past its call ([`SEND_HELD`] each). A send call is one `fetch_add` and one
    /// `fetch_sub`; only the call that brings the count to zero while sends are closed takes the
    /// gate lock, to complete a pending pause.
    sends: AtomicU64,
    /// The checksum tasks the stack has on ([`ChecksumOffload`] bits), and which IP versions
    /// NDIS has set the encapsulation for (bit 0 IPv4, bit 1 IPv6): see
    /// [`NdisAdapter::checksum_offload`]. Written only by OID sets, which NDIS serializes.
    offload_on: AtomicU32,
    /// The set request the driver pended, if any (see [`crate::oid::PendingOid`]).
    pub(crate) pending_oid: crate::sync::SpinLock<PendingSlot>,
    oid_generation: AtomicU64,
    /// The IP versions large send offload is switched on for ([`LargeSendOffload`] bits).
    lso_on: AtomicU32,
    encapsulation: AtomicU32,
    /// The device power state NDIS last set (`NDIS_DEVICE_POWER_STATE`; D0 from initialize).
    power: AtomicU32,
    /// `NdisDevicePnPEventSurpriseRemoved` came: OIDs are refused, sends fail.
    surprise_removed: AtomicBool,
    /// The RSS (or receive-hash) parameters in force, for the datapath: see [`NdisAdapter::rss`].
    pub(crate) rss: crate::rss::RssState,
    pub stats: Statistics,
}

/// (up, bits per second).
type LinkState = (bool, u64);

/// The link state NDIS knows and the latest one, kept so that no change is lost or reordered.
#[derive(Default)]
struct LinkReport {
    /// The latest state the driver reported (None: none since initialize began).
    latest: Option<LinkState>,
    /// What NDIS was told, by the general attributes or an indication (None: initialize has
    /// not set the general attributes yet, so changes only update `latest`).
    told: Option<Told>,
    /// One caller at a time sends indications, until `told == latest`.
    flushing: bool,
}

/// What NDIS was last told of the link.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Told {
    State(LinkState),
    /// `MediaConnectStateUnknown`, as the adapter left D0: the next report goes up whatever it
    /// says.
    Unknown,
}

/// [`NdisAdapter::sends`]: sends are refused.
const SENDS_CLOSED: u64 = 1 << 63;
/// [`NdisAdapter::sends`]: one send call under way (bits 0..32).
const SEND_CALL: u64 = 1;
/// [`NdisAdapter::sends`]: one list a driver holds past its send call (bits 32..63).
pub(crate) const SEND_HELD: u64 = 1 << 32;
/// [`NdisAdapter::sends`]: the send calls under way.
const SEND_CALLS: u64 = SEND_HELD - 1;

/// See [`NdisAdapter::gate`].
#[derive(Default)]
struct Gate {
    running: bool,
    /// Receives lent to NDIS (indicated, not yet returned).
    lent: usize,
    /// `NdisMIndicateReceiveNetBufferLists` calls that have not returned: MiniportPause must
    /// wait for them too, whatever the protocols returned inside them.
    indicating: usize,
    /// A pause began and has not completed.
    pausing: bool,
    /// `MiniportPause` returned PENDING: only then may `NdisMPauseComplete` be called.
    pause_pended: bool,
    /// Out of D0: nothing is indicated and sends are refused, paused or not.
    low_power: bool,
}

impl Gate {
    /// Nothing under way, with `sends` the value of [`NdisAdapter::sends`].
    fn idle(&self, sends: u64) -> bool {
        self.lent == 0 && sends & !SENDS_CLOSED == 0 && self.indicating == 0
    }

    /// Whether a pending pause can complete now (and is thereby taken: complete it once).
    fn take_pause_completion(&mut self, sends: u64) -> bool {
        let done = self.pausing && self.pause_pended && self.idle(sends);
        if done {
            self.pausing = false;
            self.pause_pended = false;
        }
        done
    }
}

impl NdisAdapter {
    pub(crate) fn new(handle: AdapterHandle) -> Self {
        NdisAdapter {
            handle,
            rundown: crate::sync::Rundown::new(),
            resources: AdapterResources::new(),
            packet_filter: AtomicU32::new(0),
            lookahead: AtomicU32::new(0),
            link_report: crate::sync::SpinLock::new(LinkReport::default()),
            link_now: AtomicU64::new(0),
            link_reading: AtomicBool::new(false),
            link_dirty: AtomicBool::new(false),
            reset_lock: crate::sync::SpinLock::new(()),
            multicast: crate::sync::SpinLock::new(([[0; 6]; MAX_MULTICAST], 0)),
            info: crate::sync::Once::new(),
            gate: crate::sync::SpinLock::new(Gate::default()),
            sends: AtomicU64::new(SENDS_CLOSED),
            offload_on: AtomicU32::new(0),
            pending_oid: crate::sync::SpinLock::new(PendingSlot::Empty),
            oid_generation: AtomicU64::new(0),
            lso_on: AtomicU32::new(0),
            encapsulation: AtomicU32::new(0),
            power: AtomicU32::new(sys::NdisDeviceStateD0),
            surprise_removed: AtomicBool::new(false),
            rss: crate::rss::RssState::new(),
            stats: Statistics::default(),
        }
    }

    pub(crate) fn handle(&self) -> AdapterHandle {
        self.handle
    }

    /// Runs `f` (a call into NDIS through the handle) unless halt began; halt waits for it.
    pub(crate) fn while_live<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        self.rundown.enter(f)
    }

    /// Halt: no call through the handle starts from now on; waits for those under way.
    fn run_down(&self) {
        self.rundown.run_down()
    }

    pub(crate) fn next_oid_generation(&self) -> u64 {
        self.oid_generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The RSS configuration in force, lock-free, from any IRQL: None while neither RSS nor
    /// receive hashing is on, which costs one relaxed load; otherwise a copy of the table (the
    /// processors NDIS named, each with the driver's queue for it), the key and the hash types.
    #[inline]
    pub fn rss(&self) -> Option<crate::rss::RssTable> {
        if !self.rss.is_on() {
            return None;
        }
        Some(self.rss.snapshot())
    }

    /// As [`rss`](Self::rss), into the caller's `view`, which is only taken again when the
    /// configuration changed since (one load otherwise). None while neither RSS nor receive
    /// hashing is on.
    #[inline]
    pub fn rss_view<'v>(
        &self,
        view: &'v mut crate::rss::RssView,
    ) -> Option<&'v crate::rss::RssView> {
        if !self.rss.is_on() {
            return None;
        }
        self.rss.refresh(view);
        Some(view)
    }

    /// Whether RSS or receive hashing is on (one relaxed load).
    #[inline]
    pub fn rss_on(&self) -> bool {
        self.rss.is_on()
    }

    /// Whether `MiniportHaltEx` began for this adapter.
    pub fn is_halted(&self) -> bool {
        self.rundown.is_run_down()
    }

    /// The device power state NDIS last set (D0 from initialize on).
    pub fn power_state(&self) -> DevicePowerState {
        DevicePowerState::from_raw(self.power.load(Ordering::Acquire))
            .unwrap_or(DevicePowerState::D0)
    }

    /// Whether NDIS reported the device surprise-removed: its registers read all ones and must
    /// not be touched again.
    pub fn is_surprise_removed(&self) -> bool {
        self.surprise_removed.load(Ordering::Acquire)
    }

    /// Leaving D0: no indication or send starts from now on, the interrupts stop reaching the
    /// driver, and the ones under way are waited for (NDIS asks the miniport to wait for its
    /// indications to return before the transition).
    fn enter_low_power(&self, state: DevicePowerState) {
        self.resources.device_off().store(true, Ordering::Release);
        self.gate.with_unchecked(|g| {
            g.low_power = true;
            self.sync_send_gate(g);
        });
        self.power.store(state.to_raw(), Ordering::Release);
        // Sends and indications under way run on other processors at DISPATCH_LEVEL and end
        // without waiting for anything this thread holds. (Lists the driver holds are its to
        // complete in `power_down`: see `held_sends_completed`.)
        while !self.gate.with_unchecked(|g| {
            self.sends.load(Ordering::Acquire) & SEND_CALLS == 0 && g.indicating == 0
        }) {
            crate::sync::stall(10);
        }
    }

    /// After `Miniport::power_down`: the driver completed every list it held (NDIS requires
    /// every send completed before the device leaves D0). Waits for completions still running
    /// on other processors (a DPC completing the last of them).
    fn held_sends_completed(&self) {
        while self.sends.load(Ordering::Acquire) & !SENDS_CLOSED != 0 {
            crate::sync::stall(10);
        }
    }

    /// Makes [`sends`](Self::sends)' closed bit say `!(running && !low_power)` (under the gate
    /// lock, which orders every change of the two flags).
    fn sync_send_gate(&self, g: &Gate) {
        if g.running && !g.low_power {
            self.sends.fetch_and(!SENDS_CLOSED, Ordering::Release);
        } else {
            self.sends.fetch_or(SENDS_CLOSED, Ordering::AcqRel);
        }
    }

    /// Sets the running flag (restart, halt, the models), and the send gate with it.
    fn set_running(&self, running: bool) {
        self.gate.with_unchecked(|g| {
            g.running = running;
            self.sync_send_gate(g);
        });
    }

    /// The device is about to be brought back to D0: its interrupts reach the driver again
    /// (the re-initialization may enable them before it returns). Sends and indications stay
    /// refused until [`back_in_d0`](Self::back_in_d0).
    fn device_on(&self) {
        self.resources.device_off().store(false, Ordering::Release);
    }

    fn back_in_d0(&self) {
        self.power.store(sys::NdisDeviceStateD0, Ordering::Release);
        self.gate.with_unchecked(|g| {
            g.low_power = false;
            self.sync_send_gate(g);
        });
    }

    /// D0 failed: the device stays off.
    fn device_stays_off(&self) {
        self.resources.device_off().store(true, Ordering::Release);
    }

    /// Reserves `count` receives for an indication if the adapter runs; false when paused. The
    /// caller calls [`end_indication`](Self::end_indication) once the indicate call returned.
    pub(crate) fn begin_indication(&self, count: usize) -> bool {
        self.gate.with_unchecked(|g| {
            let open = g.running && !g.low_power;
            if open {
                g.lent += count;
                g.indicating += 1;
            }
            open
        })
    }

    /// An indication began with [`begin_indication`](Self::begin_indication) returned from
    /// NDIS; completes a pending pause when it was the last thing under way.
    pub(crate) fn end_indication(&self) {
        let complete = self.gate.with_unchecked(|g| {
            g.indicating -= 1;
            g.take_pause_completion(self.sends.load(Ordering::Acquire))
        });
        if complete {
            self.complete_pause();
        }
    }

    /// `count` receives came back; completes a pending pause when they were the last.
    pub(crate) fn receives_returned(&self, count: usize) {
        let complete = self.gate.with_unchecked(|g| {
            g.lent = g.lent.saturating_sub(count);
            g.take_pause_completion(self.sends.load(Ordering::Acquire))
        });
        if complete {
            self.complete_pause();
        }
    }

    /// Counts a send call as in progress, or says why the adapter refuses it: one atomic
    /// read-modify-write, no lock (the refusal takes the gate lock to tell why).
    fn begin_send(&self) -> Result<(), Status> {
        if self.surprise_removed.load(Ordering::Relaxed) {
            return Err(Status::ADAPTER_REMOVED);
        }
        // Acquire: a call admitted after a restart sees what restart did.
        let before = self.sends.fetch_add(SEND_CALL, Ordering::Acquire);
        if before & SENDS_CLOSED == 0 {
            return Ok(());
        }
        let why = self.gate.with_unchecked(|g| {
            if g.low_power {
                Status::LOW_POWER_STATE
            } else {
                Status::PAUSED
            }
        });
        // Counted for a moment: a pause that saw it waits for this, completed here.
        self.release_sends(SEND_CALL);
        Err(why)
    }

    fn end_send(&self) {
        self.release_sends(SEND_CALL);
    }

    /// A send call (`SEND_CALL`) or `n` held lists (`n * SEND_HELD`) are done. Release: what
    /// the call or the driver did with the lists happens before a pause that sees the count.
    /// The one that leaves nothing under way on a closed gate completes a pending pause.
    pub(crate) fn release_sends(&self, amount: u64) {
        let before = self.sends.fetch_sub(amount, Ordering::Release);
        if before == SENDS_CLOSED | amount {
            let complete = self
                .gate
                .with_unchecked(|g| g.take_pause_completion(self.sends.load(Ordering::Acquire)));
            if complete {
                self.complete_pause();
            }
        }
    }

    /// A list of a send call under way is now held by the driver (see `SendNbl::hold`): a
    /// pause, halt or power transition waits for it. Inside a counted call, so the gate is
    /// not consulted again.
    pub(crate) fn hold_send(&self) {
        self.sends.fetch_add(SEND_HELD, Ordering::Relaxed);
    }

    /// Lists the driver holds now (tests and the models).
    pub fn held_sends(&self) -> u64 {
        (self.sends.load(Ordering::Acquire) & !SENDS_CLOSED) >> 32
    }

    /// MiniportPause began: from here no indication or send starts.
    fn begin_pause(&self) {
        self.gate.with_unchecked(|g| {
            g.running = false;
            g.pausing = true;
            g.pause_pended = false;
            self.sync_send_gate(g);
        });
    }

    /// MiniportPause is done: whether the adapter is idle (SUCCESS); if not, the pause is
    /// pended, for the last indication, return or send to complete.
    fn pause_returned(&self) -> bool {
        self.gate.with_unchecked(|g| {
            let idle = g.idle(self.sends.load(Ordering::Acquire));
            if idle {
                g.pausing = false;
            } else {
                g.pause_pended = true;
            }
            idle
        })
    }

    fn complete_pause(&self) {
        #[cfg(loom)]
        crate::sync::recorder::record(crate::sync::recorder::Event::PauseComplete);
        #[cfg(not(loom))]
        // SAFETY: the adapter's handle (a pause is under way: not halted); MiniportPause returned
        // PENDING (`pause_pended`), and `take_pause_completion` hands out this call once.
        unsafe {
            sys::NdisMPauseComplete(self.handle.as_raw())
        };
    }

    /// Whether packet filter `filter` passes a frame for `destination` (NDIS_PACKET_TYPE_*):
    /// promiscuous passes everything, filter 0 nothing.
    pub fn filter_accepts(&self, filter: u32, destination: &[u8; 6]) -> bool {
        if filter & sys::NDIS_PACKET_TYPE_PROMISCUOUS != 0 {
            return true;
        }
        match cast_kind(destination) {
            2 => filter & sys::NDIS_PACKET_TYPE_BROADCAST != 0,
            1 => {
                filter & sys::NDIS_PACKET_TYPE_ALL_MULTICAST != 0
                    || (filter & sys::NDIS_PACKET_TYPE_MULTICAST != 0 && {
                        let (list, n) = self.multicast();
                        list[..n].contains(destination)
                    })
            }
            _ => {
                filter & sys::NDIS_PACKET_TYPE_DIRECTED != 0
                    && self
                        .info
                        .get()
                        .is_some_and(|i| i.current_address == *destination)
            }
        }
    }

    /// The adapter's current address, once it is initialized.
    pub(crate) fn current_address(&self) -> Option<[u8; 6]> {
        self.info.get().map(|i| i.current_address)
    }

    pub fn packet_filter(&self) -> u32 {
        self.packet_filter.load(Ordering::Relaxed)
    }
    pub(crate) fn set_packet_filter(&self, f: u32) {
        self.packet_filter.store(f, Ordering::Relaxed)
    }
    pub(crate) fn lookahead(&self) -> u32 {
        self.lookahead.load(Ordering::Relaxed)
    }
    pub(crate) fn set_lookahead(&self, l: u32) {
        self.lookahead.store(l, Ordering::Relaxed)
    }
    pub(crate) fn multicast(&self) -> ([[u8; 6]; MAX_MULTICAST], usize) {
        self.multicast.with_unchecked(|m| *m)
    }

    /// The multicast list NDIS set last (`OID_802_3_MULTICAST_LIST`): the first `n` entries.
    pub fn multicast_list(&self) -> ([[u8; 6]; MAX_MULTICAST], usize) {
        self.multicast()
    }
    pub(crate) fn set_multicast(&self, list: &[[u8; 6]]) {
        self.multicast.with_unchecked(|m| {
            m.0[..list.len()].copy_from_slice(list);
            m.1 = list.len();
        })
    }

    /// (up, bits per second): the latest state the driver reported (down until it reported
    /// one or initialize returned). Lock-free: callable at any IRQL.
    pub fn link(&self) -> (bool, u64) {
        let v = self.link_now.load(Ordering::Acquire);
        (v >> 63 != 0, v & !(1 << 63))
    }

    /// Records `state` as the latest (under the `link_report` lock).
    fn set_latest(&self, r: &mut LinkReport, state: LinkState) {
        r.latest = Some(state);
        let packed = (state.1 & !(1 << 63)) | ((state.0 as u64) << 63);
        self.link_now.store(packed, Ordering::Release);
    }

    /// The device says its link may have changed (a configuration-change interrupt): `read`
    /// reads the link from the device, and the result is reported as by
    /// [`indicate_link_state`](Self::indicate_link_state).
    ///
    /// Prefer this to reading and reporting yourself when DPCs on several processors can see
    /// the change: one caller at a time reads and reports, and reads again while changes keep
    /// coming, so the last report always comes from a read made after the last change (two
    /// callers that read and then report could otherwise report in the wrong order and leave
    /// NDIS with a stale state).
    pub fn link_changed<C: crate::irql::AtMostDispatch>(
        &self,
        mut read: impl FnMut() -> (bool, u64),
        irql: &C,
    ) {
        // Both read-modify-writes: a caller that finds a reader synchronizes with it through
        // `link_reading`, and the reader's next `link_dirty` swap synchronizes with every
        // caller's, even when another caller set the flag again in between (a plain store would
        // cut that release sequence; see "Model checking" in docs/architecture.md).
        self.link_dirty.swap(true, Ordering::SeqCst);
        loop {
            if self.link_reading.swap(true, Ordering::SeqCst) {
                return; // the reader sees `link_dirty` and reads again
            }
            while self.link_dirty.swap(false, Ordering::AcqRel) {
                let (up, speed) = read();
                self.indicate_link_state(up, speed, irql);
            }
            self.link_reading.swap(false, Ordering::SeqCst);
            // A change that came after the last read but before the release: read it here.
            if !self.link_dirty.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    pub(crate) fn info(&self) -> &AdapterInfo {
        self.info
            .get()
            .expect("adapter info is set when initialize succeeds")
    }

    /// The checksum tasks in force, for the datapath at any IRQL: what the stack has switched
    /// on, for the IP versions NDIS has set the Ethernet encapsulation for (none before it
    /// does). Empty for a driver that declared no offload.
    pub fn checksum_offload(&self) -> ChecksumOffload {
        let on = ChecksumOffload::from_bits_truncate(self.offload_on.load(Ordering::Acquire));
        let encapsulation = self.encapsulation_versions();
        let mut versions = ChecksumOffload::empty();
        if encapsulation.contains(LargeSendOffload::IPV4) {
            versions |= ChecksumOffload::IPV4;
        }
        if encapsulation.contains(LargeSendOffload::IPV6) {
            versions |= ChecksumOffload::IPV6;
        }
        on & versions
    }

    /// The IP versions large send offload is in force for, like
    /// [`checksum_offload`](Self::checksum_offload): switched on, and the encapsulation set.
    pub fn large_send_offload(&self) -> LargeSendOffload {
        self.lso_configured() & self.encapsulation_versions()
    }

    /// The large send offload switched on, whatever the encapsulation (what NDIS is told).
    pub(crate) fn lso_configured(&self) -> LargeSendOffload {
        LargeSendOffload::from_bits_truncate(self.lso_on.load(Ordering::Acquire))
    }

    /// The IP versions NDIS has set the encapsulation for (bit 0 IPv4, bit 1 IPv6).
    fn encapsulation_versions(&self) -> LargeSendOffload {
        LargeSendOffload::from_bits_truncate(self.encapsulation.load(Ordering::Acquire))
    }

    /// The checksum tasks switched on, whatever the encapsulation (what NDIS is told).
    pub(crate) fn offload_configured(&self) -> ChecksumOffload {
        ChecksumOffload::from_bits_truncate(self.offload_on.load(Ordering::Acquire))
    }

    /// Applies a new configuration and tells NDIS (`NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG`).
    pub(crate) fn set_offload(
        &self,
        on: ChecksumOffload,
        lso: LargeSendOffload,
        passive: &Passive<'_>,
    ) {
        self.offload_on.store(on.bits(), Ordering::Release);
        self.lso_on.store(lso.bits(), Ordering::Release);
        self.indicate_offload(passive);
    }

    /// Applies an `OID_OFFLOAD_ENCAPSULATION` set (per IP version: on, off, unchanged) and
    /// tells NDIS the configuration, as the OID requires.
    pub(crate) fn set_encapsulation(&self, versions: [Option<bool>; 2], passive: &Passive<'_>) {
        let mut bits = self.encapsulation.load(Ordering::Acquire);
        for (i, v) in versions.into_iter().enumerate() {
            match v {
                Some(true) => bits |= 1 << i,
                Some(false) => bits &= !(1 << i),
                None => {}
            }
        }
        self.encapsulation.store(bits, Ordering::Release);
        self.indicate_offload(passive);
    }

    /// Tells NDIS the tasks in force: an IP version whose encapsulation is off reports none,
    /// as `OID_OFFLOAD_ENCAPSULATION` asks ("update the currently reported capabilities").
    fn indicate_offload(&self, passive: &Passive<'_>) {
        let info = self.info();
        let mut current = self.checksum_offload().to_ndis(info.ndis_version);
        if let Some(caps) = info.offload.and_then(|o| o.lso) {
            self.large_send_offload().describe(&caps, &mut current);
        }
        let size = u32::from(current.Header.Size);
        self.indicate_status(
            sys::NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG,
            &mut current,
            size,
            passive,
        );
    }

    /// Reports a link change to NDIS (`NDIS_STATUS_LINK_STATE`); repeated reports of the same
    /// state are dropped.
    ///
    /// Safe to call from anywhere (a DPC racing initialize included): before initialize has set
    /// the general attributes a change is folded into them; after that, whichever caller finds
    /// NDIS out of date sends indications until NDIS has the latest state, so concurrent
    /// reports can neither be lost nor arrive in the wrong order.
    pub fn indicate_link_state<C: crate::irql::AtMostDispatch>(
        &self,
        up: bool,
        speed: u64,
        irql: &C,
    ) {
        let flush = self.link_report.with_unchecked(|r| {
            self.set_latest(r, (up, speed));
            let flush = r.told.is_some() && !r.flushing;
            r.flushing |= flush;
            flush
        });
        if flush {
            self.flush_link_state(irql);
        }
    }

    /// Sends indications until NDIS has the latest state; the caller set `flushing`.
    fn flush_link_state<C: crate::irql::AtMostDispatch>(&self, irql: &C) {
        loop {
            let next = self
                .link_report
                .with_unchecked(|r| match (r.latest, r.told) {
                    (Some(latest), Some(told)) if told != Told::State(latest) => {
                        r.told = Some(Told::State(latest));
                        Some(latest)
                    }
                    _ => {
                        r.flushing = false;
                        None
                    }
                });
            let Some((up, speed)) = next else {
                return;
            };
            self.send_link_indication(up, speed, irql);
        }
    }

    /// The general attributes are about to be set: the state they should carry, the latest
    /// report if the driver made one during initialize, else what `AdapterInfo` says.
    fn link_for_attributes(&self, info: LinkState, _passive: &Passive<'_>) -> LinkState {
        self.link_report.with_unchecked(|r| {
            let state = r.latest.unwrap_or(info);
            self.set_latest(r, state);
            state
        })
    }

    /// The general attributes told NDIS `state`; changes reported since are sent now (allowed
    /// once the registration attributes are set, even inside `MiniportInitializeEx`).
    fn attributes_told(&self, state: LinkState, passive: &Passive<'_>) {
        let flush = self.link_report.with_unchecked(|r| {
            r.told = Some(Told::State(state));
            let flush = !r.flushing;
            r.flushing = true;
            flush
        });
        if flush {
            self.flush_link_state(passive);
        }
    }

    /// The adapter left D0: NDIS is told the link state is unknown (`MediaConnectStateUnknown`,
    /// what the certification tests expect of a sleeping adapter), and the first report after
    /// D0 goes up whatever it says.
    fn link_unknown(&self, passive: &Passive<'_>) {
        let send = self.link_report.with_unchecked(|r| {
            let send = r.told.is_some() && r.told != Some(Told::Unknown);
            if send {
                r.told = Some(Told::Unknown);
            }
            send
        });
        if send {
            self.send_link_state(
                sys::MediaConnectStateUnknown,
                sys::MediaDuplexStateUnknown,
                u64::MAX,
                passive,
            );
        }
    }

    /// Back in D0: NDIS learns the latest state (the driver's report during
    /// [`Miniport::power_up`] if it made one).
    fn flush_after_d0(&self, passive: &Passive<'_>) {
        let flush = self.link_report.with_unchecked(|r| {
            let flush = r.told.is_some() && !r.flushing;
            r.flushing |= flush;
            flush
        });
        if flush {
            self.flush_link_state(passive);
        }
    }

    fn send_link_indication<C: crate::irql::AtMostDispatch>(&self, up: bool, speed: u64, irql: &C) {
        let (connect, duplex, speed) = if up {
            (
                sys::MediaConnectStateConnected,
                sys::MediaDuplexStateFull,
                speed,
            )
        } else {
            (
                sys::MediaConnectStateDisconnected,
                sys::MediaDuplexStateUnknown,
                u64::MAX,
            )
        };
        self.send_link_state(connect, duplex, speed, irql);
    }

    fn send_link_state<C: crate::irql::AtMostDispatch>(
        &self,
        connect: i32,
        duplex: i32,
        speed: u64,
        _irql: &C,
    ) {
        let mut state = sys::NDIS_LINK_STATE {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_DEFAULT,
                Revision: sys::NDIS_LINK_STATE_REVISION_1,
                Size: sys::NDIS_SIZEOF_LINK_STATE_REVISION_1,
            },
            MediaConnectState: connect,
            MediaDuplexState: duplex,
            XmitLinkSpeed: speed,
            RcvLinkSpeed: speed,
            PauseFunctions: 0,
            AutoNegotiationFlags: 0,
        };
        let size = core::mem::size_of::<sys::NDIS_LINK_STATE>() as u32;
        self.indicate_status(sys::NDIS_STATUS_LINK_STATE, &mut state, size, _irql);
    }

    /// `NdisMIndicateStatusEx` with the first `size` bytes of `buffer`.
    fn indicate_status<T, C: crate::irql::AtMostDispatch>(
        &self,
        code: sys::NDIS_STATUS,
        buffer: &mut T,
        size: u32,
        _irql: &C,
    ) {
        debug_assert!(size as usize <= core::mem::size_of::<T>());
        let mut indication = sys::NDIS_STATUS_INDICATION {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_STATUS_INDICATION,
                Revision: sys::NDIS_STATUS_INDICATION_REVISION_1,
                Size: sys::NDIS_SIZEOF_STATUS_INDICATION_REVISION_1,
            },
            SourceHandle: self.handle.as_raw(),
            PortNumber: 0,
            StatusCode: code,
            Flags: 0,
            DestinationHandle: core::ptr::null_mut(),
            RequestId: core::ptr::null_mut(),
            StatusBuffer: (buffer as *mut T).cast(),
            StatusBufferSize: size,
            Guid: sys::GUID::default(),
            NdisReserved: [core::ptr::null_mut(); 4],
        };
        // Dropped after halt: the handle is dead then.
        self.while_live(|| {
            #[cfg(not(loom))]
            // SAFETY: IRQL <= DISPATCH_LEVEL (token); the adapter is not halted (and halt waits
            // for this call); the indication and its buffer (at least `size` bytes) live across
            // the call.
            unsafe {
                sys::NdisMIndicateStatusEx(self.handle.as_raw(), &mut indication)
            };
            #[cfg(loom)]
            crate::sync::recorder::indicate_status(&mut indication);
        });
    }
}

/// `MiniportHaltEx`'s reason (`NDIS_HALT_ACTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltAction {
    Disabled,
    InstanceDeInitialized,
    PoweredDown,
    SurpriseRemoved,
    Failed,
    InitializationFailed,
    Stopped,
    /// A value this version of the framework does not know.
    Other(i32),
}

impl HaltAction {
    pub fn from_raw(v: sys::NDIS_HALT_ACTION) -> Self {
        match v {
            sys::NdisHaltDeviceDisabled => HaltAction::Disabled,
            sys::NdisHaltDeviceInstanceDeInitialized => HaltAction::InstanceDeInitialized,
            sys::NdisHaltDevicePoweredDown => HaltAction::PoweredDown,
            sys::NdisHaltDeviceSurpriseRemoved => HaltAction::SurpriseRemoved,
            sys::NdisHaltDeviceFailed => HaltAction::Failed,
            sys::NdisHaltDeviceInitializationFailed => HaltAction::InitializationFailed,
            sys::NdisHaltDeviceStopped => HaltAction::Stopped,
            other => HaltAction::Other(other),
        }
    }
}

/// `MiniportShutdownEx`'s reason (`NDIS_SHUTDOWN_ACTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownAction {
    /// The system powers off: PASSIVE_LEVEL.
    PowerOff,
    /// The system bug-checked: any IRQL up to HIGH_LEVEL; touch registers only.
    BugCheck,
    Other(i32),
}

impl ShutdownAction {
    pub fn from_raw(v: sys::NDIS_SHUTDOWN_ACTION) -> Self {
        match v {
            sys::NdisShutdownPowerOff => ShutdownAction::PowerOff,
            sys::NdisShutdownBugCheck => ShutdownAction::BugCheck,
            other => ShutdownAction::Other(other),
        }
    }
}

/// `MiniportDevicePnPEventNotify`'s event (`NDIS_DEVICE_PNP_EVENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PnpEvent {
    QueryRemoved,
    Removed,
    /// The device is gone: stop touching it.
    SurpriseRemoved,
    QueryStopped,
    Stopped,
    PowerProfileChanged,
    FilterListChanged,
    Other(u32),
}

impl PnpEvent {
    pub fn from_raw(v: u32) -> Self {
        match v {
            sys::NdisDevicePnPEventQueryRemoved => PnpEvent::QueryRemoved,
            sys::NdisDevicePnPEventRemoved => PnpEvent::Removed,
            sys::NdisDevicePnPEventSurpriseRemoved => PnpEvent::SurpriseRemoved,
            sys::NdisDevicePnPEventQueryStopped => PnpEvent::QueryStopped,
            sys::NdisDevicePnPEventStopped => PnpEvent::Stopped,
            sys::NdisDevicePnPEventPowerProfileChanged => PnpEvent::PowerProfileChanged,
            sys::NdisDevicePnPEventFilterListChanged => PnpEvent::FilterListChanged,
            other => PnpEvent::Other(other),
        }
    }
}

/// The driver's word that its device no longer reaches memory or raises interrupts (reset,
/// or never started): what [`Miniport::quiesce`] returns and [`Miniport::halt`] receives. The
/// framework frees device-visible memory only after it has one.
#[derive(Debug)]
#[must_use]
pub struct Quiesced(());

impl Quiesced {
    /// The device was stopped (for example reset, so it stops DMA and interrupts).
    pub fn device_stopped() -> Self {
        Quiesced(())
    }
}

/// Proof of running inside `MiniportInitializeEx` of one adapter, at PASSIVE_LEVEL: what the
/// initialize-only NDIS calls need (registering interrupts and DMA, allocating shared memory,
/// mapping registers). Driver code gets it from [`Init`] only; it cannot be built, kept past
/// initialize, or used inside a scope that raises the IRQL (it is reached through `Init`, which
/// such a scope borrows).
pub struct Initializing<'a> {
    handle: AdapterHandle,
    resources: &'a AdapterResources,
    /// The version the driver registered with (what the interrupt DPC's parameters mean).
    version: crate::NdisVersion,
    passive: Passive<'a>,
}

impl<'a> Initializing<'a> {
    /// For code that writes its own `MiniportInitializeEx` (tests of the raw layer).
    ///
    /// # Safety
    /// The caller runs inside `MiniportInitializeEx` of the adapter `handle` names, at
    /// PASSIVE_LEVEL, for the proof's whole lifetime; `resources` is released with
    /// [`AdapterResources::release_all`] in that adapter's halt (or its failed initialize);
    /// `version` is the NDIS version the driver registered with.
    pub unsafe fn assume(
        handle: sys::NDIS_HANDLE,
        resources: &'a AdapterResources,
        version: crate::NdisVersion,
    ) -> Self {
        Initializing {
            // SAFETY: per this function's contract.
            handle: unsafe { AdapterHandle::from_raw(handle) },
            resources,
            version,
            // SAFETY: per this function's contract.
            passive: unsafe { Passive::assume() },
        }
    }

    pub(crate) fn handle(&self) -> AdapterHandle {
        self.handle
    }

    pub(crate) fn resources(&self) -> &'a AdapterResources {
        self.resources
    }

    /// The NDIS version the driver registered with (negotiated at `DriverEntry`): what decides
    /// which version-bound features and structure revisions are in force.
    pub fn version(&self) -> crate::NdisVersion {
        self.version
    }

    pub fn passive(&self) -> &Passive<'a> {
        &self.passive
    }

    /// The token, for a scope that raises the IRQL.
    pub fn passive_mut(&mut self) -> &mut Passive<'a> {
        &mut self.passive
    }

    /// `NdisMRegisterInterruptEx` (see [`InterruptRegistration`]).
    pub fn register_interrupt<H: InterruptHandler>(
        &self,
        handler: H,
    ) -> Result<InterruptRegistration<H>, RegisterError<H>> {
        InterruptRegistration::register(self, handler)
    }
}

/// What `MiniportInitializeEx` gives the driver: the adapter's resources and configuration,
/// and the calls only initialize may make.
pub struct Init<'a> {
    adapter: Shared<NdisAdapter>,
    params: &'a sys::NDIS_MINIPORT_INIT_PARAMETERS,
    scope: Initializing<'a>,
}

impl<'a> Init<'a> {
    /// The framework's per-adapter state, to keep for DPCs (indications, counters).
    pub fn adapter(&self) -> &Shared<NdisAdapter> {
        &self.adapter
    }
    pub fn passive(&self) -> &Passive<'a> {
        self.scope.passive()
    }
    /// The token, for a scope that raises the IRQL: `init` is borrowed while it runs, so
    /// nothing of initialize can be used inside.
    pub fn passive_mut(&mut self) -> &mut Passive<'a> {
        self.scope.passive_mut()
    }
    /// The initialize-only proof, for code below `Init` that makes initialize-only calls.
    pub fn initializing(&self) -> &Initializing<'a> {
        &self.scope
    }
    /// The NDIS version registered at `DriverEntry` (the newest both the driver and the running
    /// NDIS support), for features that exist only from some version on.
    pub fn ndis_version(&self) -> crate::NdisVersion {
        self.scope.version()
    }
    pub fn resources(&self) -> Resources<'a> {
        // SAFETY: NDIS passes the translated resource list, valid during initialize.
        unsafe { Resources::from_raw(self.params.AllocatedResources, self.scope.handle) }
    }
    pub fn pci_config(&self) -> PciConfig<'_> {
        PciConfig::new(self.scope.handle, self.scope.passive())
    }
    /// The adapter's registry keywords; closed when dropped, inside initialize.
    pub fn configuration(&self) -> Result<Configuration<'_>, Status> {
        Configuration::open(self.scope.handle, self.scope.passive())
    }
    /// Maps one of the adapter's memory ranges ([`Init::resources`]).
    pub fn map(&self, range: MemoryResource<'_>) -> Result<IoSpace, Status> {
        IoSpace::map(&self.scope, range)
    }
    /// Registers one of the adapter's port ranges ([`Resources::ports`](crate::io::Resources::ports)),
    /// for registers in I/O space.
    pub fn register_ports(
        &self,
        range: crate::io::PortResource<'_>,
    ) -> Result<crate::io::IoPorts, Status> {
        crate::io::IoPorts::register(&self.scope, range)
    }
    /// `NdisMRegisterScatterGatherDma` for 64-bit DMA, at most `max_mapping` bytes per mapping;
    /// allocate shared memory from it with [`DmaRegistration::allocate`].
    pub fn register_dma(&self, max_mapping: u32) -> Result<DmaRegistration, Status> {
        DmaRegistration::register(&self.scope, max_mapping)
    }
    /// `NdisMRegisterInterruptEx` (see [`InterruptRegistration`]).
    pub fn register_interrupt<H: InterruptHandler>(
        &self,
        handler: H,
    ) -> Result<InterruptRegistration<H>, RegisterError<H>> {
        self.scope.register_interrupt(handler)
    }
}

/// One adapter of a NIC driver: the handlers NDIS calls after a successful initialize. Default
/// bodies do what a simple NIC needs.
///
/// A NIC that takes every frame sent to it and drops it, run on the emulator (the general OIDs,
/// statistics, pause and halt are the framework's):
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// use ndis::driver::MiniportDriver;
/// use ndis::irql::{DispatchOrBelow, Passive};
/// use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
/// use ndis::nbl::{Returned, SendLists};
/// use ndis::{NdisVersion, NdisVersions, Status};
/// use ndis_emu::{Config, Emulator, InterruptResources};
/// use ndis_sys as sys;
///
/// #[global_allocator]
/// static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;
///
/// static BYTES: AtomicU64 = AtomicU64::new(0);
///
/// struct Sink;
///
/// impl Miniport for Sink {
///     fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, _: &mut DispatchOrBelow<'_>) {
///         lists.each(|list| {
///             for frame in list.frames() {
///                 BYTES.fetch_add(frame.len() as u64, Ordering::Relaxed);
///             }
///             Status::SUCCESS
///         });
///     }
///     fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &mut DispatchOrBelow<'_>) {}
///     fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
///         Quiesced::device_stopped() // no device to stop
///     }
/// }
///
/// struct SinkDriver;
///
/// impl MiniportDriver for SinkDriver {
///     const NDIS_VERSIONS: NdisVersions = NdisVersions::new(NdisVersion::V6_20, NdisVersion::V6_89);
///     const DRIVER_VERSION: (u8, u8) = (1, 0);
///     type Adapter = Sink;
///     fn initialize(&'static self, _: &mut Init<'_>) -> Result<(Sink, AdapterInfo), Status> {
///         Ok((Sink, AdapterInfo::ethernet([2, 0, 0, 0, 0, 1], 1500, 1_000_000_000, true)))
///     }
/// }
///
/// ndis::miniport_driver!(SinkDriver = SinkDriver);
///
/// fn main() {
///     let emu = Emulator::new(Config::default());
///     assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
///     let a = emu.add_adapter(InterruptResources::None).expect("initialize");
///     assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
///     let frame = [0u8; 60];
///     emu.send(a, &[&frame, &frame]);
///     assert_eq!(emu.send_statuses(), [sys::NDIS_STATUS_SUCCESS; 2]);
///     assert_eq!(BYTES.load(Ordering::Relaxed), 120);
///     assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
///     emu.halt(a, sys::NdisHaltDeviceDisabled);
///     emu.unload(); // and nothing leaked, or the emulator would say so
/// }
/// ```
pub trait Miniport: Send + Sync + Sized + 'static {
    /// OIDs the driver answers in [`Miniport::oid_query`]/[`Miniport::oid_set`] beyond the
    /// framework's [`FRAMEWORK_OIDS`](crate::oid::FRAMEWORK_OIDS).
    const EXTRA_OIDS: &'static [u32] = &[];

    /// One `MiniportSendNetBufferLists` call (at IRQL <= DISPATCH_LEVEL): copy the frames of
    /// each list to the device and give each list its status with [`SendLists::each`]. The whole
    /// chain arrives at once so that a driver takes its queue lock and rings its doorbell once
    /// per call, not once per list. The framework completes every list when this returns (and
    /// fails them with `NDIS_STATUS_PAUSED` itself while the adapter is paused).
    fn send(
        &self,
        adapter: &NdisAdapter,
        lists: &mut SendLists<'_>,
        irql: &mut DispatchOrBelow<'_>,
    );

    /// Hang detection. `Some(seconds)` registers `MiniportCheckForHangEx`, which NDIS calls
    /// every `seconds` (0: its 2 s default; NDIS rounds to a multiple of 2 s), and
    /// `MiniportResetEx`, which it calls when a check says the adapter hangs. `None`, the default,
    /// registers neither: NDIS 6 makes both optional, and a device that reports its own failures
    /// (as virtio's DEVICE_NEEDS_RESET does) has no silent hang to poll for.
    const CHECK_FOR_HANG_SECONDS: Option<u32> = None;

    /// Whether the adapter hangs (at PASSIVE_LEVEL, while it runs): for example, the device
    /// made no progress on work it holds since the last check. True asks NDIS for a reset.
    fn check_for_hang(&self, _adapter: &NdisAdapter, _passive: &mut Passive<'_>) -> bool {
        false
    }

    /// Bring the hung device back (at DISPATCH_LEVEL). `Ok(true)` asks NDIS to restore the
    /// addressing state (packet filter, multicast list, current address) through OID sets;
    /// `Ok(false)` says the driver kept it. An error leaves the adapter failed.
    fn reset(
        &self,
        _adapter: &NdisAdapter,
        _dispatch: &mut Dispatch<'_>,
    ) -> Result<bool, ResetError> {
        Ok(false)
    }

    /// Receives the protocols handed back; give the buffers back to the device.
    fn return_receives(
        &self,
        adapter: &NdisAdapter,
        returned: &mut Returned<'_>,
        irql: &mut DispatchOrBelow<'_>,
    );

    /// Stop indicating; the framework already refuses new sends. Called with the adapter marked
    /// not running.
    fn pause(&self, _adapter: &NdisAdapter, _passive: &mut Passive<'_>) {}

    /// Start again; on error the adapter stays paused.
    fn restart(&self, _adapter: &NdisAdapter, _passive: &mut Passive<'_>) -> Result<(), Status> {
        Ok(())
    }

    /// The first step of `MiniportHaltEx`: stop the device, so that it no longer reaches memory
    /// or raises interrupts (reset it). Required: the framework frees the adapter's shared
    /// memory after halt, and memory a device still writes must not be freed.
    fn quiesce(&self, adapter: &NdisAdapter, passive: &mut Passive<'_>) -> Quiesced;

    /// The rest of `MiniportHaltEx`, after [`quiesce`](Self::quiesce). The default drops the
    /// adapter; the framework then deregisters its interrupts, frees its shared memory, and
    /// releases its DMA registration and mappings, in that order (see [`crate::resources`]).
    fn halt(
        self,
        _adapter: &NdisAdapter,
        _quiesced: Quiesced,
        _action: HaltAction,
        _passive: &mut Passive<'_>,
    ) {
    }

    /// `OID_GEN_CURRENT_PACKET_FILTER` (checked against the supported filters). The framework
    /// keeps the filter once this succeeds, or once a request the driver pended
    /// ([`SetRequest::pend`]) completes successfully.
    fn set_packet_filter(
        &self,
        _adapter: &NdisAdapter,
        _filter: u32,
        _request: &mut SetRequest<'_>,
    ) -> Result<(), Status> {
        Ok(())
    }

    /// `OID_802_3_MULTICAST_LIST` (at most [`MAX_MULTICAST`] addresses), kept like the filter.
    fn set_multicast_list(
        &self,
        _adapter: &NdisAdapter,
        _list: &[[u8; 6]],
        _request: &mut SetRequest<'_>,
    ) -> Result<(), Status> {
        Ok(())
    }

    fn oid_query(
        &self,
        _adapter: &NdisAdapter,
        _oid: u32,
        _out: &mut QueryBuffer<'_>,
        _passive: &mut Passive<'_>,
    ) -> Result<(), Status> {
        Err(Status::NOT_SUPPORTED)
    }

    /// Returns bytes read. Read fixed-size values through `data` so that a short buffer gets
    /// the size NDIS must be told. A set the device answers later is pended with
    /// [`SetRequest::pend`] (see [`crate::oid`]).
    fn oid_set(
        &self,
        _adapter: &NdisAdapter,
        _oid: u32,
        _data: &mut SetData<'_>,
        _request: &mut SetRequest<'_>,
    ) -> Result<usize, Status> {
        Err(Status::NOT_SUPPORTED)
    }

    /// The RSS configuration changed (`OID_GEN_RECEIVE_SCALE_PARAMETERS` or
    /// `OID_GEN_RECEIVE_HASH`, at PASSIVE_LEVEL, at any time while the adapter exists): `table`
    /// is what is now in force, already visible through [`NdisAdapter::rss`]. Program the
    /// device here (its indirection table, key, hash types) without resetting it. An error
    /// refuses the set: the framework puts the previous configuration back and calls this again
    /// with it.
    fn rss_changed(
        &self,
        _adapter: &NdisAdapter,
        _table: &crate::rss::RssTable,
        _passive: &mut Passive<'_>,
    ) -> Result<(), Status> {
        Ok(())
    }

    /// `MiniportShutdownEx` (at any IRQL on [`ShutdownAction::BugCheck`]): put the device in a
    /// quiet state, touching only registers. No token: nothing but register access is allowed.
    fn shutdown(&self, _adapter: &NdisAdapter, _action: ShutdownAction) {}

    /// `MiniportDevicePnPEventNotify`. On [`PnpEvent::SurpriseRemoved`] the device is gone:
    /// touch none of its registers from here on (halt included). The framework has already
    /// marked the adapter removed when this is called (sends fail with
    /// `NDIS_STATUS_ADAPTER_REMOVED`, OID requests get `NDIS_STATUS_NOT_ACCEPTED`), and after it
    /// returns completes a set request the driver pended, which the device will never answer.
    fn pnp_event(&self, _adapter: &NdisAdapter, _event: PnpEvent) {}

    /// Power management (see [`crate::power`]). `None`, the default: NDIS halts the adapter
    /// before the machine sleeps and initializes it again on wake-up. `Some`: the adapter is
    /// kept, and [`power_down`](Self::power_down) and [`power_up`](Self::power_up) are called;
    /// a driver of real hardware overrides both.
    const POWER: Option<PowerCapabilities> = None;

    /// `OID_PNP_SET_POWER` to a low-power state (`state` is D1 or D2 only if declared, otherwise
    /// D3), at PASSIVE_LEVEL. Sends and indications have stopped, and the interrupts no longer
    /// reach the driver. Stop the device: disable its interrupts and DMA and its receive engine
    /// (reset it); after this returns its registers must not be touched until
    /// [`power_up`](Self::power_up), and the device may lose power (everything in its
    /// registers is then gone). Receives the protocols still hold (NDIS 6.30 and later does not
    /// wait for them) come back to [`return_receives`](Self::return_receives) in this state:
    /// keep the buffers, give them to the device after D0.
    fn power_down(
        &self,
        _adapter: &NdisAdapter,
        _state: DevicePowerState,
        _passive: &mut Passive<'_>,
    ) {
    }

    /// `OID_PNP_SET_POWER` to D0, at PASSIVE_LEVEL: bring the device back as initialize left it
    /// (it may have been reset or lost power), with the adapter's current configuration —
    /// packet filter, multicast list and current address (all kept by the framework:
    /// [`NdisAdapter::packet_filter`], [`NdisAdapter::multicast_list`]), and whatever the driver
    /// keeps (VLAN, offloads) — and report the link. Interrupts reach the driver again while
    /// this runs; sends and indications start once it returned. An error means the device is
    /// unrecoverable: it stays off, and NDIS fails the adapter.
    fn power_up(&self, _adapter: &NdisAdapter, _passive: &mut Passive<'_>) -> Result<(), Status> {
        Ok(())
    }
}

/// `OID_PNP_SET_POWER`, after its state was validated: moves the adapter to `requested` and
/// calls the driver's hook for the transition.
pub(crate) fn set_power<A: Miniport>(
    adapter: &NdisAdapter,
    driver: &A,
    requested: DevicePowerState,
    passive: &mut Passive<'_>,
) -> Result<(), Status> {
    let current = adapter.power_state();
    match (current, requested) {
        (c, r) if c == r => Ok(()),
        (DevicePowerState::D0, low) => {
            let state = A::POWER.unwrap_or(PowerCapabilities::D3).effective(low);
            adapter.enter_low_power(low);
            driver.power_down(adapter, state, passive);
            adapter.held_sends_completed();
            adapter.link_unknown(passive);
            Ok(())
        }
        (_, DevicePowerState::D0) => {
            adapter.device_on();
            match driver.power_up(adapter, passive) {
                Ok(()) => {
                    adapter.back_in_d0();
                    adapter.flush_after_d0(passive);
                    Ok(())
                }
                Err(e) => {
                    adapter.device_stays_off();
                    Err(if e.is_success() { Status::FAILURE } else { e })
                }
            }
        }
        // From one low-power state to another: the device is already off.
        (_, low) => {
            adapter.power.store(low.to_raw(), Ordering::Release);
            Ok(())
        }
    }
}

/// Why a reset failed: a failure status (never SUCCESS or PENDING; the framework completes
/// resets synchronously).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetError(Status);

impl ResetError {
    /// `status` as a reset failure; SUCCESS and PENDING become `NDIS_STATUS_FAILURE`.
    pub fn new(status: Status) -> Self {
        if status.is_success() || status.0 == sys::NDIS_STATUS_PENDING {
            ResetError(Status::FAILURE)
        } else {
            ResetError(status)
        }
    }
    pub fn status(self) -> Status {
        self.0
    }
}

impl From<Status> for ResetError {
    fn from(s: Status) -> Self {
        ResetError::new(s)
    }
}

/// The adapter context NDIS holds: the framework's state and, once initialize succeeded, the
/// driver's adapter.
pub(crate) struct Slot<A> {
    pub(crate) ndis: Shared<NdisAdapter>,
    pub(crate) adapter: Option<A>,
}

/// # Safety
/// `ctx` is an adapter context created by [`initialize`] and not yet halted.
unsafe fn slot<'a, A>(ctx: sys::NDIS_HANDLE) -> &'a Slot<A> {
    // SAFETY: per this function's contract.
    unsafe { &*(ctx as *const Slot<A>) }
}

/// The registration flags for driver `A` at `version`: power management keeps the adapter
/// across a sleep (no halt), and no pause around power transitions where asked for and NDIS
/// knows the flag (6.30 and later).
pub(crate) fn registration_flags<A: Miniport>(version: crate::NdisVersion) -> u32 {
    let mut flags = sys::NDIS_MINIPORT_ATTRIBUTES_HARDWARE_DEVICE
        | sys::NDIS_MINIPORT_ATTRIBUTES_BUS_MASTER
        | sys::NDIS_MINIPORT_ATTRIBUTES_SURPRISE_REMOVE_OK;
    if let Some(power) = A::POWER {
        flags |= sys::NDIS_MINIPORT_ATTRIBUTES_NO_HALT_ON_SUSPEND;
        if power.no_pause_on_suspend && version >= crate::NdisVersion::V6_30 {
            flags |= sys::NDIS_MINIPORT_ATTRIBUTES_NO_PAUSE_ON_SUSPEND;
        }
    }
    flags
}

fn registration_attributes<A: Miniport>(
    handle: sys::NDIS_HANDLE,
    context: sys::NDIS_HANDLE,
    version: crate::NdisVersion,
) -> Result<(), Status> {
    // SAFETY: all-zero is a valid attribute union (plain data).
    let mut a: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = unsafe { core::mem::zeroed() };
    a.RegistrationAttributes = sys::NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES,
            Revision: version.registration_attributes_revision(),
            Size: sys::NDIS_SIZEOF_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_1,
        },
        MiniportAdapterContext: context,
        AttributeFlags: registration_flags::<A>(version),
        CheckForHangTimeInSeconds: A::CHECK_FOR_HANG_SECONDS.unwrap_or(0),
        InterfaceType: sys::NdisInterfacePci,
    };
    // SAFETY: initialize's handle at PASSIVE_LEVEL; the attributes live across the call.
    let s = unsafe { sys::NdisMSetMiniportAttributes(handle, &mut a) };
    if s == sys::NDIS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(Status(s))
    }
}

fn general_attributes<A: Miniport>(
    handle: sys::NDIS_HANDLE,
    info: &AdapterInfo,
    (link_up, link_speed): LinkState,
) -> Result<(), Status> {
    let (mut oids, n) = crate::oid::supported::<A>(info);
    let version = crate::NdisVersion::new(info.ndis_version.0, info.ndis_version.1);
    // No wake-up: every wake source "unspecified". 6.20 and later take NDIS_PM_CAPABILITIES,
    // earlier versions NDIS_PNP_CAPABILITIES; both live across the call (NDIS copies them).
    let mut pm = A::POWER.map(|p| p.to_ndis(version));
    let mut pnp = A::POWER.map(|_| sys::NDIS_PNP_CAPABILITIES {
        Flags: 0,
        WakeUpCapabilities: sys::NDIS_PM_WAKE_UP_CAPABILITIES {
            MinMagicPacketWakeUp: sys::NdisDeviceStateUnspecified,
            MinPatternWakeUp: sys::NdisDeviceStateUnspecified,
            MinLinkChangeWakeUp: sys::NdisDeviceStateUnspecified,
        },
    });
    let (pm_ex, pm_old): (sys::PVOID, sys::PVOID) = if version >= crate::NdisVersion::V6_20 {
        (
            pm.as_mut().map_or(core::ptr::null_mut(), |p| {
                (p as *mut sys::NDIS_PM_CAPABILITIES).cast()
            }),
            core::ptr::null_mut(),
        )
    } else {
        (
            core::ptr::null_mut(),
            pnp.as_mut().map_or(core::ptr::null_mut(), |p| {
                (p as *mut sys::NDIS_PNP_CAPABILITIES).cast()
            }),
        )
    };
    // Lives across the call (NDIS copies it).
    let mut rss = info.rss.map(|r| r.to_ndis(version));
    let rss_ptr: sys::PVOID = rss.as_mut().map_or(core::ptr::null_mut(), |r| {
        (r as *mut sys::NDIS_RECEIVE_SCALE_CAPABILITIES).cast()
    });
    // SAFETY: all-zero is a valid attribute union (plain data).
    let mut a: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = unsafe { core::mem::zeroed() };
    let mut permanent = [0u8; sys::NDIS_MAX_PHYS_ADDRESS_LENGTH];
    permanent[..6].copy_from_slice(&info.permanent_address);
    let mut current = [0u8; sys::NDIS_MAX_PHYS_ADDRESS_LENGTH];
    current[..6].copy_from_slice(&info.current_address);
    let speed = if link_up { link_speed } else { u64::MAX };
    let (revision, size) = crate::NdisVersion::new(info.ndis_version.0, info.ndis_version.1)
        .general_attributes_revision();
    a.GeneralAttributes = sys::NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES,
            Revision: revision,
            Size: size,
        },
        Flags: 0,
        MediaType: sys::NdisMedium802_3,
        PhysicalMediumType: sys::NdisPhysicalMediumUnspecified,
        MtuSize: info.mtu,
        MaxXmitLinkSpeed: info.link_speed,
        XmitLinkSpeed: speed,
        MaxRcvLinkSpeed: info.link_speed,
        RcvLinkSpeed: speed,
        MediaConnectState: if link_up {
            sys::MediaConnectStateConnected
        } else {
            sys::MediaConnectStateDisconnected
        },
        MediaDuplexState: sys::MediaDuplexStateFull,
        LookaheadSize: info.mtu,
        PowerManagementCapabilities: pm_old,
        MacOptions: info.mac_options,
        SupportedPacketFilters: info.supported_packet_filters,
        MaxMulticastListSize: MAX_MULTICAST as u32,
        MacAddressLength: 6,
        PermanentMacAddress: permanent,
        CurrentMacAddress: current,
        RecvScaleCapabilities: rss_ptr,
        AccessType: sys::NET_IF_ACCESS_BROADCAST,
        DirectionType: sys::NET_IF_DIRECTION_SENDRECEIVE,
        ConnectionType: sys::NET_IF_CONNECTION_DEDICATED,
        IfType: sys::IF_TYPE_ETHERNET_CSMACD,
        IfConnectorPresent: 1,
        SupportedStatistics: StatisticsSnapshot::default().to_ndis().SupportedStatistics,
        SupportedPauseFunctions: 0,
        DataBackFillSize: 0,
        ContextBackFillSize: 0,
        SupportedOidList: oids.as_mut_ptr(),
        SupportedOidListLength: (n * 4) as u32,
        AutoNegotiationFlags: 0,
        PowerManagementCapabilitiesEx: pm_ex,
    };
    // SAFETY: as for the registration attributes; NDIS copies the OID list.
    let s = unsafe { sys::NdisMSetMiniportAttributes(handle, &mut a) };
    if s == sys::NDIS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(Status(s))
    }
}

/// The offload attributes (after the general ones): hardware capabilities and the
/// configuration at start. Only for a driver that declared offload.
fn offload_attributes(handle: sys::NDIS_HANDLE, info: &AdapterInfo) -> Result<(), Status> {
    let Some(o) = info.offload else {
        return Ok(());
    };
    let mut hardware = o.hardware.to_ndis(info.ndis_version);
    let mut current = (o.enabled & o.hardware).to_ndis(info.ndis_version);
    if let Some(caps) = &o.lso {
        caps.versions.describe(caps, &mut hardware);
        o.lso_enabled.describe(caps, &mut current);
    }
    // SAFETY: all-zero is a valid attribute union (plain data).
    let mut a: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = unsafe { core::mem::zeroed() };
    a.OffloadAttributes = sys::NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES,
            Revision: sys::NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1,
            Size: sys::NDIS_SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1,
        },
        DefaultOffloadConfiguration: &mut current,
        HardwareOffloadCapabilities: &mut hardware,
        DefaultTcpConnectionOffloadConfiguration: core::ptr::null_mut(),
        TcpConnectionOffloadHardwareCapabilities: core::ptr::null_mut(),
    };
    // SAFETY: as for the registration attributes; both offload structures live across the call
    // (NDIS copies them).
    let s = unsafe { sys::NdisMSetMiniportAttributes(handle, &mut a) };
    if s == sys::NDIS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(Status(s))
    }
}

/// `MiniportInitializeEx` for driver `D`.
pub(crate) unsafe extern "win64-unwind" fn initialize<D: crate::driver::MiniportDriver>(
    handle: sys::NDIS_HANDLE,
    driver_context: sys::NDIS_HANDLE,
    params: *mut sys::NDIS_MINIPORT_INIT_PARAMETERS,
) -> sys::NDIS_STATUS {
    // SAFETY: driver_entry registered `&'static D` as the driver context.
    let driver = unsafe { &*(driver_context as *const D) };
    // SAFETY: NDIS passes initialize the adapter's handle.
    let adapter_handle = unsafe { AdapterHandle::from_raw(handle) };
    // SAFETY: MiniportInitializeEx runs at PASSIVE_LEVEL.
    let passive = unsafe { Passive::assume() };
    let Ok(ndis) = Shared::try_new(NdisAdapter::new(adapter_handle), &passive) else {
        return sys::NDIS_STATUS_RESOURCES;
    };
    let slot = Slot::<D::Adapter> {
        ndis: ndis.clone(),
        adapter: None,
    };
    let Ok(slot) = crate::heap::try_box(slot, &passive) else {
        return sys::NDIS_STATUS_RESOURCES;
    };
    let slot = Box::into_raw(slot);
    let result = (|| {
        // DriverEntry registered this version; an NDIS that changed underneath is refused.
        let version = crate::version::registered(D::NDIS_VERSIONS).ok_or(Status::BAD_VERSION)?;
        registration_attributes::<D::Adapter>(handle, slot.cast(), version)?;
        let mut init = Init {
            adapter: ndis.clone(),
            // SAFETY: NDIS passes valid parameters for the call.
            params: unsafe { &*params },
            scope: Initializing {
                handle: adapter_handle,
                resources: &ndis.resources,
                version,
                // SAFETY: MiniportInitializeEx runs at PASSIVE_LEVEL.
                passive: unsafe { Passive::assume() },
            },
        };
        let (adapter, mut info) = driver.initialize(&mut init)?;
        drop(init);
        info.ndis_version = (version.major, version.minor);
        info.driver_version = D::DRIVER_VERSION;
        // The current state may come from a report during initialize; the maximum speed stays
        // what `AdapterInfo` says.
        let link = ndis.link_for_attributes((info.link_up, info.link_speed), &passive);
        if let Some(o) = &mut info.offload {
            o.enabled &= o.hardware;
            o.lso_enabled &= o.lso.map_or(LargeSendOffload::empty(), |c| c.versions);
        }
        let attributes = general_attributes::<D::Adapter>(handle, &info, link)
            .and_then(|()| offload_attributes(handle, &info));
        if let Err(e) = attributes {
            // SAFETY: still in initialize at PASSIVE_LEVEL.
            let mut passive = unsafe { Passive::assume() };
            let quiesced = adapter.quiesce(&ndis, &mut passive);
            adapter.halt(
                &ndis,
                quiesced,
                HaltAction::InitializationFailed,
                &mut passive,
            );
            return Err(e);
        }
        ndis.lookahead.store(info.mtu, Ordering::Relaxed);
        let enabled = info.offload.map_or(0, |o| o.enabled.bits());
        ndis.offload_on.store(enabled, Ordering::Release);
        let lso = info.offload.map_or(0, |o| o.lso_enabled.bits());
        ndis.lso_on.store(lso, Ordering::Release);
        ndis.info.set(info);
        ndis.attributes_told(link, &passive);
        Ok(adapter)
    })();
    match result {
        Ok(adapter) => {
            // SAFETY: the slot is ours until halt; NDIS calls no other handler before
            // initialize returns.
            unsafe { (*slot).adapter = Some(adapter) };
            sys::NDIS_STATUS_SUCCESS
        }
        Err(status) => {
            // SAFETY: NDIS forgets the context when initialize fails: free it.
            drop(unsafe { Box::from_raw(slot) });
            // The driver's state is gone: release what it made, then refuse further calls.
            // SAFETY: PASSIVE_LEVEL in a failing MiniportInitializeEx of this adapter.
            unsafe { ndis.resources.release_all(&passive) };
            ndis.run_down();
            if status.is_success() {
                sys::NDIS_STATUS_FAILURE
            } else {
                status.0
            }
        }
    }
}

pub(crate) unsafe extern "win64-unwind" fn halt<A: Miniport>(
    ctx: sys::NDIS_HANDLE,
    action: sys::NDIS_HALT_ACTION,
) {
    // SAFETY: the context made by initialize; halt is the last handler NDIS calls with it.
    let mut slot = unsafe { Box::from_raw(ctx as *mut Slot<A>) };
    slot.ndis.set_running(false);
    // SAFETY: MiniportHaltEx runs at PASSIVE_LEVEL.
    let mut passive = unsafe { Passive::assume() };
    if let Some(adapter) = slot.adapter.take() {
        let quiesced = adapter.quiesce(&slot.ndis, &mut passive);
        adapter.halt(
            &slot.ndis,
            quiesced,
            HaltAction::from_raw(action),
            &mut passive,
        );
    }
    // The driver's adapter is gone: interrupts, then shared memory, DMA and mappings.
    // SAFETY: PASSIVE_LEVEL in MiniportHaltEx of this adapter, after the driver's state.
    unsafe { slot.ndis.resources.release_all(&passive) };
    slot.ndis.run_down();
}

pub(crate) unsafe extern "win64-unwind" fn pause<A: Miniport>(
    ctx: sys::NDIS_HANDLE,
    _params: *mut sys::NDIS_MINIPORT_PAUSE_PARAMETERS,
) -> sys::NDIS_STATUS {
    // SAFETY: a live context (NDIS only pauses initialized adapters).
    let slot = unsafe { slot::<A>(ctx) };
    // From here no indication or send starts; the ones under way hold the pause open.
    slot.ndis.begin_pause();
    if let Some(a) = &slot.adapter {
        // SAFETY: MiniportPause runs at PASSIVE_LEVEL.
        a.pause(&slot.ndis, &mut unsafe { Passive::assume() });
    }
    // Decided once MiniportPause is done: idle now means SUCCESS (and no NdisMPauseComplete);
    // otherwise PENDING, and the last indication, return or send to end completes it — never
    // before this returns PENDING, as `pause_pended` is set under the same lock.
    let idle = slot.ndis.pause_returned();
    if idle {
        sys::NDIS_STATUS_SUCCESS
    } else {
        sys::NDIS_STATUS_PENDING
    }
}

pub(crate) unsafe extern "win64-unwind" fn restart<A: Miniport>(
    ctx: sys::NDIS_HANDLE,
    _params: *mut sys::NDIS_MINIPORT_RESTART_PARAMETERS,
) -> sys::NDIS_STATUS {
    // SAFETY: as for pause.
    let slot = unsafe { slot::<A>(ctx) };
    let Some(a) = &slot.adapter else {
        return sys::NDIS_STATUS_FAILURE;
    };
    // SAFETY: MiniportRestart runs at PASSIVE_LEVEL.
    match a.restart(&slot.ndis, &mut unsafe { Passive::assume() }) {
        Ok(()) => {
            slot.ndis.set_running(true);
            sys::NDIS_STATUS_SUCCESS
        }
        Err(s) if s.is_success() => sys::NDIS_STATUS_FAILURE,
        Err(s) => s.0,
    }
}

/// The statistics of the send lists completed together (one send call, one completion
/// batch), added to the adapter's counters at once: a few atomic additions per batch instead of
/// several per list.
#[derive(Default)]
pub(crate) struct SendCounts {
    /// (frames, bytes) sent per kind: unicast, multicast, broadcast.
    per_kind: [(u64, u64); 3],
    errors: u64,
    discards: u64,
}

impl SendCounts {
    /// One completed list: frames from the driver's copies (read again when it did not copy
    /// each frame exactly once, or one went to a group address), failed lists once each. A
    /// paused adapter's refusals are not errors.
    #[inline(always)]
    pub(crate) fn count(&mut self, list: &SendNbl<'_>, status: Status) {
        if status.is_success() {
            let (copied, bytes, group) = list.copies();
            if copied == list.frame_count() && !group {
                // Unicast frames, each copied once: the usual send.
                self.per_kind[0].0 += copied as u64;
                self.per_kind[0].1 += bytes;
            } else {
                for frame in list.frames() {
                    let destination = frame.destination().unwrap_or_default();
                    let sum = &mut self.per_kind[cast_kind(&destination)];
                    sum.0 += 1;
                    sum.1 += frame.len() as u64;
                }
            }
        } else if status == Status::RESOURCES {
            self.discards += 1;
        } else if status.0 != sys::NDIS_STATUS_PAUSED {
            self.errors += 1;
        }
    }

    /// Adds what was counted to `stats`, and starts again from zero.
    pub(crate) fn flush(&mut self, stats: &Statistics) {
        let counts = core::mem::take(self);
        stats.sent_batch(&counts.per_kind);
        if counts.errors > 0 {
            stats.tx_errors(counts.errors);
        }
        if counts.discards > 0 {
            stats.tx_discards(counts.discards);
        }
    }
}

pub(crate) unsafe extern "win64-unwind" fn send<A: Miniport>(
    ctx: sys::NDIS_HANDLE,
    nbls: *mut sys::NET_BUFFER_LIST,
    _port: sys::NDIS_PORT_NUMBER,
    flags: sys::ULONG,
) {
    // SAFETY: as for pause.
    let slot = unsafe { slot::<A>(ctx) };
    // Counted as in progress until completed, so that a pause waits for it.
    let admitted = slot.ndis.begin_send();
    let running = admitted.is_ok();
    let known_dispatch = flags & sys::NDIS_SEND_FLAGS_DISPATCH_LEVEL != 0;
    // SAFETY: MiniportSendNetBufferLists runs at IRQL <= DISPATCH_LEVEL, at DISPATCH_LEVEL when
    // NDIS sets the flag (a cleared flag says nothing more).
    let mut irql = unsafe { DispatchOrBelow::assume(known_dispatch) };
    let mut lists = SendLists::new(nbls, &slot.ndis);
    match (&slot.adapter, admitted) {
        (Some(a), Ok(())) => {
            a.send(&slot.ndis, &mut lists, &mut irql);
            lists.finish(Status::FAILURE);
        }
        (_, Err(refusal)) => lists.finish(refusal),
        (None, Ok(())) => lists.finish(Status::PAUSED),
    }
    let complete_flags = if known_dispatch {
        sys::NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL
    } else {
        0
    };
    let done = lists.completed();
    if !done.is_null() {
        // SAFETY: the lists of the chain NDIS sent that the driver did not hold, relinked,
        // every one with its status, completed once (held ones complete through
        // `SendCompletion`).
        unsafe {
            sys::NdisMSendNetBufferListsComplete(slot.ndis.handle.as_raw(), done, complete_flags)
        };
    }
    if running {
        slot.ndis.end_send();
    }
}

pub(crate) unsafe extern "win64-unwind" fn return_nbls<A: Miniport>(
    ctx: sys::NDIS_HANDLE,
    nbls: *mut sys::NET_BUFFER_LIST,
    flags: sys::ULONG,
) {
    // SAFETY: as for pause.
    let slot = unsafe { slot::<A>(ctx) };
    // SAFETY: MiniportReturnNetBufferLists runs at IRQL <= DISPATCH_LEVEL, at DISPATCH_LEVEL
    // when NDIS sets the flag.
    let mut irql =
        unsafe { DispatchOrBelow::assume(flags & sys::NDIS_RETURN_FLAGS_DISPATCH_LEVEL != 0) };
    // SAFETY: NDIS returns a chain of lists the miniport indicated.
    let mut returned = unsafe { Returned::new(nbls) };
    if let Some(a) = &slot.adapter {
        a.return_receives(&slot.ndis, &mut returned, &mut irql);
    }
    // Counted after the driver took its lists (the pools count what they unlink).
    slot.ndis.receives_returned(returned.count());
}

pub(crate) unsafe extern "win64-unwind" fn oid_request<A: Miniport>(
    ctx: sys::NDIS_HANDLE,
    request: *mut sys::NDIS_OID_REQUEST,
) -> sys::NDIS_STATUS {
    // SAFETY: as for pause.
    let slot = unsafe { slot::<A>(ctx) };
    let Some(a) = &slot.adapter else {
        return sys::NDIS_STATUS_FAILURE;
    };
    // SAFETY: MiniportOidRequest runs at PASSIVE_LEVEL.
    let mut passive = unsafe { Passive::assume() };
    // The device is gone: nothing the request could ask of it can be done.
    if slot.ndis.is_surprise_removed() {
        return sys::NDIS_STATUS_NOT_ACCEPTED;
    }
    // SAFETY: NDIS passes a valid request, owned by the miniport until completed.
    let r = unsafe { &mut *request };
    match r.RequestType {
        sys::NdisRequestQueryInformation | sys::NdisRequestQueryStatistics => {
            // SAFETY: the request type says this is the query member.
            let q = unsafe { &mut r.DATA.QUERY_INFORMATION };
            let buf: &mut [u8] = if q.InformationBuffer.is_null() {
                &mut []
            } else {
                // SAFETY: NDIS's buffer of `InformationBufferLength` bytes.
                unsafe {
                    core::slice::from_raw_parts_mut(
                        q.InformationBuffer.cast(),
                        q.InformationBufferLength as usize,
                    )
                }
            };
            let mut out = QueryBuffer::new(buf);
            let result = crate::oid::query(&slot.ndis, a, q.Oid, &mut out, &mut passive);
            q.BytesWritten = out.written() as u32;
            q.BytesNeeded = out.needed() as u32;
            match result {
                Ok(()) => sys::NDIS_STATUS_SUCCESS,
                Err(s) => {
                    q.BytesWritten = 0;
                    s.0
                }
            }
        }
        sys::NdisRequestSetInformation => {
            // SAFETY: the request type says this is the set member.
            let s = unsafe { &mut r.DATA.SET_INFORMATION };
            let data: &[u8] = if s.InformationBuffer.is_null() {
                &[]
            } else {
                // SAFETY: NDIS's buffer of `InformationBufferLength` bytes.
                unsafe {
                    core::slice::from_raw_parts(
                        s.InformationBuffer.cast::<u8>(),
                        s.InformationBufferLength as usize,
                    )
                }
            };
            let mut needed = 0;
            let mut set = SetRequest::new(passive, &slot.ndis);
            let (result, after) =
                crate::oid::set(&slot.ndis, a, s.Oid, data, &mut needed, &mut set);
            s.BytesNeeded = needed as u32;
            if let Some(generation) = set.pended() {
                let read = result.map(|r| r.min(data.len()));
                if read.is_err() {
                    s.BytesRead = 0;
                }
                return crate::oid::settle_pending(&slot.ndis, generation, request, after, read);
            }
            match result {
                Ok(read) => {
                    s.BytesRead = read.min(data.len()) as u32;
                    sys::NDIS_STATUS_SUCCESS
                }
                Err(e) => {
                    s.BytesRead = 0;
                    e.0
                }
            }
        }
        _ => sys::NDIS_STATUS_NOT_SUPPORTED,
    }
}

pub(crate) unsafe extern "win64-unwind" fn check_for_hang<A: Miniport>(
    ctx: sys::NDIS_HANDLE,
) -> sys::BOOLEAN {
    // SAFETY: as for pause.
    let slot = unsafe { slot::<A>(ctx) };
    // SAFETY: NDIS calls MiniportCheckForHangEx at PASSIVE_LEVEL.
    let mut passive = unsafe { Passive::assume() };
    let hung = slot
        .adapter
        .as_ref()
        .is_some_and(|a| a.check_for_hang(&slot.ndis, &mut passive));
    hung as sys::BOOLEAN
}

pub(crate) unsafe extern "win64-unwind" fn reset<A: Miniport>(
    ctx: sys::NDIS_HANDLE,
    addressing_reset: *mut sys::BOOLEAN,
) -> sys::NDIS_STATUS {
    // SAFETY: as for pause.
    let slot = unsafe { slot::<A>(ctx) };
    let Some(adapter) = slot.adapter.as_ref() else {
        return sys::NDIS_STATUS_FAILURE;
    };
    // MiniportResetEx runs at IRQL <= DISPATCH_LEVEL without saying which: holding a spin lock
    // nobody else takes raises it to DISPATCH_LEVEL, so the driver gets a token it can trust.
    let result = slot.ndis.reset_lock.with_unchecked(|()| {
        // SAFETY: a spin lock is held, so this runs at DISPATCH_LEVEL until it is released.
        let mut dispatch = unsafe { Dispatch::assume() };
        adapter.reset(&slot.ndis, &mut dispatch)
    });
    match result {
        Ok(addressing) => {
            // SAFETY: NDIS passes a writable flag.
            unsafe { *addressing_reset = addressing as sys::BOOLEAN };
            sys::NDIS_STATUS_SUCCESS
        }
        Err(e) => e.status().0,
    }
}

pub(crate) unsafe extern "win64-unwind" fn cancel_send(_ctx: sys::NDIS_HANDLE, _id: sys::PVOID) {
    // Sends complete before MiniportSendNetBufferLists returns: nothing is ever queued.
}

pub(crate) unsafe extern "win64-unwind" fn cancel_oid<A: Miniport>(
    ctx: sys::NDIS_HANDLE,
    id: sys::PVOID,
) {
    // SAFETY: as for pause.
    let slot = unsafe { slot::<A>(ctx) };
    crate::oid::cancel_pending(&slot.ndis, id);
}

pub(crate) unsafe extern "win64-unwind" fn pnp_event<A: Miniport>(
    ctx: sys::NDIS_HANDLE,
    event: *mut sys::NET_DEVICE_PNP_EVENT,
) {
    // SAFETY: as for pause.
    let slot = unsafe { slot::<A>(ctx) };
    if let (Some(a), false) = (&slot.adapter, event.is_null()) {
        // SAFETY: NDIS passes a valid event; its first field after the header is the event code
        // (`NDIS_DEVICE_PNP_EVENT`, at offset 8 after PortNumber).
        let code = unsafe { event.cast::<u8>().add(8).cast::<u32>().read_unaligned() };
        let event = PnpEvent::from_raw(code);
        if event == PnpEvent::SurpriseRemoved {
            slot.ndis.surprise_removed.store(true, Ordering::Release);
        }
        a.pnp_event(&slot.ndis, event);
        if event == PnpEvent::SurpriseRemoved {
            crate::oid::abort_pending(&slot.ndis, Status::NOT_ACCEPTED);
        }
    }
}

pub(crate) unsafe extern "win64-unwind" fn shutdown<A: Miniport>(
    ctx: sys::NDIS_HANDLE,
    action: sys::NDIS_SHUTDOWN_ACTION,
) {
    // SAFETY: as for pause.
    let slot = unsafe { slot::<A>(ctx) };
    if let Some(a) = &slot.adapter {
        a.shutdown(&slot.ndis, ShutdownAction::from_raw(action));
    }
}

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(test)]
mod tests {
    use super::{Gate, SEND_CALL, SEND_HELD, SENDS_CLOSED};

    /// Item 10 of the soundness issue: a return nested inside the indicate call brings the lent
    /// count to zero before the call returns; the pause completes only when the indication has
    /// returned, and never before MiniportPause returned PENDING.
    #[test]
    fn item10_pause_waits_for_indications_in_flight_and_for_pause_to_return() {
        let mut g = Gate {
            running: true,
            ..Gate::default()
        };
        // An indication of 2 lists begins (begin_indication).
        g.lent += 2;
        g.indicating += 1;
        // MiniportPause starts on another processor.
        g.running = false;
        g.pausing = true;
        // The protocols return both lists inside NdisMIndicateReceiveNetBufferLists.
        g.lent -= 2;
        assert!(
            !g.take_pause_completion(SENDS_CLOSED),
            "completed inside the indication"
        );
        // MiniportPause returns PENDING (not idle: the indication is still under way).
        assert!(!g.idle(SENDS_CLOSED));
        g.pause_pended = true;
        assert!(!g.take_pause_completion(SENDS_CLOSED));
        // The indicate call returns (end_indication).
        g.indicating -= 1;
        assert!(g.take_pause_completion(SENDS_CLOSED));
        assert!(!g.take_pause_completion(SENDS_CLOSED), "completed twice");
    }

    #[test]
    fn item10_a_pause_is_not_completed_before_miniport_pause_returned() {
        let mut g = Gate {
            running: false,
            pausing: true,
            ..Gate::default()
        };
        assert!(!g.idle(SENDS_CLOSED | SEND_CALL));
        assert!(
            !g.idle(SENDS_CLOSED | SEND_HELD),
            "a held list keeps it busy"
        );
        // The last send ends while MiniportPause still runs: no NdisMPauseComplete yet.
        assert!(!g.take_pause_completion(SENDS_CLOSED));
        // MiniportPause then finds the adapter idle and returns SUCCESS itself.
        assert!(g.idle(SENDS_CLOSED));
    }
}
