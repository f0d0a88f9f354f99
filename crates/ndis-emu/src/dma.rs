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
            blocks: BTreeMap::new(),
            free: BTreeMap::from([(GUEST_MEMORY_BASE, GUEST_MEMORY_SIZE)]),
        }
    }
}

impl DmaState {
    /// First fit, so freed blocks are reused and a long test does not run out of region.
    fn allocate(&mut self, length: u64) -> Option<u64> {
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

    fn release(&mut self, start: u64, length: u64) {
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
