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
pub use status::*;
pub use sync::*;
