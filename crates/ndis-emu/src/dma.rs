//! Scatter/gather DMA registration and shared memory with device-visible addresses.
//!
//! Shared memory is host memory (page-aligned, zeroed) given a "physical" address in a range no
//! host pointer uses; [`Emulator::dma_read`] and [`Emulator::dma_write`] are how a device model
//! reaches it by that address, as a bus master would. Freeing checks that length and both
//! addresses match the allocation; halt requires the DMA registration to be gone and unload
//! every block to be freed.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::BTreeMap;

use ndis_sys as sys;

use crate::Emulator;
use crate::bugcheck::{self, rule};
use crate::machine::{self, Callback, State};
use crate::ndis::adapter_of_handle;

const DMA_TAG: usize = 0x4E44_4D00_0000;
/// Device-visible addresses start here, 4 GiB up, so 64-bit DMA paths are exercised.
const PHYSICAL_BASE: u64 = 0x1_0000_0000;

struct Block {
    adapter: usize,
    va: usize,
    length: usize,
}

#[derive(Default)]
pub(crate) struct DmaState {
    /// Physical address -> block.
    blocks: BTreeMap<u64, Block>,
    next_physical: u64,
}

fn layout(length: usize) -> Layout {
    Layout::from_size_align(length.max(1).next_multiple_of(4096), 4096).expect("shared memory size")
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
    d.ScatterGatherListSize = 0x1000;
    let h = DMA_TAG | (a + 1);
    st.ndis.adapters[a].dma = Some(h);
    // SAFETY: the caller's out-pointer.
    unsafe { out.write(h as sys::NDIS_HANDLE) };
    sys::NDIS_STATUS_SUCCESS
}

pub(crate) unsafe fn ndis_m_deregister_scatter_gather_dma(dma: sys::NDIS_HANDLE) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisMDeregisterScatterGatherDma");
    let Some(a) = st
        .ndis
        .adapters
        .iter()
        .position(|x| x.dma == Some(dma as usize))
    else {
        drop(st);
        dma_violation(
            format!("NdisMDeregisterScatterGatherDma({dma:p}): not a live DMA registration"),
            dma as usize,
            0,
        );
    };
    st.ndis.adapters[a].dma = None;
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
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc_zeroed(layout(length as usize)) };
    if p.is_null() {
        return;
    }
    let physical = PHYSICAL_BASE + st.dma.next_physical;
    st.dma.next_physical += layout(length as usize).size() as u64;
    st.dma.blocks.insert(
        physical,
        Block {
            adapter: a,
            va: p as usize,
            length: length as usize,
        },
    );
    // SAFETY: as above.
    unsafe {
        va.write(p.cast());
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
    let matches = st
        .dma
        .blocks
        .get(&(pa as u64))
        .is_some_and(|b| b.adapter == a && b.va == va as usize && b.length == length as usize);
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
    let block = st.dma.blocks.remove(&(pa as u64)).unwrap();
    // SAFETY: allocated above with this layout, freed once (removed from the map).
    unsafe { dealloc(block.va as *mut u8, layout(block.length)) };
}

/// Halt: the DMA registration must be gone (ndis.sys frees it no later than that).
pub(crate) fn check_dma_at_halt(st: &State, a: usize) {
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

fn slice(st: &State, physical: u64, length: usize) -> Option<*mut u8> {
    let (&start, block) = st.dma.blocks.range(..=physical).next_back()?;
    let offset = (physical - start) as usize;
    (offset.checked_add(length)? <= block.length).then_some((block.va + offset) as *mut u8)
}

/// Bus-master read of `[physical, physical + buf.len())`; None unless it lies inside one live
/// shared-memory block.
pub(crate) fn read(st: &State, physical: u64, buf: &mut [u8]) -> Option<()> {
    let p = slice(st, physical, buf.len())?;
    // SAFETY: the range lies inside a live shared-memory block.
    buf.copy_from_slice(unsafe { std::slice::from_raw_parts(p, buf.len()) });
    Some(())
}

/// Bus-master write.
pub(crate) fn write(st: &State, physical: u64, data: &[u8]) -> Option<()> {
    let p = slice(st, physical, data.len())?;
    // SAFETY: the range lies inside a live shared-memory block.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
    Some(())
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
