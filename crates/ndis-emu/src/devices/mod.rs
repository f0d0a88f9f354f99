//! Device models: the hardware behind an emulated PCI function, attached with
//! [`Emulator::add_adapter_with`](crate::Emulator::add_adapter_with) and driven by a test through
//! [`Emulator::with_device`](crate::Emulator::with_device).

pub mod virtio_net;
