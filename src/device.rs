//! The virtio-net device as the miniport runs it: register windows, queue pairs with their
//! buffers, the control queue, and the receive/transmit paths shared by DPCs and NDIS calls.
//!
//! Locking: each virtqueue sits behind its own NDIS spin lock (DISPATCH_LEVEL); receive buffers
//! are lent to NDIS outside the lock, because NDIS may hand them back from inside the
//! indication. Nothing here runs at DIRQL: the line-based ISR reads the ISR-status register
//! through its own window (src/adapter.rs).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};

use ndis::Status;
use ndis::dma::{DmaRegistration, SharedMemory};
use ndis::heap::Shared;
use ndis::hw::DeviceMemory;
use ndis::io::OwnedWindow;
use ndis::irql::{AtMostDispatch, DispatchOrBelow, Passive};
use ndis::miniport::{Init, Initializing, NdisAdapter};
use ndis::nbl::{
    CopyError, DeviceCopy, Ieee8021Q, ReceivePool, Returned, RxFrame, SendLists, SendNbl, TxPrep,
};
use ndis::offload::{DeviceRxChecksum, LargeSend, LargeSendOffload};
use ndis::sync::SpinLock;

use crate::virtio::net::{self, NetHeader, VectorPlan, features};
use crate::virtio::pci::{Notifier, Transport};
use crate::virtio::queue::{Buffer, Layout, Slot, SplitQueue};

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
            buffer: (NetHeader::LEN + largest + 4).next_multiple_of(2048),
        }
    }
}

/// The largest large send: NetKVM's `MaxOffLoadSize` of TCP payload ([`LSO_MAX_PAYLOAD`]) with
/// the most header bytes NDIS uses LSO with (`NDIS_LARGE_SEND_OFFLOAD_MAX_HEADER_LENGTH`, 128)
/// and room for a tag the driver inserts. Under the device's 64 KiB chain.
pub const LSO_MAX_PAYLOAD: u32 = 0xF800;
pub const LSO_MAX_FRAME: usize = LSO_MAX_PAYLOAD as usize + 128 + 4;
/// Bounce buffers a large send may take (the smallest buffer is 2 KiB).
const LSO_MAX_BUFFERS: usize = (NetHeader::LEN + LSO_MAX_FRAME).div_ceil(2048);
/// `TxRing::next_bounce` of the last (or only) buffer of a frame.
const NO_BOUNCE: u16 = u16::MAX;

/// What becomes of a receive.
enum Received {
    /// Shorter than a header, or not what the device may deliver: an error.
    Runt,
    /// A frame the adapter does not take (too long for its MTU, another VLAN's): a discard.
    Dropped,
    Frame(RxFrame),
}
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

/// Receives collected per pass before indicating them in one chain.
const RX_BATCH: usize = 64;

pub type Queue = SplitQueue<SharedMemory, Vec<Slot>>;

pub struct RxRing {
    vq: Queue,
    /// Receive-pool buffer posted under each descriptor head.
    buffer_of: Vec<u16>,
    notifier: Notifier,
}

pub struct TxRing {
    vq: Queue,
    /// Bounce buffer carried by each descriptor head.
    bounce_of: Vec<u16>,
    /// For a bounce buffer in a large send's chain: the next one of the chain ([`NO_BOUNCE`]:
    /// the last, or a frame of one buffer).
    next_bounce: Vec<u16>,
    free: Vec<u16>,
    bounce: SharedMemory,
    notifier: Notifier,
    /// Staging for a frame split over several MDLs (contiguous ones are copied in place).
    scratch: Box<[u8]>,
}

pub struct Pair {
    pub rx: SpinLock<RxRing>,
    pub pool: ReceivePool,
    pub tx: SpinLock<TxRing>,
}

/// The control queue: one command at a time, polled, at PASSIVE_LEVEL (initialize and OID
/// requests, which NDIS serialises).
pub struct ControlRing {
    vq: Queue,
    /// Command bytes at 0, the device's one-byte ack at [`CONTROL_ACK_AT`].
    buffer: SharedMemory,
    notifier: Notifier,
    /// A command went unanswered: its descriptor may still complete, so the queue is not used
    /// again (a later answer would be taken for the wrong command).
    stuck: bool,
}

/// Room for the largest command (a MAC table with the framework's whole multicast list).
const CONTROL_ACK_AT: usize = net::mac_table_set_len(ndis::miniport::MAX_MULTICAST);
const CONTROL_BUFFER: usize = CONTROL_ACK_AT + 1;

pub struct Device {
    /// Field order is drop order: queues and buffers before the DMA registration and the
    /// register mappings (the device is reset before any of this is dropped).
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
    /// Set when the device misbehaved (a used ring it cannot have written, NEEDS_RESET) or was
    /// removed: the driver stops touching its queues; sends fail.
    pub broken: AtomicBool,
    /// Pairs the send path spreads over (1 when the device refused `VQ_PAIRS_SET`).
    pub active_pairs: AtomicUsize,
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
    SplitQueue::new(memory, vec![Slot::EMPTY; size as usize], size, event_idx)
        .map_err(|_| Status::RESOURCES)
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
        // Queues were programmed into the device before a later step failed: reset it, so it
        // holds no address of memory about to be freed, and mark it FAILED.
        let parts = (|| -> Result<(Vec<Pair>, Option<SpinLock<ControlRing>>), Status> {
            let event_idx = features & net::features::RING_EVENT_IDX != 0;
            let tso = features & (features::HOST_TSO4 | features::HOST_TSO6) != 0;
            let scratch_len = if tso {
                frame.max.max(LSO_MAX_FRAME)
            } else {
                frame.max
            };
            let mut pairs = Vec::new();
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
                let rx_vq = new_queue(ini, &dma, rx_n, event_idx)?;
                let mut tx_vq = new_queue(ini, &dma, tx_n, event_idx)?;
                // Transmit completions are reaped by the send path; no interrupt needed for them.
                tx_vq.disable_interrupts();
                let pool = ReceivePool::new(init, &dma, frame.buffer, rx_n as usize)?;
                let bounce = dma.allocate(ini, frame.buffer * tx_n as usize)?;
                let rx_notifier = program(&transport, net::rx_queue(j), &rx_vq)?;
                let tx_notifier = program(&transport, net::tx_queue(j), &tx_vq)?;
                pairs.push(Pair {
                    rx: SpinLock::new(RxRing {
                        vq: rx_vq,
                        buffer_of: vec![0; rx_n as usize],
                        notifier: rx_notifier,
                    }),
                    pool,
                    tx: SpinLock::new(TxRing {
                        vq: tx_vq,
                        bounce_of: vec![0; tx_n as usize],
                        next_bounce: vec![NO_BOUNCE; tx_n as usize],
                        free: (0..tx_n).rev().collect(),
                        bounce,
                        notifier: tx_notifier,
                        // A large send that is not contiguous is gathered here whole.
                        scratch: vec![0; scratch_len].into_boxed_slice(),
                    }),
                });
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
                let _ = transport.reset(|| ndis::sync::stall(10));
                transport.add_status(crate::virtio::pci::status::FAILED);
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
            broken: AtomicBool::new(false),
            active_pairs: AtomicUsize::new(plan.pairs() as usize),
            _dma: dma,
        };
        for pair in &device.pairs {
            let all: Vec<usize> = (0..pair.pool.len())
                .filter(|&i| pair.pool.claim(i))
                .collect();
            // Made available, not announced: the doorbell waits for DRIVER_OK.
            pair.rx.with(init.passive_mut(), |rx, _| {
                device.add_rx_buffers(rx, pair, &all)
            });
        }
        Ok(device)
    }

    /// Once DRIVER_OK is set: one notification per receive queue for the buffers
    /// [`build`](Self::build) made available (if the device asks for it, as it does unless it
    /// already looked at the ring).
    pub fn notify_receive_queues(&self, passive: &mut Passive<'_>) {
        if self.is_broken() {
            return;
        }
        for pair in &self.pairs {
            let notify = pair.rx.with(passive, |rx, _| {
                rx.vq.should_notify().then_some(rx.notifier)
            });
            if let Some(n) = notify {
                self.transport.notify(&n);
            }
        }
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    fn fail(&self) {
        self.broken.store(true, Ordering::Release);
    }

    /// After a configuration-change notification: a device that set DEVICE_NEEDS_RESET is not
    /// used again (the driver has no way to bring it back without a reset of its own). Returns
    /// whether the device is still usable.
    pub fn check_device_status(&self) -> bool {
        if !self.is_broken() && self.transport.needs_reset() {
            self.fail();
        }
        !self.is_broken()
    }

    /// Posts claimed receive buffers to the device and rings the doorbell once.
    fn post_rx<C: AtMostDispatch>(&self, pair: &Pair, buffers: &[usize], irql: &mut C) {
        if buffers.is_empty() {
            return;
        }
        if self.is_broken() {
            for &b in buffers {
                pair.pool.release(b);
            }
            return;
        }
        let notify = pair.rx.with(irql, |rx, _| {
            self.add_rx_buffers(rx, pair, buffers);
            rx.vq.should_notify().then_some(rx.notifier)
        });
        if let Some(n) = notify {
            self.transport.notify(&n);
        }
    }

    /// Makes claimed receive buffers available on `rx` (its lock held); a buffer the ring has
    /// no room for goes back to the pool.
    fn add_rx_buffers(&self, rx: &mut RxRing, pair: &Pair, buffers: &[usize]) {
        let base = pair.pool.device_address();
        for &b in buffers {
            let chain = [Buffer {
                addr: base + (b * self.frame.buffer) as u64,
                len: self.frame.buffer as u32,
                device_writable: true,
            }];
            match rx.vq.add(&chain) {
                Ok(head) => rx.buffer_of[head as usize] = b as u16,
                Err(_) => pair.pool.release(b),
            }
        }
    }

    /// Drains up to `budget` receives of pair `j` and indicates them; returns (indicated,
    /// more_pending). Receives that cannot be indicated (paused, runts, oversize) go straight back
    /// to the device.
    pub fn receive<C: AtMostDispatch>(&self, j: usize, budget: u32, irql: &mut C) -> (u32, bool) {
        let Some(pair) = self.pairs.get(j) else {
            return (0, false);
        };
        if self.is_broken() {
            return (0, false);
        }
        let mut total = 0u32;
        loop {
            let mut frames = [RxFrame::default(); RX_BATCH];
            let mut runts = 0;
            let mut n = 0;
            let mut repost = [0usize; RX_BATCH];
            let mut r = 0;
            let want = (budget - total).min(RX_BATCH as u32) as usize;
            let vlan_filter = self.vlan_id.load(Ordering::Relaxed);
            let (fault, pending) = pair.rx.with(irql, |rx, _| {
                rx.vq.disable_interrupts();
                while n + r < want {
                    match rx.vq.pop_used() {
                        Ok(Some((head, len))) => {
                            let b = rx.buffer_of[head as usize] as usize;
                            let len = len as usize;
                            match self.accept(pair, b, len, vlan_filter) {
                                Received::Frame(frame) => {
                                    frames[n] = self.with_checksum(pair, frame);
                                    n += 1;
                                }
                                Received::Runt => {
                                    repost[r] = b;
                                    r += 1;
                                    runts += 1;
                                }
                                Received::Dropped => {
                                    repost[r] = b;
                                    r += 1;
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(_) => return (true, false),
                    }
                }
                (false, n + r == want)
            });
            if fault {
                self.fail();
                return (total, false);
            }
            self.ndis.stats.rx_errors(runts as u64);
            self.ndis.stats.rx_discards((r - runts) as u64);
            // Every popped entry counts against the budget, runts included: a device that only
            // returns garbage cannot keep the DPC looping.
            total += (n + r) as u32;
            // Frames NDIS does not take (paused) come back here, decided before NDIS sees any.
            pair.pool.indicate(&frames[..n], irql, |b| {
                repost[r] = b;
                r += 1;
            });
            // Runts and refused frames go back to the device.
            self.post_rx(pair, &repost[..r], irql);
            if !pending {
                // Idle: re-enable, and drain again if the device raced us.
                let raced = pair.rx.with(irql, |rx, _| rx.vq.enable_interrupts());
                if !raced || total >= budget {
                    return (total, raced);
                }
            } else if total >= budget {
                return (total, true);
            }
        }
    }

    /// A receive of `len` bytes (header included) in buffer `b`: its 802.1Q tag, if tagging is
    /// on for it, is stripped into the list information (the addresses move up over it). With
    /// only priority tagging on, VLAN-tagged frames pass as they are; with VLAN tagging on,
    /// frames tagged for another VLAN than `vlan_filter` (when one is set) are dropped.
    fn accept(&self, pair: &Pair, b: usize, len: usize, vlan_filter: u16) -> Received {
        let Some(length) = len.checked_sub(NetHeader::LEN).filter(|&l| l >= 14) else {
            return Received::Runt;
        };
        if length > self.frame.max {
            return Received::Dropped; // the device's MTU is larger than the adapter's
        }
        let untouched = Received::Frame(RxFrame {
            index: b,
            offset: NetHeader::LEN,
            length,
            ..RxFrame::default()
        });
        if !self.tagging.any() && length <= self.frame.frame {
            return untouched;
        }
        let mut head = [0u8; 16];
        if !pair.pool.read(b, NetHeader::LEN, &mut head) {
            return Received::Dropped; // not ours to read: never indicated
        }
        let tagged = length >= 18 && head[12..14] == [0x81, 0x00];
        if !tagged {
            return if length <= self.frame.frame {
                untouched
            } else {
                Received::Dropped
            };
        }
        let tag = Ieee8021Q::from_tci(u16::from_be_bytes([head[14], head[15]]));
        let strip = if self.tagging.vlan {
            true
        } else {
            self.tagging.priority && tag.vlan_id == 0
        };
        if !strip {
            return untouched; // carried in band
        }
        if vlan_filter != 0 && tag.vlan_id != 0 && tag.vlan_id != vlan_filter {
            return Received::Dropped;
        }
        if !pair.pool.write(b, NetHeader::LEN + 4, &head[..12]) {
            return Received::Dropped;
        }
        let info = Ieee8021Q {
            priority: if self.tagging.priority {
                tag.priority
            } else {
                0
            },
            vlan_id: tag.vlan_id,
        };
        let info = (info != Ieee8021Q::default()).then_some(info);
        Received::Frame(RxFrame {
            index: b,
            offset: NetHeader::LEN + 4,
            length: length - 4,
            ieee8021q: info,
            ..RxFrame::default()
        })
    }

    /// `frame` with what NDIS is to be told about its checksums: the device's verdict from the
    /// virtio header (`DATA_VALID`, or `NEEDS_CSUM` for a checksum it left partial, which is
    /// completed here), within the tasks in force, and then the IPv4 header checksum, verified
    /// here. Only with `GUEST_CSUM`, without which the device never says anything.
    fn with_checksum(&self, pair: &Pair, mut frame: RxFrame) -> RxFrame {
        if self.features & features::GUEST_CSUM == 0 {
            return frame;
        }
        let mut header = [0u8; NetHeader::LEN];
        if !pair.pool.read(frame.index, 0, &mut header) {
            return frame;
        }
        let Some(header) = NetHeader::decode(&header) else {
            return frame;
        };
        // A stripped tag moved the frame's start 4 bytes on.
        let stripped = frame.offset - NetHeader::LEN;
        let device = if header.flags & NetHeader::F_NEEDS_CSUM != 0 {
            match usize::from(header.csum_start).checked_sub(stripped) {
                Some(start) => DeviceRxChecksum::Partial {
                    start: start as u16,
                    offset: header.csum_offset,
                },
                None => DeviceRxChecksum::Unchecked,
            }
        } else if header.flags & NetHeader::F_DATA_VALID != 0 {
            DeviceRxChecksum::Valid
        } else {
            DeviceRxChecksum::Unchecked
        };
        // A frame the device did not check is left to the stack whole: verifying only its IPv4
        // header here would move work, not save it.
        if device != DeviceRxChecksum::Unchecked {
            frame.checksum = pair.pool.checksum(
                frame.index,
                frame.offset,
                frame.length,
                self.ndis.checksum_offload(),
                device,
            );
        }
        frame
    }

    /// The TCI to insert into the frames of `nbl`, if any: its own priority and VLAN (as far
    /// as tagging is on), the adapter's VLAN when it names none.
    fn tx_tag(&self, nbl: &SendNbl<'_>) -> Option<u16> {
        if !self.tagging.any() {
            return None;
        }
        let info = nbl.ieee8021q().unwrap_or_default();
        let tag = Ieee8021Q {
            priority: if self.tagging.priority {
                info.priority
            } else {
                0
            },
            vlan_id: match (self.tagging.vlan, info.vlan_id) {
                (false, _) => 0,
                (true, 0) => self.vlan_id.load(Ordering::Relaxed),
                (true, id) => id,
            },
        };
        (tag != Ieee8021Q::default()).then(|| tag.tci())
    }

    /// Reclaims transmit descriptors the device finished.
    fn reap_tx(&self, tx: &mut TxRing) -> bool {
        loop {
            match tx.vq.pop_used() {
                Ok(Some((head, _))) => {
                    let mut b = tx.bounce_of[head as usize];
                    loop {
                        tx.free.push(b);
                        let next = core::mem::replace(&mut tx.next_bounce[b as usize], NO_BOUNCE);
                        if next == NO_BOUNCE {
                            break;
                        }
                        b = next;
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    /// The transmit DPC work for pair `j` (used when a TX vector fires).
    pub fn reap<C: AtMostDispatch>(&self, j: usize, irql: &mut C) {
        if let Some(pair) = self.pairs.get(j)
            && !self.is_broken()
            && !pair.tx.with(irql, |tx, _| self.reap_tx(tx))
        {
            self.fail();
        }
    }

    /// Copies every frame of every list into transmit buffers of the pair chosen by the current
    /// processor and hands them to the device: one lock acquisition and at most one doorbell
    /// for the whole chain.
    pub fn send(&self, lists: &mut SendLists<'_>, irql: &mut DispatchOrBelow<'_>) {
        if self.is_broken() {
            return lists.each(|_| Status::ADAPTER_REMOVED);
        }
        let pairs = self
            .active_pairs
            .load(Ordering::Relaxed)
            .clamp(1, self.pairs.len().max(1));
        let j = ndis::sync::current_processor() as usize % pairs;
        let Some(pair) = self.pairs.get(j) else {
            return lists.each(|_| Status::FAILURE);
        };
        let doorbell = pair.tx.with(irql, |tx, _| {
            lists.each(|nbl| self.queue_list(tx, nbl));
            tx.vq.should_notify().then_some(tx.notifier)
        });
        if let Some(n) = doorbell {
            self.transport.notify(&n);
        }
    }

    /// Queues the frames of one list, all or nothing as far as ring room goes (NDIS has one
    /// status per list).
    fn queue_list(&self, tx: &mut TxRing, nbl: &SendNbl<'_>) -> Status {
        if self.is_broken() {
            return Status::ADAPTER_REMOVED;
        }
        // All or nothing: nothing of a list with a frame too long goes out. A frame may exceed
        // the MTU only by a tag it already carries (one this driver inserts counts against the
        // untagged limit, since the tagged frame must fit `max`).
        let tag = self.tx_tag(nbl);
        match nbl.large_send() {
            Ok(None) => {}
            Ok(Some(ls)) => return self.queue_large_send(tx, nbl, ls, tag),
            Err(status) => return status,
        }
        let prep = TxPrep {
            tci: tag,
            checksum: nbl.checksum_request(),
            device_l4: self.features & features::CSUM != 0,
            large_send: None,
        };
        let offload = !prep.checksum.is_empty();
        // A request the frame's headers do not match fails the whole list: checked before
        // anything is queued when the list has several frames (with one, the copy finds it).
        let check_first = offload && nbl.frames().nth(1).is_some();
        let mut frames = 0;
        for f in nbl.frames() {
            if f.len() > self.frame.frame && (f.len() > self.frame.max || !f.has_8021q_tag()) {
                return Status::INVALID_LENGTH;
            }
            if check_first && f.check(&prep, &mut tx.scratch) == Err(CopyError::Malformed) {
                return Status::INVALID_PACKET;
            }
            frames += 1;
        }
        if let Err(status) = self.tx_room(tx, frames) {
            return status;
        }
        for frame in nbl.frames() {
            let Some(b) = tx.free.pop() else {
                return Status::RESOURCES;
            };
            let at = b as usize * self.frame.buffer;
            let copied = match (offload, tag) {
                (false, None) => frame
                    .copy_to_device(&tx.bounce, at + NetHeader::LEN, &mut tx.scratch)
                    .map(|len| (len, None))
                    .ok_or(Status::INVALID_LENGTH),
                _ => frame
                    .copy_to_device_prepared(
                        &tx.bounce,
                        at + NetHeader::LEN,
                        &mut tx.scratch,
                        &prep,
                    )
                    .map(|c| (c.len, c.partial))
                    .map_err(|e| match e {
                        CopyError::Malformed => Status::INVALID_PACKET,
                        CopyError::TooLong => Status::INVALID_LENGTH,
                    }),
            };
            let (len, partial) = match copied {
                Ok(c) => c,
                Err(status) => {
                    tx.free.push(b);
                    return status;
                }
            };
            let header = match partial {
                None => NetHeader::default(),
                Some((start, offset)) => NetHeader {
                    flags: NetHeader::F_NEEDS_CSUM,
                    csum_start: start,
                    csum_offset: offset,
                    ..NetHeader::default()
                },
            };
            tx.bounce.write_bytes(at, &header.encode());
            let chain = [Buffer {
                addr: tx.bounce.device_address() + at as u64,
                len: (NetHeader::LEN + len) as u32,
                device_writable: false,
            }];
            match tx.vq.add(&chain) {
                Ok(head) => tx.bounce_of[head as usize] = b,
                Err(_) => {
                    tx.free.push(b);
                    return Status::RESOURCES;
                }
            }
        }
        Status::SUCCESS
    }

    /// Whether every transmit ring holds two of the largest large sends, so that one can be
    /// queued while the device still holds the other.
    pub fn lso_fits(&self, passive: &mut Passive<'_>) -> bool {
        let needed = (NetHeader::LEN + LSO_MAX_FRAME).div_ceil(self.frame.buffer);
        self.pairs.iter().all(|p| {
            p.tx.with(passive, |tx, _| usize::from(tx.vq.size()) >= 2 * needed)
        })
    }

    /// Makes room for `n` more transmit buffers (and as many descriptors): rings the doorbell
    /// for what is queued and reaps what the device finished. Err: the status to fail the list
    /// with.
    fn tx_room(&self, tx: &mut TxRing, n: usize) -> Result<(), Status> {
        if tx.free.len() >= n {
            return Ok(());
        }
        // Let the device see what is queued (the doorbell for this call has not rung yet),
        // then take back what it finished.
        if tx.vq.should_notify() {
            self.transport.notify(&tx.notifier);
        }
        if !self.reap_tx(tx) {
            self.fail();
            return Err(Status::DEVICE_FAILED);
        }
        if tx.free.len() < n {
            return Err(Status::RESOURCES);
        }
        Ok(())
    }

    /// Queues a large send (LSOv2): the frame, up to [`LSO_MAX_FRAME`] bytes, copied over as
    /// many bounce buffers as it takes and handed to the device as one chain for it to segment
    /// (`VIRTIO_NET_F_HOST_TSO4`/`6`). NDIS says such a list must be dropped when LSO is off
    /// for its IP version (after an OID switched it off): it fails with `INVALID_PACKET`.
    fn queue_large_send(
        &self,
        tx: &mut TxRing,
        nbl: &SendNbl<'_>,
        ls: LargeSend,
        tag: Option<u16>,
    ) -> Status {
        let version = if ls.ipv6 {
            LargeSendOffload::IPV6
        } else {
            LargeSendOffload::IPV4
        };
        if !self.ndis.large_send_offload().contains(version) {
            return Status::INVALID_PACKET;
        }
        let Some(frame) = nbl.frames().next() else {
            return Status::INVALID_PACKET;
        };
        if frame.len() > LSO_MAX_FRAME - 4 {
            return Status::INVALID_LENGTH;
        }
        let prep = TxPrep {
            tci: tag,
            large_send: Some(ls),
            device_l4: true,
            ..TxPrep::default()
        };
        let buffer = self.frame.buffer;
        let tag_room = if tag.is_some() { 4 } else { 0 };
        let n = (NetHeader::LEN + frame.len() + tag_room).div_ceil(buffer);
        if let Err(status) = self.tx_room(tx, n) {
            return status;
        }
        let mut slots = [0u16; LSO_MAX_BUFFERS];
        let mut regions = [(0usize, 0usize); LSO_MAX_BUFFERS];
        for i in 0..n {
            slots[i] = tx.free.pop().unwrap_or(NO_BOUNCE); // `tx_room` made sure of n
            let at = usize::from(slots[i]) * buffer;
            regions[i] = if i == 0 {
                (at + NetHeader::LEN, buffer - NetHeader::LEN)
            } else {
                (at, buffer)
            };
        }
        let copied =
            frame.copy_to_device_regions(&tx.bounce, &regions[..n], &mut tx.scratch, &prep);
        // A segment (headers and one MSS of payload) must fit the adapter's frame, a tag
        // included; CWR needs the device to know ECN (virtio: the driver SHOULD NOT ask for
        // segmentation of it otherwise).
        let ecn_ok = self.features & features::HOST_ECN != 0;
        let segment_max = if tag.is_some() || frame.has_8021q_tag() {
            self.frame.frame + 4
        } else {
            self.frame.frame
        };
        let (len, gso, partial) = match copied {
            Ok(DeviceCopy {
                len,
                gso: Some(gso),
                partial: Some(partial),
            }) if usize::from(gso.header_len) + usize::from(gso.mss) <= segment_max
                && (!gso.ecn || ecn_ok) =>
            {
                (len, gso, partial)
            }
            other => {
                tx.free.extend(slots[..n].iter().rev());
                return match other {
                    Err(CopyError::TooLong) => Status::INVALID_LENGTH,
                    _ => Status::INVALID_PACKET,
                };
            }
        };
        let ecn = if gso.ecn { NetHeader::GSO_ECN } else { 0 };
        let header = NetHeader {
            flags: NetHeader::F_NEEDS_CSUM,
            gso_type: ecn
                | if gso.ipv6 {
                    NetHeader::GSO_TCPV6
                } else {
                    NetHeader::GSO_TCPV4
                },
            hdr_len: gso.header_len,
            gso_size: gso.mss,
            csum_start: partial.0,
            csum_offset: partial.1,
            num_buffers: 0,
        };
        tx.bounce
            .write_bytes(usize::from(slots[0]) * buffer, &header.encode());
        // The chain: the buffers the frame fills; one taken for a tag it did not need goes back.
        let used = (NetHeader::LEN + len).div_ceil(buffer);
        tx.free.extend(slots[used..n].iter().rev());
        let mut chain = [Buffer {
            addr: 0,
            len: 0,
            device_writable: false,
        }; LSO_MAX_BUFFERS];
        let mut left = NetHeader::LEN + len;
        for (i, b) in chain[..used].iter_mut().enumerate() {
            let take = left.min(buffer);
            b.addr = tx.bounce.device_address() + (usize::from(slots[i]) * buffer) as u64;
            b.len = take as u32;
            left -= take;
        }
        match tx.vq.add(&chain[..used]) {
            Ok(head) => {
                tx.bounce_of[head as usize] = slots[0];
                for pair in slots[..used].windows(2) {
                    tx.next_bounce[usize::from(pair[0])] = pair[1];
                }
                Status::SUCCESS
            }
            Err(_) => {
                tx.free.extend(slots[..used].iter().rev());
                Status::RESOURCES
            }
        }
    }

    /// Buffers NDIS handed back go to the device again (in batches; nothing is allocated on
    /// this DISPATCH_LEVEL path).
    pub fn returned(&self, returned: &mut Returned<'_>, irql: &mut DispatchOrBelow<'_>) {
        for pair in &self.pairs {
            let mut batch = [0usize; RX_BATCH];
            let mut n = 0;
            pair.pool.take_returned(returned, |b| {
                if pair.pool.claim(b) {
                    batch[n] = b;
                    n += 1;
                    if n == RX_BATCH {
                        self.post_rx(pair, &batch, irql);
                        n = 0;
                    }
                }
            });
            self.post_rx(pair, &batch[..n], irql);
        }
    }

    /// Link state from the device configuration (a config-change event).
    pub fn link_up(&self) -> bool {
        self.transport
            .net_config()
            .map(|c| c.link_up(self.features & net::features::STATUS != 0))
            .unwrap_or(false)
    }

    /// Tells the device how many queue pairs to use (`VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`); without
    /// it a multiqueue device uses pair 0 only. Polls for the answer (PASSIVE_LEVEL, after
    /// DRIVER_OK).
    pub fn set_queue_pairs(&self, pairs: u16, passive: &mut Passive<'_>) -> Result<(), Status> {
        let command = net::mq_vq_pairs_set(pairs).ok_or(Status::INVALID_PARAMETER)?;
        self.control_command(&command, passive)
    }

    /// Promiscuous and all-multicast reception from NDIS's packet filter (with
    /// `VIRTIO_NET_F_CTRL_RX`; without it the device's own filtering stays as it is).
    ///
    /// Best effort, as virtio's receive filtering is: a device that refuses or does not answer
    /// keeps filtering as it did, and the filter NDIS set still stands (failing the OID would
    /// leave the stack without any filter at all). Returns whether the device took it.
    pub fn set_packet_filter(&self, filter: u32, passive: &mut Passive<'_>) -> bool {
        if self.features & net::features::CTRL_RX == 0 {
            return true;
        }
        let promiscuous = filter & ndis::sys::NDIS_PACKET_TYPE_PROMISCUOUS != 0;
        let all_multicast = filter & ndis::sys::NDIS_PACKET_TYPE_ALL_MULTICAST != 0;
        let a = self.control_command(&net::rx_mode(net::ctrl::RX_PROMISC, promiscuous), passive);
        let b = self.control_command(
            &net::rx_mode(net::ctrl::RX_ALLMULTI, all_multicast),
            passive,
        );
        a.is_ok() && b.is_ok()
    }

    /// The unicast address to receive on instead of the configuration-space MAC
    /// (`VIRTIO_NET_CTRL_MAC_ADDR_SET`, with `VIRTIO_NET_F_CTRL_MAC_ADDR`).
    pub fn set_mac_address(&self, mac: [u8; 6], passive: &mut Passive<'_>) -> Result<(), Status> {
        if self.features & net::features::CTRL_MAC_ADDR == 0 {
            return Err(Status::NOT_SUPPORTED);
        }
        self.control_command(&net::mac_addr_set(mac), passive)
    }

    /// The multicast addresses to receive (`VIRTIO_NET_CTRL_MAC_TABLE_SET`, with
    /// `VIRTIO_NET_F_CTRL_RX`). Best effort, as [`set_packet_filter`](Self::set_packet_filter).
    pub fn set_multicast_list(&self, list: &[[u8; 6]], passive: &mut Passive<'_>) -> bool {
        if self.features & net::features::CTRL_RX == 0 {
            return true;
        }
        let mut command = [0u8; CONTROL_ACK_AT];
        net::mac_table_set(list, &mut command)
            .is_some_and(|len| self.control_command(&command[..len], passive).is_ok())
    }

    /// Sends one control command and polls for the device's answer (up to 100 ms).
    fn control_command(&self, command: &[u8], passive: &mut Passive<'_>) -> Result<(), Status> {
        let Some(control) = &self.control else {
            return Err(Status::NOT_SUPPORTED);
        };
        if self.is_broken() {
            return Err(Status::DEVICE_FAILED);
        }
        if command.len() > CONTROL_ACK_AT {
            return Err(Status::INVALID_LENGTH);
        }
        let notifier = control.with(passive, |c, _| {
            if c.stuck {
                return Err(Status::DEVICE_FAILED);
            }
            c.buffer.write_bytes(0, command);
            c.buffer.write_bytes(CONTROL_ACK_AT, &[0xFF]);
            let base = c.buffer.device_address();
            let chain = [
                Buffer {
                    addr: base,
                    len: command.len() as u32,
                    device_writable: false,
                },
                Buffer {
                    addr: base + CONTROL_ACK_AT as u64,
                    len: 1,
                    device_writable: true,
                },
            ];
            c.vq.add(&chain)
                .map(|_| c.notifier)
                .map_err(|_| Status::RESOURCES)
        })?;
        self.transport.notify(&notifier);
        for _ in 0..10_000 {
            let answer = control.with(passive, |c, _| match c.vq.pop_used() {
                Ok(Some(_)) => {
                    let mut ack = [0u8];
                    c.buffer.read_bytes(CONTROL_ACK_AT, &mut ack);
                    Some(
                        net::ctrl_ack(ack[0])
                            .map_err(|_| Status(ndis::sys::NDIS_STATUS_NOT_ACCEPTED)),
                    )
                }
                Ok(None) => None,
                Err(_) => {
                    // The device wrote a used ring it cannot have: it is not used again.
                    c.stuck = true;
                    Some(Err(Status::DEVICE_FAILED))
                }
            });
            if answer == Some(Err(Status::DEVICE_FAILED)) {
                self.fail();
            }
            if let Some(result) = answer {
                return result;
            }
            ndis::sync::stall(10);
        }
        control.with(passive, |c, _| c.stuck = true);
        Err(Status::DEVICE_FAILED)
    }

    /// Stops the device: after this it touches no memory and raises no interrupt.
    pub fn reset(&self) {
        self.fail();
        // A removed device reads all ones: there is nothing to reset, and polling for the status
        // to clear would only burn 100 ms.
        if self.transport.status() == 0xFF {
            return;
        }
        let _ = self.transport.reset(|| ndis::sync::stall(10));
    }
}
