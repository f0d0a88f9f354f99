//! The reference driver, compiled for the host, run on the emulator: the same code as the
//! kernel image, its NDIS calls answered by ndis-emu.
#![cfg(not(windows))]

use ndis_emu::{Config, Emulator, InterruptResources};
use ndis_sys as sys;

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[test]
fn vionet_registers_as_an_ndis_620_miniport_declines_adapters_and_unloads_cleanly() {
    let emu = Emulator::new(Config {
        trace: true,
        ..Config::default()
    });
    assert_eq!(emu.load_driver(vionet::DRIVER_ENTRY), sys::STATUS_SUCCESS);
    assert_eq!(
        emu.add_adapter(InterruptResources::msix(4)),
        Err(sys::NDIS_STATUS_ADAPTER_NOT_FOUND)
    );
    emu.unload();
    assert_eq!(
        emu.trace(),
        vec![
            "driver registered: NDIS 6.20, characteristics revision 2",
            "adapter 0 initialize -> 0xc0010006",
            "driver deregistered",
        ]
    );
}
