//! The safe layer of the framework: a NIC vendor implements traits, and this crate fills the NDIS
//! characteristics with `extern "system"` trampolines that cast the context pointer back and call
//! the trait. Driver code needs no `unsafe`.
//!
//! What exists today: driver registration ([`driver`]), interrupts ([`interrupt`]: registration,
//! grant negotiation, ISR/DPC dispatch to queues, synchronization, WDM connection) and IRQL as
//! types ([`irql`]). The adapter lifecycle, OIDs and the datapath come next.
#![no_std]

extern crate alloc;

pub mod adapter;
pub mod config;
pub mod dma;
pub mod driver;
pub mod hw;
pub mod interrupt;
pub mod io;
pub mod irql;
pub mod miniport;
pub mod nbl;
pub mod oid;
pub mod status;
pub mod sync;
pub mod version;

pub use status::Status;
pub use version::NdisVersion;

/// Re-exported so macro expansions in driver crates resolve the raw types without a direct
/// dependency on `ndis-sys`.
#[doc(hidden)]
pub use ndis_sys as sys;
