//! A raw test miniport and `virtio-drivers` plumbing for driving the virtio-net model with an
//! independent driver (the oracle), shared by `tests/virtio_net_model.rs` and the root
//! package's datapath benchmark (`benches/datapath/host.rs`).
//!
//! The miniport registers DMA and maps the BAR that holds the common configuration, found the
//! way a Windows driver finds it (PCI capability walk through `NdisMGetBusData`, then
//! `NdisMMapIoSpace`); [`EmuTransport`] reaches the registers with `READ/WRITE_REGISTER_*`;
//! [`allocate`]/[`release`] are `NdisMAllocateSharedMemory`/`NdisMFreeSharedMemory` for the
//! includer's `Hal`, which decides how buffers are shared (bounced or translated).
//!
//! Everything is thread-local: one emulator per test thread.

// Each includer uses a different subset.
#![allow(dead_code)]

use std::cell::Cell;

use ndis_emu::devices::virtio_net::regs::{self, common};
use ndis_sys as sys;
use virtio_drivers::PhysAddr;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use zerocopy::{FromBytes, Immutable, IntoBytes};

// ---- a raw miniport that owns the adapter: DMA registration and the BAR mapping ----

thread_local! {
    static HANDLE: Cell<usize> = const { Cell::new(0) };
    static DRIVER: Cell<usize> = const { Cell::new(0) };
    static DMA: Cell<usize> = const { Cell::new(0) };
    /// (virtual address, length) of the mapped virtio BAR.
    static MAPPING: Cell<(usize, u32)> = const { Cell::new((0, 0)) };
}

pub fn handle() -> sys::NDIS_HANDLE {
    HANDLE.get() as sys::NDIS_HANDLE
}

pub fn config_read(offset: u32, buf: &mut [u8]) {
    // SAFETY: the adapter handle and a buffer of buf.len() bytes.
    let n = unsafe {
        sys::NdisMGetBusData(
            handle(),
            sys::PCI_WHICHSPACE_CONFIG,
            offset,
            buf.as_mut_ptr().cast(),
            buf.len() as u32,
        )
    };
    assert_eq!(n as usize, buf.len());
}

pub fn config_u8(offset: u32) -> u8 {
    let mut b = [0u8; 1];
    config_read(offset, &mut b);
    b[0]
}

pub fn config_u32(offset: u32) -> u32 {
    let mut b = [0u8; 4];
    config_read(offset, &mut b);
    u32::from_le_bytes(b)
}

/// Walks the capability list: (cfg_type or 0x100 + cap id, config offset) for every capability.
pub fn capabilities() -> Vec<(u16, u32)> {
    let mut caps = Vec::new();
    let mut at = config_u8(0x34) as u32;
    while at != 0 && caps.len() < 48 {
        let id = config_u8(at);
        let kind = if id == regs::PCI_CAP_ID_VENDOR {
            config_u8(at + 3) as u16
        } else {
            0x100 + id as u16
        };
        caps.push((kind, at));
        at = config_u8(at + 1) as u32;
    }
    caps
}

unsafe extern "win64-unwind" fn initialize(
    h: sys::NDIS_HANDLE,
    _d: sys::NDIS_HANDLE,
    p: *mut sys::NDIS_MINIPORT_INIT_PARAMETERS,
) -> sys::NDIS_STATUS {
    HANDLE.set(h as usize);
    // SAFETY: initialize's own handle.
    let s = unsafe { ndis_emu::raw::set_required_attributes(h, 1 as sys::NDIS_HANDLE) };
    assert_eq!(s, sys::NDIS_STATUS_SUCCESS);
    let mut d = ndis_emu::raw::sg_dma_description();
    let mut dma: sys::NDIS_HANDLE = std::ptr::null_mut();
    // SAFETY: initialize's handle; description and out-handle live across the call.
    let s = unsafe { sys::NdisMRegisterScatterGatherDma(h, &mut d, &mut dma) };
    assert_eq!(s, sys::NDIS_STATUS_SUCCESS);
    DMA.set(dma as usize);
    // The BAR the common configuration lives in, from the capability list, then its address
    // from the BAR registers, then the matching memory resource.
    let (_, common_at) = *capabilities()
        .iter()
        .find(|(k, _)| *k == regs::CAP_COMMON as u16)
        .expect("a common configuration capability");
    let bar = config_u8(common_at + 4) as u32;
    let low = config_u32(0x10 + 4 * bar);
    let mut address = (low & !0xF) as u64;
    if low & 0x6 == 0x4 {
        address |= (config_u32(0x14 + 4 * bar) as u64) << 32;
    }
    // SAFETY: NDIS passes a valid resource list with `Count` descriptors.
    let length = unsafe {
        let partial = &*(*p).AllocatedResources;
        let descriptors =
            std::slice::from_raw_parts(partial.PartialDescriptors.as_ptr(), partial.Count as usize);
        descriptors
            .iter()
            .find(|d| d.Type == sys::CmResourceTypeMemory && d.u.Memory.Start as u64 == address)
            .map(|d| d.u.Memory.Length)
            .expect("a memory resource for the virtio BAR")
    };
    let mut va: sys::PVOID = std::ptr::null_mut();
    // SAFETY: a range from the adapter's own resources.
    let s = unsafe { sys::NdisMMapIoSpace(&mut va, h, address as i64, length) };
    assert_eq!(s, sys::NDIS_STATUS_SUCCESS);
    MAPPING.set((va as usize, length));
    sys::NDIS_STATUS_SUCCESS
}

unsafe extern "win64-unwind" fn halt(_c: sys::NDIS_HANDLE, _a: sys::NDIS_HALT_ACTION) {
    let (va, length) = MAPPING.get();
    // SAFETY: the mapping and the DMA registration made in initialize, released once.
    unsafe {
        sys::NdisMUnmapIoSpace(handle(), va as sys::PVOID, length);
        sys::NdisMDeregisterScatterGatherDma(DMA.get() as sys::NDIS_HANDLE);
    }
}

unsafe extern "win64-unwind" fn unload(_o: sys::PDRIVER_OBJECT) {
    // SAFETY: the registered driver handle.
    unsafe { sys::NdisMDeregisterMiniportDriver(DRIVER.get() as sys::NDIS_HANDLE) };
}

pub unsafe extern "win64-unwind" fn entry(
    o: sys::PDRIVER_OBJECT,
    p: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    let chars = ndis_emu::raw::driver_characteristics(20, initialize, halt, unload);
    // SAFETY: DriverEntry's own arguments.
    let (status, handle) = unsafe { ndis_emu::raw::register_driver(o, p, &chars) };
    DRIVER.set(handle as usize);
    status
}

// ---- shared memory for the includer's Hal ----

pub fn allocate(length: u32) -> (u64, usize) {
    let mut va: sys::PVOID = std::ptr::null_mut();
    let mut pa: sys::PHYSICAL_ADDRESS = 0;
    // SAFETY: the adapter handle and two out-pointers.
    unsafe { sys::NdisMAllocateSharedMemory(handle(), length, 0, &mut va, &mut pa) };
    assert!(!va.is_null(), "shared memory for the oracle");
    (pa as u64, va as usize)
}

pub fn release(pa: u64, va: usize, length: u32) {
    // SAFETY: exactly what allocate returned.
    unsafe { sys::NdisMFreeSharedMemory(handle(), length, 0, va as sys::PVOID, pa as i64) };
}

// ---- virtio-drivers' Transport over the mapped registers ----

pub struct EmuTransport {
    common: usize,
    isr: usize,
    device: usize,
    notify: usize,
    multiplier: u32,
    /// Doorbell address per queue, read once at queue setup (as any real driver does).
    doorbells: Vec<usize>,
}

pub fn r8(a: usize) -> u8 {
    // SAFETY: inside the live mapping of the virtio BAR.
    unsafe { sys::mmio::READ_REGISTER_UCHAR(a as *const u8) }
}
pub fn r16(a: usize) -> u16 {
    // SAFETY: as above, 2-byte aligned.
    unsafe { sys::mmio::READ_REGISTER_USHORT(a as *const u16) }
}
pub fn r32(a: usize) -> u32 {
    // SAFETY: as above, 4-byte aligned.
    unsafe { sys::mmio::READ_REGISTER_ULONG(a as *const u32) }
}
pub fn w8(a: usize, v: u8) {
    // SAFETY: as above.
    unsafe { sys::mmio::WRITE_REGISTER_UCHAR(a as *mut u8, v) }
}
pub fn w16(a: usize, v: u16) {
    // SAFETY: as above.
    unsafe { sys::mmio::WRITE_REGISTER_USHORT(a as *mut u16, v) }
}
pub fn w32(a: usize, v: u32) {
    // SAFETY: as above.
    unsafe { sys::mmio::WRITE_REGISTER_ULONG(a as *mut u32, v) }
}

impl EmuTransport {
    /// Finds every structure through the capability list, as a Windows driver must.
    pub fn new() -> Self {
        let (va, _) = MAPPING.get();
        let find = |kind: u8| -> (usize, u32) {
            let (_, at) = *capabilities()
                .iter()
                .find(|(k, _)| *k == kind as u16)
                .unwrap_or_else(|| panic!("virtio capability {kind}"));
            assert_eq!(config_u8(at + 4), regs::MODERN_BAR, "all in the mapped BAR");
            (va + config_u32(at + 8) as usize, at)
        };
        let (notify, notify_at) = find(regs::CAP_NOTIFY);
        EmuTransport {
            common: find(regs::CAP_COMMON).0,
            isr: find(regs::CAP_ISR).0,
            device: find(regs::CAP_DEVICE).0,
            notify,
            multiplier: config_u32(notify_at + 16),
            doorbells: Vec::new(),
        }
    }

    fn c(&self, offset: u64) -> usize {
        self.common + offset as usize
    }
}

impl Transport for EmuTransport {
    fn device_type(&self) -> DeviceType {
        let mut id = [0u8; 4];
        config_read(0, &mut id);
        let device = u16::from_le_bytes([id[2], id[3]]);
        DeviceType::try_from(device - 0x1040).expect("a modern virtio device ID")
    }

    fn read_device_features(&mut self) -> u64 {
        w32(self.c(common::DEVICE_FEATURE_SELECT), 0);
        let low = r32(self.c(common::DEVICE_FEATURE)) as u64;
        w32(self.c(common::DEVICE_FEATURE_SELECT), 1);
        low | (r32(self.c(common::DEVICE_FEATURE)) as u64) << 32
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        w32(self.c(common::DRIVER_FEATURE_SELECT), 0);
        w32(self.c(common::DRIVER_FEATURE), driver_features as u32);
        w32(self.c(common::DRIVER_FEATURE_SELECT), 1);
        w32(
            self.c(common::DRIVER_FEATURE),
            (driver_features >> 32) as u32,
        );
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        w16(self.c(common::QUEUE_SELECT), queue);
        r16(self.c(common::QUEUE_SIZE)) as u32
    }

    fn notify(&mut self, queue: u16) {
        let doorbell = self.doorbells.get(queue as usize).copied().unwrap_or(0);
        assert_ne!(
            doorbell, 0,
            "notify of queue {queue}, which was never set up"
        );
        w16(doorbell, queue);
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(r8(self.c(common::DEVICE_STATUS)) as u32)
    }

    fn set_status(&mut self, status: DeviceStatus) {
        w8(self.c(common::DEVICE_STATUS), status.bits() as u8);
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        w16(self.c(common::QUEUE_SELECT), queue);
        w16(self.c(common::QUEUE_SIZE), size as u16);
        for (field, value) in [
            (common::QUEUE_DESC, descriptors),
            (common::QUEUE_DRIVER, driver_area),
            (common::QUEUE_DEVICE, device_area),
        ] {
            w32(self.c(field), value as u32);
            w32(self.c(field + 4), (value >> 32) as u32);
        }
        let off = r16(self.c(common::QUEUE_NOTIFY_OFF)) as usize;
        let q = queue as usize;
        if self.doorbells.len() <= q {
            self.doorbells.resize(q + 1, 0);
        }
        self.doorbells[q] = self.notify + off * self.multiplier as usize;
        w16(self.c(common::QUEUE_ENABLE), 1);
    }

    fn queue_unset(&mut self, _queue: u16) {}

    fn queue_used(&mut self, queue: u16) -> bool {
        w16(self.c(common::QUEUE_SELECT), queue);
        r16(self.c(common::QUEUE_ENABLE)) == 1
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::from_bits_retain(r8(self.isr) as u32)
    }

    fn read_config_generation(&self) -> u32 {
        r8(self.c(common::CONFIG_GENERATION)) as u32
    }

    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        let mut v = T::new_zeroed();
        for (i, b) in v.as_mut_bytes().iter_mut().enumerate() {
            *b = r8(self.device + offset + i);
        }
        Ok(v)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        for (i, b) in value.as_bytes().iter().enumerate() {
            w8(self.device + offset + i, *b);
        }
        Ok(())
    }
}
