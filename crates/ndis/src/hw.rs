//! The hardware-access seam: what a NIC driver needs from its device, as safe traits.
//!
//! Device logic (a virtqueue, a register protocol) is written against these traits, never against
//! raw pointers, so the same code runs over real mappings on Windows, over the emulator's device
//! models on a development host, and over plain test memory in unit tests. The framework's
//! implementations are [`crate::io::IoSpace`] (a mapped BAR) and [`crate::dma::SharedMemory`]
//! (memory the device reaches by DMA).
//!
//! Offsets are checked: an access outside the window panics (on Windows, a bug check), like an
//! out-of-range slice index. A driver validates every value it got from the device (an index in
//! a used ring, a length) before using it as an offset, so a misbehaving device is an error the
//! driver reports, never an out-of-bounds access.

/// A window of device registers (typically a region of a memory BAR). Accesses are volatile and
/// never merged or reordered with each other by the compiler.
pub trait Registers {
    /// Bytes in the window.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn read8(&self, offset: usize) -> u8;
    fn read16(&self, offset: usize) -> u16;
    fn read32(&self, offset: usize) -> u32;
    /// One 8-byte access (`READ_REGISTER_ULONG64`), never split in two: a device with 64-bit
    /// registers (a ring base address, a 64-bit counter) may latch or clear on the whole access.
    fn read64(&self, offset: usize) -> u64;
    fn write8(&self, offset: usize, value: u8);
    fn write16(&self, offset: usize, value: u16);
    fn write32(&self, offset: usize, value: u32);
    /// One 8-byte access (`WRITE_REGISTER_ULONG64`), as for [`read64`](Self::read64).
    fn write64(&self, offset: usize, value: u64);
}

/// PCI configuration space of the adapter.
pub trait ConfigSpace {
    /// Reads `buf.len()` bytes at `offset`; returns how many were read (fewer at the end of the
    /// space, 0 if it cannot be read).
    fn read_config(&self, offset: u16, buf: &mut [u8]) -> usize;

    fn config_u8(&self, offset: u16) -> Option<u8> {
        let mut b = [0u8; 1];
        (self.read_config(offset, &mut b) == 1).then_some(b[0])
    }
    fn config_u16(&self, offset: u16) -> Option<u16> {
        let mut b = [0u8; 2];
        (self.read_config(offset, &mut b) == 2).then(|| u16::from_le_bytes(b))
    }
    fn config_u32(&self, offset: u16) -> Option<u32> {
        let mut b = [0u8; 4];
        (self.read_config(offset, &mut b) == 4).then(|| u32::from_le_bytes(b))
    }
}

/// Memory the CPU and the device share (DMA). The device may read or write it at any time, so
/// every scalar access is volatile; multi-byte values are little-endian in memory (as PCI devices and
/// virtio define them). Ordering against the device is the caller's: [`DeviceMemory::fence`]
/// before publishing an index the device reads, and after reading one the device wrote.
pub trait DeviceMemory {
    /// The address the device uses for offset 0.
    fn device_address(&self) -> u64;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn read_u16(&self, offset: usize) -> u16;
    fn read_u32(&self, offset: usize) -> u32;
    fn read_u64(&self, offset: usize) -> u64;
    fn write_u16(&self, offset: usize, value: u16);
    fn write_u32(&self, offset: usize, value: u32);
    fn write_u64(&self, offset: usize, value: u64);
    /// Copies `buf.len()` bytes out, starting at `offset`. A bulk copy, for buffers the device
    /// has handed back (not necessarily volatile): read indexes the device may still be
    /// changing with the `read_u*` accessors.
    fn read_bytes(&self, offset: usize, buf: &mut [u8]);
    /// Copies `data` in, starting at `offset`; for buffers not yet published to the device.
    fn write_bytes(&self, offset: usize, data: &[u8]);
    /// A full memory barrier between CPU accesses to this memory and the device's view of them.
    fn fence(&self) {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}
