//! The atomics of the framework's concurrent code: `core`'s, or loom's in the model-checking
//! build (`--cfg loom`; see docs/architecture.md, "Model checking"), where every access is a
//! point at which loom switches threads and every ordering is checked.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::*;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::*;

/// The busy-wait hint; under loom it yields to the other threads (a spin loop that does not
/// would never let the model end).
#[cfg(not(loom))]
pub(crate) use core::hint::spin_loop;
#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;
