//! The trace of a fixed scenario, line for line: registration, grant, ISRs and DPCs with CPU and
//! IRQL. A change in what the emulator does (or in its scheduling for a seed) shows up here.

mod common;
use common::*;
use ndis_emu::{Config, InterruptResources};
use ndis_sys as sys;

const EXPECTED: &str = "\
driver registered: NDIS 6.20, characteristics revision 2
adapter 0 interrupt registered: message-based, 3 message(s)
adapter 0 initialize -> 0x00000000
cpu1 irql  6 ISR msg 1 -> TRUE, DPC on cpu1
cpu1 irql  2 DPC msg 1
cpu2 irql  6 ISR msg 2 -> TRUE
cpu3 irql  2 DPC msg 2 (driver context)
cpu0 irql  2 DPC msg 2 (driver context)
cpu0 irql  6 synchronize msg 0
device 0 IoDisconnectInterruptEx
adapter 0 interrupt deregistered
adapter 0 halted
driver deregistered";

#[test]
fn golden_trace_of_registration_interrupts_dpcs_and_halt() {
    let emu = emulator_with(Config {
        cpus: 4,
        seed: 3,
        trace: true,
        ..Config::default()
    });
    set(|_| {});
    let a = start(&emu, InterruptResources::msix(3));
    emu.fire_message(emu.device_of(a), 1);
    set(|k| k.isr = IsrMode::QueueDpcEx(0b1001));
    emu.fire_message(emu.device_of(a), 2);
    // SAFETY: the adapter's live interrupt handle (the first one handed out).
    unsafe {
        sys::NdisMSynchronizeWithInterruptEx(
            0x4E44_4900_0001usize as sys::NDIS_HANDLE,
            0,
            Some(sync_fn),
            std::ptr::null_mut(),
        )
    };
    stop(&emu, a);
    let actual = emu.trace().join("\n");
    assert_eq!(actual, EXPECTED, "\n--- actual ---\n{actual}\n");
}
