//! The safe layer of the framework: a NIC vendor implements traits, and this crate fills the NDIS
//! characteristics with `extern "system"` trampolines that cast the context pointer back and call
//! the trait. Driver code needs no `unsafe`.
//!
//! What exists today: driver registration ([`driver`]). Interrupts, the adapter lifecycle, OIDs
//! and the datapath come next (see the issues referenced in `docs/architecture.md`).
#![no_std]

pub mod driver;
pub mod status;
pub mod version;

pub use status::Status;
pub use version::NdisVersion;

/// Re-exported so macro expansions in driver crates resolve the raw types without a direct
/// dependency on `ndis-sys`.
#[doc(hidden)]
pub use ndis_sys as sys;
