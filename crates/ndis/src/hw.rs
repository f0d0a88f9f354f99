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
///
/// Driver code is written against the trait, so a register block can be tested against a
/// stand-in (the framework's implementations are [`crate::io::IoSpace`] and
/// [`crate::io::OwnedWindow`]):
///
/// ```
/// use std::cell::Cell;
///
/// use ndis::hw::Registers;
///
/// /// A device whose register 0x10 reads back what was written, and 0x14 is a status register.
/// struct Fake(Cell<u32>);
///
/// impl Registers for Fake {
///     fn len(&self) -> usize { 0x20 }
///     fn read8(&self, o: usize) -> u8 { self.read32(o & !3) as u8 }
///     fn read16(&self, o: usize) -> u16 { self.read32(o & !3) as u16 }
///     fn read32(&self, o: usize) -> u32 {
///         match o { 0x10 => self.0.get(), 0x14 => 0x1, _ => 0 }
///     }
///     fn write8(&self, o: usize, v: u8) { self.write32(o, v.into()) }
///     fn write16(&self, o: usize, v: u16) { self.write32(o, v.into()) }
///     fn read64(&self, o: usize) -> u64 { self.read32(o).into() }
///     fn write32(&self, o: usize, v: u32) { if o == 0x10 { self.0.set(v) } }
///     fn write64(&self, o: usize, v: u64) { self.write32(o, v as u32) }
/// }
///
/// /// Driver code: enables the device when it reports ready.
/// fn enable(regs: &impl Registers) -> bool {
///     if regs.read32(0x14) & 1 == 0 {
///         return false;
///     }
///     regs.write32(0x10, 0xA5);
///     regs.read32(0x10) == 0xA5
/// }
///
/// assert!(enable(&Fake(Cell::new(0))));
/// ```
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
///
/// ```
/// use ndis::hw::ConfigSpace;
///
/// /// The first 64 bytes of a device's configuration space.
/// struct Header([u8; 64]);
///
/// impl ConfigSpace for Header {
///     fn read_config(&self, offset: u16, buf: &mut [u8]) -> usize {
///         let o = usize::from(offset).min(64);
///         let n = buf.len().min(64 - o);
///         buf[..n].copy_from_slice(&self.0[o..o + n]);
///         n
///     }
/// }
///
/// let mut h = [0u8; 64];
/// h[0..4].copy_from_slice(&[0xF4, 0x1A, 0x41, 0x10]); // 1AF4:1041
/// let cfg = Header(h);
/// assert_eq!((cfg.config_u16(0), cfg.config_u16(2)), (Some(0x1AF4), Some(0x1041)));
/// assert_eq!(cfg.config_u32(62), None); // only 2 bytes left: unreadable
/// ```
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
///
/// The framework's implementation is [`crate::dma::SharedMemory`]; a ring written against the
/// trait runs on a stand-in too:
///
/// ```
/// use std::cell::RefCell;
///
/// use ndis::hw::DeviceMemory;
///
/// struct Ram(RefCell<Vec<u8>>);
///
/// impl DeviceMemory for Ram {
///     fn device_address(&self) -> u64 { 0x1000 }
///     fn len(&self) -> usize { self.0.borrow().len() }
///     fn read_u16(&self, o: usize) -> u16 {
///         u16::from_le_bytes(self.0.borrow()[o..o + 2].try_into().unwrap())
///     }
///     fn read_u32(&self, o: usize) -> u32 {
///         u32::from_le_bytes(self.0.borrow()[o..o + 4].try_into().unwrap())
///     }
///     fn read_u64(&self, o: usize) -> u64 {
///         u64::from_le_bytes(self.0.borrow()[o..o + 8].try_into().unwrap())
///     }
///     fn write_u16(&self, o: usize, v: u16) { self.write_bytes(o, &v.to_le_bytes()) }
///     fn write_u32(&self, o: usize, v: u32) { self.write_bytes(o, &v.to_le_bytes()) }
///     fn write_u64(&self, o: usize, v: u64) { self.write_bytes(o, &v.to_le_bytes()) }
///     fn read_bytes(&self, o: usize, buf: &mut [u8]) {
///         buf.copy_from_slice(&self.0.borrow()[o..o + buf.len()])
///     }
///     fn write_bytes(&self, o: usize, data: &[u8]) {
///         self.0.borrow_mut()[o..o + data.len()].copy_from_slice(data)
///     }
/// }
///
/// /// Driver code: a descriptor (address, length) written, then published by its index.
/// fn post(ring: &impl DeviceMemory, slot: usize, buffer: u64, len: u32) {
///     ring.write_u64(8 + 16 * slot, buffer);
///     ring.write_u32(16 + 16 * slot, len);
///     ring.fence(); // the descriptor before the index the device reads
///     ring.write_u16(0, slot as u16 + 1);
/// }
///
/// let ring = Ram(RefCell::new(vec![0; 64]));
/// post(&ring, 1, 0x8000, 1514);
/// assert_eq!((ring.read_u16(0), ring.read_u64(24), ring.read_u32(32)), (2, 0x8000, 1514));
/// ```
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
    /// Two 8-byte writes, `values[0]` at `offset` then `values[1]` after it: a 16-byte ring
    /// descriptor. An implementation may check the range once for both (the framework's does).
    fn write_u64_pair(&self, offset: usize, values: [u64; 2]) {
        self.write_u64(offset, values[0]);
        self.write_u64(offset + 8, values[1]);
    }
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
