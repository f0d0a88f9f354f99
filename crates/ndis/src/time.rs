//! The kernel's high-resolution counter (`KeQueryPerformanceCounter`), at any IRQL.
//!
//! For measuring intervals and as a source of unpredictable low bits (e.g. seeding a random
//! locally administered MAC address): consecutive reads differ, and two machines, boots or
//! adapters rarely read the same value. It is not a cryptographic random source.

use ndis_sys as sys;

/// A reading of the performance counter: `ticks` since an arbitrary origin, at `frequency`
/// ticks per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerformanceCounter {
    pub ticks: u64,
    pub frequency: u64,
}

/// Reads the performance counter and its frequency. Any IRQL.
pub fn performance_counter() -> PerformanceCounter {
    let mut frequency = 0i64;
    // SAFETY: any IRQL; the out-pointer is a live local.
    let ticks = unsafe { sys::KeQueryPerformanceCounter(&mut frequency) };
    PerformanceCounter {
        ticks: ticks as u64,
        frequency: frequency as u64,
    }
}
