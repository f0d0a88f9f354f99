//! Leak accounting for the driver's Rust heap.
//!
//! In the kernel, a framework driver's `Box`/`Vec` allocations go to `ExAllocatePool2` (through
//! `km-alloc`) and the emulator counts pool blocks. On the host they go to the host allocator, so
//! a test binary installs [`DriverHeap`] as its global allocator:
//!
//! ```
//! #[global_allocator]
//! static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;
//! # fn main() {}
//! ```
//!
//! It records every allocation made while *driver code* runs on this thread (inside a callback
//! the emulator made, and not inside an emulated export the driver called back into), forgets it
//! when freed (by anyone), and `Emulator::unload` reports the survivors like leaked pool
//! (DRIVER_VERIFIER_DETECTED_VIOLATION 0x62). Allocations by test code and by the emulator itself
//! are not counted.

use rustc_hash::FxHashMap as HashMap;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};

thread_local! {
    /// True while driver code runs (set around callbacks, cleared around exports).
    static IN_DRIVER: Cell<bool> = const { Cell::new(false) };
    /// Live driver allocations: address -> size.
    static LIVE: RefCell<Option<HashMap<usize, usize>>> = const { RefCell::new(None) };
    /// Set while the allocator itself works, so its own bookkeeping is never recorded.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// A global allocator over the system allocator that records the driver's allocations.
#[derive(Debug, Clone, Copy, Default)]
pub struct DriverHeap;

fn with_bookkeeping(f: impl FnOnce(&mut HashMap<usize, usize>)) {
    let _ = BUSY.try_with(|busy| {
        if busy.replace(true) {
            return;
        }
        let _ = LIVE.try_with(|live| {
            if let Ok(mut live) = live.try_borrow_mut() {
                f(live.get_or_insert_with(HashMap::default));
            }
        });
        busy.set(false);
    });
}

fn recording() -> bool {
    IN_DRIVER.try_with(|d| d.get()).unwrap_or(false) && !BUSY.try_with(|b| b.get()).unwrap_or(true)
}

// SAFETY: every call is forwarded to the system allocator unchanged; the bookkeeping neither
// touches the blocks nor changes what is returned.
unsafe impl GlobalAlloc for DriverHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && recording() {
            with_bookkeeping(|live| {
                live.insert(p as usize, layout.size());
            });
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && recording() {
            with_bookkeeping(|live| {
                live.insert(p as usize, layout.size());
            });
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's arguments.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            let record = recording();
            with_bookkeeping(|live| {
                // A block keeps its owner across growth: a driver Vec grown by test code is
                // still the driver's, and vice versa.
                if live.remove(&(ptr as usize)).is_some() || record {
                    live.insert(p as usize, new_size);
                }
            });
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        with_bookkeeping(|live| {
            live.remove(&(ptr as usize));
        });
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` as driver code (the emulator calling a driver callback).
pub(crate) fn as_driver<R>(f: impl FnOnce() -> R) -> R {
    let previous = IN_DRIVER.with(|d| d.replace(true));
    let r = f();
    IN_DRIVER.with(|d| d.set(previous));
    r
}

/// Marks the emulator's own work inside an export the driver called.
pub(crate) struct EmulatorCode(bool);

impl EmulatorCode {
    pub(crate) fn enter() -> Self {
        EmulatorCode(IN_DRIVER.with(|d| d.replace(false)))
    }
}

impl Drop for EmulatorCode {
    fn drop(&mut self) {
        IN_DRIVER.with(|d| d.set(self.0));
    }
}

/// Runs `f` as test instrumentation inside a driver callback (logging what the driver saw into
/// test-owned buffers): its allocations are not the driver's and are not counted.
pub fn instrumentation<R>(f: impl FnOnce() -> R) -> R {
    let _guard = EmulatorCode::enter();
    f()
}

/// (count, bytes) of live driver heap blocks on this thread.
pub(crate) fn live() -> (usize, usize) {
    let mut out = (0, 0);
    with_bookkeeping(|live| out = (live.len(), live.values().sum()));
    out
}

/// Forgets every record (a new emulator starts clean).
pub(crate) fn reset() {
    with_bookkeeping(|live| live.clear());
}
