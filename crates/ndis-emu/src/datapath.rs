//! The datapath as NDIS runs it: NET_BUFFER_LIST pools and MDLs the driver allocates, sends the
//! emulator (as the protocol above) hands the driver and the driver completes, receives the driver
//! indicates and the emulator copies out and returns. Every list, buffer, MDL and pool is
//! accounted; misuse (completing what was not sent, freeing what is indicated, indicating while
//! paused, leaving sends outstanding across pause or halt) bug-checks.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::VecDeque;
use std::ptr::NonNull;

use vm_memory::GuestMemoryBackend;

use ndis_sys as sys;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::bugcheck::{self, rule};
use crate::machine::{self, Callback, Machine, State, on_cpu};
use crate::ndis::{AdapterState, adapter_of_handle};
use crate::offload::{OffloadState, RxChecksumInfo, SendChecksum};
use crate::{AdapterId, Emulator};

const POOL_TAG: usize = 0x4E44_5000_0000;

#[derive(Debug)]
struct PoolRecord {
    lists: usize,
    live: bool,
}

/// The storage of one protocol send: the list, its one buffer, its one MDL and the frame bytes,
/// at a fixed address while the driver owns them. A completed slot is recycled for a later send
/// (as a protocol reuses its NET_BUFFER_LIST pool), so the send path allocates nothing once warm.
struct SendSlot {
    nbl: sys::NET_BUFFER_LIST,
    /// One NET_BUFFER per frame of the list.
    nbs: Vec<sys::NET_BUFFER>,
    /// One MDL per piece of each frame (one per frame, unless the caller asked for fragments).
    mdls: Vec<sys::MDL>,
    /// The frames' bytes, one after the other, in guest-physical memory (so that a device can
    /// reach them by the addresses `NdisMAllocateNetBufferSGList` hands out, as it reaches a
    /// protocol's buffers on a real machine): `frame_len` bytes at `frame_pa`, in an extent of
    /// `frame_cap` bytes (0: none yet).
    frame_pa: u64,
    frame_cap: usize,
    frame_len: usize,
    /// Which send this was, counted over the emulator's life (lists of one call in chain
    /// order): completions may come in any order, this gives the order they were sent in.
    sequence: u64,
}

impl SendSlot {
    /// A new slot, owned through the raw pointer (see [`SlotPtr`]).
    fn allocate() -> SlotPtr {
        let slot = Box::new(SendSlot {
            // SAFETY: plain C structures of integers and pointers, for which all-zero (null
            // pointers, zero counts) is a valid, empty value.
            nbl: unsafe { core::mem::zeroed() },
            nbs: Vec::new(),
            mdls: Vec::new(),
            frame_pa: 0,
            frame_cap: 0,
            frame_len: 0,
            sequence: 0,
        });
        SlotPtr(NonNull::from(Box::leak(slot)))
    }
}

/// A send slot, owned by the emulator through this pointer from `Box::leak` until
/// `DatapathState` drops it. Never moved as a `Box` while the driver holds pointers into it:
/// a moved `Box` would claim unique access again and void the driver's pointers.
#[derive(Clone, Copy, PartialEq, Eq)]
struct SlotPtr(NonNull<SendSlot>);

/// The `NetBufferListInfo` entries a protocol sets on a send list: its
/// `Ieee8021QNetBufferListInfo`, `TcpIpChecksumNetBufferListInfo` and
/// `TcpLargeSendNetBufferListInfo` values, raw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListInfo {
    pub ieee8021q: usize,
    pub checksum: usize,
    pub large_send: usize,
}

impl SlotPtr {
    /// Makes the slot describe `frames` as a fresh list (one NET_BUFFER per frame) followed by
    /// `next`, each frame's bytes in MDLs of `piece` bytes (the last one shorter). Every pointer
    /// the driver gets is derived from the slot pointer, not from a reference that a later
    /// access would void.
    ///
    /// # Safety
    /// The slot is free: no list of it is with the driver.
    unsafe fn fill(
        self,
        dma: &mut crate::dma::DmaState,
        frames: &[&[u8]],
        piece: usize,
        info: ListInfo,
        next: *mut sys::NET_BUFFER_LIST,
    ) -> *mut sys::NET_BUFFER_LIST {
        assert!(
            !frames.is_empty(),
            "a NET_BUFFER_LIST has at least one NET_BUFFER"
        );
        let slot = self.0.as_ptr();
        // SAFETY: the caller's contract: the emulator alone uses the slot now; the vectors are
        // borrowed field by field, and the list is written through a raw place.
        unsafe {
            let total: usize = frames.iter().map(|f| f.len()).sum();
            if (*slot).frame_cap < total.max(1) {
                if (*slot).frame_cap > 0 {
                    dma.release((*slot).frame_pa, (*slot).frame_cap as u64);
                }
                let cap = total.max(1).next_multiple_of(4096);
                (*slot).frame_pa = dma
                    .allocate(cap as u64)
                    .expect("guest memory for the protocol's send buffers");
                (*slot).frame_cap = cap;
            }
            (*slot).frame_len = total;
            let base = dma
                .memory
                .get_host_address(vm_memory::GuestAddress((*slot).frame_pa))
                .expect("inside the region");
            let mut at = 0;
            for f in frames {
                // The region is one mapping: `total` bytes from `base` are inside it.
                core::ptr::copy_nonoverlapping(f.as_ptr(), base.add(at), f.len());
                at += f.len();
            }
            let mdls = &mut (*slot).mdls;
            let nbs = &mut (*slot).nbs;
            mdls.clear();
            nbs.clear();
            // MDLs for every frame, and a buffer per frame holding (for now) the index of its
            // first MDL: the vectors stop moving only once they are complete.
            let mut at = 0;
            for f in frames {
                let first = mdls.len();
                let mut off = 0;
                loop {
                    let n = piece.max(1).min(f.len() - off);
                    mdls.push(new_mdl(base.add(at + off).cast(), n as u32));
                    off += n;
                    if off >= f.len() {
                        break;
                    }
                }
                let mut nb: sys::NET_BUFFER = core::mem::zeroed();
                nb.MdlChain = first as sys::PMDL;
                nb.DataLength.stDataLength = f.len();
                nbs.push(nb);
                at += f.len();
            }
            let (mdl, nb) = (mdls.as_mut_ptr(), nbs.as_mut_ptr());
            let (mdl_count, nb_count) = (mdls.len(), nbs.len());
            for i in 0..nb_count {
                let first = (*nb.add(i)).MdlChain as usize;
                let end = if i + 1 < nb_count {
                    (*nb.add(i + 1)).MdlChain as usize
                } else {
                    mdl_count
                };
                for k in first..end - 1 {
                    (*mdl.add(k)).Next = mdl.add(k + 1);
                }
                (*nb.add(i)).MdlChain = mdl.add(first);
                (*nb.add(i)).CurrentMdl = mdl.add(first);
                (*nb.add(i)).Next = if i + 1 < nb_count {
                    nb.add(i + 1)
                } else {
                    core::ptr::null_mut()
                };
            }
            let nbl = core::ptr::addr_of_mut!((*slot).nbl);
            nbl.write(core::mem::zeroed());
            (*nbl).FirstNetBuffer = nb;
            (*nbl).Next = next;
            (*nbl).NetBufferListInfo[sys::Ieee8021QNetBufferListInfo] =
                info.ieee8021q as sys::PVOID;
            (*nbl).NetBufferListInfo[sys::TcpIpChecksumNetBufferListInfo] =
                info.checksum as sys::PVOID;
            (*nbl).NetBufferListInfo[sys::TcpLargeSendNetBufferListInfo] =
                info.large_send as sys::PVOID;
            (*nbl).SourceHandle = 0x4E44_5300_0000usize as sys::NDIS_HANDLE;
            nbl
        }
    }

    /// (Next, Status) of the slot's list, which the driver handed back.
    fn completion(self) -> (*mut sys::NET_BUFFER_LIST, sys::NDIS_STATUS) {
        let nbl = self.0.as_ptr();
        // SAFETY: a live slot; the driver completed its list, so nobody writes it now.
        unsafe { ((*nbl).nbl.Next, (*nbl).nbl.Status) }
    }

    /// Which send the slot carries (see [`SendSlot::sequence`]).
    fn sequence(self) -> u64 {
        // SAFETY: as for `completion`.
        unsafe { (*self.0.as_ptr()).sequence }
    }

    fn set_sequence(self, sequence: u64) {
        // SAFETY: a live slot the emulator is filling: the driver has not seen its list yet.
        unsafe { (*self.0.as_ptr()).sequence = sequence }
    }

    /// The list's `TcpLargeSendNetBufferListInfo` entry as the driver left it (for a large send:
    /// its completion information).
    fn large_send_info(self) -> usize {
        // SAFETY: as for `completion`.
        unsafe {
            (*self.0.as_ptr()).nbl.NetBufferListInfo[sys::TcpLargeSendNetBufferListInfo] as usize
        }
    }

    /// A copy of the frame bytes.
    fn take_frame(self, dma: &crate::dma::DmaState) -> Vec<u8> {
        // SAFETY: a live, completed slot: the emulator alone uses it.
        let (pa, len) = unsafe { ((*self.0.as_ptr()).frame_pa, (*self.0.as_ptr()).frame_len) };
        let mut out = vec![0; len];
        if len > 0 {
            vm_memory::Bytes::read_slice(&dma.memory, &mut out, vm_memory::GuestAddress(pa))
                .expect("inside the region");
        }
        out
    }

    /// The slot's NET_BUFFERs.
    fn buffers(self) -> impl Iterator<Item = usize> {
        // SAFETY: a live slot; the vector is not resized while its list is out.
        let nbs = unsafe { &(*self.0.as_ptr()).nbs };
        let base = nbs.as_ptr() as usize;
        (0..nbs.len()).map(move |i| base + i * core::mem::size_of::<sys::NET_BUFFER>())
    }

    /// Frees the slot.
    ///
    /// # Safety
    /// Called once, when nothing will use the slot again.
    unsafe fn free(self) {
        // SAFETY: made by `Box::leak` in `SendSlot::allocate`; the caller's contract.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// The 802.1Q information of a received list: (priority, VLAN identifier).
pub type Ieee8021Q = (u8, u16);

/// A list the emulator sent: its slot stays here until the driver completes it.
struct SendRecord {
    adapter: usize,
    slot: SlotPtr,
}

#[derive(Default)]
pub(crate) struct DatapathState {
    pools: HashMap<usize, PoolRecord>,
    /// Lists allocated from driver pools: list -> (pool, buffer).
    lists: HashMap<usize, (usize, *mut sys::NET_BUFFER)>,
    mdls: HashSet<usize>,
    sends: HashMap<usize, SendRecord>,
    /// The NET_BUFFERs of the lists in `sends`: buffer -> adapter.
    sent_buffers: HashMap<usize, usize>,
    /// Completed sends, with the status the driver gave each list.
    completed: Vec<(SlotPtr, sys::NDIS_STATUS)>,
    /// Slots ready for reuse, oldest first: a list just completed is the last to be reused, so
    /// a driver completing it twice is caught rather than taken for a new send.
    free_slots: VecDeque<SlotPtr>,
    /// Sends made so far (the next one's `SendSlot::sequence`).
    sent: u64,
    /// Frames indicated, per adapter, until the test takes them: (frame, 802.1Q information,
    /// checksum information) of each indicated buffer.
    received: Vec<Vec<(Vec<u8>, usize, usize)>>,
    /// Count indicated frames instead of copying them (see
    /// [`Emulator::set_count_received_only`]; one switch for every adapter), and the counts per
    /// adapter.
    count_only: bool,
    received_counts: Vec<usize>,
    /// The protocol returns indicated lists from inside the indication (see
    /// [`Emulator::set_returns_during_indication`]).
    returns_during_indication: bool,
    /// Indicated lists the protocol still holds: (adapter, list).
    held: Vec<(usize, usize)>,
}

impl Drop for DatapathState {
    fn drop(&mut self) {
        let slots = self.sends.drain().map(|(_, r)| r.slot);
        let slots = slots.chain(self.completed.drain(..).map(|(s, _)| s));
        for slot in slots.chain(self.free_slots.drain(..)).collect::<Vec<_>>() {
            // SAFETY: the emulator is going away with its state: no driver code runs again, and
            // each slot is in exactly one of the three collections.
            unsafe { slot.free() };
        }
    }
}

pub(crate) fn nbl_layout() -> Layout {
    Layout::new::<sys::NET_BUFFER_LIST>()
}

fn nb_layout() -> Layout {
    Layout::new::<sys::NET_BUFFER>()
}

fn zeroed<T>(layout: Layout) -> *mut T {
    // SAFETY: the layouts are of non-zero-sized structs.
    let p = unsafe { alloc_zeroed(layout) };
    assert!(!p.is_null(), "host out of memory");
    p.cast()
}

fn pool_id(st: &State, handle: sys::NDIS_HANDLE, function: &str) -> usize {
    let h = handle as usize;
    if h & !0xFF_FFFF == POOL_TAG && st.datapath.pools.get(&h).is_some_and(|p| p.live) {
        return h;
    }
    bugcheck::raise(
        bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
        [rule::INVALID_HANDLE, h, 0, 0],
        format!("{function}: {h:#x} is not a live NET_BUFFER_LIST pool of this driver"),
    )
}

/// Copies the bytes a NET_BUFFER describes (its MDL chain from DataOffset, DataLength bytes).
///
/// # Safety
/// `nb` is a valid NET_BUFFER whose MDLs describe readable memory.
unsafe fn buffer_bytes(nb: *const sys::NET_BUFFER) -> Vec<u8> {
    // SAFETY: the caller's contract.
    let (mut mdl, mut skip, mut left) = unsafe {
        let nb = &*nb;
        (
            nb.MdlChain,
            nb.DataOffset as usize,
            nb.DataLength.DataLength as usize,
        )
    };
    let mut out = Vec::with_capacity(left);
    while left > 0 && !mdl.is_null() {
        // SAFETY: a valid MDL in the chain.
        let m = unsafe { &*mdl };
        let count = m.ByteCount as usize;
        if skip >= count {
            skip -= count;
        } else {
            let take = (count - skip).min(left);
            // SAFETY: the MDL maps `count` readable bytes at MappedSystemVa.
            out.extend_from_slice(unsafe {
                std::slice::from_raw_parts(m.MappedSystemVa.cast::<u8>().add(skip), take)
            });
            left -= take;
            skip = 0;
        }
        mdl = m.Next;
    }
    if left > 0 {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::DATAPATH, nb as usize, left, 0],
            format!("a NET_BUFFER describes {left} more bytes than its MDL chain holds"),
        );
    }
    out
}

pub(crate) unsafe fn ndis_allocate_net_buffer_list_pool(
    handle: sys::NDIS_HANDLE,
    params: *const sys::NET_BUFFER_LIST_POOL_PARAMETERS,
) -> sys::NDIS_HANDLE {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisAllocateNetBufferListPool");
    crate::ndis::check_ndis_handle(&st, handle, "NdisAllocateNetBufferListPool");
    // SAFETY: the caller passes readable parameters.
    let p = unsafe { *params };
    if p.Header.Type != sys::NDIS_OBJECT_TYPE_DEFAULT
        || p.Header.Revision != sys::NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1
        || p.Header.Size < sys::NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1
    {
        crate::ndis::header_bugcheck(
            "NdisAllocateNetBufferListPool",
            "pool parameters",
            p.Header,
            "0x80 / 1 / 16",
        );
    }
    if p.fAllocateNetBuffer == 0 || p.ContextSize != 0 || p.DataSize != 0 {
        panic!(
            "ndis-emu: NET_BUFFER_LIST pools with data, contexts or without buffers are not emulated yet"
        );
    }
    if st.fallible("NdisAllocateNetBufferListPool") {
        return core::ptr::null_mut();
    }
    let id = POOL_TAG | (st.datapath.pools.len() + 1);
    st.datapath.pools.insert(
        id,
        PoolRecord {
            lists: 0,
            live: true,
        },
    );
    id as sys::NDIS_HANDLE
}

pub(crate) unsafe fn ndis_free_net_buffer_list_pool(pool: sys::NDIS_HANDLE) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisFreeNetBufferListPool");
    let id = pool_id(&st, pool, "NdisFreeNetBufferListPool");
    let lists = st.datapath.pools[&id].lists;
    if lists > 0 {
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::DATAPATH, id, lists, 0],
            format!("NdisFreeNetBufferListPool with {lists} list(s) of the pool still allocated"),
        );
    }
    st.datapath.pools.get_mut(&id).unwrap().live = false;
}

pub(crate) unsafe fn ndis_allocate_net_buffer_and_net_buffer_list(
    pool: sys::NDIS_HANDLE,
    context_size: u16,
    _context_backfill: u16,
    mdl_chain: sys::PMDL,
    data_offset: u32,
    data_length: usize,
) -> *mut sys::NET_BUFFER_LIST {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisAllocateNetBufferAndNetBufferList");
    let id = pool_id(&st, pool, "NdisAllocateNetBufferAndNetBufferList");
    if context_size != 0 {
        panic!("ndis-emu: NET_BUFFER_LIST contexts are not emulated yet");
    }
    if st.fallible("NdisAllocateNetBufferAndNetBufferList") {
        return core::ptr::null_mut();
    }
    let nbl: *mut sys::NET_BUFFER_LIST = zeroed(nbl_layout());
    let nb: *mut sys::NET_BUFFER = zeroed(nb_layout());
    // SAFETY: both were just allocated, zeroed, with their own layouts.
    unsafe {
        (*nb).MdlChain = mdl_chain;
        (*nb).CurrentMdl = mdl_chain;
        (*nb).DataOffset = data_offset;
        (*nb).CurrentMdlOffset = data_offset;
        (*nb).DataLength.stDataLength = data_length;
        (*nb).NdisPoolHandle = pool;
        (*nbl).FirstNetBuffer = nb;
        (*nbl).NdisPoolHandle = pool;
    }
    st.datapath.pools.get_mut(&id).unwrap().lists += 1;
    st.datapath.lists.insert(nbl as usize, (id, nb));
    nbl
}

pub(crate) unsafe fn ndis_free_net_buffer_list(nbl: *mut sys::NET_BUFFER_LIST) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisFreeNetBufferList");
    if st.datapath.held.iter().any(|&(_, l)| l == nbl as usize) {
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::DATAPATH, nbl as usize, 0, 0],
            "NdisFreeNetBufferList on a list indicated up and not yet returned by MiniportReturnNetBufferLists",
        );
    }
    let Some((pool, nb)) = st.datapath.lists.remove(&(nbl as usize)) else {
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::INVALID_HANDLE, nbl as usize, 0, 0],
            format!(
                "NdisFreeNetBufferList({nbl:p}): not a list this driver allocated, or already freed"
            ),
        );
    };
    if let Some(p) = st.datapath.pools.get_mut(&pool) {
        p.lists -= 1;
    }
    // SAFETY: allocated above with these layouts and freed once (removed from `lists`).
    unsafe {
        dealloc(nb.cast(), nb_layout());
        dealloc(nbl.cast(), nbl_layout());
    }
}

pub(crate) unsafe fn ndis_allocate_mdl(
    handle: sys::NDIS_HANDLE,
    va: sys::PVOID,
    length: u32,
) -> sys::PMDL {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisAllocateMdl");
    crate::ndis::check_ndis_handle(&st, handle, "NdisAllocateMdl");
    if st.fallible("NdisAllocateMdl") {
        return core::ptr::null_mut();
    }
    let mdl = Box::into_raw(Box::new(new_mdl(va, length)));
    st.datapath.mdls.insert(mdl as usize);
    mdl
}

fn new_mdl(va: sys::PVOID, length: u32) -> sys::MDL {
    let address = va as usize;
    let pages = ((address & 0xFFF) + length as usize).div_ceil(0x1000);
    sys::MDL {
        Next: core::ptr::null_mut(),
        Size: (0x30 + 8 * pages) as i16,
        MdlFlags: sys::MDL_SOURCE_IS_NONPAGED_POOL | sys::MDL_MAPPED_TO_SYSTEM_VA,
        _Reserved: 0,
        Process: core::ptr::null_mut(),
        MappedSystemVa: va,
        StartVa: (address & !0xFFF) as sys::PVOID,
        ByteCount: length,
        ByteOffset: (address & 0xFFF) as u32,
    }
}

pub(crate) unsafe fn ndis_free_mdl(mdl: sys::PMDL) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisFreeMdl");
    if !st.datapath.mdls.remove(&(mdl as usize)) {
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::INVALID_HANDLE, mdl as usize, 0, 0],
            format!("NdisFreeMdl({mdl:p}): not an MDL this driver allocated, or already freed"),
        );
    }
    // SAFETY: allocated by ndis_allocate_mdl as a Box, freed once.
    drop(unsafe { Box::from_raw(mdl) });
}

/// Dispatch IRQL tracking: a set `*_DISPATCH_LEVEL` flag promises the caller runs at
/// DISPATCH_LEVEL; a clear one only says "at most DISPATCH_LEVEL, not known" (a caller that does
/// not know its IRQL clears it), which is allowed at any IRQL the function allows.
fn check_dispatch_flag(st: &State, flags: u32, bit: u32, function: &str) {
    let irql = st.irql();
    if flags & bit != 0 && irql != sys::DISPATCH_LEVEL {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::IRQL, irql as usize, flags as usize, 0],
            format!(
                "{function}: the DISPATCH_LEVEL flag ({bit:#x}) is set but the caller runs at IRQL {irql} \
                 ({}). Set it only when the IRQL is known to be DISPATCH_LEVEL (e.g. the send \
                 handler's NDIS_SEND_FLAGS_DISPATCH_LEVEL was set, a DPC, a spin lock held); clear it \
                 when unsure.",
                machine::irql_name(irql)
            ),
        );
    }
}

/// How the protocol above calls `MiniportSendNetBufferLists` and `MiniportReturnNetBufferLists`
/// (`Config::send_irql`, [`Emulator::set_send_irql`]). NDIS's Dispatch IRQL tracking: a set
/// `NDIS_SEND_FLAGS_DISPATCH_LEVEL` / `NDIS_RETURN_FLAGS_DISPATCH_LEVEL` means the caller is at
/// DISPATCH_LEVEL; a clear one means "at most DISPATCH_LEVEL, not known", which a driver must
/// handle at PASSIVE_LEVEL and at DISPATCH_LEVEL alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendIrql {
    /// At PASSIVE_LEVEL, the flag clear.
    Passive,
    /// At DISPATCH_LEVEL with the flag set (the default: what a protocol at DISPATCH_LEVEL that
    /// knows it does).
    #[default]
    DispatchFlagged,
    /// At DISPATCH_LEVEL with the flag clear: a caller that does not track its IRQL.
    DispatchUnflagged,
}

impl SendIrql {
    fn irql(self) -> u8 {
        match self {
            SendIrql::Passive => sys::PASSIVE_LEVEL,
            SendIrql::DispatchFlagged | SendIrql::DispatchUnflagged => sys::DISPATCH_LEVEL,
        }
    }

    /// The flags word: `bit` when flagged.
    fn flags(self, bit: u32) -> u32 {
        if self == SendIrql::DispatchFlagged {
            bit
        } else {
            0
        }
    }
}

pub(crate) unsafe fn ndis_m_send_net_buffer_lists_complete(
    handle: sys::NDIS_HANDLE,
    mut nbl: *mut sys::NET_BUFFER_LIST,
    flags: u32,
) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisMSendNetBufferListsComplete");
    check_dispatch_flag(
        &st,
        flags,
        sys::NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL,
        "NdisMSendNetBufferListsComplete",
    );
    let a = adapter_of_handle(&st, handle, "NdisMSendNetBufferListsComplete");
    while !nbl.is_null() {
        let Some(record) = st
            .datapath
            .sends
            .remove(&(nbl as usize))
            .filter(|r| r.adapter == a)
        else {
            drop(st);
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::DATAPATH, nbl as usize, a, 0],
                format!(
                    "NdisMSendNetBufferListsComplete({nbl:p}): not a list NDIS sent to adapter {a}, or completed twice"
                ),
            );
        };
        // The driver handed back a list the emulator built (found in `sends`): read it through
        // the record that owns it.
        let (next, status) = record.slot.completion();
        for nb in record.slot.buffers() {
            st.datapath.sent_buffers.remove(&nb);
            if st.dma.sg.maps(nb) {
                drop(st);
                bugcheck::raise(
                    bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [rule::DMA, nbl as usize, nb, a],
                    format!(
                        "NdisMSendNetBufferListsComplete({nbl:p}) on adapter {a}: its NET_BUFFER \
                         {nb:#x} still has a scatter/gather list (NdisMFreeNetBufferSGList before \
                         completing the send)"
                    ),
                );
            }
        }
        st.datapath.completed.push((record.slot, status));
        nbl = next;
    }
}

pub(crate) unsafe fn ndis_m_indicate_receive_net_buffer_lists(
    handle: sys::NDIS_HANDLE,
    nbls: *mut sys::NET_BUFFER_LIST,
    _port: sys::NDIS_PORT_NUMBER,
    count: u32,
    flags: u32,
) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisMIndicateReceiveNetBufferLists");
    check_dispatch_flag(
        &st,
        flags,
        sys::NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL,
        "NdisMIndicateReceiveNetBufferLists",
    );
    let a = adapter_of_handle(&st, handle, "NdisMIndicateReceiveNetBufferLists");
    let device_state = st.ndis.adapters[a].device_state;
    if device_state != sys::NdisDeviceStateD0 {
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::LOW_POWER_ACCESS, a, device_state as usize, 0],
            format!(
                "receives indicated on adapter {a} in D{}: nothing is indicated out of D0",
                device_state.saturating_sub(1)
            ),
        );
    }
    if st.ndis.adapters[a].state != AdapterState::Running {
        let state = st.ndis.adapters[a].state;
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::CALL_CONTEXT, a, 0, 0],
            format!(
                "receives indicated on adapter {a} while it is {state:?}: indicate only between restart and pause"
            ),
        );
    }
    let mut seen = 0u32;
    let mut nbl = nbls;
    while !nbl.is_null() {
        if !st.datapath.lists.contains_key(&(nbl as usize)) {
            drop(st);
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::INVALID_HANDLE, nbl as usize, 0, 0],
                format!(
                    "NdisMIndicateReceiveNetBufferLists({nbl:p}): not a list allocated from this driver's pools"
                ),
            );
        }
        // SAFETY: a live list of this driver, with one valid buffer chain.
        let mut nb = unsafe { (*nbl).FirstNetBuffer };
        // SAFETY: a live list of this driver.
        let (ieee8021q, checksum, hash_value, hash_info) = unsafe {
            (
                (*nbl).NetBufferListInfo[sys::Ieee8021QNetBufferListInfo],
                (*nbl).NetBufferListInfo[sys::TcpIpChecksumNetBufferListInfo],
                (*nbl).NetBufferListInfo[sys::NetBufferListHashValue] as usize,
                (*nbl).NetBufferListInfo[sys::NetBufferListHashInfo] as usize,
            )
        };
        while !nb.is_null() {
            if st.datapath.count_only {
                let counts = &mut st.datapath.received_counts;
                if counts.len() <= a {
                    counts.resize(a + 1, 0);
                }
                counts[a] += 1;
                // SAFETY: as below.
                nb = unsafe { (*nb).Next };
                continue;
            }
            // SAFETY: a buffer of the list, describing the driver's receive memory.
            let frame = unsafe { buffer_bytes(nb) };
            let cpu = st.cpu;
            if let Some(r) = st.rss.adapters.get_mut(&a) {
                r.check(cpu, &frame, hash_value, hash_info);
            }
            let received = &mut st.datapath.received;
            if received.len() <= a {
                received.resize_with(a + 1, Vec::new);
            }
            received[a].push((frame, ieee8021q as usize, checksum as usize));
            // SAFETY: as above.
            nb = unsafe { (*nb).Next };
        }
        if flags & sys::NDIS_RECEIVE_FLAGS_RESOURCES == 0 {
            st.datapath.held.push((a, nbl as usize));
        }
        seen += 1;
        // SAFETY: as above.
        nbl = unsafe { (*nbl).Next };
    }
    if seen != count {
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::DATAPATH, count as usize, seen as usize, 0],
            format!(
                "NdisMIndicateReceiveNetBufferLists: NumberOfNetBufferLists is {count} but the chain has {seen}"
            ),
        );
    }
    let inline =
        st.datapath.returns_during_indication && flags & sys::NDIS_RECEIVE_FLAGS_RESOURCES == 0;
    drop(st);
    if inline {
        // The protocol took the frames and hands the lists straight back: the driver's return
        // handler runs nested inside its own indication, on the same processor.
        return_held(&m, a);
    }
}

pub(crate) unsafe fn ndis_get_data_buffer(
    nb: *mut sys::NET_BUFFER,
    bytes: u32,
    storage: sys::PVOID,
    align_multiple: u32,
    align_offset: u32,
) -> sys::PVOID {
    // SAFETY: the caller passes a valid NET_BUFFER.
    let (mdl, offset, length) = unsafe {
        (
            (*nb).CurrentMdl,
            (*nb).CurrentMdlOffset as usize,
            (*nb).DataLength.DataLength,
        )
    };
    if bytes > length || mdl.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: a valid MDL of the buffer.
    let m = unsafe { &*mdl };
    // SAFETY: offset is inside the current MDL (NDIS keeps it so).
    let here = unsafe { m.MappedSystemVa.cast::<u8>().add(offset) };
    let aligned = align_multiple <= 1
        || (here as usize)
            .wrapping_sub(align_offset as usize)
            .is_multiple_of(align_multiple as usize);
    if m.ByteCount as usize - offset >= bytes as usize && aligned {
        return here.cast();
    }
    if storage.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: a temporary view of the same buffer from its current position.
    let view = sys::NET_BUFFER {
        MdlChain: mdl,
        DataOffset: offset as u32,
        DataLength: sys::NET_BUFFER_DATA_LENGTH {
            stDataLength: bytes as usize,
        },
        ..unsafe { core::ptr::read(nb) }
    };
    // SAFETY: `view` describes `bytes` bytes of the chain (checked against DataLength).
    let data = unsafe { buffer_bytes(&view) };
    // SAFETY: the caller's storage holds at least `bytes` bytes.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), storage.cast::<u8>(), data.len()) };
    storage
}

impl Emulator {
    /// The protocol above sends `frames` to a running adapter: one NET_BUFFER_LIST per frame,
    /// chained, handed to `MiniportSendNetBufferLists` at DISPATCH_LEVEL. The driver completes
    /// them with `NdisMSendNetBufferListsComplete`; see [`Emulator::send_completions`].
    pub fn send(&self, adapter: AdapterId, frames: &[&[u8]]) {
        self.send_fragmented(adapter, frames, usize::MAX)
    }

    /// As [`send`](Self::send) with several frames per list: each entry of `lists` is one
    /// NET_BUFFER_LIST whose NET_BUFFERs carry its frames. NDIS has one status per list, so
    /// [`send_completions`](Self::send_completions) gives a list's frames concatenated.
    pub fn send_lists(&self, adapter: AdapterId, lists: &[&[&[u8]]]) {
        self.send_chain(adapter, lists, usize::MAX, 0)
    }

    /// As [`send`](Self::send), every list carrying 802.1Q information (its
    /// `Ieee8021QNetBufferListInfo` entry: `priority` 0..=7, `vlan_id` 0..=4095), as a protocol
    /// asking the miniport to tag the frames.
    pub fn send_tagged(&self, adapter: AdapterId, frames: &[&[u8]], priority: u8, vlan_id: u16) {
        let info = usize::from(priority & 7) | (usize::from(vlan_id & 0x0FFF) << 4);
        self.send_one_per_list(adapter, frames, usize::MAX, info)
    }

    /// As [`send`](Self::send), each frame's bytes spread over MDLs of `piece` bytes (the last
    /// one shorter): the layout a protocol produces when it prepends headers in their own
    /// buffers, which a driver must handle as well as a contiguous frame.
    pub fn send_fragmented(&self, adapter: AdapterId, frames: &[&[u8]], piece: usize) {
        self.send_one_per_list(adapter, frames, piece, 0)
    }

    /// As [`send`](Self::send), with the protocol asking the miniport for `request`'s
    /// checksums, the way TCP/IP does: each frame (correct, as it should leave the wire; a
    /// whole TCP or UDP segment for a transport checksum, any IPv4 packet, fragments and ICMP
    /// included, for the header checksum alone) goes down with its IPv4 header checksum zeroed
    /// and the pseudo-header sum in its TCP/UDP checksum field, and the list's checksum
    /// information says what to compute. Like TCP/IP, this asks only for tasks the miniport has on
    /// ([`offload`](Self::offload)); anything else is a test error (a panic naming the frame).
    pub fn send_checksummed(&self, adapter: AdapterId, frames: &[&[u8]], request: SendChecksum) {
        self.send_as_tcpip(adapter, frames, usize::MAX, |f, o| {
            let (frame, checksum) = crate::offload::prepare(f, request, &o.current)?;
            let info = ListInfo {
                checksum,
                ..ListInfo::default()
            };
            Ok((frame, info))
        })
    }

    /// As [`send`](Self::send), each frame a large send (LSOv2) with segment payload `mss`, the
    /// way TCP/IP hands one down: the frame (a correct TCP segment over IP, as it would be
    /// before segmentation) with its IP lengths and IPv4 header checksum zeroed and the
    /// pseudo-header sum without the TCP length in its checksum field, and the list's
    /// `TcpLargeSendNetBufferListInfo` (`LsoV2Transmit`). Like TCP/IP, this asks only within the
    /// LSO the miniport reported ([`offload`](Self::offload)): on for the IP version, payload
    /// within `MaxOffLoadSize`, at least `MinSegmentCount` segments; anything else panics,
    /// naming the frame. [`send_completions_large`](Self::send_completions_large) gives what the
    /// driver wrote back.
    pub fn send_large(&self, adapter: AdapterId, frames: &[&[u8]], mss: u32) {
        self.send_large_in_pieces(adapter, frames, mss, usize::MAX)
    }

    /// As [`send_large`](Self::send_large), each frame in MDLs of `piece` bytes (TCP/IP keeps a
    /// large send's headers and payload in separate buffers).
    pub fn send_large_in_pieces(
        &self,
        adapter: AdapterId,
        frames: &[&[u8]],
        mss: u32,
        piece: usize,
    ) {
        self.send_as_tcpip(adapter, frames, piece, |f, o| {
            let (frame, large_send) = crate::offload::prepare_large_send(f, mss, &o.current_lso)?;
            let info = ListInfo {
                large_send,
                ..ListInfo::default()
            };
            Ok((frame, info))
        })
    }

    /// Each frame as TCP/IP hands it down after `prepare` (given the offload the miniport
    /// reported; Err: why TCP/IP would not ask, a test error naming the frame), one list each,
    /// in MDLs of `piece` bytes.
    fn send_as_tcpip(
        &self,
        adapter: AdapterId,
        frames: &[&[u8]],
        piece: usize,
        prepare: impl Fn(&[u8], &OffloadState) -> Result<(Vec<u8>, ListInfo), String>,
    ) {
        let offload = self
            .offload(adapter)
            .expect("the adapter reported no task offload");
        let prepared: Vec<(Vec<u8>, ListInfo)> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                prepare(f, &offload)
                    .unwrap_or_else(|e| panic!("TCP/IP would not offload frame {i}: {e}"))
            })
            .collect();
        self.send_prepared_in_pieces(adapter, &prepared, piece)
    }

    /// As [`send`](Self::send), each list with the `TcpLargeSendNetBufferListInfo` value given,
    /// whatever the frame or the miniport's LSO: for a misbehaving protocol, or a large send
    /// that raced an OID switching LSO off (which NDIS says the miniport must drop).
    pub fn send_with_large_send_info(&self, adapter: AdapterId, frames: &[(&[u8], u32)]) {
        self.send_with_info(adapter, frames, |info| ListInfo {
            large_send: info as usize,
            ..ListInfo::default()
        })
    }

    /// As [`send_completions`](Self::send_completions), with each list's
    /// `TcpLargeSendNetBufferListInfo` as the driver completed it (for a large send it must
    /// hold `LsoV2TransmitComplete`: type V2, value 1, the rest zero).
    pub fn send_completions_large(&self) -> Vec<(Vec<u8>, sys::NDIS_STATUS, usize)> {
        self.take_completed(|slot, status, dma| {
            (slot.take_frame(dma), status, slot.large_send_info())
        })
    }

    /// As [`send_completions_large`](Self::send_completions_large), in the order the lists were
    /// sent rather than completed (a miniport may complete them in any order: a mapped send
    /// when the device is done with it, after lists of the same call it copied), for a test
    /// that checks each list's outcome against what it sent.
    pub fn send_completions_large_in_sent_order(&self) -> Vec<(Vec<u8>, sys::NDIS_STATUS, usize)> {
        let mut done = self.take_completed(|slot, status, dma| {
            (
                slot.sequence(),
                (slot.take_frame(dma), status, slot.large_send_info()),
            )
        });
        done.sort_by_key(|(sequence, _)| *sequence);
        done.into_iter().map(|(_, d)| d).collect()
    }

    /// As [`send`](Self::send), each list with the checksum information given, whatever the
    /// frame holds: for the misbehaving protocol (a request its frame does not match), which a
    /// miniport must fail rather than send wrong.
    pub fn send_with_checksum_info(&self, adapter: AdapterId, frames: &[(&[u8], u32)]) {
        self.send_with_info(adapter, frames, |info| ListInfo {
            checksum: info as usize,
            ..ListInfo::default()
        })
    }

    /// As [`send_lists`](Self::send_lists), every list with the checksum information `info`
    /// (`send_with_checksum_info` for lists of several frames).
    pub fn send_lists_with_checksum_info(&self, adapter: AdapterId, lists: &[&[&[u8]]], info: u32) {
        self.send_chain_with(adapter, lists, usize::MAX, |_| ListInfo {
            checksum: info as usize,
            ..ListInfo::default()
        })
    }

    /// One call of the send handler with `lists` chained, each list with the information given
    /// with it whatever its frames hold (a protocol that may be wrong: the fuzz target of the
    /// send path), each frame's bytes in MDLs of `piece` bytes.
    pub fn send_lists_with_info(
        &self,
        adapter: AdapterId,
        lists: &[(&[&[u8]], ListInfo)],
        piece: usize,
    ) {
        let frames: Vec<&[&[u8]]> = lists.iter().map(|(f, _)| *f).collect();
        self.send_chain_with(adapter, &frames, piece, |i| lists[i].1)
    }

    /// One list per frame, its information made from the value given with it.
    fn send_with_info(
        &self,
        adapter: AdapterId,
        frames: &[(&[u8], u32)],
        info: impl Fn(u32) -> ListInfo,
    ) {
        let lists: Vec<(Vec<u8>, ListInfo)> =
            frames.iter().map(|(f, v)| (f.to_vec(), info(*v))).collect();
        self.send_prepared_in_pieces(adapter, &lists, usize::MAX)
    }

    fn send_prepared_in_pieces(
        &self,
        adapter: AdapterId,
        frames: &[(Vec<u8>, ListInfo)],
        piece: usize,
    ) {
        let lists: Vec<[&[u8]; 1]> = frames.iter().map(|(f, _)| [f.as_slice()]).collect();
        let lists: Vec<&[&[u8]]> = lists.iter().map(|l| l.as_slice()).collect();
        self.send_chain_with(adapter, &lists, piece, |i| frames[i].1)
    }

    /// One list per frame, every list with the same 802.1Q information entry.
    fn send_one_per_list(&self, adapter: AdapterId, frames: &[&[u8]], piece: usize, info: usize) {
        let lists: Vec<[&[u8]; 1]> = frames.iter().map(|f| [*f]).collect();
        let lists: Vec<&[&[u8]]> = lists.iter().map(|l| l.as_slice()).collect();
        self.send_chain(adapter, &lists, piece, info)
    }

    fn send_chain(&self, adapter: AdapterId, lists: &[&[&[u8]]], piece: usize, ieee8021q: usize) {
        self.send_chain_with(adapter, lists, piece, |_| ListInfo {
            ieee8021q,
            ..ListInfo::default()
        })
    }

    /// One call of the send handler with `lists` chained, list `i` carrying `info(i)`.
    fn send_chain_with(
        &self,
        adapter: AdapterId,
        lists: &[&[&[u8]]],
        piece: usize,
        info: impl Fn(usize) -> ListInfo,
    ) {
        let (handler, context, cpu, first, how) = {
            let mut st = self.machine.st();
            let how = st.config.send_irql;
            let a = adapter.0;
            assert_eq!(
                st.ndis.adapters[a].state,
                AdapterState::Running,
                "send only to a running adapter"
            );
            let handler = st
                .ndis
                .driver
                .as_ref()
                .and_then(|d| d.chars.SendNetBufferListsHandler)
                .expect("send handler");
            let context = st.ndis.adapters[a].context.unwrap_or(0);
            let mut first: *mut sys::NET_BUFFER_LIST = core::ptr::null_mut();
            let base = st.datapath.sent;
            st.datapath.sent += lists.len() as u64;
            for (i, frames) in lists.iter().enumerate().rev() {
                let slot = st
                    .datapath
                    .free_slots
                    .pop_front()
                    .unwrap_or_else(SendSlot::allocate);
                // SAFETY: a free slot (new, or completed and taken out of `completed`).
                first = unsafe { slot.fill(&mut st.dma, frames, piece, info(i), first) };
                slot.set_sequence(base + i as u64);
                for nb in slot.buffers() {
                    st.datapath.sent_buffers.insert(nb, a);
                }
                st.datapath
                    .sends
                    .insert(first as usize, SendRecord { adapter: a, slot });
            }
            (handler, context, st.cpu, first, how)
        };
        on_cpu(
            &self.machine,
            cpu,
            how.irql(),
            Callback::Send(adapter.0),
            || {
                // SAFETY: the driver's send handler with its adapter context and a chain the emulator
                // built, at the IRQL the flag allows (set: DISPATCH_LEVEL; clear: at most that).
                unsafe {
                    handler(
                        context as sys::NDIS_HANDLE,
                        first,
                        sys::NDIS_DEFAULT_PORT_NUMBER,
                        how.flags(sys::NDIS_SEND_FLAGS_DISPATCH_LEVEL),
                    )
                }
            },
        );
        machine::run_dpcs(&self.machine);
    }

    /// Sends the driver completed since the last call: (frame, NET_BUFFER_LIST status).
    pub fn send_completions(&self) -> Vec<(Vec<u8>, sys::NDIS_STATUS)> {
        self.take_completed(|slot, status, dma| (slot.take_frame(dma), status))
    }

    /// As [`send_completions`](Self::send_completions), statuses only: for a caller that does
    /// not need the frames back (a benchmark's send loop), nothing is copied or allocated per
    /// list.
    pub fn send_statuses(&self) -> Vec<sys::NDIS_STATUS> {
        self.take_completed(|_, status, _| status)
    }

    /// Maps each completed send, then recycles its slot.
    fn take_completed<T>(
        &self,
        mut f: impl FnMut(SlotPtr, sys::NDIS_STATUS, &crate::dma::DmaState) -> T,
    ) -> Vec<T> {
        let mut guard = self.machine.st();
        let st = &mut *guard;
        let d = &mut st.datapath;
        let dma = &st.dma;
        let mut out = Vec::with_capacity(d.completed.len());
        for (slot, status) in d.completed.drain(..) {
            out.push(f(slot, status, dma));
            d.free_slots.push_back(slot);
        }
        out
    }

    /// Frames the driver indicated since the last call, byte for byte.
    pub fn received_frames(&self, adapter: AdapterId) -> Vec<Vec<u8>> {
        let mut st = self.machine.st();
        match st.datapath.received.get_mut(adapter.0) {
            Some(frames) => frames.drain(..).map(|(f, ..)| f).collect(),
            None => Vec::new(),
        }
    }

    /// As [`received_frames`](Self::received_frames), each with the 802.1Q information its
    /// list carried: `Some((priority, vlan_id))`, or None.
    pub fn received_frames_8021q(&self, adapter: AdapterId) -> Vec<(Vec<u8>, Option<Ieee8021Q>)> {
        let mut st = self.machine.st();
        let Some(frames) = st.datapath.received.get_mut(adapter.0) else {
            return Vec::new();
        };
        frames
            .drain(..)
            .map(|(f, info, _)| {
                let (priority, vlan_id) = ((info & 7) as u8, ((info >> 4) & 0x0FFF) as u16);
                (
                    f,
                    (priority != 0 || vlan_id != 0).then_some((priority, vlan_id)),
                )
            })
            .collect()
    }

    /// As [`received_frames`](Self::received_frames), each with what the miniport said about
    /// its checksums.
    pub fn received_frames_checksum(&self, adapter: AdapterId) -> Vec<(Vec<u8>, RxChecksumInfo)> {
        let mut st = self.machine.st();
        let Some(frames) = st.datapath.received.get_mut(adapter.0) else {
            return Vec::new();
        };
        frames
            .drain(..)
            .map(|(f, _, c)| (f, RxChecksumInfo::from_info(c)))
            .collect()
    }

    /// Whether indicated frames are only counted ([`received_count`](Self::received_count))
    /// instead of copied out: for a measurement whose copy of every frame would be the
    /// protocol's cost, not the driver's. Off by default.
    pub fn set_count_received_only(&self, on: bool) {
        self.machine.st().datapath.count_only = on;
    }

    /// Frames indicated on `adapter` while only counting, since the last call.
    pub fn received_count(&self, adapter: AdapterId) -> usize {
        let mut st = self.machine.st();
        st.datapath
            .received_counts
            .get_mut(adapter.0)
            .map_or(0, std::mem::take)
    }

    /// Whether the protocol returns receives from inside `NdisMIndicateReceiveNetBufferLists`
    /// (off by default: they are held until [`return_receives`](Self::return_receives)). Real
    /// protocols do both; a driver must not hold a lock its return handler takes across an
    /// indication, nor look at a buffer after indicating it, and this mode catches either.
    pub fn set_returns_during_indication(&self, on: bool) {
        self.machine.st().datapath.returns_during_indication = on;
    }

    /// Lists indicated to the protocol and not yet returned.
    pub fn held_receives(&self, adapter: AdapterId) -> usize {
        self.machine
            .st()
            .datapath
            .held
            .iter()
            .filter(|(a, _)| *a == adapter.0)
            .count()
    }

    /// The protocol returns every held receive of `adapter` (`MiniportReturnNetBufferLists` at
    /// DISPATCH_LEVEL, one chain).
    pub fn return_receives(&self, adapter: AdapterId) {
        return_held(&self.machine, adapter.0);
        machine::run_dpcs(&self.machine);
    }
}

pub(crate) fn return_held(m: &Machine, a: usize) {
    let (handler, context, cpu, chain, how) = {
        let mut st = m.st();
        let how = st.config.send_irql;
        let held = &mut st.datapath.held;
        let mut mine = Vec::with_capacity(held.len());
        mine.extend(held.iter().copied().filter(|&(x, _)| x == a));
        held.retain(|&(x, _)| x != a);
        if mine.is_empty() {
            return;
        }
        // Chain them through Next, as NDIS does.
        for w in mine.windows(2) {
            // SAFETY: live lists of the driver, owned by the protocol until returned.
            unsafe {
                (*(w[0].1 as *mut sys::NET_BUFFER_LIST)).Next = w[1].1 as *mut sys::NET_BUFFER_LIST
            };
        }
        // SAFETY: as above.
        unsafe {
            (*(mine.last().unwrap().1 as *mut sys::NET_BUFFER_LIST)).Next = core::ptr::null_mut()
        };
        let handler = st
            .ndis
            .driver
            .as_ref()
            .and_then(|d| d.chars.ReturnNetBufferListsHandler)
            .expect("return handler");
        let context = st.ndis.adapters[a].context.unwrap_or(0);
        (
            handler,
            context,
            st.cpu,
            mine[0].1 as *mut sys::NET_BUFFER_LIST,
            how,
        )
    };
    // The configured IRQL, never below the caller's: a return made from inside an indication
    // (`set_returns_during_indication`) runs at the indicating driver's IRQL at least, and is
    // flagged only when the protocol knows it is at DISPATCH_LEVEL.
    let irql = m.st().irql().max(how.irql());
    let flags = if irql == sys::DISPATCH_LEVEL {
        how.flags(sys::NDIS_RETURN_FLAGS_DISPATCH_LEVEL)
    } else {
        0
    };
    on_cpu(m, cpu, irql, Callback::Return(a), || {
        // SAFETY: the driver's return handler with its adapter context and its own lists, at the
        // IRQL the flag allows.
        unsafe { handler(context as sys::NDIS_HANDLE, chain, flags) }
    });
}

/// Before pause completes and at halt the driver owns no protocol sends any more.
/// Whether `nb` is a NET_BUFFER of a list sent to adapter `a` and not completed.
pub(crate) fn is_sent_buffer(st: &State, a: usize, nb: usize) -> bool {
    st.datapath.sent_buffers.get(&nb) == Some(&a)
}

pub(crate) fn check_no_sends(st: &State, a: usize, when: &str) {
    let outstanding = st
        .datapath
        .sends
        .values()
        .filter(|r| r.adapter == a)
        .count();
    if outstanding > 0 {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::DATAPATH, a, outstanding, 0],
            format!(
                "adapter {a}: {when} with {outstanding} send(s) not completed; complete every send \
                 (NdisMSendNetBufferListsComplete) before pause completes"
            ),
        );
    }
}

/// Unload: every pool freed, every list and MDL freed.
pub(crate) fn check_released(st: &State) {
    let pools = st.datapath.pools.values().filter(|p| p.live).count();
    let lists = st.datapath.lists.len();
    let mdls = st.datapath.mdls.len();
    if pools + lists + mdls > 0 {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::UNLOAD_WITH_OUTSTANDING_OBJECTS, pools, lists, mdls],
            format!(
                "unload with {pools} NET_BUFFER_LIST pool(s), {lists} list(s) and {mdls} MDL(s) not freed"
            ),
        );
    }
}
