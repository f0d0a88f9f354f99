//! A `GlobalAlloc` for kernel drivers built without the WDK (with it, `wdk-alloc` is used).
//!
//! Memory comes from the non-paged pool, so it may be touched at any IRQL up to DISPATCH_LEVEL;
//! allocating is allowed at IRQL <= DISPATCH_LEVEL. Above it (an ISR, a synchronize function) the
//! allocator returns null without calling the pool, which would bug-check: a fallible allocation
//! (`Vec::try_reserve`) sees the failure, an infallible one (`Box::new`) reaches the allocation
//! error handler, whose panic `km-rt` reports as an allocation failure above DISPATCH_LEVEL. A free
//! above DISPATCH_LEVEL keeps the block (`ExFreePoolWithTag` would bug-check there): memory-safe,
//! and reported as a pool leak at unload. Pool blocks are 16-byte aligned on x64; larger alignments are served by over-allocating and keeping
//! the pool pointer just below the block.
//!
//! [`NonPagedPool`] works on every Windows 10: it uses `ExAllocatePool2` where Windows has it
//! (2004 and later, found at run time) and `ExAllocatePoolWithTag(NonPagedPoolNx)` with explicit
//! zeroing elsewhere, so an image using it imports neither `ExAllocatePool2` nor anything newer
//! than Windows 2000 from the pool API.
#![no_std]

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

/// What the pool guarantees without help (`MEMORY_ALLOCATION_ALIGNMENT` on x64).
pub const POOL_ALIGNMENT: usize = 16;

/// A four-character pool tag, shown by `!poolused` and the verifier in the order written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolTag(pub u32);

impl PoolTag {
    /// `PoolTag::new(*b"vnet")` is displayed as `vnet` by the kernel debugger.
    pub const fn new(tag: [u8; 4]) -> Self {
        Self(u32::from_le_bytes(tag))
    }
}

/// The highest IRQL at which pool may be allocated (`DISPATCH_LEVEL`).
pub const MAX_ALLOCATION_IRQL: u8 = ndis_sys::DISPATCH_LEVEL;

/// The IRQL of the calling processor.
///
/// On x86-64 Windows this reads CR8, the task-priority register the kernel keeps the IRQL in:
/// exactly what `KeGetCurrentIrql` compiles to there (the WDK defines it as an inline `ReadCR8`,
/// not an import). On other targets (the host, where `ndis-emu` checks the IRQL of every pool
/// call itself, and Windows architectures this crate does not read the IRQL on) it answers
/// PASSIVE_LEVEL.
#[inline]
pub fn current_irql() -> u8 {
    #[cfg(all(windows, target_arch = "x86_64"))]
    {
        let cr8: u64;
        // SAFETY: a kernel driver runs at CPL 0, where reading CR8 is allowed; the read has no
        // side effect and touches neither memory, the stack nor the flags.
        unsafe {
            core::arch::asm!("mov {}, cr8", out(reg) cr8, options(nomem, nostack, preserves_flags))
        };
        cr8 as u8
    }
    #[cfg(not(all(windows, target_arch = "x86_64")))]
    {
        ndis_sys::PASSIVE_LEVEL
    }
}

/// Raw pool access.
///
/// # Safety
/// `allocate` must return null or a block of at least `bytes` bytes aligned to
/// [`POOL_ALIGNMENT`], zero-filled when asked, that stays valid until passed to `free`.
pub unsafe trait Pool {
    fn allocate(&self, bytes: usize, zeroed: bool) -> *mut u8;
    /// # Safety
    /// `block` came from `allocate` on this pool and is not used afterwards.
    unsafe fn free(&self, block: *mut u8);
    /// The IRQL of the calling processor, which decides whether `allocate` may be called at all
    /// (above [`MAX_ALLOCATION_IRQL`] the allocator returns null instead). [`current_irql`] by
    /// default; a test pool answers what the test wants.
    #[inline]
    fn irql(&self) -> u8 {
        current_irql()
    }
}

/// The non-paged kernel pool, on every Windows 10 and later.
///
/// `ExAllocatePool2` exists from Windows 10 2004 (build 19041) on; a driver that imported it
/// statically would not load on older Windows (packaging refuses such an image for a driver whose
/// declared minimum is older, see `docs/packaging.md`). So the pool is not imported: the first
/// allocation made at PASSIVE_LEVEL (in practice in `DriverEntry`) looks `ExAllocatePool2` up with
/// `MmGetSystemRoutineAddress`, which may only be called at PASSIVE_LEVEL, and caches the answer in
/// an atomic. Where Windows has it, blocks come from `ExAllocatePool2(POOL_FLAG_NON_PAGED)`;
/// where it does not (and for allocations made above PASSIVE_LEVEL before the lookup happened),
/// from `ExAllocatePoolWithTag(NonPagedPoolNx)`, which never zeroes, so the pool zeroes a block
/// itself when asked to. Both are freed with `ExFreePoolWithTag`.
#[derive(Debug)]
pub struct NonPagedPool {
    tag: PoolTag,
    /// [`UNRESOLVED`], [`ABSENT`], or the address of `ExAllocatePool2`.
    pool2: AtomicUsize,
}

/// `NonPagedPool::pool2` before the lookup.
const UNRESOLVED: usize = 0;
/// `NonPagedPool::pool2` when this Windows has no `ExAllocatePool2` (an address is never 1).
const ABSENT: usize = 1;

/// `ExAllocatePool2` as UTF-16, for `MmGetSystemRoutineAddress`.
static POOL2_NAME: [u16; 15] = utf16(*b"ExAllocatePool2");

const fn utf16<const N: usize>(ascii: [u8; N]) -> [u16; N] {
    let mut out = [0u16; N];
    let mut i = 0;
    while i < N {
        out[i] = ascii[i] as u16;
        i += 1;
    }
    out
}

impl NonPagedPool {
    pub const fn new(tag: PoolTag) -> Self {
        Self {
            tag,
            pool2: AtomicUsize::new(UNRESOLVED),
        }
    }

    pub fn tag(&self) -> PoolTag {
        self.tag
    }

    /// Whether this Windows has `ExAllocatePool2`: `None` until the lookup has happened.
    pub fn has_pool2(&self) -> Option<bool> {
        match self.pool2.load(Ordering::Acquire) {
            UNRESOLVED => None,
            ABSENT => Some(false),
            _ => Some(true),
        }
    }

    /// Looks `ExAllocatePool2` up now if that has not happened yet and the caller runs at
    /// PASSIVE_LEVEL (the only IRQL `MmGetSystemRoutineAddress` allows); above it, changes
    /// nothing. Returns [`has_pool2`](Self::has_pool2). Allocation does this by itself; a driver
    /// may call it from `DriverEntry` to have the answer before its first allocation.
    pub fn resolve(&self) -> Option<bool> {
        if self.pool2.load(Ordering::Acquire) == UNRESOLVED
            && current_irql() == ndis_sys::PASSIVE_LEVEL
        {
            let mut name = ndis_sys::UNICODE_STRING {
                Length: (POOL2_NAME.len() * 2) as u16,
                MaximumLength: (POOL2_NAME.len() * 2) as u16,
                // MmGetSystemRoutineAddress only reads the name.
                Buffer: POOL2_NAME.as_ptr().cast_mut(),
            };
            // SAFETY: called at PASSIVE_LEVEL (checked above) with a valid UNICODE_STRING that
            // outlives the call.
            let address = unsafe { ndis_sys::MmGetSystemRoutineAddress(&mut name) } as usize;
            // Racing lookups store the same answer.
            self.pool2.store(
                if address == 0 { ABSENT } else { address },
                Ordering::Release,
            );
        }
        self.has_pool2()
    }

    fn pool2(&self) -> Option<ndis_sys::PFN_EX_ALLOCATE_POOL2> {
        self.resolve();
        match self.pool2.load(Ordering::Acquire) {
            UNRESOLVED | ABSENT => None,
            address => {
                // SAFETY: `address` is what MmGetSystemRoutineAddress returned for
                // "ExAllocatePool2": the kernel's ExAllocatePool2, a function with exactly this
                // signature and calling convention; function pointers and usize have the same
                // size on every target this crate builds for.
                Some(unsafe {
                    core::mem::transmute::<usize, ndis_sys::PFN_EX_ALLOCATE_POOL2>(address)
                })
            }
        }
    }
}

// SAFETY: ExAllocatePool2 returns null or a 16-byte aligned non-paged block of the requested size,
// zeroed unless POOL_FLAG_UNINITIALIZED is passed; ExAllocatePoolWithTag returns null or a 16-byte
// aligned non-paged block, which is zeroed here when asked. Both stay valid until
// ExFreePoolWithTag.
unsafe impl Pool for NonPagedPool {
    #[inline]
    fn allocate(&self, bytes: usize, zeroed: bool) -> *mut u8 {
        if let Some(pool2) = self.pool2() {
            let mut flags = ndis_sys::POOL_FLAG_NON_PAGED;
            if !zeroed {
                flags |= ndis_sys::POOL_FLAG_UNINITIALIZED;
            }
            // SAFETY: the kernel's ExAllocatePool2 (see `pool2`); any size and tag are valid.
            return unsafe { pool2(flags, bytes, self.tag.0) }.cast();
        }
        // SAFETY: plain FFI call; any size and tag are valid arguments.
        let block: *mut u8 =
            unsafe { ndis_sys::ExAllocatePoolWithTag(ndis_sys::NonPagedPoolNx, bytes, self.tag.0) }
                .cast();
        if zeroed && !block.is_null() {
            // SAFETY: the pool returned a writable block of `bytes` bytes.
            unsafe { block.write_bytes(0, bytes) };
        }
        block
    }

    #[inline]
    unsafe fn free(&self, block: *mut u8) {
        // SAFETY: the caller passes a block from ExAllocatePool2 or ExAllocatePoolWithTag with
        // this tag, freed once; ExFreePoolWithTag frees both.
        unsafe { ndis_sys::ExFreePoolWithTag(block.cast(), self.tag.0) }
    }
}

/// `#[global_allocator] static A: PoolAllocator<NonPagedPool> = PoolAllocator::new(NonPagedPool::new(PoolTag::new(*b"vnet")));`
#[derive(Debug)]
pub struct PoolAllocator<P: Pool> {
    pool: P,
}

impl<P: Pool> PoolAllocator<P> {
    pub const fn new(pool: P) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &P {
        &self.pool
    }

    fn alloc_with(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        if self.pool.irql() > MAX_ALLOCATION_IRQL {
            // Pool allocation above DISPATCH_LEVEL bug-checks; a null is the only safe answer.
            return core::ptr::null_mut();
        }
        if layout.align() <= POOL_ALIGNMENT {
            return self.pool.allocate(layout.size(), zeroed);
        }
        // Room to align up and to store the pool pointer in the word below the aligned block.
        let Some(bytes) = layout.size().checked_add(layout.align()) else {
            return core::ptr::null_mut();
        };
        let raw = self.pool.allocate(bytes, zeroed);
        if raw.is_null() {
            return raw;
        }
        // `raw` is 16-aligned and `align` >= 32, so `raw % align` is a multiple of 16 below
        // `align`: the shift is in 16..=align, leaving at least a word below the block for the
        // pool pointer, and the `align` bytes of slack cover it.
        let offset = layout.align() - (raw as usize % layout.align());
        // SAFETY: offset <= align and the block has size + align bytes.
        let block = unsafe { raw.add(offset) };
        // SAFETY: block - 8 >= raw lies inside the allocation; usize alignment holds because
        // block is at least 32-aligned.
        unsafe { block.cast::<*mut u8>().sub(1).write(raw) };
        block
    }
}

// SAFETY: blocks are at least `layout.size()` bytes and aligned to `layout.align()` (see
// alloc_with); dealloc recovers exactly the pointer the pool returned.
unsafe impl<P: Pool> GlobalAlloc for PoolAllocator<P> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_with(layout, false)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.alloc_with(layout, true)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.pool.irql() > MAX_ALLOCATION_IRQL {
            // ExFreePoolWithTag above DISPATCH_LEVEL bug-checks (BAD_POOL_CALLER). Keeping the
            // block is memory-safe, and the pool accounting (Driver Verifier at unload, the
            // emulator's leak check) reports it: the free was a driver bug.
            return;
        }
        let raw = if layout.align() <= POOL_ALIGNMENT {
            ptr
        } else {
            // SAFETY: alloc_with stored the pool pointer in the word below every over-aligned block.
            unsafe { ptr.cast::<*mut u8>().sub(1).read() }
        };
        // SAFETY: `raw` is what the pool returned for this allocation.
        unsafe { self.pool.free(raw) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::cell::RefCell;
    use std::vec::Vec;

    /// A pool over the host allocator that records live blocks, so the tests see leaks and
    /// double frees, and that hands out blocks only 16-aligned (never more), like the kernel.
    struct HostPool {
        live: RefCell<Vec<(*mut u8, usize)>>,
        irql: core::cell::Cell<u8>,
        calls: core::cell::Cell<usize>,
    }

    // SAFETY: std::alloc with align 16 returns 16-aligned blocks (or null); zeroed on request.
    unsafe impl Pool for HostPool {
        fn irql(&self) -> u8 {
            self.irql.get()
        }
        fn allocate(&self, bytes: usize, zeroed: bool) -> *mut u8 {
            self.calls.set(self.calls.get() + 1);
            // Shift by 16 inside a 32-aligned block so the result is 16- but not 32-aligned.
            let layout = Layout::from_size_align(bytes + 16, 32).unwrap();
            // SAFETY: layout has non-zero size.
            let base = unsafe {
                if zeroed {
                    std::alloc::alloc_zeroed(layout)
                } else {
                    std::alloc::alloc(layout)
                }
            };
            assert!(!base.is_null());
            // SAFETY: within the block.
            let p = unsafe { base.add(16) };
            self.live.borrow_mut().push((p, bytes));
            p
        }
        unsafe fn free(&self, block: *mut u8) {
            let mut live = self.live.borrow_mut();
            let i = live
                .iter()
                .position(|(p, _)| *p == block)
                .expect("free of a block the pool never gave out");
            let (_, bytes) = live.remove(i);
            // SAFETY: reverses allocate.
            unsafe {
                std::alloc::dealloc(
                    block.sub(16),
                    Layout::from_size_align(bytes + 16, 32).unwrap(),
                )
            };
        }
    }

    fn allocator() -> PoolAllocator<HostPool> {
        PoolAllocator::new(HostPool {
            live: RefCell::new(Vec::new()),
            irql: core::cell::Cell::new(0),
            calls: core::cell::Cell::new(0),
        })
    }

    #[test]
    fn every_alignment_up_to_a_page_is_honoured_and_freed() {
        let a = allocator();
        for shift in 0..=12 {
            let align = 1usize << shift;
            for size in [1usize, 7, 64, 4095] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero size.
                let p = unsafe { a.alloc(layout) };
                assert_eq!(p as usize % align, 0, "align {align} size {size}");
                // SAFETY: p is valid for `size` bytes.
                unsafe { p.write_bytes(0xAB, size) };
                // SAFETY: p came from alloc with this layout.
                unsafe { a.dealloc(p, layout) };
            }
        }
        assert!(a.pool.live.borrow().is_empty(), "leaked pool blocks");
    }

    #[test]
    fn zeroed_over_aligned_block_is_zero() {
        let a = allocator();
        let layout = Layout::from_size_align(300, 256).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc_zeroed(layout) };
        // SAFETY: p is valid for 300 bytes.
        let bytes = unsafe { core::slice::from_raw_parts(p, 300) };
        assert!(bytes.iter().all(|b| *b == 0));
        // SAFETY: from alloc_zeroed with this layout.
        unsafe { a.dealloc(p, layout) };
        assert!(a.pool.live.borrow().is_empty());
    }

    #[test]
    fn above_dispatch_level_allocation_is_null_and_never_reaches_the_pool() {
        let a = allocator();
        for align in [8usize, 64] {
            let layout = Layout::from_size_align(40, align).unwrap();
            for irql in [3u8, 5, 15] {
                a.pool.irql.set(irql);
                // SAFETY: non-zero size.
                assert!(unsafe { a.alloc(layout) }.is_null(), "IRQL {irql}");
                // SAFETY: as above.
                assert!(unsafe { a.alloc_zeroed(layout) }.is_null(), "IRQL {irql}");
            }
            assert_eq!(
                a.pool.calls.get(),
                0,
                "the pool is never called above DISPATCH"
            );
            for irql in [0u8, 1, 2] {
                a.pool.irql.set(irql);
                // SAFETY: non-zero size.
                let p = unsafe { a.alloc(layout) };
                assert!(!p.is_null(), "IRQL {irql}");
                // SAFETY: from alloc with this layout.
                unsafe { a.dealloc(p, layout) };
            }
            a.pool.calls.set(0);
        }
        assert!(a.pool.live.borrow().is_empty());
    }

    #[test]
    fn a_growing_realloc_above_dispatch_level_fails_and_keeps_the_block() {
        let a = allocator();
        let layout = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(layout) };
        a.pool.irql.set(4);
        // SAFETY: p came from alloc with this layout; the new size is non-zero.
        assert!(unsafe { a.realloc(p, layout, 64) }.is_null());
        a.pool.irql.set(2);
        // SAFETY: a failed realloc leaves p allocated.
        unsafe { a.dealloc(p, layout) };
        assert!(a.pool.live.borrow().is_empty());
    }

    #[test]
    fn the_host_irql_is_passive_level() {
        assert_eq!(current_irql(), 0);
    }

    #[test]
    fn tag_reads_in_written_order() {
        assert_eq!(PoolTag::new(*b"vnet").0.to_le_bytes(), *b"vnet");
    }

    #[test]
    fn above_dispatch_level_a_free_keeps_the_block_instead_of_calling_the_pool() {
        let a = allocator();
        let layout = Layout::from_size_align(40, 8).unwrap();
        a.pool.irql.set(0);
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        let calls = a.pool.calls.get();
        a.pool.irql.set(5);
        // SAFETY: from alloc with this layout.
        unsafe { a.dealloc(p, layout) };
        assert_eq!(a.pool.calls.get(), calls, "the pool was called at DIRQL");
        assert_eq!(
            a.pool.live.borrow().len(),
            1,
            "the block is kept (a reported leak)"
        );
        a.pool.irql.set(0);
        // SAFETY: still live: the free above DISPATCH did nothing.
        unsafe { a.dealloc(p, layout) };
        assert!(a.pool.live.borrow().is_empty());
    }
}
