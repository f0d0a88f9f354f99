//! Scatter/gather DMA registration and shared memory with device-visible addresses.
//!
//! Shared memory comes from one guest-physical region, a `vm-memory` [`GuestMemoryMmap`] of
//! [`GUEST_MEMORY_SIZE`] bytes at [`GUEST_MEMORY_BASE`] (anonymous mmap, committed lazily), so that
//! device models can run the device side of their rings with `virtio-queue` directly on it. A
//! block's virtual address is the region's host address and its physical address the guest
//! address, as on a machine without an IOMMU. [`Emulator::dma_read`] and [`Emulator::dma_write`]
//! reach memory by that address, as a bus master would, but only inside one live block. Freeing
//! checks that length and both addresses match the allocation, and that the DMA registration is
//! still there (shared memory is freed before `NdisMDeregisterScatterGatherDma`); halt requires the
//! DMA registration to be gone and unload every block to be freed.

use std::cell::RefMut;
use std::collections::BTreeMap;

use ndis_sys as sys;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::Emulator;
use crate::bugcheck::{self, rule};
use crate::machine::{self, Callback, State};
use crate::ndis::adapter_of_handle;

const DMA_TAG: usize = 0x4E44_4D00_0000;
/// Device-visible addresses start here, 4 GiB up, so 64-bit DMA paths are exercised.
pub const GUEST_MEMORY_BASE: u64 = 0x1_0000_0000;
/// Room for every shared-memory block of a test; pages are only committed when touched.
pub const GUEST_MEMORY_SIZE: u64 = 64 << 20;
const PAGE: u64 = 4096;

struct Block {
    adapter: usize,
    length: usize,
}

pub(crate) struct DmaState {
    pub memory: GuestMemoryMmap,
    /// Scatter/gather lists made by `NdisMAllocateNetBufferSGList` (see [`SgState`]).
    pub sg: SgState,
    /// Physical address -> live block.
    blocks: BTreeMap<u64, Block>,
    /// Free extents of the region: physical address -> length (page multiples, coalesced).
    free: BTreeMap<u64, u64>,
}

impl Default for DmaState {
    fn default() -> Self {
        let memory = GuestMemoryMmap::from_ranges(&[(
            GuestAddress(GUEST_MEMORY_BASE),
            GUEST_MEMORY_SIZE as usize,
        )])
        .expect("reserving the emulated guest-physical memory (anonymous mmap)");
        DmaState {
            memory,
            sg: SgState::default(),
            blocks: BTreeMap::new(),
            free: BTreeMap::from([(GUEST_MEMORY_BASE, GUEST_MEMORY_SIZE)]),
        }
    }
}

impl DmaState {
    /// First fit, so freed blocks are reused and a long test does not run out of region.
    pub(crate) fn allocate(&mut self, length: u64) -> Option<u64> {
        let size = length.max(1).next_multiple_of(PAGE);
        let (&start, &len) = self.free.iter().find(|&(_, &len)| len >= size)?;
        self.free.remove(&start);
        if len > size {
            self.free.insert(start + size, len - size);
        }
        // Freed memory is dirty; NdisMAllocateSharedMemory hands out zeroed pages here.
        let zero = [0u8; PAGE as usize];
        let mut at = start;
        while at < start + size {
            self.memory
                .write_slice(&zero, GuestAddress(at))
                .expect("inside the region");
            at += PAGE;
        }
        Some(start)
    }

    pub(crate) fn release(&mut self, start: u64, length: u64) {
        let mut start = start;
        let mut size = length.max(1).next_multiple_of(PAGE);
        if let Some((&next, &next_len)) = self.free.range(start + size..).next()
            && next == start + size
        {
            self.free.remove(&next);
            size += next_len;
        }
        if let Some((&prev, &prev_len)) = self.free.range(..start).next_back()
            && prev + prev_len == start
        {
            self.free.remove(&prev);
            start = prev;
            size += prev_len;
        }
        self.free.insert(start, size);
    }
}

fn dma_violation(what: String, p1: usize, p2: usize) -> ! {
    bugcheck::raise(
        bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
        [rule::DMA, p1, p2, 0],
        what,
    )
}

pub(crate) unsafe fn ndis_m_register_scatter_gather_dma(
    handle: sys::NDIS_HANDLE,
    description: *mut sys::NDIS_SG_DMA_DESCRIPTION,
    out: *mut sys::NDIS_HANDLE,
) -> sys::NDIS_STATUS {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisMRegisterScatterGatherDma");
    let a = adapter_of_handle(&st, handle, "NdisMRegisterScatterGatherDma");
    if !st.in_callback(|c| c == Callback::Initialize(a)) {
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::CALL_CONTEXT, a, 0, 0],
            "NdisMRegisterScatterGatherDma called outside MiniportInitializeEx",
        );
    }
    // SAFETY: the caller passes a writable description (at least its revision-1 prefix).
    let d = unsafe { &mut *description };
    if d.Header.Type != sys::NDIS_OBJECT_TYPE_SG_DMA_DESCRIPTION
        || !matches!(d.Header.Revision, 1 | 2)
        || d.Header.Size < sys::NDIS_SIZEOF_SG_DMA_DESCRIPTION_REVISION_1
    {
        drop(st);
        crate::ndis::header_bugcheck(
            "NdisMRegisterScatterGatherDma",
            "SG DMA description",
            d.Header,
            "0x83 / 1-2 / 36 or 48",
        );
    }
    if st.ndis.adapters[a].attribute_flags & sys::NDIS_MINIPORT_ATTRIBUTES_BUS_MASTER == 0 {
        return sys::NDIS_STATUS_NOT_SUPPORTED;
    }
    if st.ndis.adapters[a].dma.is_some() {
        return sys::NDIS_STATUS_FAILURE;
    }
    if st.fallible("NdisMRegisterScatterGatherDma") {
        return sys::NDIS_STATUS_RESOURCES;
    }
    // Room for a mapping of MaximumPhysicalMapping bytes over pages it may start inside.
    let elements = (d.MaximumPhysicalMapping as u64).div_ceil(PAGE) as usize + 1;
    d.ScatterGatherListSize = sg_list_size(elements) as u32;
    let h = DMA_TAG | (a + 1);
    st.dma.sg.handlers.insert(a, d.ProcessSGListHandler);
    st.ndis.adapters[a].dma = Some(h);
    // SAFETY: the caller's out-pointer.
    unsafe { out.write(h as sys::NDIS_HANDLE) };
    sys::NDIS_STATUS_SUCCESS
}

/// The adapter whose live DMA registration is `dma`, if any.
fn dma_owner(st: &State, dma: sys::NDIS_HANDLE) -> Option<usize> {
    st.ndis
        .adapters
        .iter()
        .position(|x| x.dma == Some(dma as usize))
}

/// The adapter whose live DMA registration is `dma`, with the state handed back; a DMA bug
/// check naming `export` if `dma` is no live registration.
fn adapter_of_dma<'a>(
    st: RefMut<'a, State>,
    dma: sys::NDIS_HANDLE,
    export: &str,
) -> (RefMut<'a, State>, usize) {
    match dma_owner(&st, dma) {
        Some(a) => (st, a),
        None => {
            drop(st);
            dma_violation(
                format!("{export}({dma:p}): not a live DMA registration"),
                dma as usize,
                0,
            )
        }
    }
}

pub(crate) unsafe fn ndis_m_deregister_scatter_gather_dma(dma: sys::NDIS_HANDLE) {
    let m = machine::current();
    let st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisMDeregisterScatterGatherDma");
    let (mut st, a) = adapter_of_dma(st, dma, "NdisMDeregisterScatterGatherDma");
    if let Some(n) = st.dma.sg.outstanding(a) {
        drop(st);
        dma_violation(
            format!(
                "NdisMDeregisterScatterGatherDma on adapter {a} with {n} scatter/gather list(s) \
                 not freed (NdisMFreeNetBufferSGList each before deregistering)"
            ),
            a,
            n,
        );
    }
    st.ndis.adapters[a].dma = None;
    st.dma.sg.handlers.remove(&a);
}

pub(crate) unsafe fn ndis_m_allocate_shared_memory(
    handle: sys::NDIS_HANDLE,
    length: u32,
    _cached: sys::BOOLEAN,
    va: *mut sys::PVOID,
    pa: *mut sys::PHYSICAL_ADDRESS,
) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisMAllocateSharedMemory");
    let a = adapter_of_handle(&st, handle, "NdisMAllocateSharedMemory");
    // SAFETY: the caller's out-pointers; null on failure.
    unsafe {
        va.write(core::ptr::null_mut());
        pa.write(0);
    }
    if st.ndis.adapters[a].dma.is_none() {
        drop(st);
        dma_violation(
            format!(
                "NdisMAllocateSharedMemory on adapter {a} before NdisMRegisterScatterGatherDma"
            ),
            a,
            length as usize,
        );
    }
    if length == 0 || st.fallible("NdisMAllocateSharedMemory") {
        return;
    }
    let Some(physical) = st.dma.allocate(length as u64) else {
        return;
    };
    let host = st
        .dma
        .memory
        .get_host_address(GuestAddress(physical))
        .expect("allocated inside the region");
    st.dma.blocks.insert(
        physical,
        Block {
            adapter: a,
            length: length as usize,
        },
    );
    // SAFETY: as above.
    unsafe {
        va.write(host.cast());
        pa.write(physical as i64);
    }
}

pub(crate) unsafe fn ndis_m_free_shared_memory(
    handle: sys::NDIS_HANDLE,
    length: u32,
    _cached: sys::BOOLEAN,
    va: sys::PVOID,
    pa: sys::PHYSICAL_ADDRESS,
) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisMFreeSharedMemory");
    let a = adapter_of_handle(&st, handle, "NdisMFreeSharedMemory");
    let host = st.dma.memory.get_host_address(GuestAddress(pa as u64)).ok();
    let matches =
        st.dma.blocks.get(&(pa as u64)).is_some_and(|b| {
            b.adapter == a && host == Some(va.cast()) && b.length == length as usize
        });
    if !matches {
        drop(st);
        dma_violation(
            format!(
                "NdisMFreeSharedMemory({length} bytes, va {va:p}, pa {pa:#x}) on adapter {a}: no such allocation \
                 (length and both addresses must match what NdisMAllocateSharedMemory returned)"
            ),
            va as usize,
            pa as usize,
        );
    }
    if st.ndis.adapters[a].dma.is_none() {
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [
                rule::DMA,
                va as usize,
                pa as usize,
                rule::DMA_FREED_AFTER_DEREGISTER,
            ],
            format!(
                "NdisMFreeSharedMemory({length} bytes, va {va:p}, pa {pa:#x}) on adapter {a} after its \
                 scatter/gather DMA registration was deregistered: free every shared-memory block \
                 before NdisMDeregisterScatterGatherDma (the memory belongs to the DMA adapter \
                 object it releases)"
            ),
        );
    }
    let block = st.dma.blocks.remove(&(pa as u64)).unwrap();
    st.dma.release(pa as u64, block.length as u64);
}

/// Halt: the DMA registration must be gone (ndis.sys frees it no later than that), and every
/// scatter/gather list freed, none still waiting for its callback.
pub(crate) fn check_dma_at_halt(st: &State, a: usize) {
    if let Some(n) = st.dma.sg.outstanding(a) {
        dma_violation(
            format!(
                "MiniportHaltEx of adapter {a} returned with {n} scatter/gather list(s) from \
                 NdisMAllocateNetBufferSGList not freed with NdisMFreeNetBufferSGList (or still \
                 waiting for their ProcessSGList callback)"
            ),
            a,
            n,
        );
    }
    if st.ndis.adapters[a].dma.is_some() {
        dma_violation(
            format!(
                "MiniportHaltEx of adapter {a} returned with scatter/gather DMA still registered"
            ),
            a,
            0,
        );
    }
}

/// Unload: (blocks, bytes) of shared memory not freed.
pub(crate) fn outstanding(st: &State) -> (usize, usize) {
    (
        st.dma.blocks.len(),
        st.dma.blocks.values().map(|b| b.length).sum(),
    )
}

/// Whether `[physical, physical + length)` lies inside one live block.
fn inside_block(st: &State, physical: u64, length: usize) -> bool {
    st.dma
        .blocks
        .range(..=physical)
        .next_back()
        .is_some_and(|(&start, block)| {
            ((physical - start) as usize)
                .checked_add(length)
                .is_some_and(|end| end <= block.length)
        })
}

/// Bus-master read of `[physical, physical + buf.len())`; None unless it lies inside one live
/// shared-memory block.
pub(crate) fn read(st: &State, physical: u64, buf: &mut [u8]) -> Option<()> {
    if !inside_block(st, physical, buf.len()) {
        return None;
    }
    st.dma.memory.read_slice(buf, GuestAddress(physical)).ok()
}

/// Bus-master write.
pub(crate) fn write(st: &State, physical: u64, data: &[u8]) -> Option<()> {
    if !inside_block(st, physical, data.len()) {
        return None;
    }
    st.dma.memory.write_slice(data, GuestAddress(physical)).ok()
}

impl Emulator {
    /// Reads device-visible memory, as a bus-master device would. None if `[physical,
    /// physical + buf.len())` is not inside one shared-memory block.
    pub fn dma_read(&self, physical: u64, buf: &mut [u8]) -> Option<()> {
        read(&self.machine.st(), physical, buf)
    }

    /// Writes device-visible memory, as a bus-master device would.
    pub fn dma_write(&self, physical: u64, data: &[u8]) -> Option<()> {
        write(&self.machine.st(), physical, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_reuses_freed_pages_coalesces_and_hands_out_zeroed_memory() {
        let mut d = DmaState::default();
        let a = d.allocate(1).unwrap();
        let b = d.allocate(3 * PAGE).unwrap();
        let c = d.allocate(PAGE + 1).unwrap();
        assert_eq!((a, b, c), (GUEST_MEMORY_BASE, a + PAGE, a + 4 * PAGE));
        d.memory.write_slice(&[0xAB; 16], GuestAddress(b)).unwrap();
        d.release(b, 3 * PAGE);
        d.release(a, 1);
        // a and b coalesced into one 4-page hole: a 4-page block fits there, zeroed.
        let e = d.allocate(4 * PAGE).unwrap();
        assert_eq!(e, a);
        let mut seen = [0xFFu8; 16];
        d.memory.read_slice(&mut seen, GuestAddress(b)).unwrap();
        assert_eq!(seen, [0; 16]);
        d.release(e, 4 * PAGE);
        d.release(c, PAGE + 1);
        assert_eq!(
            d.free.iter().map(|(&s, &l)| (s, l)).collect::<Vec<_>>(),
            vec![(GUEST_MEMORY_BASE, GUEST_MEMORY_SIZE)],
            "everything coalesced back into the whole region"
        );
        assert!(
            d.allocate(GUEST_MEMORY_SIZE + 1).is_none(),
            "exhaustion is a failure, not a panic"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Scatter/gather lists of NET_BUFFERs (`NdisMAllocateNetBufferSGList`).

/// Bytes of a `SCATTER_GATHER_LIST` of `elements` entries.
fn sg_list_size(elements: usize) -> usize {
    core::mem::size_of::<sys::SCATTER_GATHER_LIST>()
        + elements * core::mem::size_of::<sys::SCATTER_GATHER_ELEMENT>()
}

/// When NDIS calls the `ProcessSGListHandler` for a list it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SgCallback {
    /// From inside `NdisMAllocateNetBufferSGList`, before it returns (map registers were
    /// available), at DISPATCH_LEVEL on the calling processor: NDIS's usual case.
    #[default]
    Inline,
    /// Later, as a DPC on a processor the seeded scheduler picks (possibly another one), after
    /// `NdisMAllocateNetBufferSGList` returned: what NDIS does when it must wait for map
    /// registers.
    Deferred,
    /// As `Deferred`, but held back until the test calls
    /// [`Emulator::release_sg_callbacks`](crate::Emulator::release_sg_callbacks): for what may
    /// happen between a mapping and its callback (an OID request, a pause).
    Held,
}

/// One list handed out: whose, for which NET_BUFFER, and the storage NDIS allocated for it when
/// the miniport's buffer was missing or too small.
struct SgRecord {
    adapter: usize,
    nb: usize,
    /// Whether the callback has run (a list is freed only after the driver got it).
    delivered: bool,
    _owned: Option<Box<[u64]>>,
}

/// A callback NDIS still owes (deferred mode).
struct SgDeferred {
    handler: unsafe extern "win64-unwind" fn(
        sys::PDEVICE_OBJECT,
        sys::PVOID,
        *mut sys::SCATTER_GATHER_LIST,
        sys::PVOID,
    ),
    list: usize,
    context: usize,
}

#[derive(Default)]
pub(crate) struct SgState {
    /// Each registration's `ProcessSGListHandler`, per adapter.
    handlers: std::collections::HashMap<usize, sys::MINIPORT_PROCESS_SG_LIST_HANDLER>,
    /// Live lists: list address -> record.
    lists: std::collections::HashMap<usize, SgRecord>,
    deferred: std::collections::VecDeque<SgDeferred>,
    /// Lists made and freed, for tests.
    pub made: u64,
    pub freed: u64,
}

impl SgState {
    /// Lists of adapter `a` not freed, if any.
    fn outstanding(&self, a: usize) -> Option<usize> {
        let n = self.lists.values().filter(|r| r.adapter == a).count();
        (n > 0).then_some(n)
    }

    /// Whether a list is still out for `nb`.
    pub(crate) fn maps(&self, nb: usize) -> bool {
        !self.lists.is_empty() && self.lists.values().any(|r| r.nb == nb)
    }
}

/// The guest-physical address of host address `va` inside the emulated region.
fn physical_of(st: &State, va: usize) -> Option<u64> {
    let base = st
        .dma
        .memory
        .get_host_address(GuestAddress(GUEST_MEMORY_BASE))
        .ok()? as usize;
    let off = va.checked_sub(base)? as u64;
    (off < GUEST_MEMORY_SIZE).then_some(GUEST_MEMORY_BASE + off)
}

/// The pieces (guest-physical address, length) of `nb`'s data, split at page boundaries (what
/// the HAL does without knowing that neighbouring pages are contiguous).
///
/// # Safety
/// `nb` is a valid NET_BUFFER whose MDLs describe readable memory.
unsafe fn nb_pieces(st: &State, nb: *const sys::NET_BUFFER) -> Result<Vec<(u64, u32)>, String> {
    // SAFETY: the caller's contract.
    let (mut mdl, mut off, mut left) = unsafe {
        (
            (*nb).CurrentMdl,
            (*nb).CurrentMdlOffset as usize,
            (*nb).DataLength.stDataLength,
        )
    };
    let mut out = Vec::new();
    while left > 0 {
        if mdl.is_null() {
            return Err(format!(
                "the NET_BUFFER describes {left} more bytes than its MDL chain holds"
            ));
        }
        // SAFETY: a valid MDL of the chain.
        let (va, count, next) = unsafe {
            (
                (*mdl).MappedSystemVa as usize,
                (*mdl).ByteCount as usize,
                (*mdl).Next,
            )
        };
        let n = count.saturating_sub(off).min(left);
        let mut at = va + off;
        let end = at + n;
        while at < end {
            let Some(pa) = physical_of(st, at) else {
                return Err(format!(
                    "MDL memory at {at:#x} is not device-visible (the emulator maps only its \
                     guest-physical region)"
                ));
            };
            let take = ((PAGE - pa % PAGE) as usize).min(end - at);
            out.push((pa, take as u32));
            at += take;
        }
        left -= n;
        off = 0;
        mdl = next;
    }
    Ok(out)
}

pub(crate) unsafe fn ndis_m_allocate_net_buffer_sg_list(
    dma: sys::NDIS_HANDLE,
    nb: *mut sys::NET_BUFFER,
    context: sys::PVOID,
    flags: sys::ULONG,
    buffer: sys::PVOID,
    buffer_size: sys::ULONG,
) -> sys::NDIS_STATUS {
    let m = machine::current();
    let st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisMAllocateNetBufferSGList");
    let (mut st, a) = adapter_of_dma(st, dma, "NdisMAllocateNetBufferSGList");
    let Some(handler) = st.dma.sg.handlers.get(&a).copied().flatten() else {
        drop(st);
        dma_violation(
            format!(
                "NdisMAllocateNetBufferSGList on adapter {a}, whose DMA registration has no \
                 ProcessSGListHandler"
            ),
            a,
            0,
        );
    };
    if nb.is_null() || !crate::datapath::is_sent_buffer(&st, a, nb as usize) {
        drop(st);
        dma_violation(
            format!(
                "NdisMAllocateNetBufferSGList({nb:p}) on adapter {a}: not a NET_BUFFER of a \
                 send list the miniport owns"
            ),
            nb as usize,
            a,
        );
    }
    // Every NET_BUFFER a miniport can map is one of a send: the device reads it.
    if flags != sys::NDIS_SG_LIST_WRITE_TO_DEVICE {
        drop(st);
        dma_violation(
            format!(
                "NdisMAllocateNetBufferSGList({nb:p}) on adapter {a} with flags {flags:#x}: a \
                 NET_BUFFER of a send list is mapped with NDIS_SG_LIST_WRITE_TO_DEVICE (0x1) \
                 and no other flag (the transfer goes to the device)"
            ),
            nb as usize,
            a,
        );
    }
    if st.dma.sg.maps(nb as usize) {
        drop(st);
        dma_violation(
            format!(
                "NdisMAllocateNetBufferSGList({nb:p}) on adapter {a}: the NET_BUFFER is already \
                 mapped (free its list first)"
            ),
            nb as usize,
            a,
        );
    }
    if st.fallible("NdisMAllocateNetBufferSGList") {
        return sys::NDIS_STATUS_RESOURCES;
    }
    // SAFETY: a NET_BUFFER of a list the emulator sent and the miniport still owns.
    let pieces = match unsafe { nb_pieces(&st, nb) } {
        Ok(p) => p,
        Err(why) => {
            drop(st);
            dma_violation(
                format!("NdisMAllocateNetBufferSGList({nb:p}) on adapter {a}: {why}"),
                nb as usize,
                a,
            );
        }
    };
    let size = sg_list_size(pieces.len());
    // The miniport's buffer if it holds the list, else storage NDIS allocates (u64 words: the
    // list's alignment).
    let (list, owned) =
        if !buffer.is_null() && buffer_size as usize >= size && (buffer as usize).is_multiple_of(8)
        {
            (buffer.cast::<sys::SCATTER_GATHER_LIST>(), None)
        } else {
            let mut words = vec![0u64; size.div_ceil(8)].into_boxed_slice();
            (
                words.as_mut_ptr().cast::<sys::SCATTER_GATHER_LIST>(),
                Some(words),
            )
        };
    // SAFETY: `size` writable, 8-aligned bytes at `list` (the miniport's buffer, checked above,
    // or the words just allocated; a boxed slice's heap storage does not move with the box).
    unsafe {
        (*list).NumberOfElements = pieces.len() as u32;
        (*list).Reserved = 0;
        let e = core::ptr::addr_of_mut!((*list).Elements).cast::<sys::SCATTER_GATHER_ELEMENT>();
        for (i, &(pa, len)) in pieces.iter().enumerate() {
            e.add(i).write(sys::SCATTER_GATHER_ELEMENT {
                Address: pa as i64,
                Length: len,
                Reserved: 0,
            });
        }
    }
    st.dma.sg.made += 1;
    let deferred = st.config.sg_callback != SgCallback::Inline;
    st.dma.sg.lists.insert(
        list as usize,
        SgRecord {
            adapter: a,
            nb: nb as usize,
            delivered: !deferred,
            _owned: owned,
        },
    );
    if deferred {
        st.dma.sg.deferred.push_back(SgDeferred {
            handler,
            list: list as usize,
            context: context as usize,
        });
        return sys::NDIS_STATUS_SUCCESS;
    }
    let (cpu, irql) = (st.cpu, st.irql().max(sys::DISPATCH_LEVEL));
    drop(st);
    // Inline, as NDIS calls it when map registers are free: at DISPATCH_LEVEL, on this
    // processor, before the allocation returns.
    machine::on_cpu(&m, cpu, irql, Callback::ProcessSgList(a), || {
        // SAFETY: the driver's handler with the list made above and its context.
        unsafe { handler(core::ptr::null_mut(), core::ptr::null_mut(), list, context) }
    });
    sys::NDIS_STATUS_SUCCESS
}

/// Runs one deferred `ProcessSGListHandler` call on a processor below DISPATCH_LEVEL (a DPC);
/// false when none is owed or no processor can take it now.
pub(crate) fn run_deferred_sg_callback(m: &machine::Machine) -> bool {
    let (call, cpu, a) = {
        let mut st = m.st();
        if st.dma.sg.deferred.is_empty() || st.config.sg_callback == SgCallback::Held {
            return false;
        }
        let eligible: Vec<usize> = (0..st.cpus.len())
            .filter(|&c| st.cpus[c].irql < sys::DISPATCH_LEVEL)
            .collect();
        if eligible.is_empty() {
            return false;
        }
        let cpu = eligible[st.random_below(eligible.len())];
        let call = st.dma.sg.deferred.pop_front().unwrap();
        let rec = st
            .dma
            .sg
            .lists
            .get_mut(&call.list)
            .expect("a deferred list stays live until delivered");
        rec.delivered = true;
        let a = rec.adapter;
        (call, cpu, a)
    };
    machine::on_cpu(
        m,
        cpu,
        sys::DISPATCH_LEVEL,
        Callback::ProcessSgList(a),
        || {
            // SAFETY: the driver's handler with a list NDIS made for it and its context, at
            // DISPATCH_LEVEL as a DPC.
            unsafe {
                (call.handler)(
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    call.list as *mut sys::SCATTER_GATHER_LIST,
                    call.context as sys::PVOID,
                )
            }
        },
    );
    true
}

pub(crate) unsafe fn ndis_m_free_net_buffer_sg_list(
    dma: sys::NDIS_HANDLE,
    list: *mut sys::SCATTER_GATHER_LIST,
    nb: *mut sys::NET_BUFFER,
) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisMFreeNetBufferSGList");
    let a = dma_owner(&st, dma);
    let ok = a.is_some_and(|a| {
        st.dma
            .sg
            .lists
            .get(&(list as usize))
            .is_some_and(|r| r.adapter == a && r.nb == nb as usize && r.delivered)
    });
    if !ok {
        drop(st);
        dma_violation(
            format!(
                "NdisMFreeNetBufferSGList({dma:p}, {list:p}, {nb:p}): not a list \
                 NdisMAllocateNetBufferSGList made for this NET_BUFFER on this DMA registration \
                 and handed to ProcessSGListHandler, or already freed"
            ),
            list as usize,
            nb as usize,
        );
    }
    st.dma.sg.lists.remove(&(list as usize));
    st.dma.sg.freed += 1;
}

impl Emulator {
    /// Makes `ProcessSGListHandler` calls inline (the default) or deferred to a later DPC.
    pub fn set_sg_callback(&self, how: SgCallback) {
        self.machine.st().config.sg_callback = how;
    }

    /// Lets the callbacks [`SgCallback::Held`] kept back run (as deferred ones, from DPCs),
    /// and runs the DPCs; later mappings are deferred, not held.
    pub fn release_sg_callbacks(&self) {
        self.machine.st().config.sg_callback = SgCallback::Deferred;
        self.run_dpcs();
    }

    /// (made, freed, live) scatter/gather lists of `NdisMAllocateNetBufferSGList` so far.
    pub fn sg_lists(&self) -> (u64, u64, usize) {
        let st = self.machine.st();
        (st.dma.sg.made, st.dma.sg.freed, st.dma.sg.lists.len())
    }
}
