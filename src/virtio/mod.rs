//! The driver side of virtio: the modern PCI transport, the split virtqueue and the virtio-net
//! specifics, written only against the [`ndis::hw`] traits.
//!
//! Nothing here allocates or uses `unsafe`: registers are reached through
//! [`ndis::hw::Registers`], PCI configuration space through [`ndis::hw::ConfigSpace`] and ring
//! memory through [`ndis::hw::DeviceMemory`], so the same code runs in the kernel, against the
//! emulator's device model, and against plain test memory.
//!
//! The device is not trusted: every value read from it (a capability pointer, a used-ring entry,
//! a read-back vector) is checked before it is used, and a bad one becomes a typed error that the
//! driver turns into a device reset or a failed initialization, never an out-of-bounds access or
//! an unbounded loop.

pub mod net;
pub mod pci;
pub mod queue;
