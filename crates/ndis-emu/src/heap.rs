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
//!
//! Two more rules of the kernel pool apply to those allocations:
//! * **IRQL.** Pool may be allocated and freed at IRQL <= DISPATCH_LEVEL only (`km-alloc` returns
//!   null above it). An allocation or free by driver code running above DISPATCH_LEVEL (an ISR, a
//!   synchronize function) is latched on this thread with its IRQL and size — the allocator must
//!   not unwind, so it still serves the request — and the emulator raises 0xC4
//!   (`rule::ALLOCATION_IRQL`, IRQL, bytes, 0 allocation / 1 free) at the next boundary: the next
//!   export the driver calls, or the return of the callback, whichever comes first. The IRQL is
//!   the one the emulator entered the callback at, kept in a thread-local next to `IN_DRIVER`
//!   (the machine's state is never borrowed from the allocator for it); spin locks, the only way
//!   a callback changes its IRQL, never take it above DISPATCH_LEVEL.
//! * **Fallible allocations.** Allocations the driver makes inside
//!   `ndis_sys::host::fallible_allocation` (a guard the framework wraps around
//!   `Vec::try_reserve` and the like; the emulator installs its hook) are fallible calls of the
//!   fault plan, named [`FALLIBLE_SITE`]: a plan or a sweep may fail them (null), and
//!   `fallible_calls()` lists them. Infallible ones are never failed: `Box::new` aborts on null.
//!   They are counted instead (`Emulator::infallible_heap_allocations`): each is an allocation
//!   whose failure would bug-check the kernel (km-rt's alloc error handler), so a test can
//!   require a path to make none. With `NDIS_EMU_INFALLIBLE_BACKTRACE=1` in the environment each
//!   one prints its backtrace on stderr, to find it.
//!
//! Whether this allocator is installed at all is probed by [`probe`] when an emulator is created
//! (`Emulator::leak_detection`).

use rustc_hash::FxHashMap as HashMap;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};

use ndis_sys as sys;

/// The name of a fallible driver-heap allocation in the fault plan and `fallible_calls()`.
pub const FALLIBLE_SITE: &str = "driver heap (fallible)";

/// Live driver allocations: address -> size, and where each was made (see `crate::site`).
type Live = HashMap<usize, (usize, Option<crate::site::Site>)>;

/// An allocation or free above DISPATCH_LEVEL, waiting for the next boundary to bug-check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IrqlViolation {
    irql: u8,
    bytes: usize,
    free: bool,
}

thread_local! {
    /// True while driver code runs (set around callbacks, cleared around exports).
    static IN_DRIVER: Cell<bool> = const { Cell::new(false) };
    /// The IRQL of the driver callback running now (meaningful while IN_DRIVER).
    static DRIVER_IRQL: Cell<u8> = const { Cell::new(0) };
    /// Depth of `ndis_sys::host::FallibleAllocation` guards on this thread.
    static FALLIBLE_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The first allocation or free above DISPATCH_LEVEL not yet reported.
    static IRQL_VIOLATION: Cell<Option<IrqlViolation>> = const { Cell::new(None) };
    /// Live driver allocations: address -> size, and where each was made (see `crate::site`).
    static LIVE: RefCell<Option<Live>> = const { RefCell::new(None) };
    /// Set while the allocator itself works, so its own bookkeeping is never recorded.
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// (count, bytes) of driver allocations made outside a fallible region.
    static INFALLIBLE: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Set while [`probe`] runs: its block is not the driver's.
    static PROBING: Cell<bool> = const { Cell::new(false) };
}

/// Whether each infallible driver allocation prints its backtrace (read once).
static INFALLIBLE_BACKTRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Counts an infallible driver allocation (and prints where it was made, if asked to).
fn note_infallible(bytes: usize) {
    if PROBING.try_with(|p| p.get()).unwrap_or(false) {
        return;
    }
    let _ = INFALLIBLE.try_with(|c| {
        let (n, b) = c.get();
        c.set((n + 1, b + bytes));
    });
    let _ = BUSY.try_with(|busy| {
        if busy.replace(true) {
            return;
        }
        let print = *INFALLIBLE_BACKTRACE
            .get_or_init(|| std::env::var_os("NDIS_EMU_INFALLIBLE_BACKTRACE").is_some());
        if print {
            eprintln!(
                "infallible driver heap allocation of {bytes} bytes:\n{}",
                std::backtrace::Backtrace::force_capture()
            );
        }
        busy.set(false);
    });
}

/// A global allocator over the system allocator that records the driver's allocations.
#[derive(Debug, Clone, Copy, Default)]
pub struct DriverHeap;

fn with_bookkeeping(f: impl FnOnce(&mut Live)) {
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

/// Latches the first allocation or free above DISPATCH_LEVEL (never unwinds).
fn check_irql(bytes: usize, free: bool) {
    let irql = DRIVER_IRQL.try_with(|i| i.get()).unwrap_or(0);
    if irql > sys::DISPATCH_LEVEL {
        let _ = IRQL_VIOLATION.try_with(|v| {
            if v.get().is_none() {
                v.set(Some(IrqlViolation { irql, bytes, free }));
            }
        });
    }
}

/// Whether the driver allocation of `bytes` about to be made must fail: the IRQL rule is
/// checked, and a fallible one is a fallible call of the fault plan.
fn fail_driver_allocation(bytes: usize) -> bool {
    if !recording() {
        return false;
    }
    check_irql(bytes, false);
    if FALLIBLE_DEPTH.try_with(|d| d.get()).unwrap_or(0) == 0 {
        note_infallible(bytes);
        return false;
    }
    let mut fail = false;
    let _ = BUSY.try_with(|busy| {
        if busy.replace(true) {
            return;
        }
        // The fault log grows here: BUSY keeps that allocation out of the records.
        fail = crate::machine::fail_fallible_heap_allocation(FALLIBLE_SITE);
        busy.set(false);
    });
    fail
}

// SAFETY: every call is forwarded to the system allocator unchanged, or answered with null
// (allowed for any allocation); the bookkeeping neither touches the blocks nor changes what is
// returned.
unsafe impl GlobalAlloc for DriverHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if fail_driver_allocation(layout.size()) {
            return core::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && recording() {
            with_bookkeeping(|live| {
                live.insert(p as usize, (layout.size(), Some(crate::site::capture())));
            });
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if fail_driver_allocation(layout.size()) {
            return core::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && recording() {
            with_bookkeeping(|live| {
                live.insert(p as usize, (layout.size(), Some(crate::site::capture())));
            });
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if fail_driver_allocation(new_size) {
            // The old block stays valid, as after any failed realloc.
            return core::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's arguments.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            let record = recording();
            with_bookkeeping(|live| {
                // A block keeps its owner across growth: a driver Vec grown by test code is
                // still the driver's, and vice versa.
                match live.remove(&(ptr as usize)) {
                    // Grown where it was made: the site of the first allocation stays.
                    Some((_, site)) => {
                        live.insert(p as usize, (new_size, site));
                    }
                    None if record => {
                        live.insert(p as usize, (new_size, Some(crate::site::capture())));
                    }
                    None => {}
                }
            });
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if recording() {
            check_irql(layout.size(), true);
        }
        with_bookkeeping(|live| {
            live.remove(&(ptr as usize));
        });
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` as driver code (the emulator calling a driver callback) at `irql`. An allocation it
/// made above DISPATCH_LEVEL is reported by [`raise_irql_violation`] once the callback's
/// processor state is restored (`machine::on_cpu`), so that code unwinding from the bug check
/// (a test's destructors) runs at the caller's IRQL.
pub(crate) fn as_driver<R>(irql: u8, f: impl FnOnce() -> R) -> R {
    let previous = IN_DRIVER.with(|d| d.replace(true));
    let previous_irql = DRIVER_IRQL.with(|i| i.replace(irql));
    let r = f();
    IN_DRIVER.with(|d| d.set(previous));
    DRIVER_IRQL.with(|i| i.set(previous_irql));
    r
}

/// Raises the bug check for an allocation or free above DISPATCH_LEVEL, if one is latched.
pub(crate) fn raise_irql_violation() {
    let Some(v) = IRQL_VIOLATION.try_with(|v| v.take()).ok().flatten() else {
        return;
    };
    let what = if v.free { "freed" } else { "allocated" };
    crate::bugcheck::raise(
        crate::bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
        [
            crate::bugcheck::rule::ALLOCATION_IRQL,
            v.irql as usize,
            v.bytes,
            v.free as usize,
        ],
        format!(
            "driver code {what} {} bytes of heap at IRQL {} ({}): pool may only be allocated and freed \
             at IRQL <= DISPATCH_LEVEL (km-alloc returns null above it, and Box::new then aborts). \
             Allocate before raising (in the DPC or at initialize) and keep ISR and synchronize \
             functions free of Box/Vec/String work.",
            v.bytes,
            v.irql,
            crate::machine::irql_name(v.irql)
        ),
    );
}

/// Marks the emulator's own work inside an export the driver called.
pub(crate) struct EmulatorCode(bool);

impl EmulatorCode {
    pub(crate) fn enter() -> Self {
        EmulatorCode(IN_DRIVER.with(|d| d.replace(false)))
    }

    /// Entry of an export the driver called: first reports an allocation the driver made above
    /// DISPATCH_LEVEL since the last boundary.
    pub(crate) fn export() -> Self {
        let guard = Self::enter();
        raise_irql_violation();
        guard
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

/// The hook `ndis_sys::host::FallibleAllocation` calls: entering (true) and leaving (false) a
/// region of fallible allocations on this thread.
pub(crate) fn fallible_allocation_hook(entering: bool) {
    let _ = FALLIBLE_DEPTH.try_with(|d| {
        d.set(if entering {
            d.get() + 1
        } else {
            d.get().saturating_sub(1)
        })
    });
}

/// (count, bytes) of live driver heap blocks on this thread.
pub(crate) fn live() -> (usize, usize) {
    let mut out = (0, 0);
    with_bookkeeping(|live| out = (live.len(), live.values().map(|(size, _)| size).sum()));
    out
}

/// The live driver allocations grouped by where they were made: (site, count, bytes), largest
/// first. Resolving the sites allocates: done under the bookkeeping guard, so not recorded.
pub(crate) fn live_by_site(images: &[crate::site::ImageRange]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    with_bookkeeping(|live| {
        let mut by_site: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
        for (size, site) in live.values_mut() {
            let name = site
                .as_mut()
                .map_or_else(|| "unknown".to_string(), |s| s.describe(images));
            let e = by_site.entry(name).or_default();
            e.0 += 1;
            e.1 += *size;
        }
        out = by_site.into_iter().map(|(s, (n, b))| (s, n, b)).collect();
        out.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    });
    out
}

/// (count, bytes) of the driver's infallible heap allocations since the last [`reset`].
pub(crate) fn infallible() -> (usize, usize) {
    INFALLIBLE.try_with(|c| c.get()).unwrap_or((0, 0))
}

/// Forgets every record (a new emulator starts clean).
pub(crate) fn reset() {
    with_bookkeeping(|live| live.clear());
    INFALLIBLE.with(|c| c.set((0, 0)));
    FALLIBLE_DEPTH.with(|d| d.set(0));
    IRQL_VIOLATION.with(|v| v.set(None));
}

/// Marks [`probe`]'s allocation as not the driver's infallible one (cleared on drop).
struct Probing;

impl Probing {
    fn enter() -> Self {
        PROBING.with(|p| p.set(true));
        Probing
    }
}

impl Drop for Probing {
    fn drop(&mut self) {
        PROBING.with(|p| p.set(false));
    }
}

/// Whether [`DriverHeap`] is this process's global allocator: a block allocated as driver code
/// must show up in its records.
pub(crate) fn probe() -> bool {
    let layout = Layout::new::<u64>();
    let _probing = Probing::enter();
    as_driver(sys::PASSIVE_LEVEL, || {
        // SAFETY: a non-zero-sized layout; the block is freed below with it.
        let p = std::hint::black_box(unsafe { std::alloc::alloc(layout) });
        if p.is_null() {
            return false;
        }
        let mut recorded = false;
        with_bookkeeping(|live| recorded = live.contains_key(&(p as usize)));
        // SAFETY: allocated above with this layout, freed once.
        unsafe { std::alloc::dealloc(p, layout) };
        recorded
    })
}
