//! NET_BUFFER_LISTs as safe values: sends the driver copies out, receives it lends to NDIS.
//!
//! Sends: a driver copies each frame into its own device buffers inside
//! [`Miniport::send`](crate::miniport::Miniport::send) and returns a status, and the framework
//! completes the list when the call returns; or it *holds* the list ([`SendNbl::hold`]) and
//! completes it later, from its DPC or the next send call, through a [`SendCompletion`] (a
//! full ring's backlog, or a frame the device reads in place). A held list is an owned
//! [`HeldSend`]: it is completed exactly once (completing consumes it), and the framework
//! counts it, so a pause does not complete and the device does not leave D0 while the driver
//! still holds one.
//!
//! Receives come from a [`ReceivePool`]: fixed buffers in shared memory, each with its own
//! MDL and NET_BUFFER_LIST made once at initialize. A buffer is *free*, *claimed* by the driver
//! (posted to the device, or being filled) or *lent* to NDIS (indicated). Indicating lends
//! claimed buffers; the protocols hand them back through `MiniportReturnNetBufferLists`, which
//! the framework turns into buffer indexes ([`Returned`]) and marks free.

use alloc::vec::Vec;
use core::cell::Cell;
use core::marker::PhantomData;

use ndis_sys as sys;

use crate::Status;
use crate::dma::{DmaRegistration, SharedMemory};
use crate::heap::Shared;
use crate::hw::DeviceMemory;
use crate::irql::AtMostDispatch;
use crate::miniport::{Init, NdisAdapter};
use crate::offload::{ChecksumOffload, ChecksumRequest, DeviceRxChecksum, LargeSend, RxChecksum};
use crate::packet::{self, IpVersion, Layers};
use crate::sync::atomic::{AtomicU8, Ordering};

mod held_queue;
mod mapped;
pub use held_queue::HeldQueue;
pub(crate) use mapped::process_sg_list;
pub use mapped::{ListMapping, MapHook, MapPool, MappedSend, SgElement};

/// The chain of lists one `MiniportSendNetBufferLists` call hands over, valid during the call.
///
/// The driver gives each list its status through [`SendLists::each`], typically inside one
/// lock acquisition for the whole chain and with one doorbell at the end. Lists it leaves
/// without a status are completed with `NDIS_STATUS_FAILURE` (and counted as errors) when
/// `Miniport::send` returns.
pub struct SendLists<'a> {
    first: *mut sys::NET_BUFFER_LIST,
    visited: bool,
    stats: &'a crate::miniport::Statistics,
    adapter: &'a NdisAdapter,
    /// The lists completed when the call returns (the call's chain without the held ones).
    done: Chain,
    _call: PhantomData<&'a mut sys::NET_BUFFER_LIST>,
}

/// A chain of lists to complete in one `NdisMSendNetBufferListsComplete` call.
struct Chain {
    head: *mut sys::NET_BUFFER_LIST,
    tail: *mut sys::NET_BUFFER_LIST,
}

impl Chain {
    const EMPTY: Chain = Chain {
        head: core::ptr::null_mut(),
        tail: core::ptr::null_mut(),
    };

    /// Appends `nbl` (its `Next` cleared).
    ///
    /// # Safety
    /// `nbl` is a list the miniport owns (not completed), in no other chain.
    unsafe fn push(&mut self, nbl: *mut sys::NET_BUFFER_LIST) {
        // SAFETY: the caller's contract; `tail` is a list of this chain.
        unsafe {
            (*nbl).Next = core::ptr::null_mut();
            if self.tail.is_null() {
                self.head = nbl;
            } else {
                (*self.tail).Next = nbl;
            }
        }
        self.tail = nbl;
    }
}

impl<'a> SendLists<'a> {
    pub(crate) fn new(first: *mut sys::NET_BUFFER_LIST, adapter: &'a NdisAdapter) -> Self {
        SendLists {
            first,
            visited: false,
            stats: &adapter.stats,
            adapter,
            done: Chain::EMPTY,
            _call: PhantomData,
        }
    }

    /// The chain to hand to `NdisMSendNetBufferListsComplete` once the call is done (null:
    /// the driver holds every list).
    pub(crate) fn completed(&self) -> *mut sys::NET_BUFFER_LIST {
        self.done.head
    }

    /// Hands every list of the call to `f`, in order, and records the status it returns (and
    /// the statistics of the frames it copied). Visits each list once: a second call visits
    /// nothing. A list `f` held ([`SendNbl::hold`]) is the driver's to complete, whatever `f`
    /// returns for it; of the others, `NDIS_STATUS_PENDING` is recorded as
    /// `NDIS_STATUS_FAILURE`: a list not held completes when `Miniport::send` returns.
    ///
    /// Lists no NIC can send are completed by the framework without reaching `f`: a frame
    /// shorter than an Ethernet header (14 bytes) fails its list with
    /// `NDIS_STATUS_INVALID_LENGTH`; 802.1Q information naming VLAN 4095 (reserved by IEEE
    /// 802.1Q) fails it with `NDIS_STATUS_INVALID_PACKET`.
    pub fn each(&mut self, mut f: impl FnMut(&SendNbl<'_>) -> Status) {
        if core::mem::replace(&mut self.visited, true) {
            return;
        }
        self.for_each_list(|list| match list.refusal() {
            Some(status) => status,
            None => f(list),
        });
    }

    /// Completes lists the driver did not visit (see the type's documentation).
    pub(crate) fn finish(&mut self, status_if_unvisited: Status) {
        if !core::mem::replace(&mut self.visited, true) {
            self.for_each_list(|_| status_if_unvisited);
        }
    }

    fn for_each_list(&mut self, mut f: impl FnMut(&SendNbl<'_>) -> Status) {
        let mut counts = crate::miniport::SendCounts::default();
        let mut cur = self.first;
        while !cur.is_null() {
            // SAFETY: NDIS hands the miniport a chain of valid lists it owns until completed.
            let next = unsafe { (*cur).Next };
            let list = SendNbl::new(cur, Some(self.adapter));
            let mut status = f(&list);
            if list.held.get() {
                // The driver's now (a `HeldSend`): completed through a `SendCompletion`.
                cur = next;
                continue;
            }
            if status.0 == sys::NDIS_STATUS_PENDING {
                // Only a held list completes after the call.
                status = Status::FAILURE;
            }
            list.finish(&mut counts, status);
            // SAFETY: a list of the call's chain, not held, in no other chain.
            unsafe { self.done.push(cur) };
            cur = next;
        }
        counts.flush(self.stats);
    }
}

/// A send list the driver holds past its send call ([`SendNbl::hold`]). It owns the list: the
/// frames stay valid and unchanged until it is completed, which consumes it
/// ([`SendCompletion::push`]). It is not `Clone`; dropping one without completing it leaks the
/// list, which NDIS (and the emulator, at pause and halt) reports as a send never completed.
#[must_use = "a held send must be completed (SendCompletion::push)"]
pub struct HeldSend {
    list: SendNbl<'static>,
    /// The adapter whose send call handed the list over (its address, for identity only): the
    /// list completes through that adapter's handle and send gate, never another's.
    adapter: usize,
}

// SAFETY: the list belongs to the miniport until completed, wherever the driver keeps the
// handle; NDIS lets a send be completed on any processor at IRQL <= DISPATCH_LEVEL. The
// statistics cell is only reached through `&mut`/owned access or the `list` view (not `Sync`).
unsafe impl Send for HeldSend {}

impl HeldSend {
    /// The list, to read and copy as during the send call.
    pub fn list(&self) -> &SendNbl<'_> {
        &self.list
    }
}

/// The identity of an adapter, as a [`HeldSend`] remembers it.
fn adapter_id(adapter: &NdisAdapter) -> usize {
    adapter as *const NdisAdapter as usize
}

/// Held lists completed together, in one `NdisMSendNetBufferListsComplete` call: push each
/// with its status, then [`complete`](Self::complete) (from a DPC, the send path, or a pause,
/// reset or power hook). Dropping a non-empty batch completes it too (at IRQL <=
/// DISPATCH_LEVEL, where every driver callback but the ISR runs).
pub struct SendCompletion<'a> {
    adapter: &'a NdisAdapter,
    chain: Chain,
    count: u64,
    /// The statistics of the lists pushed, added to the adapter's when they complete.
    counts: crate::miniport::SendCounts,
}

impl<'a> SendCompletion<'a> {
    pub fn new(adapter: &'a NdisAdapter) -> Self {
        SendCompletion {
            adapter,
            chain: Chain::EMPTY,
            count: 0,
            counts: crate::miniport::SendCounts::default(),
        }
    }

    /// Adds `held` with its status (counted in the statistics; a successful large send gets
    /// its completion information). `NDIS_STATUS_PENDING` is recorded as `FAILURE`.
    ///
    /// # Panics
    /// If `held` came from another adapter's send call: completing it through this batch would
    /// hand NDIS one adapter's list on another's handle and release the wrong send gate (the
    /// owner's pause would never complete). Complete it in a batch of its own adapter.
    pub fn push(&mut self, held: HeldSend, status: Status) {
        // SAFETY: `held` is consumed here.
        unsafe { self.push_at(&held, status) }
    }

    /// [`push`](Self::push) of the held list at `held`, where it stays (no move of it).
    ///
    /// # Safety
    /// `held` is not used again (not completed again, not dropped: a `HeldSend` needs no
    /// drop).
    #[inline(always)]
    pub(crate) unsafe fn push_at(&mut self, held: &HeldSend, status: Status) {
        assert!(
            held.adapter == adapter_id(self.adapter),
            "a HeldSend pushed into another adapter's SendCompletion: complete it through a \
             SendCompletion of the adapter whose send call held it"
        );
        let status = if status.0 == sys::NDIS_STATUS_PENDING {
            Status::FAILURE
        } else {
            status
        };
        held.list.finish(&mut self.counts, status);
        // SAFETY: the held list is the miniport's and in no chain (a held list was taken out
        // of its call's chain); the caller uses it no more, so it is pushed once.
        unsafe { self.chain.push(held.list.nbl) };
        self.count += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Completes the lists pushed so far (nothing when empty).
    pub fn complete(&mut self, irql: &impl AtMostDispatch) {
        self.flush(irql.known_dispatch());
    }

    fn flush(&mut self, dispatch: bool) {
        if self.count == 0 {
            return;
        }
        let chain = core::mem::replace(&mut self.chain, Chain::EMPTY);
        let count = core::mem::take(&mut self.count);
        // Counted before NDIS sees the completion (a statistics query may follow it).
        self.counts.flush(&self.adapter.stats);
        let flags = if dispatch {
            sys::NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL
        } else {
            0
        };
        // SAFETY: lists NDIS sent this adapter and the driver held, each with its status, each
        // completed once (a `HeldSend` is consumed by `push`); IRQL <= DISPATCH_LEVEL, at
        // DISPATCH_LEVEL when the flag says so.
        #[cfg(not(loom))]
        unsafe {
            sys::NdisMSendNetBufferListsComplete(self.adapter.handle().as_raw(), chain.head, flags)
        };
        #[cfg(loom)]
        let _ = (chain, flags);
        self.adapter
            .release_sends(count * crate::miniport::SEND_HELD);
    }
}

impl Drop for SendCompletion<'_> {
    fn drop(&mut self) {
        self.flush(false);
    }
}

/// 802.1Q tag information of a list (`NDIS_NET_BUFFER_LIST_8021Q_INFO`): the 802.1p priority and
/// the VLAN identifier, as carried in a frame's tag control information (TCI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ieee8021Q {
    /// 0..=7.
    pub priority: u8,
    /// 0..=4095; 0 for a priority-only tag.
    pub vlan_id: u16,
}

impl Ieee8021Q {
    /// VLAN 4095 (0xFFF), reserved by IEEE 802.1Q: never sent, never joined.
    pub const RESERVED_VLAN: u16 = 0xFFF;

    /// From a tag's TCI (priority in bits 13..16, VLAN identifier in bits 0..12).
    pub fn from_tci(tci: u16) -> Self {
        Ieee8021Q {
            priority: (tci >> 13) as u8,
            vlan_id: tci & 0x0FFF,
        }
    }

    /// The TCI of a tag carrying this information (canonical format bit clear).
    pub fn tci(self) -> u16 {
        (u16::from(self.priority & 7) << 13) | (self.vlan_id & 0x0FFF)
    }

    /// From the list's `NetBufferListInfo` entry (`UserPriority` in bits 0..3, `VlanId` in bits
    /// 4..16); None when it carries neither.
    #[inline(always)]
    fn from_info(value: usize) -> Option<Self> {
        // Neither a priority (bits 0..3) nor a VLAN (bits 4..16); bit 3 is the CFI.
        if value & 0xFFF7 == 0 {
            return None;
        }
        Some(Ieee8021Q {
            priority: (value & 7) as u8,
            vlan_id: Self::info_vlan_id(value),
        })
    }

    /// The VLAN identifier of a `NetBufferListInfo` entry.
    fn info_vlan_id(value: usize) -> u16 {
        ((value >> 4) & 0x0FFF) as u16
    }

    fn to_info(self) -> usize {
        usize::from(self.priority & 7) | (usize::from(self.vlan_id & 0x0FFF) << 4)
    }
}

/// One list handed to `MiniportSendNetBufferLists`, valid during the send call.
pub struct SendNbl<'a> {
    nbl: *mut sys::NET_BUFFER_LIST,
    /// Frames copied out so far, their bytes, and whether one went to a group address, for the
    /// statistics.
    copies: CopyTally,
    /// The adapter whose send call this list came in (None for a [`HeldSend`]'s view: holding
    /// again is refused).
    adapter: Option<&'a NdisAdapter>,
    /// [`hold`](Self::hold) took the list.
    held: Cell<bool>,
    /// The first frame (NET_BUFFER), the number of them, and whether one is shorter than an
    /// Ethernet header: read once, when the list is first looked at.
    first: *mut sys::NET_BUFFER,
    frame_count: usize,
    has_runt: bool,
    _call: PhantomData<&'a mut sys::NET_BUFFER_LIST>,
}

impl<'a> SendNbl<'a> {
    #[inline(always)]
    pub(crate) fn new(nbl: *mut sys::NET_BUFFER_LIST, adapter: Option<&'a NdisAdapter>) -> Self {
        // SAFETY: NDIS hands the miniport lists with a valid NET_BUFFER chain, which stays
        // valid and unchanged while the list is the miniport's.
        let first = unsafe { (*nbl).FirstNetBuffer };
        let (mut count, mut runt) = (0, false);
        let mut nb = first;
        while !nb.is_null() {
            count += 1;
            // SAFETY: as above.
            unsafe {
                runt |= (*nb).DataLength.DataLength < 14;
                nb = (*nb).Next;
            }
        }
        SendNbl {
            nbl,
            copies: CopyTally::default(),
            adapter,
            held: Cell::new(false),
            first,
            frame_count: count,
            has_runt: runt,
            _call: PhantomData,
        }
    }

    /// Keeps the list past the send call: the framework does not complete it when `send`
    /// returns (whatever status the closure gives), and the driver completes it later through
    /// a [`SendCompletion`], exactly once (completing consumes the [`HeldSend`]). Until then a
    /// pause stays pending, and the driver must complete it in `power_down` (the framework
    /// waits for that before the device leaves D0) and before halt returns (NDIS, and the
    /// emulator, check). None if the list is already held, or is itself a held list's view.
    pub fn hold(&self) -> Option<HeldSend> {
        let mut held = core::mem::MaybeUninit::uninit();
        // SAFETY: `held` is memory for one `HeldSend`, initialized when `hold_at` says so.
        unsafe { self.hold_at(held.as_mut_ptr()) }.then(|| {
            // SAFETY: `hold_at` wrote it.
            unsafe { held.assume_init() }
        })
    }

    /// [`hold`](Self::hold), writing the held list at `dst` (where it is kept: no move of it
    /// afterwards). False, with nothing written, when `hold` gives None.
    ///
    /// # Safety
    /// `dst` is valid for writing one `HeldSend` (what it holds is overwritten, not dropped).
    #[inline(always)]
    pub(crate) unsafe fn hold_at(&self, dst: *mut HeldSend) -> bool {
        let Some(adapter) = self.adapter else {
            return false;
        };
        if self.held.replace(true) {
            return false;
        }
        adapter.hold_send();
        // SAFETY: the caller's contract.
        unsafe {
            dst.write(HeldSend {
                list: SendNbl {
                    nbl: self.nbl,
                    copies: self.copies.clone(),
                    adapter: None,
                    held: Cell::new(false),
                    first: self.first,
                    frame_count: self.frame_count,
                    has_runt: self.has_runt,
                    _call: PhantomData,
                },
                adapter: adapter_id(adapter),
            })
        };
        true
    }

    /// The status and statistics of a list about to be completed.
    #[inline(always)]
    fn finish(&self, counts: &mut crate::miniport::SendCounts, status: Status) {
        counts.count(self, status);
        self.complete_large_send(status);
        // SAFETY: a list the miniport owns until it is completed.
        unsafe { (*self.nbl).Status = status.0 };
    }

    /// (frames copied, their bytes, a group frame among them).
    pub(crate) fn copies(&self) -> (usize, u64, bool) {
        self.copies.get()
    }

    /// Why no NIC can send this list, if so (see [`SendLists::each`]).
    #[inline(always)]
    fn refusal(&self) -> Option<Status> {
        if self.has_runt {
            return Some(Status::INVALID_LENGTH);
        }
        // SAFETY: as for `ieee8021q`.
        let value = unsafe { (*self.nbl).NetBufferListInfo[sys::Ieee8021QNetBufferListInfo] };
        if Ieee8021Q::info_vlan_id(value as usize) == Ieee8021Q::RESERVED_VLAN {
            return Some(Status::INVALID_PACKET);
        }
        None
    }

    /// The 802.1Q information the protocol attached to the list, if any: the driver inserts
    /// the tag when it copies the frames (with `SendFrame::copy_to_device_tagged`).
    #[inline(always)]
    pub fn ieee8021q(&self) -> Option<Ieee8021Q> {
        // SAFETY: a list NDIS owns for the send call; the info array is part of the list.
        let value = unsafe { (*self.nbl).NetBufferListInfo[sys::Ieee8021QNetBufferListInfo] };
        Ieee8021Q::from_info(value as usize)
    }

    /// The checksums the stack asks the device to compute for this list's frames (only ever
    /// ones switched on, see [`NdisAdapter::checksum_offload`]).
    #[inline(always)]
    pub fn checksum_request(&self) -> ChecksumRequest {
        // SAFETY: as for `ieee8021q`.
        let value = unsafe { (*self.nbl).NetBufferListInfo[sys::TcpIpChecksumNetBufferListInfo] };
        if value.is_null() {
            return ChecksumRequest::default(); // the usual case, decoded for nothing
        }
        ChecksumRequest::from_info(value as usize)
    }

    /// The large send (LSOv2) the stack asks for on this list, if any: its MSS, where the TCP
    /// header starts, its IP version. `Err(INVALID_PACKET)` for a request this framework never
    /// advertises (LSOv1) or a list of more than one frame (an LSO list has exactly one).
    #[inline(always)]
    pub fn large_send(&self) -> Result<Option<LargeSend>, Status> {
        // SAFETY: as for `ieee8021q`.
        let value = unsafe { (*self.nbl).NetBufferListInfo[sys::TcpLargeSendNetBufferListInfo] };
        if value.is_null() {
            return Ok(None);
        }
        let ls = LargeSend::from_info(value as usize)?;
        if self.frame_count > 1 {
            return Err(Status::INVALID_PACKET);
        }
        Ok(ls)
    }

    /// For a large send completed successfully: `LsoV2TransmitComplete` (Type v2, Reserved 0)
    /// in place of the request, as NDIS requires. Any LSO data on a list that succeeded was an
    /// LSOv2 request (`large_send` refuses everything else), so it is not decoded again.
    fn complete_large_send(&self, status: Status) {
        // SAFETY: as for `ieee8021q`.
        let value = unsafe { (*self.nbl).NetBufferListInfo[sys::TcpLargeSendNetBufferListInfo] };
        if status.is_success() && !value.is_null() {
            let done = sys::NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE << sys::NDIS_LSO_TYPE_SHIFT;
            // SAFETY: the list is still the miniport's until completed.
            unsafe {
                (*self.nbl).NetBufferListInfo[sys::TcpLargeSendNetBufferListInfo] =
                    done as usize as sys::PVOID
            };
        }
    }

    /// How many frames (NET_BUFFERs) the list has.
    pub fn frame_count(&self) -> usize {
        self.frame_count
    }

    /// The frames of the list (one per NET_BUFFER).
    #[inline(always)]
    pub fn frames(&self) -> impl Iterator<Item = SendFrame<'_>> {
        let mut nb = self.first;
        core::iter::from_fn(move || {
            if nb.is_null() {
                return None;
            }
            let frame = SendFrame {
                nb,
                copies: &self.copies,
            };
            // SAFETY: as above.
            nb = unsafe { (*nb).Next };
            Some(frame)
        })
    }
}

/// One frame (NET_BUFFER) of a send.
pub struct SendFrame<'a> {
    nb: *mut sys::NET_BUFFER,
    copies: &'a CopyTally,
}

/// Frames a driver copied out of one list and their bytes, and whether one of them went to a
/// group (multicast or broadcast) address. Sends are unicast almost always: those are counted
/// from the tally; a list with a group frame is counted by kind from its frames when it
/// completes (see `SendCounts::count`).
#[derive(Default, Clone)]
struct CopyTally {
    frames: Cell<usize>,
    bytes: Cell<u64>,
    group: Cell<bool>,
}

impl CopyTally {
    /// (frames, bytes, a group frame among them).
    fn get(&self) -> (usize, u64, bool) {
        (self.frames.get(), self.bytes.get(), self.group.get())
    }

    /// Nothing counted (a mapped list handed back to be sent another way).
    fn set_uncounted(&self) {
        self.frames.set(0);
        self.bytes.set(0);
        self.group.set(false);
    }

    /// The one frame of a mapped list, sent in place: `bytes` of it, to a group address or not
    /// (what a copy of it would have counted).
    #[inline(always)]
    fn set_in_place(&self, bytes: usize, group: bool) {
        self.frames.set(1);
        self.bytes.set(bytes as u64);
        self.group.set(group);
    }

    #[inline(always)]
    fn add(&self, frame: &[u8]) {
        self.frames.set(self.frames.get() + 1);
        self.bytes.set(self.bytes.get() + frame.len() as u64);
        if frame.first().is_some_and(|b| b & 1 == 1) {
            self.group.set(true);
        }
    }
}

impl SendFrame<'_> {
    /// Bytes of frame data.
    pub fn len(&self) -> usize {
        // SAFETY: a live NET_BUFFER of a list under send (see `SendNbl::frames`).
        unsafe { (*self.nb).DataLength.DataLength as usize }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The destination address (the first 6 bytes), if the frame has one.
    pub fn destination(&self) -> Option<[u8; 6]> {
        self.peek::<6>()
    }

    /// The frame's first byte where it is, when its current MDL holds it and has a system
    /// address (a mapped or non-paged MDL, as `MmGetSystemAddressForMdlSafe` finds it without
    /// mapping anything: the usual send), read without a call; otherwise through
    /// `NdisGetDataBuffer`. Of an empty frame: a byte past its end, or None (no frame byte is
    /// asked for then; the read stays inside the MDL).
    #[inline(always)]
    fn first_byte(&self) -> Option<u8> {
        // SAFETY: a live NET_BUFFER of a list the miniport owns (see `SendNbl::frames`); its
        // current MDL, when set, is valid while the list is the miniport's.
        let (mdl, offset) = unsafe { ((*self.nb).CurrentMdl, (*self.nb).CurrentMdlOffset) };
        if !mdl.is_null() {
            // SAFETY: as above.
            let m = unsafe { &*mdl };
            let mapped = sys::MDL_MAPPED_TO_SYSTEM_VA | sys::MDL_SOURCE_IS_NONPAGED_POOL;
            if m.MdlFlags & mapped != 0 && offset < m.ByteCount {
                // SAFETY: the flags say `MappedSystemVa` maps the MDL's `ByteCount` bytes, and
                // the frame starts `CurrentMdlOffset` bytes in, inside them (checked just now).
                return Some(unsafe { m.MappedSystemVa.cast::<u8>().add(offset as usize).read() });
            }
        }
        self.peek::<1>().map(|b| b[0])
    }

    /// Counts this frame, the one frame of a list mapped for DMA, as sent in place (the
    /// statistics a copy of it would have kept); see `mapped::submit`.
    #[inline(always)]
    pub(crate) fn count_in_place(&self) {
        let group = !self.is_empty() && self.first_byte().is_some_and(|b| b & 1 == 1);
        self.copies.set_in_place(self.len(), group);
    }

    /// The first `N` bytes of the frame (None when it is shorter), without counting a copy.
    pub fn peek<const N: usize>(&self) -> Option<[u8; N]> {
        if self.len() < N {
            return None;
        }
        let mut storage = [0u8; N];
        // SAFETY: a live NET_BUFFER with at least N bytes; `storage` holds them if they are not
        // contiguous.
        let p =
            unsafe { sys::NdisGetDataBuffer(self.nb, N as u32, storage.as_mut_ptr().cast(), 1, 0) };
        if p.is_null() {
            return None;
        }
        if p.cast::<u8>() != storage.as_mut_ptr() {
            // SAFETY: NDIS returned N contiguous bytes of the frame.
            storage.copy_from_slice(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), N) });
        }
        Some(storage)
    }

    /// Whether the frame already carries an 802.1Q tag (TPID 0x8100 after the addresses).
    pub fn has_8021q_tag(&self) -> bool {
        self.peek::<14>().is_some_and(|h| h[12..14] == [0x81, 0x00])
    }

    /// Copies the frame into `out`; returns its length, or None if `out` is too short (nothing is
    /// written past `out` either way).
    pub fn copy_to(&self, out: &mut [u8]) -> Option<usize> {
        let n = self.gather(out)?;
        self.count_copy(&out[..n]);
        Some(n)
    }

    /// Copies the frame into device memory at `offset`, in one copy when the frame is contiguous
    /// (one MDL, the usual case) and through `scratch` otherwise. `scratch.len()` is the largest
    /// frame accepted: a longer one returns None with nothing written, so the caller sizes
    /// `scratch` to the room at `offset`. Returns the frame's length.
    #[inline(always)]
    pub fn copy_to_device(
        &self,
        memory: &impl DeviceMemory,
        offset: usize,
        scratch: &mut [u8],
    ) -> Option<usize> {
        let data = self.view(scratch)?;
        memory.write_bytes(offset, data);
        self.count_copy(data);
        Some(data.len())
    }

    /// As [`copy_to_device`](Self::copy_to_device), with an 802.1Q tag carrying `tci` inserted
    /// after the two addresses; a frame that already carries a tag is copied as it is.
    /// `scratch.len()` bounds the frame as written. Returns the length written, or None for a
    /// frame too short to have addresses or too long for `scratch`.
    pub fn copy_to_device_tagged(
        &self,
        memory: &impl DeviceMemory,
        offset: usize,
        scratch: &mut [u8],
        tci: u16,
    ) -> Option<usize> {
        let prep = TxPrep {
            tci: Some(tci),
            ..TxPrep::default()
        };
        self.copy_to_device_prepared(memory, offset, scratch, &prep)
            .ok()
            .map(|c| c.len)
    }

    /// Whether [`copy_to_device_prepared`](Self::copy_to_device_prepared) would take this
    /// frame, without writing anything: for a driver that checks a whole list before queueing
    /// any of it.
    pub fn check(&self, prep: &TxPrep, scratch: &mut [u8]) -> Result<(), CopyError> {
        let room = scratch.len();
        let data = self.view(scratch).ok_or(CopyError::TooLong)?;
        inspect(data, prep, room).map(|_| ())
    }

    /// Copies the frame into device memory at `offset` the way `prep` says: with an 802.1Q tag
    /// inserted (unless the frame carries one), and with the checksums the stack asked for
    /// done, as far as the device cannot do them. The IPv4 header checksum is computed here; a
    /// TCP/UDP checksum is left to the device (returned as [`DeviceCopy::partial`]) when
    /// `prep.device_l4` says it can, and the frame has no bytes after its IP packet; otherwise
    /// it is computed here too. The checksum field must hold the pseudo-header sum, as the
    /// stack leaves it.
    ///
    /// Nothing is written on error: [`CopyError::TooLong`] for a frame longer than `scratch`
    /// (which bounds the frame as written), [`CopyError::Malformed`] for a frame whose headers
    /// do not match the checksum request (not TCP/UDP over the IP version named, truncated,
    /// fragmented) or too short to be tagged.
    pub fn copy_to_device_prepared(
        &self,
        memory: &impl DeviceMemory,
        offset: usize,
        scratch: &mut [u8],
        prep: &TxPrep,
    ) -> Result<DeviceCopy, CopyError> {
        let room = scratch.len();
        self.copy_to_device_regions(memory, &[(offset, room)], scratch, prep)
    }

    /// As [`copy_to_device_prepared`](Self::copy_to_device_prepared) for the frame's headers
    /// only, for a frame whose payload the device reads in place (a mapped send): the bytes
    /// from the start of the frame through the last header `prep` rewrites or needs (the L4
    /// header for a checksum or a large send, the IPv4 header for its checksum, the addresses
    /// for a tag) are written at `offset`, rewritten, into at most `room` bytes. The returned
    /// [`DeviceCopy::len`] is what was written there, [`HeaderCopy::consumed`] how many bytes
    /// of the frame that covers: the device is to read the rest of the frame from there on.
    /// A checksum computed here (a device without L4 checksums) reads the payload in place.
    ///
    /// `Ok(None)` when the frame is not contiguous in memory (more than one MDL: it would have
    /// to be gathered whole, so the caller copies it instead).
    pub fn copy_headers_to_device(
        &self,
        memory: &impl DeviceMemory,
        offset: usize,
        room: usize,
        prep: &TxPrep,
    ) -> Result<Option<HeaderCopy>, CopyError> {
        let Some(data) = self.view_in_place() else {
            return Ok(None);
        };
        // The whole frame need not fit: only its headers are written.
        let plan = plan(data, prep, data.len() + 4)?;
        let consumed = plan
            .stores
            .iter()
            .flatten()
            .map(|(at, _)| at + 2)
            .fold(plan.header_end, usize::max)
            .min(data.len());
        let shift = plan.shift;
        if consumed + shift > room {
            return Err(CopyError::TooLong);
        }
        let regions = [(offset, room)];
        let out = Regions {
            memory,
            regions: &regions,
        };
        // `consumed` covers every store, so the headers carry all the plan rewrites.
        out.write_prepared(&data[..consumed], &plan, prep.tci);
        // Not counted: a frame sent in place was counted when it was mapped.
        Ok(Some(HeaderCopy {
            copy: DeviceCopy {
                len: consumed + shift,
                partial: plan.partial,
                gso: plan.gso,
            },
            consumed,
        }))
    }

    /// Whether the frame's bytes are contiguous in memory (one MDL, the usual case): what
    /// [`copy_headers_to_device`](Self::copy_headers_to_device) needs.
    pub fn is_contiguous(&self) -> bool {
        self.view_in_place().is_some()
    }

    /// The frame's bytes where they are, when they are contiguous (one MDL); None otherwise.
    #[inline(always)]
    fn view_in_place(&self) -> Option<&[u8]> {
        let n = self.len();
        if n == 0 {
            return Some(&[]);
        }
        // SAFETY: a live NET_BUFFER; without storage NDIS returns the bytes in place when they
        // are contiguous and NULL otherwise. IRQL <= DISPATCH_LEVEL (a send, or a held send).
        let p = unsafe { sys::NdisGetDataBuffer(self.nb, n as u32, core::ptr::null_mut(), 1, 0) };
        if p.is_null() {
            return None;
        }
        // SAFETY: NDIS returned `n` contiguous bytes of the frame, which stay valid and unchanged
        // while the list is the miniport's (this view borrows the frame).
        Some(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), n) })
    }

    /// As [`copy_to_device_prepared`](Self::copy_to_device_prepared), the frame as written
    /// spread over `regions` (device-memory offset and length each, filled in order): for a
    /// frame larger than one device buffer, a large send above all. `scratch` gathers a frame
    /// that is not contiguous, so it bounds the frame's length too.
    pub fn copy_to_device_regions(
        &self,
        memory: &impl DeviceMemory,
        regions: &[(usize, usize)],
        scratch: &mut [u8],
        prep: &TxPrep,
    ) -> Result<DeviceCopy, CopyError> {
        let room = regions.iter().map(|r| r.1).sum();
        let data = self.view(scratch).ok_or(CopyError::TooLong)?;
        let plan = plan(data, prep, room)?;
        let out = Regions { memory, regions };
        out.write_prepared(data, &plan, prep.tci);
        self.count_copy(data);
        Ok(DeviceCopy {
            len: data.len() + plan.shift,
            partial: plan.partial,
            gso: plan.gso,
        })
    }

    /// The frame's bytes, in place when they are contiguous (one MDL, the usual case),
    /// otherwise gathered into `scratch`; None if it is longer than `scratch`. Not counted.
    #[inline(always)]
    fn view<'s>(&'s self, scratch: &'s mut [u8]) -> Option<&'s [u8]> {
        let n = self.len();
        if n > scratch.len() {
            return None;
        }
        if let Some(data) = self.view_in_place() {
            return Some(data);
        }
        let n = self.gather(scratch)?;
        Some(&scratch[..n])
    }

    /// Gathers the frame into `out`; returns its length, or None if `out` is too short. Not
    /// counted.
    fn gather(&self, out: &mut [u8]) -> Option<usize> {
        let n = self.len();
        if n > out.len() {
            return None;
        }
        if n == 0 {
            return Some(0);
        }
        // SAFETY: a live NET_BUFFER; `out` holds at least `n` bytes of storage for a non-
        // contiguous frame. IRQL <= DISPATCH_LEVEL (a send call).
        let p = unsafe { sys::NdisGetDataBuffer(self.nb, n as u32, out.as_mut_ptr().cast(), 1, 0) };
        if p.is_null() {
            return None;
        }
        if p.cast::<u8>() != out.as_mut_ptr() {
            // SAFETY: NDIS returned `n` contiguous bytes of the frame.
            out[..n].copy_from_slice(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), n) });
        }
        Some(n)
    }

    /// The statistics of a frame the driver copied (see `Miniport::send`).
    #[inline(always)]
    fn count_copy(&self, frame: &[u8]) {
        self.copies.add(frame);
    }
}

/// How a frame goes to the device ([`SendFrame::copy_to_device_prepared`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxPrep {
    /// The TCI of an 802.1Q tag to insert.
    pub tci: Option<u16>,
    /// The checksums the stack asked for ([`SendNbl::checksum_request`]).
    pub checksum: ChecksumRequest,
    /// Whether the device finishes a TCP/UDP checksum itself (from a start offset, storing at
    /// a field offset, the pseudo-header sum already in the field).
    pub device_l4: bool,
    /// A large send the device segments ([`SendNbl::large_send`]); its checksum request, if
    /// any, is then not looked at (the device computes every segment's checksums).
    pub large_send: Option<LargeSend>,
}

/// A frame as copied to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceCopy {
    /// Bytes written.
    pub len: usize,
    /// The TCP/UDP checksum left to the device: `(start, offset)` from the start of the frame
    /// as written.
    pub partial: Option<(u16, u16)>,
    /// The segmentation left to the device, for a large send.
    pub gso: Option<Gso>,
}

/// What [`SendFrame::copy_headers_to_device`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderCopy {
    /// The headers as written (a tag inserted included), with what is left to the device.
    pub copy: DeviceCopy,
    /// Bytes of the frame the written headers stand for: the device reads the frame from here.
    pub consumed: usize,
}

/// How a device is to segment a large send (a virtio `gso_size`, `hdr_len`, `gso_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// Segment payload size.
    pub mss: u16,
    /// Bytes of headers (Ethernet, IP, TCP) of the frame as written.
    pub header_len: u16,
    pub ipv6: bool,
    /// The template carries CWR (an ECN sender): the device must put it on the first segment
    /// only (virtio's `GSO_ECN`, which needs `HOST_ECN`).
    pub ecn: bool,
}

/// Why a frame was not copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyError {
    /// Longer than the room given.
    TooLong,
    /// Its headers do not allow what was asked (see
    /// [`SendFrame::copy_to_device_prepared`]).
    Malformed,
}

/// What copying a frame involves, decided before anything is written.
struct Plan {
    /// Bytes a tag inserted after the addresses adds (0 or 4).
    shift: usize,
    /// (offset in the frame as read, value) of the 16-bit big-endian fields to store: the IPv4
    /// header checksum, a TCP/UDP checksum computed here, or a large send's IP length, IPv4
    /// header checksum and pseudo-header sum.
    stores: [Option<(usize, u16)>; 3],
    partial: Option<(u16, u16)>,
    gso: Option<Gso>,
    /// Bytes of the frame as read from its start through the last header the plan looks at
    /// or rewrites (the L4 header for a checksum or a large send, the IPv4 header for its
    /// checksum alone, the addresses for a tag alone): what a headers-only copy takes.
    header_end: usize,
}

/// Device memory regions written as one run of bytes (`SendFrame::copy_to_device_regions`).
struct Regions<'r, M> {
    memory: &'r M,
    regions: &'r [(usize, usize)],
}

impl<M: DeviceMemory> Regions<'_, M> {
    /// Writes `data` (the frame, or its first bytes) as `plan` says: a tag carrying `tci`
    /// inserted after the addresses when it shifts the frame, then its stores (which must lie
    /// inside `data`).
    fn write_prepared(&self, data: &[u8], plan: &Plan, tci: Option<u16>) {
        if plan.shift == 0 {
            self.write(0, data);
        } else {
            let [hi, lo] = tci.unwrap_or_default().to_be_bytes();
            self.write(0, &data[..12]);
            self.write(12, &[0x81, 0x00, hi, lo]);
            self.write(16, &data[12..]);
        }
        for (at, value) in plan.stores.into_iter().flatten() {
            self.write(plan.shift + at, &value.to_be_bytes());
        }
    }

    /// Writes `data` at byte `at` of the run (the caller checked that it fits).
    fn write(&self, mut at: usize, mut data: &[u8]) {
        for &(offset, len) in self.regions {
            if data.is_empty() {
                return;
            }
            if at >= len {
                at -= len;
                continue;
            }
            let n = (len - at).min(data.len());
            self.memory.write_bytes(offset + at, &data[..n]);
            data = &data[n..];
            at = 0;
        }
    }
}

/// The headers a frame's checksum request needs, found and matched against the request.
enum Headers {
    /// Nothing to compute.
    None,
    /// Only the IPv4 header checksum (any protocol, fragments included): (start, length).
    Ipv4Header(usize, usize),
    /// A whole TCP or UDP segment.
    Segment(Layers),
    /// A large send's TCP segment (IP lengths taken from the frame) and the TCP header length.
    LargeSend(Layers, usize, LargeSend),
}

/// The tag room and the headers of `data` for `prep`, or why it cannot be copied; nothing is
/// computed yet (`SendFrame::check` stops here).
fn inspect(data: &[u8], prep: &TxPrep, room: usize) -> Result<(usize, Headers), CopyError> {
    let tagged = data.len() >= 14 && data[12..14] == [0x81, 0x00];
    let shift = match prep.tci {
        Some(_) if data.len() < 12 => return Err(CopyError::Malformed),
        Some(_) if !tagged => 4,
        _ => 0,
    };
    if data.len() + shift > room {
        return Err(CopyError::TooLong);
    }
    if let Some(ls) = prep.large_send {
        return large_send_headers(data, ls).map(|h| (shift, h));
    }
    let r = &prep.checksum;
    if r.is_empty() {
        return Ok((shift, Headers::None));
    }
    if !(r.tcp || r.udp) {
        // The IPv4 header checksum alone, which TCP/IP asks for on every IPv4 packet (ICMP and
        // fragments too); IPv6 has none.
        if !r.ipv4 {
            return Ok((shift, Headers::None));
        }
        let (l3, len) = packet::ipv4_header(data).ok_or(CopyError::Malformed)?;
        return Ok((shift, Headers::Ipv4Header(l3, len)));
    }
    let l = packet::parse(data).ok_or(CopyError::Malformed)?;
    let version_ok = match l.ip {
        IpVersion::V4 => r.ipv4,
        IpVersion::V6 => r.ipv6,
    };
    let protocol_ok = (!r.tcp || l.protocol == packet::PROTO_TCP)
        && (!r.udp || l.protocol == packet::PROTO_UDP)
        && (!r.tcp || r.tcp_header_offset == 0 || usize::from(r.tcp_header_offset) == l.l4);
    if !version_ok || !protocol_ok {
        return Err(CopyError::Malformed);
    }
    Ok((shift, Headers::Segment(l)))
}

/// The headers of a large send: a TCP segment over the IP version the request names, its TCP
/// header where the request says, an MSS a device can take.
fn large_send_headers(data: &[u8], ls: LargeSend) -> Result<Headers, CopyError> {
    let l = packet::parse_large_send(data).ok_or(CopyError::Malformed)?;
    let tcp_len = usize::from(data[l.l4 + 12] >> 4) * 4;
    // IPv6 extension headers are not claimed (see `LargeSendOffload::describe`), and no device
    // this was tested with segments them: refused rather than passed on. An MSS of 0xFFFF is
    // Linux's GSO_BY_FRAGS, which a virtio device refuses.
    let ok = (l.ip == IpVersion::V6) == ls.ipv6
        && (l.ip == IpVersion::V4 || l.l4 == l.l3 + 40)
        && l.protocol == packet::PROTO_TCP
        && usize::from(ls.tcp_header_offset) == l.l4
        && tcp_len >= 20
        && l.l4 + tcp_len <= data.len()
        && data.len() - l.l3 <= usize::from(u16::MAX)
        && ls.mss < u32::from(u16::MAX);
    if ok {
        Ok(Headers::LargeSend(l, tcp_len, ls))
    } else {
        Err(CopyError::Malformed)
    }
}

fn plan(data: &[u8], prep: &TxPrep, room: usize) -> Result<Plan, CopyError> {
    let (shift, headers) = inspect(data, prep, room)?;
    let l4_header_end = |l: &Layers| {
        let len = if l.protocol == packet::PROTO_TCP {
            data.get(l.l4 + 12).map_or(20, |b| usize::from(b >> 4) * 4)
        } else {
            8
        };
        (l.l4 + len).min(data.len())
    };
    let header_end = match &headers {
        Headers::None if shift > 0 => 12,
        Headers::None => 0,
        Headers::Ipv4Header(l3, len) => l3 + len,
        Headers::Segment(l) => l4_header_end(l),
        Headers::LargeSend(l, tcp_len, _) => l.l4 + tcp_len,
    };
    let mut plan = Plan {
        shift,
        stores: [None; 3],
        partial: None,
        gso: None,
        header_end,
    };
    let ip_header =
        |l3: usize, len: usize| Some((l3 + 10, packet::ipv4_header_checksum(&data[l3..l3 + len])));
    match headers {
        Headers::None => {}
        Headers::Ipv4Header(l3, len) => plan.stores[0] = ip_header(l3, len),
        Headers::Segment(l) => {
            if prep.checksum.ip_header && l.ip == IpVersion::V4 {
                plan.stores[0] = ip_header(l.l3, l.l3_len);
            }
            plan_l4(data, &l, prep.device_l4, &mut plan);
        }
        Headers::LargeSend(l, tcp_len, ls) => plan_large_send(data, &l, tcp_len, ls, &mut plan),
    }
    Ok(plan)
}

/// What TCP/IP leaves for the NIC in a large send (Microsoft's "Offloading the segmentation of
/// large TCP packets": IPv4 total length 0, a pseudo-header sum without the TCP length), turned
/// into what a virtio device segments (Linux's `tcp_gso_segment`: real IP lengths, a
/// pseudo-header sum over the whole TCP length, which it adjusts for each segment).
fn plan_large_send(data: &[u8], l: &Layers, tcp_len: usize, ls: LargeSend, plan: &mut Plan) {
    let ip_len = (data.len() - l.l3) as u16; // at most 64 KiB: `large_send_headers`
    match l.ip {
        IpVersion::V4 => {
            let mut header = [0u8; 60];
            let header = &mut header[..l.l3_len];
            header.copy_from_slice(&data[l.l3..l.l3 + l.l3_len]);
            header[2..4].copy_from_slice(&ip_len.to_be_bytes());
            plan.stores[0] = Some((l.l3 + 2, ip_len));
            plan.stores[1] = Some((l.l3 + 10, packet::ipv4_header_checksum(header)));
        }
        IpVersion::V6 => plan.stores[0] = Some((l.l3 + 4, ip_len - 40)),
    }
    let field = l.checksum_field();
    let seeded = u64::from(u16::from_be_bytes([data[field], data[field + 1]]));
    let segment = (data.len() - l.l4) as u64;
    plan.stores[2] = Some((field, packet::fold(seeded + segment)));
    plan.partial = Some(((l.l4 + plan.shift) as u16, 16));
    plan.gso = Some(Gso {
        mss: ls.mss as u16,
        header_len: (l.l4 + tcp_len + plan.shift) as u16,
        ipv6: ls.ipv6,
        ecn: data[l.l4 + 13] & 0x80 != 0,
    });
}

fn plan_l4(data: &[u8], l: &Layers, device: bool, plan: &mut Plan) {
    let start = l.l4 + plan.shift;
    // The device sums to the end of the buffer: padding after the IP packet would count.
    if device && l.end == data.len() && start <= usize::from(u16::MAX) {
        plan.partial = Some((start as u16, packet::checksum_offset(l.protocol) as u16));
    } else {
        let value = packet::finish(packet::sum(&data[l.l4..l.end], 0), l.protocol);
        plan.stores[1] = Some((l.checksum_field(), value));
    }
}

/// A frame to indicate from a [`ReceivePool`] buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxFrame {
    /// The buffer.
    pub index: usize,
    /// Where the frame starts in it, and its length.
    pub offset: usize,
    pub length: usize,
    /// 802.1Q information, for a driver that strips tags.
    pub ieee8021q: Option<Ieee8021Q>,
    /// What the driver found about its checksums ([`ReceivePool::checksum`]).
    pub checksum: RxChecksum,
    /// Its RSS hash (from the device, or [`ReceivePool::rss_hash`]), written into the list's
    /// hash value and information; None clears them.
    pub hash: Option<crate::rss::RxHash>,
}

/// What [`ReceivePool::indicate`] takes: an [`RxFrame`], or the short forms `(index, offset,
/// length)` and `(index, offset, length, Option<Ieee8021Q>)`.
///
/// ```
/// use ndis::nbl::{Ieee8021Q, ReceivedFrame, RxFrame};
///
/// // Buffer 3, the frame 12 bytes in (after a device header), 60 bytes long.
/// let short = (3usize, 12usize, 60usize).parts();
/// assert_eq!(short, RxFrame { index: 3, offset: 12, length: 60, ..RxFrame::default() });
/// // The same with the VLAN tag the device stripped.
/// let tag = Some(Ieee8021Q { priority: 5, vlan_id: 42 });
/// assert_eq!((3usize, 12usize, 60usize, tag).parts().ieee8021q, tag);
/// ```
pub trait ReceivedFrame {
    fn parts(&self) -> RxFrame;
}

impl ReceivedFrame for RxFrame {
    fn parts(&self) -> RxFrame {
        *self
    }
}

/// A frame with a value of the caller's beside it (the queue it came from, say), which
/// indication ignores: a driver that keeps such pairs indicates a run of them as they are.
impl<T> ReceivedFrame for (T, RxFrame) {
    fn parts(&self) -> RxFrame {
        self.1
    }
}

impl ReceivedFrame for (usize, usize, usize) {
    fn parts(&self) -> RxFrame {
        (self.0, self.1, self.2, None).parts()
    }
}

impl ReceivedFrame for (usize, usize, usize, Option<Ieee8021Q>) {
    fn parts(&self) -> RxFrame {
        RxFrame {
            index: self.0,
            offset: self.1,
            length: self.2,
            ieee8021q: self.3,
            checksum: RxChecksum::empty(),
            hash: None,
        }
    }
}

/// Bytes of a received frame read to find its headers.
const RX_HEADER_BYTES: usize = 128;

/// Receive buffers lent to NDIS by index, owned by one adapter.
///
/// Each buffer is free, claimed by the driver (posted to the device, or being filled) or lent to
/// NDIS (indicated, not yet returned); every change of state is a compare-and-swap, so a buffer
/// is indicated at most once however many processors try, and only while claimed. The driver
/// reaches a buffer's bytes only while it holds the claim ([`read`](Self::read),
/// [`write`](Self::write)); the device reaches them by address.
///
/// Buffers are named by index and checked at run time, not lent out as borrowed tokens: a
/// driver posts a claimed buffer to its device ring and finds it again, by the ring's id, in a
/// later DPC, which a token borrowing the pool could not outlive.
pub struct ReceivePool {
    adapter: Shared<NdisAdapter>,
    /// Freed only when no list is lent (see Drop).
    memory: SharedMemory,
    pool: sys::NDIS_HANDLE,
    buffer_size: usize,
    entries: Vec<Entry>,
}

struct Entry {
    nbl: *mut sys::NET_BUFFER_LIST,
    mdl: sys::PMDL,
    state: AtomicU8,
}

const FREE: u8 = 0;
const CLAIMED: u8 = 1;
const LENT: u8 = 2;

/// The changes of a buffer's state, each one atomic operation.
impl Entry {
    fn is(&self, state: u8) -> bool {
        self.state.load(Ordering::Acquire) == state
    }

    /// Free -> claimed by the driver; false if the buffer was not free.
    fn claim(&self) -> bool {
        self.state
            .compare_exchange(FREE, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Claimed -> free (a claim given back without indicating); nothing if not claimed.
    fn release(&self) {
        let _ = self
            .state
            .compare_exchange(CLAIMED, FREE, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Claimed -> lent, once; false if the buffer was not claimed (or is lent already).
    fn lend(&self) -> bool {
        self.state
            .compare_exchange(CLAIMED, LENT, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Lent -> claimed: by the indicator that lent it, for a chain NDIS never saw.
    fn unlend(&self) {
        self.state.store(CLAIMED, Ordering::Release);
    }

    /// Lent -> free: NDIS returned the list.
    fn returned(&self) {
        self.state.store(FREE, Ordering::Release);
    }

    /// Lent -> claimed: NDIS returned the list, and the driver keeps the buffer.
    fn reclaim(&self) {
        self.state.store(CLAIMED, Ordering::Release);
    }
}

#[cfg(all(test, loom))]
mod loom_tests;

// SAFETY: the lists and MDLs are owned by the pool and only touched through `&self` methods
// whose per-buffer `lent` flag gives one user at a time (the driver or NDIS).
unsafe impl Send for ReceivePool {}
// SAFETY: as above.
unsafe impl Sync for ReceivePool {}

/// Pool tag of the framework's NET_BUFFER_LIST pools.
const POOL_TAG: u32 = u32::from_le_bytes(*b"ndrx");

impl ReceivePool {
    /// `count` buffers of `buffer_size` bytes in one shared-memory block (initialize only).
    pub fn new(
        init: &Init<'_>,
        dma: &DmaRegistration,
        buffer_size: usize,
        count: usize,
    ) -> Result<Self, Status> {
        let total = buffer_size
            .checked_mul(count)
            .filter(|t| *t > 0 && *t <= u32::MAX as usize)
            .ok_or(Status::INVALID_PARAMETER)?;
        let memory = dma.allocate(init.initializing(), total)?;
        let passive = init.passive();
        let owner = init.adapter().clone();
        let adapter = owner.handle();
        let parameters = sys::NET_BUFFER_LIST_POOL_PARAMETERS {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_DEFAULT,
                Revision: sys::NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1,
                Size: sys::NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1,
            },
            ProtocolId: sys::NDIS_PROTOCOL_ID_DEFAULT,
            fAllocateNetBuffer: 1,
            ContextSize: 0,
            PoolTag: POOL_TAG,
            DataSize: 0,
        };
        // SAFETY: the adapter handle; parameters live across the call.
        let pool = unsafe { sys::NdisAllocateNetBufferListPool(adapter.as_raw(), &parameters) };
        if pool.is_null() {
            return Err(Status::RESOURCES);
        }
        let mut this = ReceivePool {
            adapter: owner,
            memory,
            pool,
            buffer_size,
            entries: Vec::new(),
        };
        this.entries = crate::heap::try_vec(count, passive)?;
        for i in 0..count {
            let va = this.memory.virtual_address() + i * buffer_size;
            // SAFETY: `buffer_size` bytes of the live shared-memory block at `va`.
            let mdl = unsafe {
                sys::NdisAllocateMdl(adapter.as_raw(), va as sys::PVOID, buffer_size as u32)
            };
            if mdl.is_null() {
                return Err(Status::RESOURCES); // Drop frees what was made so far.
            }
            // SAFETY: our pool and MDL; the list describes the whole buffer until indicated.
            let nbl = unsafe {
                sys::NdisAllocateNetBufferAndNetBufferList(pool, 0, 0, mdl, 0, buffer_size)
            };
            if nbl.is_null() {
                // SAFETY: the MDL just allocated, not referenced by any list.
                unsafe { sys::NdisFreeMdl(mdl) };
                return Err(Status::RESOURCES);
            }
            // SAFETY: our list; MiniportReserved belongs to the miniport.
            unsafe { (*nbl).MiniportReserved[0] = i as sys::PVOID };
            this.entries.push(Entry {
                nbl,
                mdl,
                state: AtomicU8::new(FREE),
            });
        }
        Ok(this)
    }

    /// The device address of buffer 0; buffer `i` starts `i * buffer_size()` bytes on.
    pub fn device_address(&self) -> u64 {
        self.memory.device_address()
    }

    /// Whether the driver holds the claim on buffer `index` and `[offset, offset + len)` lies
    /// inside it; the byte offset in the block if so.
    #[inline]
    fn claimed_range(&self, index: usize, offset: usize, len: usize) -> Option<usize> {
        let e = self.entries.get(index)?;
        let inside = offset
            .checked_add(len)
            .is_some_and(|end| end <= self.buffer_size);
        (inside && e.is(CLAIMED)).then(|| index * self.buffer_size + offset)
    }

    /// Reads bytes of buffer `index` at `offset`; false (nothing read) unless the driver holds
    /// the buffer's claim and the range lies inside it.
    #[must_use]
    #[inline]
    pub fn read(&self, index: usize, offset: usize, buf: &mut [u8]) -> bool {
        let Some(at) = self.claimed_range(index, offset, buf.len()) else {
            return false;
        };
        self.copy_out(at, buf);
        true
    }

    /// The first `length` (< 6) bytes at `at`, then zeros: the destination of a frame too short
    /// to hold one (the caller checked the range).
    #[cold]
    #[inline(never)]
    fn short_destination(&self, at: usize, length: usize) -> [u8; 6] {
        let mut destination = [0u8; 6];
        let n = length.min(6);
        self.copy_out(at, &mut destination[..n]);
        destination
    }

    /// The 6 bytes at `at` (inside one buffer: the caller checked), as [`mac_bits`] of them: a
    /// destination address, read as [`copy_out`](Self::copy_out) would copy it, in two loads.
    #[inline(always)]
    fn destination_at(&self, at: usize) -> u64 {
        debug_assert!(at + 6 <= self.buffer_size * self.entries.len());
        let p = self.memory.virtual_address() + at;
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        // SAFETY: as for `copy_out`: bytes 0..4 and 4..6 of the 6 at `at`, in the live block, of
        // a buffer the device is done with; read unaligned (a frame starts anywhere).
        let (low, high) = unsafe {
            (
                (p as *const u32).read_unaligned(),
                ((p + 4) as *const u16).read_unaligned(),
            )
        };
        u64::from(u32::from_le(low)) | (u64::from(u16::from_le(high)) << 32)
    }

    /// [`SharedMemory::read_bytes`](crate::hw::DeviceMemory::read_bytes) of the pool's block,
    /// inlined into the receive path (a copy of a constant size becomes a few loads); `at` and
    /// `buf.len()` lie inside one buffer (the caller checked).
    #[inline(always)]
    fn copy_out(&self, at: usize, buf: &mut [u8]) {
        debug_assert!(
            at.checked_add(buf.len())
                .is_some_and(|end| end <= self.buffer_size * self.entries.len())
        );
        let p = (self.memory.virtual_address() + at) as *const u8;
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        // SAFETY: `buf.len()` bytes of the live block (`buffer_size * entries.len()` bytes from
        // its virtual address: the caller checked the range lies in one buffer), a buffer the
        // device is done with (the driver holds its claim, or the caller lent it); `buf` is
        // ordinary memory, which cannot overlap shared memory handed out by NDIS.
        unsafe { core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
    }

    /// Writes bytes of buffer `index` at `offset`; false (nothing written) unless the driver
    /// holds the buffer's claim and the range lies inside it. A buffer lent to NDIS is never
    /// written.
    #[must_use]
    pub fn write(&self, index: usize, offset: usize, data: &[u8]) -> bool {
        let Some(at) = self.claimed_range(index, offset, data.len()) else {
            return false;
        };
        self.memory.write_bytes(at, data);
        true
    }

    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What to tell NDIS about the checksums of the frame at `offset`, `length` in buffer
    /// `index` (claimed by the driver), given what the device said and the tasks in force
    /// ([`NdisAdapter::checksum_offload`]).
    ///
    /// A checksum the device left [`Partial`](DeviceRxChecksum::Partial) is completed in the
    /// buffer first, whatever is switched on and whatever the frame carries, from the device's
    /// own start and offset (as Linux does), when they lie inside the frame: the stack would
    /// drop the frame otherwise. Success is reported for a completed or
    /// [`Valid`](DeviceRxChecksum::Valid) TCP/UDP checksum only when its task is on and the
    /// frame's headers (the first 128 bytes) parse to that very checksum; the IPv4 header
    /// checksum is verified here when its task is on (`IP_SUCCEEDED` or `IP_FAILED`, never for
    /// IPv6). Anything else is reported as not checked, and the stack verifies it.
    pub fn checksum(
        &self,
        index: usize,
        offset: usize,
        length: usize,
        enabled: ChecksumOffload,
        device: DeviceRxChecksum,
    ) -> RxChecksum {
        let mut out = RxChecksum::empty();
        if self.claimed_range(index, offset, length).is_none() {
            return out;
        }
        let base = index * self.buffer_size + offset;
        let completed = match device {
            DeviceRxChecksum::Partial { start, offset } => {
                self.complete_partial(base, length, usize::from(start), usize::from(offset))
            }
            _ => false,
        };
        if !enabled.intersects(ChecksumOffload::RX) {
            return out;
        }
        let mut head = [0u8; RX_HEADER_BYTES];
        let head = &mut head[..length.min(RX_HEADER_BYTES)];
        self.memory.read_bytes(base, head);
        let Some(l) = packet::parse_headers(head, length) else {
            return out;
        };
        let (tcp, udp, ip) = match l.ip {
            IpVersion::V4 => (
                ChecksumOffload::IPV4_RX_TCP,
                ChecksumOffload::IPV4_RX_UDP,
                ChecksumOffload::IPV4_RX_IP,
            ),
            IpVersion::V6 => (
                ChecksumOffload::IPV6_RX_TCP,
                ChecksumOffload::IPV6_RX_UDP,
                ChecksumOffload::empty(),
            ),
        };
        if enabled.intersects(ip) {
            out |= if packet::ipv4_header_ok(head, &l) {
                RxChecksum::IP_SUCCEEDED
            } else {
                RxChecksum::IP_FAILED
            };
        }
        let (task, succeeded) = if l.protocol == packet::PROTO_TCP {
            (tcp, RxChecksum::TCP_SUCCEEDED)
        } else {
            (udp, RxChecksum::UDP_SUCCEEDED)
        };
        let valid = match device {
            DeviceRxChecksum::Unchecked => false,
            DeviceRxChecksum::Valid => true,
            DeviceRxChecksum::Partial { start, offset: at } => {
                completed
                    && usize::from(start) == l.l4
                    && usize::from(at) == packet::checksum_offset(l.protocol)
                    && l.end == length
            }
        };
        if valid && enabled.intersects(task) {
            out |= succeeded;
        }
        out
    }

    /// Completes a checksum the device left partial: the one's complement sum from `start` to
    /// the end of the frame at `base` (the field at `start + at` holding the pseudo-header sum)
    /// is stored at `start + at`. Reads the frame in pieces (nothing is allocated); false, with
    /// nothing written, when the description does not fit inside the frame.
    fn complete_partial(&self, base: usize, length: usize, start: usize, at: usize) -> bool {
        let field = start + at;
        if start >= length || field + 2 > length {
            return false;
        }
        let mut acc = 0u64;
        let mut chunk = [0u8; RX_HEADER_BYTES];
        let mut from = start;
        while from < length {
            // Even-sized pieces, so the 16-bit words line up across them.
            let n = (length - from).min(chunk.len());
            self.memory.read_bytes(base + from, &mut chunk[..n]);
            acc = packet::sum(&chunk[..n], acc);
            from += n;
        }
        // A result of zero is stored as all ones, as Linux does (for UDP, zero means none).
        let value = match !packet::fold(acc) {
            0 => 0xFFFF,
            v => v,
        };
        self.memory.write_bytes(base + field, &value.to_be_bytes());
        true
    }

    /// Whether buffer `index` is lent to NDIS (indicated and not yet returned).
    pub fn is_lent(&self, index: usize) -> bool {
        self.entries.get(index).is_some_and(|e| e.is(LENT))
    }

    /// Claims buffer `index` for the driver if it is free.
    pub fn claim(&self, index: usize) -> bool {
        self.entries.get(index).is_some_and(Entry::claim)
    }

    /// Claims any free buffer, scanning from `hint`.
    pub fn claim_any(&self, hint: usize) -> Option<usize> {
        let n = self.entries.len();
        (0..n)
            .map(|i| (hint + i) % n.max(1))
            .find(|&i| self.claim(i))
    }

    /// Gives a claimed buffer back without indicating it.
    pub fn release(&self, index: usize) {
        if let Some(e) = self.entries.get(index) {
            e.release();
        }
    }

    /// Indicates `frames` — (buffer index, offset of the frame in the buffer, length) — in one
    /// chain; returns how many were indicated. Each buffer must be claimed. A frame whose
    /// buffer is claimed but which cannot be indicated (it does not fit its buffer, the packet
    /// filter refuses it, or the adapter is paused) is handed to `not_indicated` before NDIS sees
    /// anything, still claimed, for the driver to give back to the device; that decision is never
    /// re-read afterwards, because NDIS may return (and the driver re-post) indicated buffers on
    /// another processor at once. Frames naming a buffer out of range or not claimed are driver
    /// bugs: counted as receive errors and ignored. (The same as a [`chain`](Self::chain) the
    /// frames are pushed to one by one.)
    pub fn indicate<C: AtMostDispatch>(
        &self,
        frames: &[impl ReceivedFrame],
        irql: &C,
        mut not_indicated: impl FnMut(usize),
    ) -> usize {
        let mut chain = self.chain();
        for frame in frames {
            chain.push(&frame.parts(), &mut not_indicated);
        }
        chain.indicate(irql, not_indicated)
    }

    /// An empty chain of this pool's receives, for a driver that decides per frame while it
    /// drains its ring (under the ring's lock) and indicates once the lock is released
    /// ([`RxChain::indicate`]), with no array of frames in between. The packet filter and the
    /// adapter's address are read here, once for the chain.
    pub fn chain(&self) -> RxChain<'_> {
        let adapter = &*self.adapter;
        let filter = adapter.packet_filter();
        // Directed frames pass when DIRECTED is on and they name the adapter's address (fixed
        // once the adapter is initialized); otherwise the broadcast address stands in, which no
        // directed frame names, so none passes (promiscuous aside).
        let directed = if filter & sys::NDIS_PACKET_TYPE_DIRECTED != 0 {
            adapter.current_address()
        } else {
            None
        }
        .unwrap_or([0xFF; 6]);
        RxChain {
            pool: self,
            links: Links::EMPTY,
            accept: Accept {
                filter,
                promiscuous: filter & sys::NDIS_PACKET_TYPE_PROMISCUOUS != 0,
                directed: mac_bits(directed),
            },
        }
    }

    /// An empty [`HeldChain`] of this pool's receives.
    pub fn held(&self) -> HeldChain {
        HeldChain {
            pool: self.pool,
            links: Links::EMPTY,
        }
    }

    /// Gives back every list of `held` (of this pool; false, nothing done, for one of another):
    /// each buffer is unlent and freed, as a chain dropped without being indicated does.
    pub fn release_held(&self, held: &mut HeldChain) -> bool {
        if held.pool != self.pool {
            return false;
        }
        let links = core::mem::replace(&mut held.links, Links::EMPTY);
        self.unlend(links, |index| self.entries[index].release());
        true
    }

    /// Unlends the lists of `links` (lent, of this pool, never seen by NDIS), each still
    /// claimed, and hands each to `each` by buffer index.
    fn unlend(&self, links: Links, mut each: impl FnMut(usize)) {
        let mut cur = links.head;
        let tail = links.tail;
        while !cur.is_null() {
            // SAFETY: lists of this pool lent to a chain, never handed to NDIS; `Next` is read
            // only before the tail, whose `Next` was never set by the chain.
            let (next, index) = unsafe {
                let next = if cur == tail {
                    core::ptr::null_mut()
                } else {
                    (*cur).Next
                };
                (next, (*cur).MiniportReserved[0] as usize)
            };
            self.entries[index].unlend();
            each(index);
            cur = next;
        }
    }

    /// The RSS hash of the frame at `offset..offset + length` of claimed buffer `index` under
    /// `view`'s configuration (its headers, from the first 128 bytes); None when the buffer is not claimed,
    /// or the frame has nothing the types on hash over.
    pub fn rss_hash(
        &self,
        index: usize,
        offset: usize,
        length: usize,
        view: &crate::rss::RssView,
    ) -> Option<crate::rss::RxHash> {
        let mut head = [0u8; RX_HEADER_BYTES];
        let n = length.min(RX_HEADER_BYTES);
        if !self.read(index, offset, &mut head[..n]) {
            return None;
        }
        view.hash(&head[..n])
    }

    /// Hands each returned list of this pool to `returned_buffer` (by buffer index, now free);
    /// lists of other pools stay in `returned`. Allocates nothing (DISPATCH_LEVEL path).
    pub fn take_returned(
        &self,
        returned: &mut Returned<'_>,
        mut returned_buffer: impl FnMut(usize),
    ) {
        self.unlink_returned(returned, |e, index| {
            e.returned();
            returned_buffer(index);
        });
    }

    /// As [`take_returned`](Self::take_returned), but each buffer of this pool comes back
    /// claimed by the driver (lent -> claimed in one step: NDIS is done with it, and no other
    /// processor can claim it in between), for a driver that posts every returned buffer to its
    /// device again at once.
    pub fn reclaim_returned(
        &self,
        returned: &mut Returned<'_>,
        mut claimed_buffer: impl FnMut(usize),
    ) {
        self.unlink_returned(returned, |e, index| {
            e.reclaim();
            claimed_buffer(index);
        });
    }

    /// Whether the first list left in `returned` is one of this pool's, lent (what
    /// [`reclaim_run`](Self::reclaim_run) takes first).
    #[inline]
    pub fn owns_first(&self, returned: &Returned<'_>) -> bool {
        let cur = returned.head;
        if cur.is_null() {
            return false;
        }
        // SAFETY: NDIS returned a chain of lists the miniport indicated; each is valid.
        let index = unsafe { (*cur).MiniportReserved[0] as usize };
        self.entries
            .get(index)
            .is_some_and(|e| e.nbl == cur && e.is(LENT))
    }

    /// As [`reclaim_returned`](Self::reclaim_returned), but only the lists of this pool at the
    /// front of `returned`, up to the first of another (left there, with all behind it); returns
    /// how many. NDIS hands lists back in the runs they were indicated in: a driver of several
    /// pools takes the chain run by run, each list looked at once, where a walk of the whole
    /// chain per pool looks at each list once per pool.
    #[inline]
    pub fn reclaim_run(
        &self,
        returned: &mut Returned<'_>,
        mut claimed_buffer: impl FnMut(usize),
    ) -> usize {
        let mut n = 0;
        let mut cur = returned.head;
        while !cur.is_null() {
            // SAFETY: NDIS returned a chain of lists the miniport indicated; each is valid.
            let (next, index) = unsafe { ((*cur).Next, (*cur).MiniportReserved[0] as usize) };
            match self.entries.get(index) {
                Some(e) if e.nbl == cur && e.is(LENT) => {
                    returned.head = next;
                    n += 1;
                    e.reclaim();
                    claimed_buffer(index);
                }
                _ => break,
            }
            cur = next;
        }
        returned.taken += n;
        n
    }

    /// Unlinks each returned list of this pool from `returned` and hands its entry to `each`;
    /// lists of other pools stay where they are, untouched.
    #[inline]
    fn unlink_returned(&self, returned: &mut Returned<'_>, mut each: impl FnMut(&Entry, usize)) {
        let mut prev: *mut sys::NET_BUFFER_LIST = core::ptr::null_mut();
        let mut cur = returned.head;
        while !cur.is_null() {
            // SAFETY: NDIS returned a chain of lists the miniport indicated; each is valid.
            let (next, index) = unsafe { ((*cur).Next, (*cur).MiniportReserved[0] as usize) };
            match self.entries.get(index) {
                Some(e) if e.nbl == cur && e.is(LENT) => {
                    if prev.is_null() {
                        returned.head = next;
                    } else {
                        // SAFETY: `prev` is a list of the chain, left in it.
                        unsafe { (*prev).Next = next };
                    }
                    returned.taken += 1;
                    each(e, index);
                }
                _ => prev = cur,
            }
            cur = next;
        }
    }
}

impl Drop for ReceivePool {
    fn drop(&mut self) {
        // Freeing a list NDIS still holds would be a use-after-free in the protocols: NDIS
        // returns every indicated list before pause completes and before halt, so this is a
        // framework or NDIS contract violation. Leak them (and keep the memory their MDLs
        // describe, by leaking a reference to it) rather than free.
        let mut lent = 0;
        for e in self.entries.drain(..) {
            if e.is(LENT) {
                lent += 1;
                continue;
            }
            // SAFETY: our list and MDL, not lent; freed once (drained).
            unsafe {
                sys::NdisFreeNetBufferList(e.nbl);
                sys::NdisFreeMdl(e.mdl);
            }
        }
        if lent == 0 {
            // SAFETY: every list of the pool is freed.
            unsafe { sys::NdisFreeNetBufferListPool(self.pool) };
        } else {
            core::mem::forget(self.memory.clone());
        }
    }
}

/// A chain of receives NDIS handed back (`MiniportReturnNetBufferLists`).
pub struct Returned<'a> {
    head: *mut sys::NET_BUFFER_LIST,
    /// Lists a pool took out of the chain so far.
    taken: usize,
    _call: PhantomData<&'a mut sys::NET_BUFFER_LIST>,
}

impl Returned<'_> {
    /// # Safety
    ///
    /// `head` starts a chain (null-terminated) of valid lists NDIS handed back, left to this
    /// value for its life.
    pub(crate) unsafe fn new(head: *mut sys::NET_BUFFER_LIST) -> Self {
        Returned {
            head,
            taken: 0,
            _call: PhantomData,
        }
    }

    /// Whether lists remain that no pool claimed (a bug: they were not ours).
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// How many lists came back: those the pools took, and those left in the chain.
    pub(crate) fn count(&self) -> usize {
        let mut count = self.taken;
        let mut cur = self.head;
        while !cur.is_null() {
            count += 1;
            // SAFETY: NDIS returned a chain of lists the miniport indicated; the pools only
            // unlink lists from it.
            cur = unsafe { (*cur).Next };
        }
        count
    }
}

/// A MAC address as the low 48 bits of a word (its first byte lowest), for one compare.
#[inline(always)]
fn mac_bits(a: [u8; 6]) -> u64 {
    u64::from_le_bytes([a[0], a[1], a[2], a[3], a[4], a[5], 0, 0])
}

/// Receives of one [`ReceivePool`] lent one by one ([`push`](Self::push)) and indicated to NDIS
/// in one call ([`indicate`](Self::indicate)); see [`ReceivePool::chain`].
///
/// A pushed buffer is lent (claimed -> lent, once) as it joins the chain, so a second push of
/// it, here or on another processor, is refused. A chain dropped without being indicated gives
/// its buffers back to the pool, free (NDIS never saw them): a re-initialization posts them
/// again.
pub struct RxChain<'p> {
    pool: &'p ReceivePool,
    links: Links,
    accept: Accept,
}

/// The lists of a chain not yet indicated, and what they add up to.
struct Links {
    head: *mut sys::NET_BUFFER_LIST,
    /// The last list; its `Next` is not set until the chain is indicated.
    tail: *mut sys::NET_BUFFER_LIST,
    count: usize,
    /// Bytes of all the frames in the chain; `others`: (frames, bytes) multicast, broadcast
    /// (unicast is the rest).
    bytes: u64,
    others: [(u64, u64); 2],
}

impl Links {
    const EMPTY: Links = Links {
        head: core::ptr::null_mut(),
        tail: core::ptr::null_mut(),
        count: 0,
        bytes: 0,
        others: [(0, 0); 2],
    };
}

/// The packet filter as a chain read it once, for every frame pushed through it.
struct Accept {
    filter: u32,
    promiscuous: bool,
    /// The adapter's address when the filter passes directed frames, else the broadcast
    /// address, which no directed frame carries ([`mac_bits`]).
    directed: u64,
}

/// Receives of one [`ReceivePool`] lent into a chain that is kept past the borrow of its pool
/// (in the driver's own state, say a queue of frames for another processor), to be indicated
/// later through a chain of the same pool ([`RxChain::append_held`]). Pushing to it
/// ([`RxChain::push_held`]) does all a push into a chain does, so taking it over costs nothing
/// per frame.
///
/// Its lists stay lent until it is appended to a chain or given back
/// ([`ReceivePool::release_held`]); one dropped with lists in it leaks them (the pool never
/// frees a lent list), it never frees them under NDIS.
pub struct HeldChain {
    /// The pool's NDIS handle: the pool the lists are of (never freed while one is lent, so no
    /// other pool gets it while this holds any).
    pool: sys::NDIS_HANDLE,
    links: Links,
}

// SAFETY: the lists are lent to this chain, which alone reaches them (through `&mut`), until a
// chain of their pool takes them over.
unsafe impl Send for HeldChain {}
// SAFETY: `&HeldChain` reaches nothing of the lists (only the count).
unsafe impl Sync for HeldChain {}

impl HeldChain {
    /// Frames held.
    pub fn len(&self) -> usize {
        self.links.count
    }

    pub fn is_empty(&self) -> bool {
        self.links.count == 0
    }
}

impl Accept {
    /// Whether the packet filter passes a frame for `destination` ([`mac_bits`]); its kind (0
    /// unicast, 1 multicast, 2 broadcast) if so. The same decision as
    /// [`NdisAdapter::filter_accepts`]. A directed frame (the common case) is decided here, in
    /// registers, without the adapter.
    #[inline(always)]
    fn accepts(&self, pool: &ReceivePool, destination: u64) -> Option<usize> {
        // The group bit is the first byte's lowest.
        if destination & 1 == 0 {
            return (self.promiscuous || self.directed == destination).then_some(0);
        }
        self.accepts_group(pool, destination)
    }

    /// [`accepts`](Self::accepts) for a multicast or broadcast destination.
    #[inline(never)]
    fn accepts_group(&self, pool: &ReceivePool, destination: u64) -> Option<usize> {
        let kind = if destination == mac_bits([0xFF; 6]) {
            2
        } else {
            1
        };
        let [a, b, c, d, e, f, _, _] = destination.to_le_bytes();
        (self.promiscuous
            || pool
                .adapter
                .filter_accepts(self.filter, &[a, b, c, d, e, f]))
        .then_some(kind)
    }

    /// [`RxChain::push`] into `links`, lists of `pool`.
    #[inline(always)]
    fn push(
        &self,
        pool: &ReceivePool,
        links: &mut Links,
        frame: &RxFrame,
        mut not_indicated: impl FnMut(usize),
    ) {
        let adapter = &*pool.adapter;
        let &RxFrame {
            index,
            offset,
            length,
            ieee8021q,
            checksum,
            hash,
        } = frame;
        let Some(entry) = pool.entries.get(index) else {
            adapter.stats.rx_errors(1);
            return;
        };
        let fits = offset
            .checked_add(length)
            .is_some_and(|end| end <= pool.buffer_size && length > 0);
        if !fits {
            adapter.stats.rx_errors(1);
            if entry.is(CLAIMED) {
                not_indicated(index);
            }
            return;
        }
        // Claimed -> lent, once: a second indication of the buffer (the same frame listed
        // twice, or another processor) finds it lent and is refused. From here this chain alone
        // holds the buffer (NDIS has not seen it), until it is indicated or unlent.
        if !entry.lend() {
            adapter.stats.rx_errors(1);
            return;
        }
        // The destination address (bytes past a shorter frame read as zero).
        let at = index * pool.buffer_size + offset;
        let destination = if length >= 6 {
            pool.destination_at(at)
        } else {
            mac_bits(pool.short_destination(at, length))
        };
        // The packet filter, for whatever the device let through (virtio-net, for one, has no
        // way to receive nothing).
        let Some(kind) = self.accepts(pool, destination) else {
            entry.unlend();
            not_indicated(index);
            return;
        };
        links.bytes += length as u64;
        if kind != 0 {
            let k = &mut links.others[kind - 1];
            k.0 += 1;
            k.1 += length as u64;
        }
        let nbl = entry.nbl;
        // SAFETY: our list, just lent by this chain and not yet seen by NDIS: the driver side
        // may set its fields; `tail` is the chain's previous list, equally ours.
        unsafe {
            let nb = (*nbl).FirstNetBuffer;
            (*nb).CurrentMdl = entry.mdl;
            (*nb).CurrentMdlOffset = offset as u32;
            (*nb).DataOffset = offset as u32;
            (*nb).DataLength.DataLength = length as u32;
            (*nbl).Status = sys::NDIS_STATUS_SUCCESS;
            (*nbl).SourceHandle = adapter.handle().as_raw();
            // Set (or cleared) for every indication: the list is reused.
            (*nbl).NetBufferListInfo[sys::Ieee8021QNetBufferListInfo] =
                ieee8021q.map_or(0, Ieee8021Q::to_info) as sys::PVOID;
            (*nbl).NetBufferListInfo[sys::TcpIpChecksumNetBufferListInfo] =
                checksum.bits() as usize as sys::PVOID;
            // NET_BUFFER_LIST_SET_HASH_VALUE / _TYPE / _FUNCTION (or cleared).
            let (value, info) = hash.map_or((0, 0), |h| (h.value, h.info()));
            (*nbl).NetBufferListInfo[sys::NetBufferListHashValue] = value as usize as sys::PVOID;
            (*nbl).NetBufferListInfo[sys::NetBufferListHashInfo] = info as usize as sys::PVOID;
            if links.tail.is_null() {
                links.head = nbl;
            } else {
                (*links.tail).Next = nbl;
            }
        }
        links.tail = nbl;
        links.count += 1;
    }
}

impl RxChain<'_> {
    /// Frames in the chain.
    pub fn len(&self) -> usize {
        self.links.count
    }

    pub fn is_empty(&self) -> bool {
        self.links.count == 0
    }

    /// Lends `frame`'s buffer (claimed by the driver) and links its list into the chain. A frame
    /// whose buffer is claimed but which cannot be indicated (it does not fit its buffer, or the
    /// packet filter refuses it) goes to `not_indicated`, still claimed; one naming a buffer out
    /// of range, or not claimed (or pushed already), is a driver bug: counted as a receive error
    /// and ignored.
    #[inline]
    pub fn push(&mut self, frame: &RxFrame, not_indicated: impl FnMut(usize)) {
        self.accept
            .push(self.pool, &mut self.links, frame, not_indicated);
    }

    /// As [`push`](Self::push) (under this chain's reading of the packet filter), but into
    /// `held`, to be indicated later by whoever takes it over. A `held` of another pool takes
    /// nothing: the frame goes to `not_indicated`, still claimed.
    #[inline]
    pub fn push_held(
        &mut self,
        held: &mut HeldChain,
        frame: &RxFrame,
        mut not_indicated: impl FnMut(usize),
    ) {
        if held.pool != self.pool.pool {
            if self
                .pool
                .entries
                .get(frame.index)
                .is_some_and(|e| e.is(CLAIMED))
            {
                not_indicated(frame.index);
            }
            return;
        }
        self.accept
            .push(self.pool, &mut held.links, frame, not_indicated);
    }

    /// Moves every list of `held` (of this chain's pool) to the end of this chain, in order, in
    /// a few stores whatever their number; false (nothing moved) for one of another pool.
    #[inline]
    pub fn append_held(&mut self, held: &mut HeldChain) -> bool {
        if held.pool != self.pool.pool {
            return false;
        }
        if held.links.count == 0 {
            return true;
        }
        let h = core::mem::replace(&mut held.links, Links::EMPTY);
        if self.links.count == 0 {
            self.links = h;
            return true;
        }
        // SAFETY: the chain's last list, lent to it and not yet seen by NDIS.
        unsafe { (*self.links.tail).Next = h.head };
        let l = &mut self.links;
        l.tail = h.tail;
        l.count += h.count;
        l.bytes += h.bytes;
        for (k, o) in l.others.iter_mut().zip(h.others) {
            k.0 += o.0;
            k.1 += o.1;
        }
        true
    }

    /// Takes the chain's lists back (never seen by NDIS): each is unlent, still claimed, and
    /// handed to `each` by buffer index.
    fn unlend_all(&mut self, each: impl FnMut(usize)) {
        let links = core::mem::replace(&mut self.links, Links::EMPTY);
        self.pool.unlend(links, each);
    }

    /// Indicates the chain to NDIS in one call; returns how many were indicated. When the
    /// adapter is paused nothing goes up: every buffer goes to `not_indicated`, still claimed,
    /// before NDIS sees any (counted as discards).
    pub fn indicate<C: AtMostDispatch>(
        mut self,
        irql: &C,
        not_indicated: impl FnMut(usize),
    ) -> usize {
        match self.send_up(irql) {
            Some(n) => n,
            None => {
                self.unlend_all(not_indicated);
                0
            }
        }
    }

    /// As [`indicate`](Self::indicate), but a chain the paused adapter does not take comes
    /// back whole ([`give_back`](Self::give_back) hands out its buffers), for a caller that
    /// needs what `indicate` borrows (the IRQL token) to deal with them: one of more buffers
    /// than it can keep at a time.
    pub fn try_indicate<C: AtMostDispatch>(mut self, irql: &C) -> Result<usize, Self> {
        match self.send_up(irql) {
            Some(n) => Ok(n),
            None => Err(self),
        }
    }

    /// The chain to NDIS; None (the chain as it was) when the adapter is paused.
    #[inline(always)]
    fn send_up<C: AtMostDispatch>(&mut self, irql: &C) -> Option<usize> {
        let count = self.links.count;
        if count == 0 {
            return Some(0);
        }
        let pool = self.pool;
        let adapter = &*pool.adapter;
        // Counted under the adapter's lock before NDIS sees them: a pause cannot complete
        // while they are out, and the protocols may return them inside the call.
        if !adapter.begin_indication(count) {
            // Paused: nothing goes up; the buffers go back to the driver, still claimed.
            adapter.stats.rx_discards(count as u64);
            return None;
        }
        let [multicast, broadcast] = self.links.others;
        let unicast = (
            count as u64 - multicast.0 - broadcast.0,
            self.links.bytes - multicast.1 - broadcast.1,
        );
        adapter
            .stats
            .received_batch(&[unicast, multicast, broadcast]);
        let flags = if irql.known_dispatch() {
            sys::NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL
        } else {
            0
        };
        let head = self.links.head;
        // SAFETY: the chain's last list, ours and not yet seen by NDIS: the chain ends there.
        unsafe { (*self.links.tail).Next = core::ptr::null_mut() };
        self.links = Links::EMPTY;
        // SAFETY: a chain of `count` of our lists, each marked lent and counted; the flag is
        // set only when the token proves DISPATCH_LEVEL; the adapter runs (the gate said so, and
        // halt clears `running` first), so its handle is live.
        unsafe {
            sys::NdisMIndicateReceiveNetBufferLists(
                adapter.handle().as_raw(),
                head,
                sys::NDIS_DEFAULT_PORT_NUMBER,
                count as u32,
                flags,
            )
        };
        // Only now may a pause complete: MiniportPause waits for indications to return.
        adapter.end_indication();
        Some(count)
    }

    /// Takes the chain's lists back (never seen by NDIS): each is unlent and handed to `each`
    /// by buffer index, still claimed.
    pub fn give_back(mut self, each: impl FnMut(usize)) {
        self.unlend_all(each);
    }
}

impl Drop for RxChain<'_> {
    fn drop(&mut self) {
        let pool = self.pool;
        self.unlend_all(|index| pool.entries[index].release());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A held send carries its adapter: a batch of another adapter refuses it before anything
    /// reaches NDIS (the item12 soundness fix: this compiled and completed A's list on B's
    /// handle, releasing B's send gate).
    #[test]
    #[cfg(not(windows))]
    #[should_panic(expected = "a HeldSend pushed into another adapter's SendCompletion")]
    fn a_held_send_completes_only_through_its_own_adapter() {
        // The adapters' spin locks are NDIS's: an emulated kernel to allocate them from.
        let _emu = ndis_emu::Emulator::new(ndis_emu::Config {
            unaccounted_heap: true,
            ..ndis_emu::Config::default()
        });
        let adapter = || {
            // SAFETY: a null handle that reaches no NDIS function: `push` refuses the list
            // before any call, and an empty batch calls nothing when dropped.
            NdisAdapter::new(unsafe {
                crate::adapter::AdapterHandle::from_raw(core::ptr::null_mut())
            })
        };
        let (a, b) = (adapter(), adapter());
        // A list without frames (a list is read when it is taken: it must be one).
        // SAFETY: NET_BUFFER_LIST is plain data; all zeroes is a list with no NET_BUFFER.
        let mut nbl: sys::NET_BUFFER_LIST = unsafe { core::mem::zeroed() };
        let held = HeldSend {
            list: SendNbl::new(&mut nbl, None),
            adapter: adapter_id(&a),
        };
        let mut done = SendCompletion::new(&b);
        done.push(held, Status::SUCCESS);
    }

    /// A frame's first byte (what counts a mapped send by destination) is read from its
    /// current MDL at the current offset when the MDL has a system address, and asked of
    /// NDIS otherwise: an MDL without one, and a frame that starts in the next MDL of the
    /// chain (where reading the current one would run past it).
    #[test]
    #[cfg(not(windows))]
    fn a_frames_first_byte_comes_from_its_current_mdl_or_from_ndis() {
        let _emu = ndis_emu::Emulator::new(ndis_emu::Config {
            unaccounted_heap: true,
            ..ndis_emu::Config::default()
        });
        // Apart on the heap: a read past the first MDL does not land on the second's bytes.
        let mut first = alloc::vec![0xA0u8, 0x33, 0x34];
        let mut second = alloc::vec![0x01u8, 0x02, 0x03, 0x04];
        let mdl = |bytes: &mut [u8], flags: i16, next: *mut sys::MDL| sys::MDL {
            Next: next,
            Size: 0x38,
            MdlFlags: flags,
            _Reserved: 0,
            Process: core::ptr::null_mut(),
            MappedSystemVa: bytes.as_mut_ptr().cast(),
            StartVa: core::ptr::null_mut(),
            ByteCount: bytes.len() as u32,
            ByteOffset: 0,
        };
        let mapped = sys::MDL_MAPPED_TO_SYSTEM_VA;
        let mut tail = mdl(&mut second, mapped, core::ptr::null_mut());
        let copies = CopyTally::default();
        let first_byte = |head: &mut sys::MDL, offset: u32| {
            // SAFETY: NET_BUFFER is plain data; the fields a frame is read through are set.
            let mut nb: sys::NET_BUFFER = unsafe { core::mem::zeroed() };
            nb.MdlChain = head;
            nb.CurrentMdl = head;
            nb.CurrentMdlOffset = offset;
            nb.DataOffset = offset;
            nb.DataLength.DataLength = 3 + 4 - offset;
            let frame = SendFrame {
                nb: &mut nb,
                copies: &copies,
            };
            frame.count_in_place();
            (frame.first_byte(), copies.get())
        };
        for flags in [mapped, sys::MDL_SOURCE_IS_NONPAGED_POOL, 0] {
            let mut head = mdl(&mut first, flags, &mut tail);
            // In the current MDL: 0x33 (odd: a group address), 0xA0 (even).
            assert_eq!(
                first_byte(&mut head, 1),
                (Some(0x33), (1, 6, true)),
                "{flags}"
            );
            assert_eq!(
                first_byte(&mut head, 0),
                (Some(0xA0), (1, 7, false)),
                "{flags}"
            );
            // Past the current MDL's bytes: the frame starts in the next one.
            assert_eq!(
                first_byte(&mut head, 3),
                (Some(0x01), (1, 4, true)),
                "{flags}"
            );
        }
    }

    /// The frame as TCP/IP hands it down for checksum offload: IPv4 header checksum zero,
    /// pseudo-header sum in the TCP checksum field.
    fn offloaded(frame: &[u8]) -> alloc::vec::Vec<u8> {
        let mut f = frame.to_vec();
        let l = packet::parse(&f).unwrap();
        f[l.l3 + 10..l.l3 + 12].fill(0);
        let p = packet::pseudo_header_sum(&f, &l);
        f[l.checksum_field()..l.checksum_field() + 2].copy_from_slice(&p.to_be_bytes());
        f
    }

    fn tcp_request() -> ChecksumRequest {
        ChecksumRequest {
            ipv4: true,
            tcp: true,
            ip_header: true,
            tcp_header_offset: 34,
            ..ChecksumRequest::default()
        }
    }

    /// The frame `plan` says to write (without a tag), with its values stored.
    fn apply(data: &[u8], p: &Plan) -> alloc::vec::Vec<u8> {
        let mut out = data.to_vec();
        for (at, v) in p.stores.into_iter().flatten() {
            out[at..at + 2].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    #[test]
    fn software_checksums_restore_the_frame_the_stack_built() {
        let good = packet::tcp4(&[], b"payload of odd size");
        let sent = offloaded(&good);
        assert_ne!(sent, good);
        let prep = TxPrep {
            checksum: tcp_request(),
            ..TxPrep::default()
        };
        let p = plan(&sent, &prep, 2048).unwrap();
        assert_eq!(p.partial, None);
        assert_eq!(apply(&sent, &p), good);
    }

    #[test]
    fn a_capable_device_gets_the_transport_checksum_and_padding_keeps_it_here() {
        let good = packet::tcp4(&[], b"x");
        let sent = offloaded(&good);
        let prep = TxPrep {
            checksum: tcp_request(),
            device_l4: true,
            tci: Some(5),
            large_send: None,
        };
        let p = plan(&sent, &prep, 2048).unwrap();
        assert_eq!((p.shift, p.partial, p.stores[1]), (4, Some((38, 16)), None));
        // Ethernet padding after the IP packet: the device would sum it, so not the device.
        let mut padded = sent.clone();
        padded.extend_from_slice(&[0xAA; 6]);
        let p = plan(&padded, &prep, 2048).unwrap();
        assert_eq!(p.partial, None);
        assert_eq!(apply(&padded, &p)[..good.len()], good[..]);
    }

    #[test]
    fn a_large_send_gets_real_ip_lengths_and_a_pseudo_header_sum_with_the_tcp_length() {
        let good = packet::tcp4(&[], &[0x5A; 3000]);
        let l = packet::parse(&good).unwrap();
        // As TCP/IP hands a large send down: IPv4 total length and header checksum 0, the
        // pseudo-header sum without the TCP length.
        let mut sent = good.clone();
        sent[16..18].fill(0);
        sent[24..26].fill(0);
        let tcp_len = (good.len() - l.l4) as u64;
        let full = u64::from(packet::pseudo_header_sum(&good, &l));
        let without_length = packet::fold(full + 0xFFFF - tcp_len); // one's complement minus
        let field = l.checksum_field();
        sent[field..field + 2].copy_from_slice(&without_length.to_be_bytes());
        let ls = LargeSend {
            mss: 1448,
            tcp_header_offset: 34,
            ipv6: false,
        };
        let prep = TxPrep {
            large_send: Some(ls),
            tci: Some(9),
            ..TxPrep::default()
        };
        let p = plan(&sent, &prep, 4096).unwrap();
        let fixed = apply(&sent, &p);
        assert_eq!(
            fixed[..field],
            good[..field],
            "IP lengths and header checksum restored"
        );
        let want = packet::pseudo_header_sum(&good, &l);
        assert_eq!(
            fixed[field..field + 2],
            want.to_be_bytes(),
            "length added to the sum"
        );
        assert_eq!(p.partial, Some((38, 16)));
        let gso = p.gso.unwrap();
        assert_eq!(
            (gso.mss, gso.header_len, gso.ipv6, gso.ecn),
            (1448, 58, false, false)
        );

        for wrong in [
            LargeSend { ipv6: true, ..ls },
            LargeSend {
                tcp_header_offset: 30,
                ..ls
            },
            LargeSend { mss: 70_000, ..ls },
            LargeSend { mss: 0xFFFF, ..ls },
        ] {
            let prep = TxPrep {
                large_send: Some(wrong),
                ..TxPrep::default()
            };
            assert_eq!(
                plan(&sent, &prep, 4096).err(),
                Some(CopyError::Malformed),
                "{wrong:?}"
            );
        }
        assert_eq!(plan(&sent, &prep, 3000).err(), Some(CopyError::TooLong));
    }

    #[test]
    fn regions_take_a_run_of_bytes_across_their_boundaries() {
        struct Memory(core::cell::RefCell<alloc::vec::Vec<u8>>);
        impl DeviceMemory for Memory {
            fn len(&self) -> usize {
                self.0.borrow().len()
            }
            fn device_address(&self) -> u64 {
                0
            }
            fn read_u16(&self, _: usize) -> u16 {
                unreachable!()
            }
            fn read_u32(&self, _: usize) -> u32 {
                unreachable!()
            }
            fn read_u64(&self, _: usize) -> u64 {
                unreachable!()
            }
            fn write_u16(&self, _: usize, _: u16) {
                unreachable!()
            }
            fn write_u32(&self, _: usize, _: u32) {
                unreachable!()
            }
            fn write_u64(&self, _: usize, _: u64) {
                unreachable!()
            }
            fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
                buf.copy_from_slice(&self.0.borrow()[offset..offset + buf.len()]);
            }
            fn write_bytes(&self, offset: usize, data: &[u8]) {
                self.0.borrow_mut()[offset..offset + data.len()].copy_from_slice(data);
            }
        }
        let m = Memory(core::cell::RefCell::new(alloc::vec![0; 32]));
        let out = Regions {
            memory: &m,
            regions: &[(20, 3), (2, 5), (10, 4)],
        };
        out.write(0, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        out.write(6, &[0xAA, 0xBB]);
        let m = m.0.into_inner();
        assert_eq!(m[20..23], [1, 2, 3]);
        assert_eq!(m[2..7], [4, 5, 6, 0xAA, 0xBB]);
        assert_eq!(m[10..14], [9, 10, 11, 12]);
        assert_eq!(
            m.iter().filter(|&&b| b != 0).count(),
            12,
            "nothing outside the regions"
        );
    }

    #[test]
    fn requests_the_headers_do_not_match_are_malformed() {
        let sent = offloaded(&packet::tcp4(&[], b"x"));
        let mut prep = TxPrep {
            checksum: tcp_request(),
            ..TxPrep::default()
        };
        let wrong = [
            ChecksumRequest {
                udp: true,
                tcp: false,
                ..tcp_request()
            },
            ChecksumRequest {
                ipv4: false,
                ipv6: true,
                ..tcp_request()
            },
            ChecksumRequest {
                tcp_header_offset: 30,
                ..tcp_request()
            },
        ];
        for r in wrong {
            prep.checksum = r;
            assert_eq!(
                plan(&sent, &prep, 2048).err(),
                Some(CopyError::Malformed),
                "{r:?}"
            );
        }
        prep.checksum = tcp_request();
        assert_eq!(
            plan(&sent[..40], &prep, 2048).err(),
            Some(CopyError::Malformed)
        );
        assert_eq!(plan(&sent, &prep, 20).err(), Some(CopyError::TooLong));
        prep.checksum = ChecksumRequest::default();
        assert!(
            plan(&sent[..5], &prep, 2048).is_ok(),
            "no request, no parsing"
        );
    }

    #[test]
    fn ieee8021q_matches_the_tci_and_the_net_buffer_list_info_layout() {
        let info = Ieee8021Q {
            priority: 5,
            vlan_id: 0x123,
        };
        // TCI: priority in the top 3 bits, CFI 0, VLAN in the low 12.
        assert_eq!(info.tci(), 0xA123);
        assert_eq!(Ieee8021Q::from_tci(0xA123), info);
        assert_eq!(Ieee8021Q::from_tci(0xB123), info, "CFI ignored");
        // NDIS_NET_BUFFER_LIST_8021Q_INFO: UserPriority bits 0..3, CFI bit 3, VlanId 4..16.
        assert_eq!(info.to_info(), 5 | (0x123 << 4));
        assert_eq!(Ieee8021Q::from_info(5 | (0x123 << 4) | 8), Some(info));
        assert_eq!(Ieee8021Q::from_info(0), None);
        assert_eq!(Ieee8021Q::from_info(1 << 16), None, "reserved bits ignored");
        // Out-of-range fields are masked, not carried into neighbours.
        let wide = Ieee8021Q {
            priority: 0xFF,
            vlan_id: 0xFFFF,
        };
        assert_eq!(wide.tci(), 0xEFFF);
        assert_eq!(wide.to_info(), 7 | (0xFFF << 4));
    }
}
