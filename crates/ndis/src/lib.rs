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
//!
//! # The traits a driver implements
//!
//! * [`driver::MiniportDriver`]: what exists before any adapter (NDIS versions, `initialize`),
//!   declared once with [`miniport_driver!`];
//! * [`miniport::Miniport`]: one adapter (send, returned receives, pause/restart, halt, OIDs,
//!   power: `POWER`, `power_down`/`power_up`; reset and hang checks);
//! * [`interrupt::InterruptHandler`]: per-queue ISR and DPC work; [`interrupt::wdm::WdmInterruptHandler`]
//!   for a WDM connection;
//! * [`nbl::MapHook`]: zero-copy sends, called with each [`nbl::MappedSend`] NDIS maps after the
//!   request returned ([`nbl::MapPool`] makes the requests once);
//! * [`hw::Registers`], [`hw::ConfigSpace`], [`hw::DeviceMemory`]: the hardware seam, implemented
//!   by the framework ([`io::IoSpace`], [`io::PciConfig`], [`dma::SharedMemory`]) and by test
//!   stand-ins.
//!
//! Each has an example that is compiled and run by `cargo test` (those with an adapter run it on
//! the `ndis-emu` emulator).
//!
//! # A driver crate
//!
//! A miniport is a `cdylib` (the kernel image) and an `rlib` (so host tests link the same code
//! against the emulator), `no_std` on Windows:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! ndis = "0.1"
//!
//! [target.'cfg(windows)'.dependencies]
//! km-alloc = "0.1" # the pool allocator
//! km-rt = "0.1"    # panic handler, _fltused
//!
//! [build-dependencies]
//! km-build = "0.1" # build.rs: fn main() { km_build::configure_driver_link(); }
//!
//! [target.'cfg(not(windows))'.dev-dependencies]
//! ndis-emu = "0.1" # tests: #[global_allocator] static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;
//! ```
//!
//! plus `linker = "rust-lld"` for `x86_64-pc-windows-msvc` in `.cargo/config.toml`. A missing
//! piece stops the build with a message that names it (km-build's checks, and
//! [`miniport_driver!`]'s), not with a linker error.
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
