//! Fault injection: every fallible call of a driver's init path, failed in turn, with zero leaks.

mod common;
use common::*;
use ndis_emu::{Config, InterruptResources, sweep_fallible_calls};
use ndis_sys as sys;

fn scenario(emu: &ndis_emu::Emulator) {
    if emu.load_driver(driver_entry) != 0 {
        return;
    }
    if let Ok(a) = emu.add_adapter(InterruptResources::msix(4)) {
        assert_eq!(emu.restart(a), 0);
        emu.fire_message(emu.device_of(a), 1);
        emu.pause(a);
        emu.halt(a, sys::NdisHaltDeviceDisabled);
    }
    emu.unload();
}

#[test]
fn sweeping_every_fallible_call_of_a_correct_driver_leaks_nothing() {
    set(|_| {});
    let report = sweep_fallible_calls(Config::default, scenario);
    assert_eq!(
        report.sites,
        vec![
            "NdisMRegisterMiniportDriver",
            "NdisMSetMiniportAttributes",
            "NdisMSetMiniportAttributes",
            "NdisAllocateMemoryWithTagPriority",
            "NdisMRegisterInterruptEx",
            "IoConnectInterruptEx",
        ]
    );
}

#[test]
fn the_sweep_finds_a_driver_that_leaks_on_a_failure_path_and_names_the_call() {
    // The memory allocated before interrupt registration is not freed when registration fails.
    set(|k| k.leak_on_init_failure = true);
    let result = std::panic::catch_unwind(|| sweep_fallible_calls(Config::default, scenario));
    let text = match result {
        Ok(_) => panic!("a driver leaking on its failure path passed the sweep"),
        Err(p) => p.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(
        text.contains("call #5 (NdisMRegisterInterruptEx)"),
        "{text}"
    );
    assert!(text.contains("*** STOP: 0x000000C4 (0x62,"), "{text}");
    assert!(text.contains("not freed"), "{text}");
    // The report names where the block was allocated: the test driver's initialize, in its
    // source file, not the emulator's allocator.
    let site = text
        .lines()
        .find(|l| l.contains("allocated at "))
        .unwrap_or_else(|| panic!("no allocation site in: {text}"));
    assert!(site.contains("common::initialize"), "{site}");
    assert!(site.contains("tests/common/mod.rs:"), "{site}");
    assert!(!site.contains("ndis_emu::"), "{site}");
}

#[test]
fn failing_a_named_call_once_only_fails_that_call() {
    let mut config = Config::default();
    config
        .faults
        .by_name
        .push(("NdisMSetMiniportAttributes".into(), Some(2)));
    let emu = emulator_with(config);
    set(|_| {});
    assert_eq!(emu.load_driver(driver_entry), 0);
    assert_eq!(
        emu.add_adapter(InterruptResources::msix(2)),
        Err(sys::NDIS_STATUS_RESOURCES)
    );
    let failed: Vec<_> = emu
        .fallible_calls()
        .into_iter()
        .filter(|(_, f)| *f)
        .collect();
    assert_eq!(failed, vec![("NdisMSetMiniportAttributes", true)]);
    let a = emu
        .add_adapter(InterruptResources::msix(2))
        .expect("the third call is not failed");
    stop(&emu, a);
}
