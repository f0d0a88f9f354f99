//! Pool and NDIS memory with accounting: every block is tracked until freed, frees are checked
//! against what was allocated (address and tag), and unload reports what is left.

use rustc_hash::FxHashMap as HashMap;
use std::alloc::Layout;

use ndis_sys as sys;

use crate::bugcheck;
use crate::machine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocationKind {
    Pool,
    NdisMemory,
}

#[derive(Debug, Clone, Copy)]
pub struct Allocation {
    pub size: usize,
    pub tag: u32,
    pub kind: AllocationKind,
}

#[derive(Default)]
pub(crate) struct Pool {
    pub live: HashMap<usize, Allocation>,
    /// Where each live block was allocated (see `crate::site`), for the leak report.
    pub sites: HashMap<usize, crate::site::Site>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

/// Uninitialized pool is filled with this, so reads of memory the driver never wrote stand out.
pub const UNINITIALIZED_FILL: u8 = 0xCD;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size.max(1), 16).expect("allocation size")
}

fn allocate(kind: AllocationKind, size: usize, tag: u32, zeroed: bool) -> sys::PVOID {
    // SAFETY: the layout has a non-zero size.
    let p = unsafe {
        if zeroed {
            std::alloc::alloc_zeroed(layout(size))
        } else {
            std::alloc::alloc(layout(size))
        }
    };
    if p.is_null() {
        return core::ptr::null_mut();
    }
    if !zeroed {
        // SAFETY: p is valid for `size` bytes.
        unsafe { p.write_bytes(UNINITIALIZED_FILL, size) };
    }
    let site = crate::site::capture();
    let m = machine::current();
    let mut st = m.st();
    st.pool
        .live
        .insert(p as usize, Allocation { size, tag, kind });
    st.pool.sites.insert(p as usize, site);
    p.cast()
}

fn free(function: &str, kind: AllocationKind, p: sys::PVOID, tag: u32) {
    let m = machine::current();
    let mut st = m.st();
    let Some(a) = st.pool.live.get(&(p as usize)).copied() else {
        drop(st);
        bugcheck::raise(
            bugcheck::BAD_POOL_CALLER,
            [
                bugcheck::BAD_POOL_FREE_NOT_ALLOCATED,
                p as usize,
                tag as usize,
                0,
            ],
            format!("{function}({p:p}): not an allocation of this driver, or already freed"),
        );
    };
    if a.tag != tag || a.kind != kind {
        drop(st);
        bugcheck::raise(
            bugcheck::BAD_POOL_CALLER,
            [
                bugcheck::BAD_POOL_FREE_NOT_ALLOCATED,
                p as usize,
                tag as usize,
                a.tag as usize,
            ],
            format!(
                "{function}({p:p}, tag {:?}): the block was allocated by {:?} with tag {:?}",
                tag_text(tag),
                a.kind,
                tag_text(a.tag)
            ),
        );
    }
    st.pool.live.remove(&(p as usize));
    st.pool.sites.remove(&(p as usize));
    // SAFETY: p was allocated above with this layout and is freed once (removed from `live`).
    unsafe { std::alloc::dealloc(p.cast(), layout(a.size)) };
}

pub fn tag_text(tag: u32) -> String {
    tag.to_le_bytes()
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
        .collect()
}

pub(crate) unsafe fn ex_allocate_pool2(
    flags: sys::POOL_FLAGS,
    size: usize,
    tag: u32,
) -> sys::PVOID {
    {
        let m = machine::current();
        let mut st = m.st();
        crate::exports::require_export(&st, "ntoskrnl.exe", "ExAllocatePool2");
        let max = if flags & sys::POOL_FLAG_PAGED != 0 {
            sys::APC_LEVEL
        } else {
            sys::DISPATCH_LEVEL
        };
        st.require_irql(max, "ExAllocatePool2");
        if st.fallible("ExAllocatePool2") {
            return core::ptr::null_mut();
        }
    }
    allocate(
        AllocationKind::Pool,
        size,
        tag,
        flags & sys::POOL_FLAG_UNINITIALIZED == 0,
    )
}

/// `ExAllocatePoolWithTag`: never zeroed (filled with [`UNINITIALIZED_FILL`]), freed with
/// `ExFreePoolWithTag` like `ExAllocatePool2` memory.
pub(crate) unsafe fn ex_allocate_pool_with_tag(
    pool_type: sys::POOL_TYPE,
    size: usize,
    tag: u32,
) -> sys::PVOID {
    {
        let m = machine::current();
        let mut st = m.st();
        let max = match pool_type {
            sys::NonPagedPool | sys::NonPagedPoolNx => sys::DISPATCH_LEVEL,
            sys::PagedPool => sys::APC_LEVEL,
            other => {
                drop(st);
                panic!(
                    "ExAllocatePoolWithTag: pool type {other} is not emulated \
                     (NonPagedPool 0, PagedPool 1, NonPagedPoolNx 512 are)"
                )
            }
        };
        st.require_irql(max, "ExAllocatePoolWithTag");
        if st.fallible("ExAllocatePoolWithTag") {
            return core::ptr::null_mut();
        }
    }
    allocate(AllocationKind::Pool, size, tag, false)
}

pub(crate) unsafe fn ex_free_pool_with_tag(p: sys::PVOID, tag: u32) {
    machine::current()
        .st()
        .require_irql(sys::DISPATCH_LEVEL, "ExFreePoolWithTag");
    free("ExFreePoolWithTag", AllocationKind::Pool, p, tag)
}

pub(crate) unsafe fn ndis_allocate_memory_with_tag_priority(
    handle: sys::NDIS_HANDLE,
    length: u32,
    tag: u32,
    _priority: sys::EX_POOL_PRIORITY,
) -> sys::PVOID {
    {
        let m = machine::current();
        let mut st = m.st();
        st.require_irql(sys::DISPATCH_LEVEL, "NdisAllocateMemoryWithTagPriority");
        crate::ndis::check_ndis_handle(&st, handle, "NdisAllocateMemoryWithTagPriority");
        if st.fallible("NdisAllocateMemoryWithTagPriority") {
            return core::ptr::null_mut();
        }
    }
    allocate(AllocationKind::NdisMemory, length as usize, tag, true)
}

pub(crate) unsafe fn ndis_free_memory_with_tag_priority(
    handle: sys::NDIS_HANDLE,
    p: sys::PVOID,
    tag: u32,
) {
    {
        let m = machine::current();
        let st = m.st();
        st.require_irql(sys::DISPATCH_LEVEL, "NdisFreeMemoryWithTagPriority");
        crate::ndis::check_ndis_handle(&st, handle, "NdisFreeMemoryWithTagPriority");
    }
    free(
        "NdisFreeMemoryWithTagPriority",
        AllocationKind::NdisMemory,
        p,
        tag,
    )
}

/// Pool the emulated system allocates itself (PnP's resource requirements lists), accounted as
/// pool so the driver may free it (as `ExFreePool` does: tag 0) and a leak of it is reported.
pub(crate) fn allocate_pool(size: usize, tag: u32) -> *mut u8 {
    let p = allocate(AllocationKind::Pool, size, tag, true);
    assert!(!p.is_null(), "host allocation failed");
    p.cast()
}

/// Frees a pool block on the system's behalf (whatever its tag), as PnP frees the list a
/// driver handed back.
pub(crate) fn release_pool(p: *mut u8) {
    let m = machine::current();
    let mut st = m.st();
    let a = st
        .pool
        .live
        .remove(&(p as usize))
        .expect("a live pool block");
    st.pool.sites.remove(&(p as usize));
    // SAFETY: allocated by `allocate` with this layout; removed from `live`, so freed once.
    unsafe { std::alloc::dealloc(p, layout(a.size)) };
}
