//! The safe layer of the framework: a NIC vendor implements traits, and this crate fills the NDIS
//! characteristics with `extern "system"` trampolines that cast the context pointer back and call
//! the trait. Driver code needs no `unsafe`.
//!
//! The pieces: driver registration ([`driver`]); the adapter lifecycle ([`miniport`]: initialize,
//! halt, pause/restart, statistics) with the general OIDs answered for the driver ([`oid`]);
//! the datapath ([`nbl`]: copied sends, receive pools lent to NDIS); the hardware seam ([`hw`],
//! [`io`]: register windows, PCI configuration; [`dma`]: shared memory); registry keywords
//! ([`config`]); interrupts ([`interrupt`]: registration, grant negotiation, ISR/DPC dispatch to
//! queues, synchronization, WDM connection); locks ([`sync`]) and IRQL as types ([`irql`]).
#![no_std]

extern crate alloc;
/// Host builds only: to tell an unwinding emulated bug check from a driver bug in destructors.
#[cfg(not(windows))]
extern crate std;

pub mod adapter;
pub mod config;
pub mod dma;
pub mod driver;
pub mod heap;
pub mod hw;
pub mod interrupt;
pub mod io;
pub mod irql;
pub mod keyword;
pub mod miniport;
pub mod nbl;
pub mod offload;
pub mod oid;
pub mod packet;
pub mod pnp;
pub mod power;
pub mod resources;
pub mod rss;
pub mod status;
pub mod sync;
pub mod time;
pub mod version;

pub use status::Status;
pub use version::{NdisVersion, NdisVersions};

/// Re-exported so macro expansions in driver crates resolve the raw types without a direct
/// dependency on `ndis-sys`.
#[doc(hidden)]
pub use ndis_sys as sys;
