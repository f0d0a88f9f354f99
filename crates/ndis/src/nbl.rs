//! NET_BUFFER_LISTs as safe values: sends the driver copies out, receives it lends to NDIS.
//!
//! The framework's send model is *copying*: a driver copies each frame into its own device
//! buffers inside [`Miniport::send`](crate::miniport::Miniport::send) and returns a status; the
//! framework completes every list as soon as the call returns. No list outlives the call, so a
//! driver cannot leak one or complete one twice. A zero-copy model (scatter/gather lists
//! completed from the DPC) is not offered yet.
//!
//! Receives come from a [`ReceivePool`]: fixed buffers in shared memory, each with its own
//! MDL and NET_BUFFER_LIST made once at initialize. A buffer is *free*, *claimed* by the driver
//! (posted to the device, or being filled) or *lent* to NDIS (indicated). Indicating lends
//! claimed buffers; the protocols hand them back through `MiniportReturnNetBufferLists`, which
//! the framework turns into buffer indexes ([`Returned`]) and marks free.

use alloc::vec::Vec;
use core::cell::Cell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU8, Ordering};

use ndis_sys as sys;

use crate::Status;
use crate::adapter::AdapterHandle;
use crate::dma::{DmaRegistration, SharedMemory};
use crate::hw::DeviceMemory;
use crate::irql::{AtMostDispatch, BelowDispatch, Dispatch, Passive};
use crate::miniport::NdisAdapter;

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
    _call: PhantomData<&'a mut sys::NET_BUFFER_LIST>,
}

impl<'a> SendLists<'a> {
    pub(crate) fn new(
        first: *mut sys::NET_BUFFER_LIST,
        stats: &'a crate::miniport::Statistics,
    ) -> Self {
        SendLists {
            first,
            visited: false,
            stats,
            _call: PhantomData,
        }
    }

    /// Hands every list of the call to `f`, in order, and records the status it returns (and
    /// the statistics of the frames it copied). Visits each list once: a second call visits
    /// nothing. `NDIS_STATUS_PENDING` is recorded as `NDIS_STATUS_FAILURE`: every list completes
    /// when `Miniport::send` returns.
    pub fn each(&mut self, mut f: impl FnMut(&SendNbl<'_>) -> Status) {
        if core::mem::replace(&mut self.visited, true) {
            return;
        }
        self.for_each_list(|list| f(list));
    }

    /// Completes lists the driver did not visit (see the type's documentation).
    pub(crate) fn finish(&mut self, status_if_unvisited: Status) {
        if !core::mem::replace(&mut self.visited, true) {
            self.for_each_list(|_| status_if_unvisited);
        }
    }

    fn for_each_list(&mut self, mut f: impl FnMut(&SendNbl<'_>) -> Status) {
        let mut cur = self.first;
        while !cur.is_null() {
            // SAFETY: NDIS hands the miniport a chain of valid lists it owns until completed.
            let next = unsafe { (*cur).Next };
            let list = SendNbl::new(cur);
            let mut status = f(&list);
            if status.0 == sys::NDIS_STATUS_PENDING {
                // The copying model completes every list in this call: it cannot pend.
                status = Status::FAILURE;
            }
            crate::miniport::count_send(self.stats, &list, status);
            // SAFETY: as above.
            unsafe { (*cur).Status = status.0 };
            cur = next;
        }
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
    fn from_info(value: usize) -> Option<Self> {
        let info = Ieee8021Q {
            priority: (value & 7) as u8,
            vlan_id: ((value >> 4) & 0x0FFF) as u16,
        };
        (info != Ieee8021Q::default()).then_some(info)
    }

    fn to_info(self) -> usize {
        usize::from(self.priority & 7) | (usize::from(self.vlan_id & 0x0FFF) << 4)
    }
}

/// One list handed to `MiniportSendNetBufferLists`, valid during the send call.
pub struct SendNbl<'a> {
    nbl: *mut sys::NET_BUFFER_LIST,
    /// Frames copied out so far, and their (frames, bytes) per kind, for the statistics.
    copies: Cell<(usize, [(u64, u64); 3])>,
    _call: PhantomData<&'a mut sys::NET_BUFFER_LIST>,
}

impl<'a> SendNbl<'a> {
    pub(crate) fn new(nbl: *mut sys::NET_BUFFER_LIST) -> Self {
        SendNbl {
            nbl,
            copies: Cell::new((0, [(0, 0); 3])),
            _call: PhantomData,
        }
    }

    pub(crate) fn copies(&self) -> (usize, [(u64, u64); 3]) {
        self.copies.get()
    }

    /// The 802.1Q information the protocol attached to the list, if any: the driver inserts
    /// the tag when it copies the frames (with `SendFrame::copy_to_device_tagged`).
    pub fn ieee8021q(&self) -> Option<Ieee8021Q> {
        // SAFETY: a list NDIS owns for the send call; the info array is part of the list.
        let value = unsafe { (*self.nbl).NetBufferListInfo[sys::Ieee8021QNetBufferListInfo] };
        Ieee8021Q::from_info(value as usize)
    }

    /// The frames of the list (one per NET_BUFFER).
    pub fn frames(&self) -> impl Iterator<Item = SendFrame<'_>> {
        // SAFETY: NDIS owns the list for the duration of the send call and hands it to the
        // miniport with a valid NET_BUFFER chain.
        let mut nb = unsafe { (*self.nbl).FirstNetBuffer };
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
    copies: &'a Cell<(usize, [(u64, u64); 3])>,
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
        let room = scratch.len();
        let data = self.view(scratch).filter(|d| d.len() >= 12)?;
        if data.len() >= 14 && data[12..14] == [0x81, 0x00] {
            memory.write_bytes(offset, data);
            self.count_copy(data);
            return Some(data.len());
        }
        if data.len() + 4 > room {
            return None;
        }
        let [hi, lo] = tci.to_be_bytes();
        memory.write_bytes(offset, &data[..12]);
        memory.write_bytes(offset + 12, &[0x81, 0x00, hi, lo]);
        memory.write_bytes(offset + 16, &data[12..]);
        self.count_copy(data);
        Some(data.len() + 4)
    }

    /// The frame's bytes, in place when they are contiguous (one MDL, the usual case),
    /// otherwise gathered into `scratch`; None if it is longer than `scratch`. Not counted.
    fn view<'s>(&'s self, scratch: &'s mut [u8]) -> Option<&'s [u8]> {
        let n = self.len();
        if n > scratch.len() {
            return None;
        }
        if n == 0 {
            return Some(&[]);
        }
        // SAFETY: a live NET_BUFFER; without storage NDIS returns the bytes in place when they
        // are contiguous and NULL otherwise. IRQL <= DISPATCH_LEVEL (a send call).
        let p = unsafe { sys::NdisGetDataBuffer(self.nb, n as u32, core::ptr::null_mut(), 1, 0) };
        if p.is_null() {
            let n = self.gather(scratch)?;
            return Some(&scratch[..n]);
        }
        // SAFETY: NDIS returned `n` contiguous bytes of the frame, which stay valid and unchanged
        // for the send call.
        Some(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), n) })
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
    fn count_copy(&self, frame: &[u8]) {
        let (count, mut per_kind) = self.copies.get();
        let kind = &mut per_kind[crate::miniport::cast_kind(&frame[..frame.len().min(6)])];
        kind.0 += 1;
        kind.1 += frame.len() as u64;
        self.copies.set((count + 1, per_kind));
    }
}

/// A frame to indicate from a [`ReceivePool`] buffer: `(index, offset, length)`, or with its
/// 802.1Q information `(index, offset, length, Option<Ieee8021Q>)` for a driver that strips tags.
pub trait ReceivedFrame {
    fn parts(&self) -> (usize, usize, usize, Option<Ieee8021Q>);
}

impl ReceivedFrame for (usize, usize, usize) {
    fn parts(&self) -> (usize, usize, usize, Option<Ieee8021Q>) {
        (self.0, self.1, self.2, None)
    }
}

impl ReceivedFrame for (usize, usize, usize, Option<Ieee8021Q>) {
    fn parts(&self) -> (usize, usize, usize, Option<Ieee8021Q>) {
        *self
    }
}

/// Receive buffers lent to NDIS by index.
pub struct ReceivePool {
    adapter: AdapterHandle,
    /// Freed only when no list is lent (see Drop).
    memory: core::mem::ManuallyDrop<SharedMemory>,
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

// SAFETY: the lists and MDLs are owned by the pool and only touched through `&self` methods
// whose per-buffer `lent` flag gives one user at a time (the driver or NDIS).
unsafe impl Send for ReceivePool {}
// SAFETY: as above.
unsafe impl Sync for ReceivePool {}

/// Pool tag of the framework's NET_BUFFER_LIST pools.
const POOL_TAG: u32 = u32::from_le_bytes(*b"ndrx");

impl ReceivePool {
    /// `count` buffers of `buffer_size` bytes in one shared-memory block.
    pub fn new(
        adapter: AdapterHandle,
        dma: &DmaRegistration,
        buffer_size: usize,
        count: usize,
        passive: &Passive<'_>,
    ) -> Result<Self, Status> {
        let total = buffer_size
            .checked_mul(count)
            .filter(|t| *t > 0 && *t <= u32::MAX as usize)
            .ok_or(Status::INVALID_PARAMETER)?;
        let memory = SharedMemory::allocate(adapter, dma, total, passive)?;
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
            adapter,
            memory: core::mem::ManuallyDrop::new(memory),
            pool,
            buffer_size,
            entries: Vec::new(),
        };
        if this.entries.try_reserve_exact(count).is_err() {
            return Err(Status::RESOURCES);
        }
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

    /// The memory holding the buffers; buffer `i` starts at `i * buffer_size()`.
    pub fn memory(&self) -> &SharedMemory {
        &self.memory
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

    /// Whether buffer `index` is lent to NDIS (indicated and not yet returned).
    pub fn is_lent(&self, index: usize) -> bool {
        self.entries
            .get(index)
            .is_some_and(|e| e.state.load(Ordering::Acquire) == LENT)
    }

    /// Claims buffer `index` for the driver if it is free.
    pub fn claim(&self, index: usize) -> bool {
        self.entries.get(index).is_some_and(|e| {
            e.state
                .compare_exchange(FREE, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
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
            let _ = e
                .state
                .compare_exchange(CLAIMED, FREE, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Indicates `frames` — (buffer index, offset of the frame in the buffer, length) — in one
    /// chain; returns how many were indicated. Each buffer must be claimed. A frame whose
    /// buffer is claimed but which cannot be indicated (it does not fit its buffer, or the
    /// adapter is paused) is handed to `not_indicated` before NDIS sees anything, still
    /// claimed, for the driver to give back to the device; that decision is never re-read
    /// afterwards, because NDIS may return (and the driver re-post) indicated buffers on another
    /// processor at once. Frames naming a buffer out of range or not claimed are driver bugs:
    /// counted as receive errors and ignored.
    pub fn indicate<C: AtMostDispatch>(
        &self,
        adapter: &NdisAdapter,
        frames: &[impl ReceivedFrame],
        irql: &C,
        mut not_indicated: impl FnMut(usize),
    ) -> usize {
        let mut head: *mut sys::NET_BUFFER_LIST = core::ptr::null_mut();
        let mut tail: *mut sys::NET_BUFFER_LIST = core::ptr::null_mut();
        let mut count = 0usize;
        // Counted only if the chain goes up (one pass over the frames).
        let mut per_kind = [(0u64, 0u64); 3];
        for frame in frames {
            let (index, offset, length, ieee8021q) = frame.parts();
            let Some(entry) = self.entries.get(index) else {
                adapter.stats.rx_errors(1);
                continue;
            };
            if entry.state.load(Ordering::Acquire) != CLAIMED {
                adapter.stats.rx_errors(1);
                continue;
            }
            let fits = offset
                .checked_add(length)
                .is_some_and(|end| end <= self.buffer_size && length > 0);
            if !fits {
                adapter.stats.rx_errors(1);
                not_indicated(index);
                continue;
            }
            entry.state.store(LENT, Ordering::Release);
            let mut destination = [0u8; 6];
            self.memory.read_bytes(
                index * self.buffer_size + offset,
                &mut destination[..length.min(6)],
            );
            let kind = &mut per_kind[crate::miniport::cast_kind(&destination)];
            kind.0 += 1;
            kind.1 += length as u64;
            let nbl = entry.nbl;
            // SAFETY: our list, not yet seen by NDIS: the driver side may set its fields.
            unsafe {
                let nb = (*nbl).FirstNetBuffer;
                (*nb).CurrentMdl = entry.mdl;
                (*nb).CurrentMdlOffset = offset as u32;
                (*nb).DataOffset = offset as u32;
                (*nb).DataLength.DataLength = length as u32;
                (*nbl).Next = core::ptr::null_mut();
                (*nbl).Status = sys::NDIS_STATUS_SUCCESS;
                (*nbl).SourceHandle = self.adapter.as_raw();
                // Set (or cleared) for every indication: the list is reused.
                (*nbl).NetBufferListInfo[sys::Ieee8021QNetBufferListInfo] =
                    ieee8021q.map_or(0, Ieee8021Q::to_info) as sys::PVOID;
                if tail.is_null() {
                    head = nbl;
                } else {
                    (*tail).Next = nbl;
                }
            }
            tail = nbl;
            count += 1;
        }
        if count == 0 {
            return 0;
        }
        // Counted under the adapter's lock before NDIS sees them: a pause cannot complete
        // while they are out, and the protocols may return them inside the call.
        if !adapter.begin_indication(count, irql) {
            // Paused: nothing goes up; the buffers go back to the driver, still claimed.
            let mut cur = head;
            while !cur.is_null() {
                // SAFETY: our chain, never handed to NDIS.
                let (next, index) = unsafe { ((*cur).Next, (*cur).MiniportReserved[0] as usize) };
                self.entries[index].state.store(CLAIMED, Ordering::Release);
                adapter.stats.rx_discards(1);
                not_indicated(index);
                cur = next;
            }
            return 0;
        }
        adapter.stats.received_batch(&per_kind);
        let flags = if irql.at_dispatch() {
            sys::NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL
        } else {
            0
        };
        // SAFETY: a chain of `count` of our lists, each marked lent and counted; the flag
        // matches the IRQL the token proves.
        unsafe {
            sys::NdisMIndicateReceiveNetBufferLists(
                self.adapter.as_raw(),
                head,
                sys::NDIS_DEFAULT_PORT_NUMBER,
                count as u32,
                flags,
            )
        };
        count
    }

    /// Hands each returned list of this pool to `returned_buffer` (by buffer index, now free);
    /// lists of other pools stay in `returned`. Allocates nothing (DISPATCH_LEVEL path).
    pub fn take_returned(
        &self,
        returned: &mut Returned<'_>,
        mut returned_buffer: impl FnMut(usize),
    ) {
        let mut keep: *mut sys::NET_BUFFER_LIST = core::ptr::null_mut();
        let mut keep_tail: *mut sys::NET_BUFFER_LIST = core::ptr::null_mut();
        let mut cur = returned.head;
        while !cur.is_null() {
            // SAFETY: NDIS returned a chain of lists the miniport indicated; each is valid.
            let next = unsafe { (*cur).Next };
            // SAFETY: as above.
            let index = unsafe { (*cur).MiniportReserved[0] } as usize;
            let ours = self
                .entries
                .get(index)
                .is_some_and(|e| e.nbl == cur && e.state.load(Ordering::Acquire) == LENT);
            if ours {
                self.entries[index].state.store(FREE, Ordering::Release);
                returned_buffer(index);
            } else {
                // SAFETY: as above; relinking the lists we leave for another pool.
                unsafe {
                    (*cur).Next = core::ptr::null_mut();
                    if keep_tail.is_null() {
                        keep = cur;
                    } else {
                        (*keep_tail).Next = cur;
                    }
                }
                keep_tail = cur;
            }
            cur = next;
        }
        returned.head = keep;
    }
}

impl Drop for ReceivePool {
    fn drop(&mut self) {
        let lent = self
            .entries
            .iter()
            .filter(|e| e.state.load(Ordering::Acquire) == LENT)
            .count();
        // Freeing a list NDIS still holds would be a use-after-free in the protocols: NDIS
        // returns every indicated list before pause completes and before halt, so this is a
        // framework or NDIS contract violation. Leak them rather than free.
        for e in self.entries.drain(..) {
            if e.state.load(Ordering::Acquire) == LENT {
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
            // SAFETY: dropped once, here; no list describes it any more.
            unsafe { core::mem::ManuallyDrop::drop(&mut self.memory) };
        }
        // Otherwise the memory stays allocated too: lent lists' MDLs still describe it.
    }
}

/// The IRQL a send or a return runs at (NDIS may call `MiniportSendNetBufferLists` and
/// `MiniportReturnNetBufferLists` below or at DISPATCH_LEVEL and says which in its flags).
pub enum SendIrql<'a> {
    /// No `*_DISPATCH_LEVEL` flag: PASSIVE_LEVEL or APC_LEVEL.
    BelowDispatch(BelowDispatch<'a>),
    AtDispatch(Dispatch<'a>),
}

/// A chain of receives NDIS handed back (`MiniportReturnNetBufferLists`).
pub struct Returned<'a> {
    head: *mut sys::NET_BUFFER_LIST,
    _call: PhantomData<&'a mut sys::NET_BUFFER_LIST>,
}

impl Returned<'_> {
    pub(crate) fn new(head: *mut sys::NET_BUFFER_LIST) -> Self {
        Returned {
            head,
            _call: PhantomData,
        }
    }

    /// Whether lists remain that no pool claimed (a bug: they were not ours).
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }
}

#[cfg(test)]
mod tests {
    use super::Ieee8021Q;

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
