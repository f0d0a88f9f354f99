//! Device resources, register mappings and PCI configuration space.

use ndis_sys as sys;

use crate::Status;
use crate::adapter::AdapterHandle;
use crate::heap::Shared;
use crate::hw::{ConfigSpace, Registers};
use crate::miniport::Initializing;
use crate::resources::{Kind, Release};

/// A memory range PnP assigned to one adapter (a memory BAR), from the translated resources of
/// the initialize call it borrows. Only [`Resources`] makes these, so
/// [`Init::map`](crate::miniport::Init::map) can map nothing but the adapter's own ranges of
/// this start (a range kept from an earlier start, whose BARs PnP may have moved, does not
/// outlive its initialize).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryResource<'a> {
    start: u64,
    length: u32,
    adapter: AdapterHandle,
    _list: core::marker::PhantomData<&'a sys::CM_PARTIAL_RESOURCE_DESCRIPTOR>,
}

impl MemoryResource<'_> {
    pub fn start(&self) -> u64 {
        self.start
    }
    pub fn length(&self) -> u32 {
        self.length
    }
}

/// A port range PnP assigned to one adapter (an I/O BAR), from the translated resources of the
/// initialize call it borrows, as [`MemoryResource`] is for memory: only [`Resources`] makes
/// these, so [`Init::register_ports`](crate::miniport::Init::register_ports) registers nothing
/// but the adapter's own ranges of this start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortResource<'a> {
    start: u32,
    length: u32,
    adapter: AdapterHandle,
    _list: core::marker::PhantomData<&'a sys::CM_PARTIAL_RESOURCE_DESCRIPTOR>,
}

impl PortResource<'_> {
    /// The first port.
    pub fn start(&self) -> u32 {
        self.start
    }
    pub fn length(&self) -> u32 {
        self.length
    }
}

/// The adapter's translated resources (`NDIS_MINIPORT_INIT_PARAMETERS.AllocatedResources`).
#[derive(Clone, Copy)]
pub struct Resources<'a> {
    descriptors: &'a [sys::CM_PARTIAL_RESOURCE_DESCRIPTOR],
    adapter: AdapterHandle,
}

impl<'a> Resources<'a> {
    /// # Safety
    /// `list` is null or the resource list NDIS passed to `MiniportInitializeEx`, valid for `'a`.
    pub(crate) unsafe fn from_raw(
        list: *const sys::CM_PARTIAL_RESOURCE_LIST,
        adapter: AdapterHandle,
    ) -> Self {
        if list.is_null() {
            return Resources {
                descriptors: &[],
                adapter,
            };
        }
        // SAFETY: per this function's contract: `Count` descriptors follow the header.
        let descriptors = unsafe {
            core::slice::from_raw_parts((*list).PartialDescriptors.as_ptr(), (*list).Count as usize)
        };
        Resources {
            descriptors,
            adapter,
        }
    }

    /// Memory ranges in resource order (which, for PCI, is BAR order).
    pub fn memory(&self) -> impl Iterator<Item = MemoryResource<'a>> + 'a {
        let adapter = self.adapter;
        self.descriptors
            .iter()
            .filter(|d| d.Type == sys::CmResourceTypeMemory)
            .map(move |d| {
                // SAFETY: the type says this is the memory member.
                let m = unsafe { d.u.Memory };
                MemoryResource {
                    start: m.Start as u64,
                    length: m.Length,
                    adapter,
                    _list: core::marker::PhantomData,
                }
            })
    }

    /// Port ranges (I/O BARs) in resource order.
    pub fn ports(&self) -> impl Iterator<Item = PortResource<'a>> + 'a {
        let adapter = self.adapter;
        self.descriptors
            .iter()
            .filter(|d| d.Type == sys::CmResourceTypePort)
            .map(move |d| {
                // SAFETY: the type says this is the port member.
                let p = unsafe { d.u.Port };
                PortResource {
                    start: p.Start as u32,
                    length: p.Length,
                    adapter,
                    _list: core::marker::PhantomData,
                }
            })
    }

    /// The memory range that contains `address` (e.g. a BAR address read from config space).
    pub fn memory_containing(&self, address: u64) -> Option<MemoryResource<'a>> {
        self.memory()
            .find(|m| address >= m.start && address < m.start + m.length as u64)
    }
}

/// A mapped memory range of the device (`NdisMMapIoSpace`). Mapped only in initialize
/// ([`Init::map`](crate::miniport::Init::map)), from the adapter's own resources; unmapped by
/// the framework after halt (see [`crate::resources`]). All access is through [`Registers`],
/// bounds-checked. Clones share the mapping.
#[derive(Debug, Clone)]
pub struct IoSpace {
    _mapping: Shared<Mapping>,
    base: usize,
    length: usize,
}

#[derive(Debug)]
struct Mapping {
    adapter: AdapterHandle,
    base: usize,
    length: usize,
}

impl Release for Mapping {
    const KIND: Kind = Kind::IoSpace;
    fn release(&self, kept: bool) {
        // Kept past halt: unmapping would turn its register accesses into faults.
        if !kept {
            // SAFETY: the mapping made in `map`, released once, at PASSIVE_LEVEL in halt or
            // initialize, after interrupts (whose ISRs may read registers) are deregistered.
            unsafe {
                sys::NdisMUnmapIoSpace(
                    self.adapter.as_raw(),
                    self.base as sys::PVOID,
                    self.length as u32,
                )
            }
        }
    }
}

// SAFETY: register access is valid from any processor; the mapping is released only by the
// framework, never while a handle can reach it.
unsafe impl Send for IoSpace {}
// SAFETY: every access is a single volatile register read or write; no Rust-visible state.
unsafe impl Sync for IoSpace {}

impl IoSpace {
    /// Maps `range`, one of this adapter's [`Resources::memory`].
    pub(crate) fn map(init: &Initializing<'_>, range: MemoryResource<'_>) -> Result<Self, Status> {
        if range.adapter != init.handle() {
            return Err(Status::INVALID_PARAMETER);
        }
        let adapter = init.handle();
        let mut va: sys::PVOID = core::ptr::null_mut();
        // SAFETY: inside MiniportInitializeEx of this adapter (the `Initializing` proof); the
        // range is one of its own translated resources (only `Resources` builds a
        // `MemoryResource`, and it names the adapter it came from, checked above).
        let status = unsafe {
            sys::NdisMMapIoSpace(&mut va, adapter.as_raw(), range.start as i64, range.length)
        };
        if status != sys::NDIS_STATUS_SUCCESS {
            return Err(Status(status));
        }
        if va.is_null() {
            return Err(Status::RESOURCES);
        }
        let unmap = || {
            // SAFETY: the mapping just made, known to nobody else.
            unsafe { sys::NdisMUnmapIoSpace(adapter.as_raw(), va, range.length) }
        };
        let mapping = Mapping {
            adapter,
            base: va as usize,
            length: range.length as usize,
        };
        let mapping = match Shared::try_new(mapping, init.passive()) {
            Ok(m) => m,
            Err(e) => {
                unmap();
                return Err(e);
            }
        };
        if let Err(e) = init.resources().adopt(&mapping, init.passive()) {
            unmap();
            return Err(e);
        }
        Ok(IoSpace {
            _mapping: mapping,
            base: va as usize,
            length: range.length as usize,
        })
    }

    fn address(&self, offset: usize, width: usize) -> usize {
        assert!(
            offset
                .checked_add(width)
                .is_some_and(|end| end <= self.length)
                && offset.is_multiple_of(width),
            "register access at {offset:#x} ({width} bytes) outside a {:#x}-byte mapping",
            self.length
        );
        self.base + offset
    }
}

impl Registers for IoSpace {
    fn len(&self) -> usize {
        self.length
    }
    fn read8(&self, offset: usize) -> u8 {
        let a = self.address(offset, 1);
        // SAFETY: inside the live mapping (checked).
        unsafe { sys::mmio::READ_REGISTER_UCHAR(a as *const u8) }
    }
    fn read16(&self, offset: usize) -> u16 {
        let a = self.address(offset, 2);
        // SAFETY: inside the live mapping, aligned (checked).
        unsafe { sys::mmio::READ_REGISTER_USHORT(a as *const u16) }
    }
    fn read32(&self, offset: usize) -> u32 {
        let a = self.address(offset, 4);
        // SAFETY: as above.
        unsafe { sys::mmio::READ_REGISTER_ULONG(a as *const u32) }
    }
    fn read64(&self, offset: usize) -> u64 {
        let a = self.address(offset, 8);
        // SAFETY: as above.
        unsafe { sys::mmio::READ_REGISTER_ULONG64(a as *const u64) }
    }
    fn write8(&self, offset: usize, value: u8) {
        let a = self.address(offset, 1);
        // SAFETY: as above.
        unsafe { sys::mmio::WRITE_REGISTER_UCHAR(a as *mut u8, value) }
    }
    fn write16(&self, offset: usize, value: u16) {
        let a = self.address(offset, 2);
        // SAFETY: as above.
        unsafe { sys::mmio::WRITE_REGISTER_USHORT(a as *mut u16, value) }
    }
    fn write32(&self, offset: usize, value: u32) {
        let a = self.address(offset, 4);
        // SAFETY: as above.
        unsafe { sys::mmio::WRITE_REGISTER_ULONG(a as *mut u32, value) }
    }
    fn write64(&self, offset: usize, value: u64) {
        let a = self.address(offset, 8);
        // SAFETY: as above.
        unsafe { sys::mmio::WRITE_REGISTER_ULONG64(a as *mut u64, value) }
    }
}

/// A registered port range of the device (`NdisMRegisterIoPortRange`), for a device whose
/// registers are in I/O space. Registered only in initialize
/// ([`Init::register_ports`](crate::miniport::Init::register_ports)) from the adapter's own
/// resources; deregistered by the framework after halt (see [`crate::resources`]). Accesses are
/// `READ_PORT_*`/`WRITE_PORT_*` (on x64, `in`/`out`) of 1, 2 or 4 bytes, bounds-checked; port
/// I/O has no 8-byte access, so this is not a [`Registers`] window. Clones share the range.
#[derive(Debug, Clone)]
pub struct IoPorts {
    _registration: Shared<PortRegistration>,
    base: usize,
    length: usize,
}

#[derive(Debug)]
struct PortRegistration {
    adapter: AdapterHandle,
    first: u32,
    count: u32,
    offset: usize,
}

impl Release for PortRegistration {
    const KIND: Kind = Kind::IoPorts;
    fn release(&self, kept: bool) {
        // Kept past halt: deregistering would leave its accesses unclaimed.
        if !kept {
            // SAFETY: the registration made in `register`, released once, at PASSIVE_LEVEL in
            // halt or initialize, after interrupts (whose ISRs may read ports) are deregistered.
            unsafe {
                sys::NdisMDeregisterIoPortRange(
                    self.adapter.as_raw(),
                    self.first,
                    self.count,
                    self.offset as sys::PVOID,
                )
            }
        }
    }
}

// SAFETY: port access is valid from any processor; the range is deregistered only by the
// framework, never while a handle can reach it.
unsafe impl Send for IoPorts {}
// SAFETY: every access is a single port read or write; no Rust-visible state.
unsafe impl Sync for IoPorts {}

impl IoPorts {
    /// Registers `range`, one of this adapter's [`Resources::ports`].
    pub(crate) fn register(
        init: &Initializing<'_>,
        range: PortResource<'_>,
    ) -> Result<Self, Status> {
        if range.adapter != init.handle() {
            return Err(Status::INVALID_PARAMETER);
        }
        let adapter = init.handle();
        let mut offset: sys::PVOID = core::ptr::null_mut();
        // SAFETY: inside MiniportInitializeEx of this adapter (the `Initializing` proof); the
        // range is one of its own translated resources (checked above).
        let status = unsafe {
            sys::NdisMRegisterIoPortRange(&mut offset, adapter.as_raw(), range.start, range.length)
        };
        if status != sys::NDIS_STATUS_SUCCESS {
            return Err(Status(status));
        }
        let registration = PortRegistration {
            adapter,
            first: range.start,
            count: range.length,
            offset: offset as usize,
        };
        let deregister = || {
            // SAFETY: the registration just made, known to nobody else.
            unsafe {
                sys::NdisMDeregisterIoPortRange(adapter.as_raw(), range.start, range.length, offset)
            }
        };
        let registration = match Shared::try_new(registration, init.passive()) {
            Ok(r) => r,
            Err(e) => {
                deregister();
                return Err(e);
            }
        };
        if let Err(e) = init.resources().adopt(&registration, init.passive()) {
            deregister();
            return Err(e);
        }
        Ok(IoPorts {
            _registration: registration,
            base: offset as usize,
            length: range.length as usize,
        })
    }

    /// Ports in the range.
    pub fn len(&self) -> usize {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    fn port(&self, offset: usize, width: usize) -> usize {
        assert!(
            offset
                .checked_add(width)
                .is_some_and(|end| end <= self.length),
            "port access at {offset:#x} ({width} bytes) outside a {}-port range",
            self.length
        );
        self.base + offset
    }

    pub fn read8(&self, offset: usize) -> u8 {
        let p = self.port(offset, 1);
        // SAFETY: inside the registered range (checked).
        unsafe { sys::mmio::READ_PORT_UCHAR(p as *const u8) }
    }
    pub fn read16(&self, offset: usize) -> u16 {
        let p = self.port(offset, 2);
        // SAFETY: as above.
        unsafe { sys::mmio::READ_PORT_USHORT(p as *const u16) }
    }
    pub fn read32(&self, offset: usize) -> u32 {
        let p = self.port(offset, 4);
        // SAFETY: as above.
        unsafe { sys::mmio::READ_PORT_ULONG(p as *const u32) }
    }
    pub fn write8(&self, offset: usize, value: u8) {
        let p = self.port(offset, 1);
        // SAFETY: as above.
        unsafe { sys::mmio::WRITE_PORT_UCHAR(p as *mut u8, value) }
    }
    pub fn write16(&self, offset: usize, value: u16) {
        let p = self.port(offset, 2);
        // SAFETY: as above.
        unsafe { sys::mmio::WRITE_PORT_USHORT(p as *mut u16, value) }
    }
    pub fn write32(&self, offset: usize, value: u32) {
        let p = self.port(offset, 4);
        // SAFETY: as above.
        unsafe { sys::mmio::WRITE_PORT_ULONG(p as *mut u32, value) }
    }
}

/// A sub-range of a shared [`IoSpace`] that owns its share (no borrow), so that register
/// windows can live in the same structure as the mapping.
#[derive(Debug, Clone)]
pub struct OwnedWindow {
    space: IoSpace,
    offset: usize,
    length: usize,
}

impl OwnedWindow {
    /// `[offset, offset + length)` of `space`; None if it does not fit.
    pub fn new(space: &IoSpace, offset: usize, length: usize) -> Option<Self> {
        (offset.checked_add(length)? <= space.length).then(|| OwnedWindow {
            space: space.clone(),
            offset,
            length,
        })
    }

    fn at(&self, offset: usize, width: usize) -> usize {
        assert!(
            offset
                .checked_add(width)
                .is_some_and(|end| end <= self.length),
            "register access at {offset:#x} ({width} bytes) outside a {:#x}-byte window",
            self.length
        );
        self.offset + offset
    }
}

impl Registers for OwnedWindow {
    fn len(&self) -> usize {
        self.length
    }
    fn read8(&self, offset: usize) -> u8 {
        self.space.read8(self.at(offset, 1))
    }
    fn read16(&self, offset: usize) -> u16 {
        self.space.read16(self.at(offset, 2))
    }
    fn read32(&self, offset: usize) -> u32 {
        self.space.read32(self.at(offset, 4))
    }
    fn read64(&self, offset: usize) -> u64 {
        self.space.read64(self.at(offset, 8))
    }
    fn write8(&self, offset: usize, value: u8) {
        self.space.write8(self.at(offset, 1), value)
    }
    fn write16(&self, offset: usize, value: u16) {
        self.space.write16(self.at(offset, 2), value)
    }
    fn write32(&self, offset: usize, value: u32) {
        self.space.write32(self.at(offset, 4), value)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.space.write64(self.at(offset, 8), value)
    }
}

/// The adapter's PCI configuration space (`NdisMGetBusData`), read in initialize. It borrows
/// [`Init`](crate::miniport::Init) (initialize's PASSIVE_LEVEL token), so it cannot be kept in
/// the adapter, reached from an ISR or `shutdown`, or used after halt: `NdisMGetBusData` needs
/// IRQL <= DISPATCH_LEVEL and a live adapter.
#[derive(Debug, Clone, Copy)]
pub struct PciConfig<'i> {
    adapter: AdapterHandle,
    _initializing: core::marker::PhantomData<&'i crate::irql::Passive<'i>>,
}

impl<'i> PciConfig<'i> {
    pub(crate) fn new(adapter: AdapterHandle, _passive: &'i crate::irql::Passive<'_>) -> Self {
        PciConfig {
            adapter,
            _initializing: core::marker::PhantomData,
        }
    }
}

impl ConfigSpace for PciConfig<'_> {
    fn read_config(&self, offset: u16, buf: &mut [u8]) -> usize {
        // SAFETY: the adapter's handle, live: a `PciConfig` borrows initialize's token, so this
        // runs inside MiniportInitializeEx at PASSIVE_LEVEL (NdisMGetBusData allows <=
        // DISPATCH_LEVEL); `buf` is writable for its length.
        let n = unsafe {
            sys::NdisMGetBusData(
                self.adapter.as_raw(),
                sys::PCI_WHICHSPACE_CONFIG,
                offset as u32,
                buf.as_mut_ptr().cast(),
                buf.len() as u32,
            )
        };
        (n as usize).min(buf.len())
    }
}

/// A base address register as configuration space holds it (PCI 3.0, 6.2.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar {
    /// A memory BAR: its address (both halves of a 64-bit BAR), whether it is 64-bit (and so also
    /// takes the next BAR register) and prefetchable.
    Memory {
        address: u64,
        is_64bit: bool,
        prefetchable: bool,
    },
    /// An I/O-space BAR: its port address.
    Io { port: u32 },
}

/// Decodes BAR `index` (0..=5) from configuration space: `None` for an index past 5, an
/// unreadable register, a reserved memory type, or a 64-bit BAR in register 5 (it has no upper
/// half). Reads only: it never sizes the BAR (writing all ones would change the register behind
/// the PCI bus driver's back; the length comes from the resource PnP assigned,
/// [`Resources::memory_containing`]).
///
/// ```
/// use ndis::hw::ConfigSpace;
/// use ndis::io::{Bar, decode_bar};
///
/// /// A configuration space with a 64-bit prefetchable BAR 0 at 0x80_0000_0000 and an I/O BAR 2.
/// struct Cfg([u8; 64]);
/// impl ConfigSpace for Cfg {
///     fn read_config(&self, offset: u16, buf: &mut [u8]) -> usize {
///         let o = offset as usize;
///         let n = buf.len().min(self.0.len().saturating_sub(o));
///         buf[..n].copy_from_slice(&self.0[o..o + n]);
///         n
///     }
/// }
/// let mut c = [0u8; 64];
/// c[0x10..0x14].copy_from_slice(&0x0000_000Cu32.to_le_bytes()); // 64-bit, prefetchable
/// c[0x14..0x18].copy_from_slice(&0x80u32.to_le_bytes()); // upper half
/// c[0x18..0x1C].copy_from_slice(&0xC001u32.to_le_bytes()); // I/O at 0xC000
/// let cfg = Cfg(c);
/// assert_eq!(
///     decode_bar(&cfg, 0),
///     Some(Bar::Memory { address: 0x80_0000_0000, is_64bit: true, prefetchable: true })
/// );
/// assert_eq!(decode_bar(&cfg, 2), Some(Bar::Io { port: 0xC000 }));
/// assert_eq!(ndis::io::bar_address(&cfg, 0), Some(0x80_0000_0000));
/// assert_eq!(ndis::io::bar_address(&cfg, 2), None); // not a memory BAR
/// ```
pub fn decode_bar(cfg: &impl ConfigSpace, index: u8) -> Option<Bar> {
    if index > 5 {
        return None;
    }
    let reg = 0x10 + 4 * index as u16;
    let low = cfg.config_u32(reg)?;
    if low & 1 != 0 {
        return Some(Bar::Io { port: low & !0x3 });
    }
    let prefetchable = low & 0x8 != 0;
    match (low >> 1) & 0x3 {
        0 => Some(Bar::Memory {
            address: (low & !0xF) as u64,
            is_64bit: false,
            prefetchable,
        }),
        2 if index < 5 => {
            let high = cfg.config_u32(reg + 4)?;
            Some(Bar::Memory {
                address: ((high as u64) << 32) | (low & !0xF) as u64,
                is_64bit: true,
                prefetchable,
            })
        }
        _ => None, // type 1 (below 1 MiB, reserved in PCI 3.0), 3 (reserved), or 64-bit in BAR 5
    }
}

/// The address of memory BAR `index`, as [`decode_bar`] decodes it; `None` for an I/O BAR or
/// anything `decode_bar` refuses. With [`Resources::memory_containing`] it finds the resource to
/// [`Init::map`](crate::miniport::Init::map).
pub fn bar_address(cfg: &impl ConfigSpace, index: u8) -> Option<u64> {
    match decode_bar(cfg, index)? {
        Bar::Memory { address, .. } => Some(address),
        Bar::Io { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Configuration space as bytes; reads past `len` come back short (an unreadable register).
    struct Cfg {
        bytes: [u8; 0x40],
        len: usize,
    }

    impl Cfg {
        fn with_bars(bars: [u32; 6]) -> Self {
            let mut bytes = [0u8; 0x40];
            for (i, v) in bars.iter().enumerate() {
                bytes[0x10 + 4 * i..0x14 + 4 * i].copy_from_slice(&v.to_le_bytes());
            }
            Cfg { bytes, len: 0x40 }
        }
    }

    impl ConfigSpace for Cfg {
        fn read_config(&self, offset: u16, buf: &mut [u8]) -> usize {
            let o = offset as usize;
            let n = buf.len().min(self.len.saturating_sub(o));
            buf[..n].copy_from_slice(&self.bytes[o..o + n]);
            n
        }
    }

    fn memory(address: u64, is_64bit: bool, prefetchable: bool) -> Option<Bar> {
        Some(Bar::Memory {
            address,
            is_64bit,
            prefetchable,
        })
    }

    #[test]
    fn thirty_two_bit_memory_bars_with_and_without_prefetch() {
        let cfg = Cfg::with_bars([0xFEBC_0000, 0xE000_0008, 0, 0, 0, 0]);
        assert_eq!(decode_bar(&cfg, 0), memory(0xFEBC_0000, false, false));
        assert_eq!(decode_bar(&cfg, 1), memory(0xE000_0000, false, true));
        assert_eq!(bar_address(&cfg, 1), Some(0xE000_0000));
        // An unimplemented BAR reads 0: a 32-bit memory BAR at 0, as the register says.
        assert_eq!(decode_bar(&cfg, 2), memory(0, false, false));
    }

    #[test]
    fn sixty_four_bit_bars_take_the_next_register_as_the_upper_half() {
        // BAR 0/1: 64-bit, not prefetchable, above 4 GiB; BAR 2/3: 64-bit prefetchable below it.
        let cfg = Cfg::with_bars([0x1000_0004, 0x0000_0001, 0xC000_000C, 0, 0, 0]);
        assert_eq!(decode_bar(&cfg, 0), memory(0x1_1000_0000, true, false));
        assert_eq!(bar_address(&cfg, 0), Some(0x1_1000_0000));
        assert_eq!(decode_bar(&cfg, 2), memory(0xC000_0000, true, true));
        // The low bits (type, prefetchable) never leak into the address.
        assert_eq!(bar_address(&cfg, 2).unwrap() & 0xF, 0);
    }

    #[test]
    fn io_bars_mask_the_two_flag_bits_and_have_no_memory_address() {
        let cfg = Cfg::with_bars([0, 0, 0, 0, 0xC043, 0]);
        assert_eq!(decode_bar(&cfg, 4), Some(Bar::Io { port: 0xC040 }));
        assert_eq!(bar_address(&cfg, 4), None);
    }

    #[test]
    fn what_cannot_be_decoded_is_refused() {
        // Type 1 (below 1 MiB) and type 3 are reserved; a 64-bit BAR in register 5 has no upper
        // half; there is no BAR 6.
        let cfg = Cfg::with_bars([0x000F_0002, 0xE000_0006, 0, 0, 0, 0xE000_0004]);
        assert_eq!(decode_bar(&cfg, 0), None);
        assert_eq!(decode_bar(&cfg, 1), None);
        assert_eq!(decode_bar(&cfg, 5), None);
        assert_eq!(bar_address(&cfg, 5), None);
        assert_eq!(decode_bar(&cfg, 6), None);
        assert_eq!(decode_bar(&cfg, u8::MAX), None);
    }

    #[test]
    fn an_unreadable_register_or_upper_half_is_refused() {
        let mut cfg = Cfg::with_bars([0xE000_0004, 0x2, 0xD000_0000, 0, 0, 0]);
        cfg.len = 0x16; // BAR 0 readable, BAR 1 (its upper half) only in part
        assert_eq!(decode_bar(&cfg, 0), None);
        assert_eq!(decode_bar(&cfg, 2), None);
        cfg.len = 0x18;
        assert_eq!(decode_bar(&cfg, 0), memory(0x2_E000_0000, true, false));
    }
}
