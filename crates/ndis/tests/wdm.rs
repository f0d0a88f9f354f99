//! The WDM wrapper over IoConnectInterruptEx, driven through the documented protocol on the
//! emulator's kernel.
#![cfg(not(windows))]

use std::sync::Mutex;

use ndis::interrupt::wdm::{
    Connected, FullySpecified, PhysicalDevice, WdmInterrupt, WdmInterruptHandler,
};
use ndis::interrupt::{MessageId, ProcessorSet, Source, TriggerMode};
use ndis::irql::Passive;
use ndis_emu::{Config, Emulator, InterruptResources};

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[derive(Debug, Default)]
struct Device {
    seen: Mutex<Vec<Source>>,
}

impl WdmInterruptHandler for Device {
    fn isr(&self, source: Source) -> bool {
        // Test instrumentation: the log grows at DIRQL, which driver code may not do.
        ndis_emu::instrumentation(|| self.seen.lock().unwrap().push(source));
        true
    }
}

fn passive() -> Passive<'static> {
    // SAFETY: the test thread plays the passive-level caller.
    unsafe { Passive::assume() }
}

const LINE0: FullySpecified = FullySpecified {
    vector: 0x50,
    irql: 5,
    mode: TriggerMode::LevelSensitive,
    processors: ProcessorSet::from_mask(0, 0b1),
    share_vector: false,
};

/// A line-only device, connected (through the message request's fallback).
fn connect_line(emu: &Emulator) -> (ndis_emu::DeviceId, WdmInterrupt<Device>) {
    let (dev, pdo) = emu.add_device(InterruptResources::line());
    // SAFETY: the emulator's live PDO.
    let int = WdmInterrupt::connect(
        &passive(),
        unsafe { PhysicalDevice::from_raw(pdo) },
        Device::default(),
        None,
    )
    .unwrap();
    (dev, int)
}

#[test]
fn msix_device_connects_message_based() {
    let emu = Emulator::new(Config::default());
    let (dev, pdo) = emu.add_device(InterruptResources::msix(3));
    // SAFETY: the emulator's live PDO.
    let device = unsafe { PhysicalDevice::from_raw(pdo) };
    let int = WdmInterrupt::connect(&passive(), device, Device::default(), None).expect("connect");
    assert_eq!(int.connected(), Connected::Messages(3));
    emu.fire_message(dev, 2);
    assert_eq!(
        *int.handler().seen.lock().unwrap(),
        vec![Source::Message(MessageId(2))]
    );
    let handler = int.disconnect(&passive());
    assert_eq!(handler.seen.into_inner().unwrap().len(), 1);
    emu.check_released();
}

#[test]
fn line_only_device_connects_the_fallback_and_says_so() {
    let emu = Emulator::new(Config::default());
    let (dev, int) = connect_line(&emu);
    assert_eq!(int.connected(), Connected::Line);
    emu.fire_line(dev);
    assert_eq!(*int.handler().seen.lock().unwrap(), vec![Source::Line]);
    int.disconnect(&passive());
    emu.check_released();
}

#[test]
fn a_pre_vista_platform_is_retried_fully_specified() {
    let emu = Emulator::new(Config {
        pre_vista_io_connect: true,
        ..Config::default()
    });
    let (dev, pdo) = emu.add_device(InterruptResources::line());
    // SAFETY: the emulator's live PDO.
    let int = WdmInterrupt::connect(
        &passive(),
        unsafe { PhysicalDevice::from_raw(pdo) },
        Device::default(),
        Some(LINE0),
    )
    .unwrap();
    assert_eq!(int.connected(), Connected::FullySpecified);
    emu.fire_line(dev);
    assert_eq!(*int.handler().seen.lock().unwrap(), vec![Source::Line]);
    int.disconnect(&passive());
    emu.check_released();
}

#[test]
fn without_a_fully_specified_description_the_error_comes_back_with_the_handler() {
    let emu = Emulator::new(Config {
        pre_vista_io_connect: true,
        ..Config::default()
    });
    let (_dev, pdo) = emu.add_device(InterruptResources::line());
    let handler = Device::default();
    handler.seen.lock().unwrap().push(Source::Line);
    // SAFETY: the emulator's live PDO.
    let err = WdmInterrupt::connect(
        &passive(),
        unsafe { PhysicalDevice::from_raw(pdo) },
        handler,
        None,
    )
    .unwrap_err();
    assert!(err.status < 0);
    assert_eq!(
        err.handler.seen.lock().unwrap().len(),
        1,
        "the handler state is returned intact"
    );
    emu.check_released();
}

#[test]
fn a_wrong_fully_specified_vector_fails_cleanly() {
    let emu = Emulator::new(Config {
        pre_vista_io_connect: true,
        ..Config::default()
    });
    let (_dev, pdo) = emu.add_device(InterruptResources::line());
    let wrong = FullySpecified {
        vector: 0x99,
        ..LINE0
    };
    // SAFETY: the emulator's live PDO.
    let err = WdmInterrupt::connect(
        &passive(),
        unsafe { PhysicalDevice::from_raw(pdo) },
        Device::default(),
        Some(wrong),
    )
    .unwrap_err();
    assert_eq!(err.status, ndis_sys::STATUS_INVALID_PARAMETER);
    emu.check_released();
}

#[test]
fn item07_a_wdm_interrupt_dropped_without_disconnect_stays_connected_and_is_reported() {
    // Dropped anywhere (here: as if in a DPC), it disconnects nothing at the wrong IRQL; the
    // interrupt stays connected on leaked state, and unload reports it.
    let emu = Emulator::new(Config::default());
    let (dev, int) = connect_line(&emu);
    drop(int);
    // The ISR still runs on valid (leaked) state.
    assert_eq!(emu.fire_line(dev), Some(true));
    let b = emu.expect_bugcheck(|| emu.check_released());
    assert_eq!(
        (b.code, b.params[0], b.params[2]),
        (0xC4, ndis_emu::rule::UNLOAD_WITH_OUTSTANDING_OBJECTS, 1),
        "{b}"
    );
}
