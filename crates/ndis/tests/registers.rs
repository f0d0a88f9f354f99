//! `ndis::hw::Registers` on a mapped BAR (`ndis::io::IoSpace`) and a window of it
//! (`OwnedWindow`): every width, 1 to 8 bytes, reaches the device as one access of that width
//! (the emulator's plain PCI function holds the bytes), little-endian, at the right offset. And
//! `ndis::io::IoPorts` on a device with an I/O BAR: 1, 2 and 4 bytes.
#![cfg(not(windows))]

use std::cell::RefCell;

use ndis::driver::MiniportDriver;
use ndis::hw::Registers;
use ndis::io::{IoPorts, IoSpace, OwnedWindow};
use ndis::irql::{DispatchOrBelow, Passive};
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
use ndis::nbl::{Returned, SendLists};
use ndis::{NdisVersion, Status};
use ndis_emu::pci::{BarInfo, Bus, CONFIG_SPACE_SIZE, IoBarInfo, PciFunction, PlainFunction};
use ndis_emu::{Config, Emulator, InterruptResources};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

thread_local! {
    /// What initialize read back through the framework: (width, value).
    static READ: RefCell<Vec<(usize, u64)>> = const { RefCell::new(Vec::new()) };
    /// What initialize read back through its port range, when the device has one.
    static PORTS_READ: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// One 16-byte memory BAR and 16 ports of plain bytes in I/O BAR 2.
struct PortDevice {
    config: [u8; CONFIG_SPACE_SIZE],
    ports: [u8; 16],
}

impl PciFunction for PortDevice {
    fn config(&mut self) -> &mut [u8; CONFIG_SPACE_SIZE] {
        &mut self.config
    }
    fn bars(&self) -> Vec<BarInfo> {
        vec![BarInfo {
            index: 0,
            size: 0x1000,
            is_64bit: false,
        }]
    }
    fn mmio_read(&mut self, _: &mut Bus<'_>, _: u8, _: u64, _: u32) -> u64 {
        0
    }
    fn mmio_write(&mut self, _: &mut Bus<'_>, _: u8, _: u64, _: u32, _: u64) {}
    fn io_bars(&self) -> Vec<IoBarInfo> {
        vec![IoBarInfo { index: 2, size: 16 }]
    }
    fn io_read(&mut self, _: &mut Bus<'_>, _: u8, offset: u64, width: u32) -> u32 {
        let mut v = [0u8; 4];
        let o = offset as usize;
        v[..width as usize].copy_from_slice(&self.ports[o..o + width as usize]);
        u32::from_le_bytes(v)
    }
    fn io_write(&mut self, _: &mut Bus<'_>, _: u8, offset: u64, width: u32, value: u32) {
        let o = offset as usize;
        self.ports[o..o + width as usize].copy_from_slice(&value.to_le_bytes()[..width as usize]);
    }
}

fn exercise_ports(ports: &IoPorts) -> [u32; 4] {
    ports.write32(0, 0x4433_2211);
    ports.write16(4, 0x6655);
    ports.write8(6, 0x77);
    [
        ports.len() as u32,
        ports.read32(4),
        ports.read16(2).into(),
        ports.read8(1).into(),
    ]
}

struct Widths;
struct Adapter {
    _regs: IoSpace,
    _ports: Option<IoPorts>,
}

/// A fixed array, not a `Vec`: driver heap kept past initialize would be reported as a leak.
fn exercise(regs: &IoSpace, window: &OwnedWindow) -> [(usize, u64); 5] {
    regs.write64(0x100, 0x8877_6655_4433_2211);
    regs.write32(0x108, 0xDDCC_BBAA);
    regs.write16(0x10C, 0xFFEE);
    regs.write8(0x10E, 0x99);
    // The window starts at 0x200 of the BAR.
    window.write64(0x8, 0x0102_0304_0506_0708);
    [
        (8, regs.read64(0x108)),
        (4, regs.read32(0x100).into()),
        (2, regs.read16(0x104).into()),
        (1, regs.read8(0x107).into()),
        (8, window.read64(0x8)),
    ]
}

impl MiniportDriver for Widths {
    const NDIS_VERSIONS: ndis::NdisVersions = ndis::NdisVersions::exactly(NdisVersion::V6_20);
    const DRIVER_VERSION: (u8, u8) = (1, 0);
    type Adapter = Adapter;
    fn initialize(&'static self, init: &mut Init<'_>) -> Result<(Adapter, AdapterInfo), Status> {
        let range = init
            .resources()
            .memory()
            .next()
            .ok_or(Status::RESOURCE_CONFLICT)?;
        let regs = init.map(range)?;
        let window = OwnedWindow::new(&regs, 0x200, 0x100).ok_or(Status::RESOURCES)?;
        let read = exercise(&regs, &window);
        ndis_emu::instrumentation(|| READ.with(|r| *r.borrow_mut() = read.to_vec()));
        let ports = match init.resources().ports().next() {
            Some(range) => Some(init.register_ports(range)?),
            None => None,
        };
        if let Some(ports) = &ports {
            let read = exercise_ports(ports);
            ndis_emu::instrumentation(|| PORTS_READ.with(|r| *r.borrow_mut() = read.to_vec()));
        }
        let info = AdapterInfo::ethernet([2, 0, 0, 0, 0, 8], 1500, 1_000_000_000, true);
        Ok((
            Adapter {
                _regs: regs,
                _ports: ports,
            },
            info,
        ))
    }
}

impl Miniport for Adapter {
    fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
        Quiesced::device_stopped()
    }
    fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, _: &mut DispatchOrBelow<'_>) {
        lists.each(|_| Status::SUCCESS);
    }
    fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &mut DispatchOrBelow<'_>) {}
}

ndis::miniport_driver!(Widths = Widths);

#[test]
fn every_width_from_1_to_8_bytes_reaches_the_device_little_endian_at_its_offset() {
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
    let a = emu.add_adapter(InterruptResources::None).expect("init");
    assert_eq!(
        READ.with(|r| r.borrow().clone()),
        [
            (8, 0x0099_FFEE_DDCC_BBAA),
            (4, 0x4433_2211),
            (2, 0x6655),
            (1, 0x88),
            (8, 0x0102_0304_0506_0708),
        ]
    );
    // What the device holds, byte for byte (read back a byte at a time).
    let bytes: Vec<u64> = emu.with_device::<PlainFunction, _>(emu.device_of(a), |f, bus| {
        (0..16).map(|i| f.mmio_read(bus, 0, 0x100 + i, 1)).collect()
    });
    assert_eq!(
        bytes,
        [
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
            0x99, 0x00
        ]
    );
    let window: u64 = emu
        .with_device::<PlainFunction, _>(emu.device_of(a), |f, bus| f.mmio_read(bus, 0, 0x208, 8));
    assert_eq!(
        window, 0x0102_0304_0506_0708,
        "the window's offset 8 is the BAR's 0x208"
    );
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn io_ports_of_an_io_bar_take_1_2_and_4_bytes_and_are_deregistered_after_halt() {
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
    let device = PortDevice {
        config: [0; CONFIG_SPACE_SIZE],
        ports: [0; 16],
    };
    let a = emu
        .add_adapter_with(InterruptResources::None, Box::new(device))
        .expect("init");
    assert_eq!(
        PORTS_READ.with(|r| r.borrow().clone()),
        [16, 0x0077_6655, 0x4433, 0x22]
    );
    let ports = emu.with_device::<PortDevice, _>(emu.device_of(a), |d, _| d.ports);
    assert_eq!(
        &ports[..8],
        [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x00]
    );
    // Halt returns with the range deregistered by the framework (the emulator checks it).
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}
