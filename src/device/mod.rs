//! The virtio-net device as the miniport runs it: register windows, queue pairs with their
//! buffers, the control queue, and the receive/transmit paths shared by DPCs and NDIS calls.
//!
//! Locking: each virtqueue sits behind its own NDIS spin lock (DISPATCH_LEVEL); receive buffers
//! are lent to NDIS outside the lock, because NDIS may hand them back from inside the
//! indication. Nothing here runs at DIRQL: the line-based ISR reads the ISR-status register
//! through its own window (src/adapter.rs).
//!
//! The device state, its bring-up and its status live here; the paths are split by concern:
//! [`rx`] (receive, posting, returned buffers, VLAN stripping, checksums), [`tx`] (send, reap,
//! copies into bounce buffers), [`lso`] (large send) and [`control`] (the control queue and its
//! commands).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, AtomicU16, AtomicUsize};

use ndis::Status;
use ndis::dma::{DmaRegistration, SharedMemory};
use ndis::heap::{self, Shared};
use ndis::io::OwnedWindow;
use ndis::irql::Passive;
use ndis::miniport::{Init, Initializing, NdisAdapter};
use ndis::nbl::{HeldQueue, MapPool, MappedSend, ReceivePool};
use ndis::sync::SpinLock;

use crate::virtio::net::{self, NetHeader, VectorPlan, features};
use crate::virtio::pci::{Notifier, Transport};
use crate::virtio::queue::{Layout, Slot, SplitQueue};

mod control;
mod health;
mod lso;
pub mod rss;
mod rx;
pub mod steer;
mod tx;

use control::{CONTROL_BUFFER, ControlRing};
pub use health::{Health, map_vectors};
pub use lso::{LSO_MAX_FRAME, LSO_MAX_PAYLOAD};
pub use tx::{MAP_THRESHOLD, TX_BACKLOG};

/// The frame size the adapter runs with (`*JumboPacket`, bounded by the device's MTU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSize {
    /// Largest untagged frame (without FCS) sent or accepted: the MTU plus 14.
    pub frame: usize,
    /// Largest frame carrying one 802.1Q tag.
    pub max: usize,
    /// Bytes per receive or transmit buffer: a virtio-net header and the largest frame the
    /// *device* may deliver (its MTU, when it reports one larger than ours: virtio requires
    /// receive buffers for it), rounded up to 2 KiB (2048 for standard frames).
    pub buffer: usize,
}

impl FrameSize {
    /// For untagged frames of up to `frame` bytes (1514 for a 1500-byte MTU), on a device whose
    /// own largest frame is `device_frame`.
    pub const fn new(frame: usize, device_frame: usize) -> FrameSize {
        let largest = if device_frame > frame {
            device_frame
        } else {
            frame
        };
        FrameSize {
            frame,
            max: frame + 4,
            // Room for the longer header hash reporting uses.
            buffer: (NetHeader::HASH_LEN + largest + 4).next_multiple_of(2048),
        }
    }
}

/// `TxRing::next_bounce` of the last (or only) buffer of a frame.
const NO_BOUNCE: u16 = u16::MAX;

/// What `*PriorityVLANTag` enables: 802.1p priority and 802.1Q VLAN tags, inserted on send
/// from the list's 802.1Q information and stripped on receive into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tagging {
    pub priority: bool,
    pub vlan: bool,
}

impl Tagging {
    /// From the keyword's value (bit 0: priority, bit 1: VLAN).
    pub fn from_keyword(value: u32) -> Tagging {
        Tagging {
            priority: value & 1 != 0,
            vlan: value & 2 != 0,
        }
    }

    pub fn any(self) -> bool {
        self.priority || self.vlan
    }
}

pub type Queue = SplitQueue<SharedMemory, Vec<Slot>>;

pub struct RxRing {
    /// Fixed descriptors: receive-pool buffer `i` is always posted under descriptor `i` (the
    /// pool has one buffer per ring entry), so the ring names the buffer it returns.
    vq: Queue,
    notifier: Notifier,
    /// The RSS configuration as this ring's receive path last took it (refreshed when NDIS
    /// changes it), with the key's Toeplitz table.
    rss: ndis::rss::RssView,
    /// Frames of this ring steered to each processor, waiting there (see [`steer`]).
    steered: steer::Outbox,
}

pub struct TxRing {
    vq: Queue,
    /// What each descriptor head carries until the device hands it back: its bounce buffer
    /// and its mapped send, side by side (one bounds check for both).
    carried: Vec<Carried>,
    /// For a bounce buffer in a large send's chain: the next one of the chain ([`NO_BOUNCE`]:
    /// the last, or a frame of one buffer).
    next_bounce: Vec<u16>,
    free: Vec<u16>,
    bounce: SharedMemory,
    notifier: Notifier,
    /// Staging for a frame split over several MDLs (contiguous ones are copied in place).
    scratch: Box<[u8]>,
    /// Lists held while the ring is full or a mapping is awaited (at most [`tx::TX_BACKLOG`]),
    /// sent in order from the completion path (with transmit interrupts on while any wait) or
    /// the next send call. Linked through the lists themselves: no memory of the driver's.
    backlog: HeldQueue,
    /// Mapped sends the device finished (reaped), completed by the holder of the lock before
    /// it lets go (at most the ring's size: no allocation).
    finished: Vec<MappedSend>,
    /// A mapping was asked for and NDIS has not called back yet: later lists wait behind it.
    mapping: bool,
    /// A mapped send that found the ring full: queued first when the device makes room.
    parked: Option<MappedSend>,
    /// Mapped sends on the ring: transmit interrupts stay on while any are.
    in_flight_mapped: usize,
}

/// What a transmit descriptor head carries while the device has it.
#[derive(Default)]
pub struct Carried {
    /// The first bounce buffer of its frame ([`NO_BOUNCE`]: a mapped send after the ring's
    /// zero header).
    bounce: u16,
    /// Its mapped send (zero-copy), if any: completed when the device hands the head back.
    mapped: Option<MappedSend>,
}

impl TxRing {
    /// Lists wait their turn (frames go out in order): a backlog, a mapping not yet called
    /// back, or a mapped send waiting for room.
    fn waiting(&self) -> bool {
        !self.backlog.is_empty() || self.mapping || self.parked.is_some()
    }
}

pub struct Pair {
    pub rx: SpinLock<RxRing>,
    pub pool: ReceivePool,
    pub tx: SpinLock<TxRing>,
    /// The requests of the ring's zero-copy sends (one per mapped send in flight, plus the one
    /// being mapped and a parked one); a mapping past that allocates its own.
    pub map_pool: MapPool,
}

impl Drop for Pair {
    /// Frames steered and never taken (their processor's DPC did not run again) are lent to
    /// the ring's chains, which NDIS never saw: given back, so the pool frees them.
    fn drop(&mut self) {
        self.rx.get_mut().steered.release(&self.pool);
    }
}

pub struct Device {
    /// The queues and buffers. Dropping the device releases no NDIS object: the framework frees
    /// the shared memory, the DMA registration and the mappings after halt (the device was
    /// reset in `quiesce`).
    pub pairs: Vec<Pair>,
    control: Option<SpinLock<ControlRing>>,
    pub transport: Transport<OwnedWindow>,
    pub plan: VectorPlan,
    pub features: u64,
    pub frame: FrameSize,
    pub tagging: Tagging,
    /// The VLAN the adapter belongs to (`OID_GEN_VLAN_ID`; 0: none): receives tagged for
    /// another VLAN are dropped, and sends without a VLAN of their own are tagged with it.
    pub vlan_id: AtomicU16,
    pub ndis: Shared<NdisAdapter>,
    /// A [`Health`]: anything but `Healthy` and the driver stops touching the device's queues,
    /// and sends fail with [`Health::send_status`].
    health: AtomicU8,
    /// The control queue's index, for re-programming it after a reset.
    control_queue: Option<u16>,
    /// What the control queue told the device, replayed after a reset.
    restore: SpinLock<health::Restore>,
    /// Pairs the send path spreads over (1 when the device refused `VQ_PAIRS_SET`).
    pub active_pairs: AtomicUsize,
    /// Frames waiting to be indicated on the processor RSS names for them.
    pub steer: steer::Steering,
    /// Bytes of the virtio-net header on both queues: [`NetHeader::HASH_LEN`] with
    /// `HASH_REPORT`, else [`NetHeader::LEN`].
    pub hdr_len: usize,
    /// What the device's RSS and hash reporting can take (from its configuration).
    pub rss_limits: Option<crate::virtio::pci::RssLimits>,
    /// The processor each receive queue's DPC runs on (as reported in the RSS capabilities).
    pub queue_cpus: ndis::sync::Once<[u16; ndis::rss::MAX_QUEUES]>,
    /// [`rss::DEVICE_HASH`] and [`rss::DEVICE_STEERS`]: what the device does of NDIS's RSS
    /// configuration now (0: software hashing and steering).
    rss_mode: AtomicU8,
    _dma: DmaRegistration,
}

/// A virtqueue in fresh shared memory, with its private slots.
fn new_queue(
    init: &Initializing<'_>,
    dma: &DmaRegistration,
    size: u16,
    event_idx: bool,
) -> Result<Queue, Status> {
    let layout = Layout::new(size).map_err(|_| Status::INVALID_PARAMETER)?;
    let memory = dma.allocate(init, layout.total)?;
    let slots = heap::try_filled(Slot::EMPTY, size as usize, init.passive())?;
    SplitQueue::new(memory, slots, size, event_idx).map_err(|_| Status::RESOURCES)
}

/// Resets the device and marks it FAILED: initialize failed after queues were programmed.
fn fail(transport: &Transport<OwnedWindow>) {
    let _ = transport.reset(|| ndis::sync::stall(10));
    transport.add_status(crate::virtio::pci::status::FAILED);
}

fn program(transport: &Transport<OwnedWindow>, queue: u16, vq: &Queue) -> Result<Notifier, Status> {
    transport
        .setup_queue(
            queue,
            vq.size(),
            vq.desc_address(),
            vq.driver_address(),
            vq.device_address(),
        )
        .map_err(|_| Status::DEVICE_FAILED)
}

impl Device {
    /// Builds and programs every queue of `plan` (vectors already mapped), posts the receive
    /// buffers without notifying the device (virtio 1.2, 3.1.1: no notification before
    /// DRIVER_OK). The caller sets DRIVER_OK afterwards, then calls
    /// [`notify_receive_queues`](Self::notify_receive_queues).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        init: &mut Init<'_>,
        transport: Transport<OwnedWindow>,
        dma: DmaRegistration,
        plan: VectorPlan,
        features: u64,
        frame: FrameSize,
        tagging: Tagging,
        rx_size: u16,
        tx_size: u16,
        control_queue: Option<u16>,
    ) -> Result<Device, Status> {
        let ini = init.initializing();
        let ndis = init.adapter().clone();
        // Each ring's steering chains: one per processor (see `steer`).
        let cpus = ndis::sync::processor_count().clamp(1, 64) as usize;
        let hdr_len = if features & features::HASH_REPORT != 0 {
            NetHeader::HASH_LEN
        } else {
            NetHeader::LEN
        };
        // Queues were programmed into the device before a later step failed: reset it, so it
        // holds no address of memory about to be freed, and mark it FAILED.
        let parts = (|| -> Result<(Vec<Pair>, Option<SpinLock<ControlRing>>), Status> {
            let event_idx = features & net::features::RING_EVENT_IDX != 0;
            let indirect = features & net::features::RING_INDIRECT_DESC != 0;
            let tso = features & (features::HOST_TSO4 | features::HOST_TSO6) != 0;
            let scratch_len = if tso {
                frame.max.max(LSO_MAX_FRAME)
            } else {
                frame.max
            };
            let passive = ini.passive();
            let mut pairs = heap::try_vec(usize::from(plan.pairs()), passive)?;
            for j in 0..plan.pairs() {
                let rx_max = transport
                    .queue_max_size(net::rx_queue(j))
                    .map_err(|_| Status::DEVICE_FAILED)?;
                let tx_max = transport
                    .queue_max_size(net::tx_queue(j))
                    .map_err(|_| Status::DEVICE_FAILED)?;
                let rx_n = rx_size.min(rx_max);
                let tx_n = tx_size.min(tx_max);
                if rx_n == 0 || tx_n == 0 {
                    return Err(Status::DEVICE_FAILED);
                }
                // Powers of two: the device's maximum is one, the keyword may not be.
                let rx_n = 1 << (15 - rx_n.leading_zeros().min(15));
                let tx_n = 1 << (15 - tx_n.leading_zeros().min(15));
                let mut rx_vq = new_queue(ini, &dma, rx_n, event_idx)?;
                // Buffer `i` of the pool (of `rx_n` buffers) under descriptor `i`.
                rx_vq
                    .use_fixed_descriptors()
                    .map_err(|_| Status::DEVICE_FAILED)?;
                let mut tx_vq = new_queue(ini, &dma, tx_n, event_idx)?;
                // Transmit completions are reaped by the send path; no interrupt needed for them.
                tx_vq.disable_interrupts();
                let pool = ReceivePool::new(init, &dma, frame.buffer, rx_n as usize)?;
                // One buffer per descriptor, then the zero header (never written; the longest).
                let bounce =
                    dma.allocate(ini, frame.buffer * tx_n as usize + NetHeader::HASH_LEN)?;
                ndis::hw::DeviceMemory::write_bytes(
                    &bounce,
                    frame.buffer * tx_n as usize,
                    &NetHeader::default().encode_hash(),
                );
                // A mapped frame (its header, then up to `MAX_MAPPED_ELEMENTS` pieces) in one
                // ring entry: a table per descriptor, as the chain of its head. Without the
                // memory for them (or with a ring of one entry) chains link ring descriptors.
                let entries = (tx::MAX_MAPPED_ELEMENTS as u16 + 1).min(tx_n);
                let tables = if indirect && entries >= 2 {
                    dma.allocate(ini, 16 * usize::from(entries) * usize::from(tx_n))
                        .ok()
                } else {
                    None
                };
                // Mapped sends with nothing to rewrite start with the zero header (past the
                // bounce buffers): every table has it already.
                let zero_header = (
                    ndis::hw::DeviceMemory::device_address(&bounce)
                        + (frame.buffer * tx_n as usize) as u64,
                    hdr_len as u32,
                );
                tx_vq
                    .set_common_first(zero_header)
                    .map_err(|_| Status::DEVICE_FAILED)?;
                if let Some(tables) = tables {
                    tx_vq
                        .use_indirect_tables(tables, entries)
                        .map_err(|_| Status::DEVICE_FAILED)?;
                }
                let rss = ndis::rss::RssView::try_new(ini.passive())?;
                let rx_notifier = program(&transport, net::rx_queue(j), &rx_vq)?;
                let tx_notifier = program(&transport, net::tx_queue(j), &tx_vq)?;
                let tx_len = usize::from(tx_n);
                // A mapped send in flight takes one ring entry with tables, at least two (its
                // header and an element) without.
                let map_requests = if tx_vq.descriptors_for(2) == 1 {
                    tx_len
                } else {
                    tx_len / 2
                } + 2;
                let pair = Pair {
                    rx: SpinLock::new(RxRing {
                        vq: rx_vq,
                        notifier: rx_notifier,
                        rss,
                        steered: steer::Outbox::new(cpus, &pool, ini.passive())?,
                    }),
                    pool,
                    tx: SpinLock::new(TxRing {
                        vq: tx_vq,
                        carried: heap::try_collect(
                            (0..tx_len).map(|_| Carried::default()),
                            passive,
                        )?,
                        next_bounce: heap::try_filled(NO_BOUNCE, tx_len, passive)?,
                        free: heap::try_collect((0..tx_n).rev(), passive)?,
                        bounce,
                        notifier: tx_notifier,
                        // A large send that is not contiguous is gathered here whole.
                        scratch: heap::try_boxed_slice(0, scratch_len, passive)?,
                        backlog: HeldQueue::new(),
                        finished: heap::try_vec(tx_len, passive)?,
                        mapping: false,
                        parked: None,
                        in_flight_mapped: 0,
                    }),
                    // One request per mapped send in flight, plus the one being mapped and a
                    // parked one.
                    map_pool: MapPool::new(&dma, map_requests, passive)?,
                };
                heap::try_push(&mut pairs, pair, passive)?;
            }
            let control = match control_queue {
                Some(q) => {
                    let max = transport
                        .queue_max_size(q)
                        .map_err(|_| Status::DEVICE_FAILED)?;
                    let size = max.min(16);
                    let size = 1 << (15 - size.leading_zeros().min(15));
                    let vq = new_queue(ini, &dma, size, event_idx)?;
                    let notifier = program(&transport, q, &vq)?;
                    transport
                        .enable_queue(q)
                        .map_err(|_| Status::DEVICE_FAILED)?;
                    let buffer = dma.allocate(ini, CONTROL_BUFFER)?;
                    Some(SpinLock::new(ControlRing {
                        vq,
                        buffer,
                        notifier,
                        stuck: false,
                        waiting: None,
                    }))
                }
                None => None,
            };
            for j in 0..plan.pairs() {
                transport
                    .enable_queue(net::rx_queue(j))
                    .map_err(|_| Status::DEVICE_FAILED)?;
                transport
                    .enable_queue(net::tx_queue(j))
                    .map_err(|_| Status::DEVICE_FAILED)?;
            }
            Ok((pairs, control))
        })();
        let (pairs, control) = match parts {
            Ok(p) => p,
            Err(e) => {
                fail(&transport);
                return Err(e);
            }
        };
        let steer = match steer::Steering::new(pairs.len(), cpus, ini.passive()) {
            Ok(s) => s,
            Err(e) => {
                fail(&transport);
                return Err(e);
            }
        };
        let device = Device {
            pairs,
            control,
            transport,
            plan,
            features,
            frame,
            tagging,
            vlan_id: AtomicU16::new(0),
            ndis,
            health: AtomicU8::new(Health::Healthy as u8),
            control_queue,
            restore: SpinLock::new(health::Restore::new()),
            active_pairs: AtomicUsize::new(plan.pairs() as usize),
            steer,
            hdr_len,
            rss_limits: None,
            queue_cpus: ndis::sync::Once::new(),
            rss_mode: AtomicU8::new(0),
            _dma: dma,
        };
        // Made available, not announced: the doorbell waits for DRIVER_OK.
        device.post_receive_buffers(init.passive_mut());
        Ok(device)
    }

    /// Stops a device [`build`](Self::build) programmed, when initialize fails after it: reset
    /// (it holds addresses of memory about to be freed) and marked FAILED.
    pub fn fail(&self) {
        fail(&self.transport);
    }

    /// Once DRIVER_OK is set: one notification per receive queue for the buffers
    /// [`build`](Self::build) made available (if the device asks for it, as it does unless it
    /// already looked at the ring).
    pub fn notify_receive_queues(&self, passive: &mut Passive<'_>) {
        for pair in &self.pairs {
            pair.rx.with(passive, |rx, _| {
                if self.is_healthy() && rx.vq.should_notify() {
                    self.transport.notify(&rx.notifier);
                }
            });
        }
    }

    /// Link state from the device configuration (a config-change event).
    pub fn link_up(&self) -> bool {
        self.transport
            .net_config()
            .map(|c| c.link_up(self.features & net::features::STATUS != 0))
            .unwrap_or(false)
    }

    /// Stops the device for good (halt, shutdown): after this it touches no memory and raises
    /// no interrupt, and the driver never touches it again.
    pub fn reset(&self) {
        self.mark_removed();
        // A removed device is not touched once NDIS said so; before that it reads all ones:
        // there is nothing to reset, and polling for the status to clear would only burn 100 ms.
        if self.ndis.is_surprise_removed() || self.transport.status() == 0xFF {
            return;
        }
        let _ = self.transport.reset(|| ndis::sync::stall(10));
    }
}
