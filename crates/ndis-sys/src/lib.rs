//! Raw FFI for the NDIS 6.x miniport subset the `ndis` framework uses, on Windows x64.
//!
//! Written by hand from the WDK headers (see `docs/ndis-sys.md` for sources), so it builds on any
//! host without the WDK, bindgen or libclang. Names follow the C headers. There is no logic here:
//! safe wrappers live in the `ndis` crate.
//!
//! Every structure's size, alignment and field offsets are asserted at compile time against the
//! Windows x64 values (on every 64-bit target, the host included), and with the `wdk` feature on a
//! Windows host also against the WDK's own `wdk-sys` bindings.
#![no_std]
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]

// The NDIS seam speaks the Windows x64 convention on every target (`extern "win64-unwind"`), so
// that a host build and a Windows image call and are called the same way (docs/architecture.md).
#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "ndis-sys uses the Windows x64 calling convention on every target: build for x86_64 \
     (on Apple silicon, with an x86_64 toolchain under Rosetta)"
);

mod layout;

pub mod availability;

pub mod base;
pub mod datapath;
pub mod dma;
pub mod functions;
pub mod general;
pub mod interrupt;
pub mod io_interrupt;
pub mod miniport;
pub mod mmio;
pub mod object;
pub mod offload;
pub mod oid;
pub mod power;
pub mod resources;
pub mod rss;
pub mod status;
pub mod sync;

#[cfg(all(windows, feature = "wdk"))]
mod wdk_crosscheck;

pub use base::*;
pub use datapath::*;
pub use dma::*;
pub use functions::*;
pub use general::*;
pub use interrupt::*;
pub use io_interrupt::*;
pub use miniport::*;
pub use mmio::{PCI_WHICHSPACE_CONFIG, PCI_WHICHSPACE_ROM};
pub use object::*;
pub use offload::*;
pub use oid::*;
pub use power::*;
pub use resources::*;
pub use rss::*;
pub use status::*;
pub use sync::*;
