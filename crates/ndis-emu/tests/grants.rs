//! Every interrupt grant NdisMRegisterInterruptEx can produce, and where the interrupts land.

mod common;
use common::*;
use ndis_emu::InterruptResources;
use ndis_sys as sys;

#[test]
fn unshared_line_grant_runs_isr_at_dirql_and_dpc_on_the_same_cpu() {
    let emu = emulator(4);
    set(|_| {});
    let a = start(&emu, InterruptResources::line());
    let g = grant();
    assert_eq!(g.interrupt_type, sys::NDIS_CONNECT_LINE_BASED);
    assert!(
        g.table_null,
        "line-based grants must leave MessageInfoTable NULL"
    );
    emu.fire_on(emu.device_of(a), None, 2);
    assert_eq!(
        seen(),
        vec![
            Seen::Isr {
                cpu: 2,
                message: None
            },
            Seen::Dpc {
                cpu: 2,
                message: None,
                context: 0,
                max_nbls: 64
            },
            Seen::DpcEnd { cpu: 2 }
        ]
    );
    let t = emu.trace();
    assert!(
        t.iter()
            .any(|l| l == "cpu2 irql  5 ISR line -> TRUE, DPC on cpu2"),
        "{t:#?}"
    );
    assert!(t.iter().any(|l| l == "cpu2 irql  2 DPC line"), "{t:#?}");
    stop(&emu, a);
}

#[test]
fn line_grant_although_msi_was_offered_by_the_driver() {
    let emu = emulator(2);
    set(|k| k.msi_supported = true);
    let a = start(&emu, InterruptResources::line());
    assert_eq!(grant().interrupt_type, sys::NDIS_CONNECT_LINE_BASED);
    stop(&emu, a);
}

#[test]
fn one_msi_message() {
    let emu = emulator(4);
    set(|_| {});
    let a = start(&emu, InterruptResources::msi());
    let g = grant();
    assert_eq!(g.interrupt_type, sys::NDIS_CONNECT_MESSAGE_BASED);
    assert_eq!(g.messages, 1);
    emu.fire_message(emu.device_of(a), 0);
    assert_eq!(
        seen()[0],
        Seen::Isr {
            cpu: 0,
            message: Some(0)
        }
    );
    stop(&emu, a);
}

#[test]
fn msix_messages_have_distinct_vectors_irqls_and_spread_affinity() {
    let emu = emulator(4);
    set(|_| {});
    let a = start(&emu, InterruptResources::msix(8));
    let g = grant();
    assert_eq!(g.messages, 8);
    assert_eq!(
        g.unified_irql, 0,
        "no serialization asked: UnifiedIrql is 0"
    );
    for (i, (vector, irql, targets)) in g.entries.iter().enumerate() {
        assert_eq!(*irql as u32, vector >> 4, "x64: IRQL = vector / 16");
        assert!(
            (3..=12).contains(irql),
            "a device IRQL lies between DISPATCH and CLOCK"
        );
        assert_eq!(*targets, 1 << (i % 4), "message {i} targets cpu {}", i % 4);
    }
    let vectors: std::collections::BTreeSet<_> = g.entries.iter().map(|e| e.0).collect();
    assert_eq!(vectors.len(), 8);
    // Message 5 targets cpu1: its ISR and its default DPC run there.
    emu.fire_message(emu.device_of(a), 5);
    assert_eq!(
        seen()[0],
        Seen::Isr {
            cpu: 1,
            message: Some(5)
        }
    );
    assert_eq!(
        seen()[1],
        Seen::Dpc {
            cpu: 1,
            message: Some(5),
            context: 0,
            max_nbls: 64
        }
    );
    stop(&emu, a);
}

#[test]
fn msix_2048_messages_is_the_windows_maximum() {
    let emu = emulator(8);
    set(|_| {});
    let a = start(&emu, InterruptResources::msix(2048));
    let g = grant();
    assert_eq!(g.messages, 2048);
    emu.fire_message(emu.device_of(a), 2047);
    assert_eq!(
        seen()[0],
        Seen::Isr {
            cpu: 7,
            message: Some(2047)
        }
    );
    stop(&emu, a);
}

#[test]
fn fewer_messages_than_the_device_asked_for() {
    let emu = emulator(4);
    set(|_| {});
    let a = start(
        &emu,
        InterruptResources::MsiX {
            requested: 16,
            granted: 3,
        },
    );
    assert_eq!(grant().messages, 3);
    stop(&emu, a);
}

#[test]
fn message_resources_with_msi_supported_false_fail_registration() {
    let emu = emulator(2);
    set(|k| k.msi_supported = false);
    assert_eq!(emu.load_driver(driver_entry), 0);
    assert_eq!(
        emu.add_adapter(InterruptResources::msix(4)),
        Err(sys::NDIS_STATUS_RESOURCE_CONFLICT)
    );
    emu.unload();
}

#[test]
fn no_interrupt_resource_fails_registration() {
    let emu = emulator(2);
    set(|_| {});
    assert_eq!(emu.load_driver(driver_entry), 0);
    assert_eq!(
        emu.add_adapter(InterruptResources::None),
        Err(sys::NDIS_STATUS_RESOURCE_CONFLICT)
    );
    emu.unload();
}

#[test]
fn interrupt_allocation_failure_is_ndis_status_resources() {
    let mut config = ndis_emu::Config::default();
    config
        .faults
        .by_name
        .push(("IoConnectInterruptEx".into(), None));
    let emu = emulator_with(config);
    set(|_| {});
    assert_eq!(emu.load_driver(driver_entry), 0);
    assert_eq!(
        emu.add_adapter(InterruptResources::msix(4)),
        Err(sys::NDIS_STATUS_RESOURCES)
    );
    emu.unload();
}

#[test]
fn sync_with_all_messages_gives_one_unified_irql() {
    let emu = emulator(4);
    set(|k| k.sync_all_messages = true);
    let a = start(&emu, InterruptResources::msix(6));
    let g = grant();
    let max = g.entries.iter().map(|e| e.1).max().unwrap();
    assert_eq!(g.unified_irql, max, "one lock at the highest message IRQL");
    stop(&emu, a);
}

#[test]
fn shared_line_passes_to_the_next_isr_when_the_first_says_not_mine() {
    let emu = emulator(2);
    set(|k| k.isr = IsrMode::NotMine);
    assert_eq!(emu.load_driver(driver_entry), 0);
    let a = emu
        .add_adapter(InterruptResources::Line {
            line: 3,
            shared: true,
        })
        .unwrap();
    // A second function on the same line, connected by a WDM driver.
    let (_other, pdo) = emu.add_device(InterruptResources::Line {
        line: 3,
        shared: true,
    });
    let mut kint: sys::PKINTERRUPT = std::ptr::null_mut();
    // SAFETY: all-zero is valid; the union member written is the one Version selects.
    let mut p: sys::IO_CONNECT_INTERRUPT_PARAMETERS = unsafe { std::mem::zeroed() };
    p.Version = sys::CONNECT_LINE_BASED;
    p.u.LineBased = sys::IO_CONNECT_INTERRUPT_LINE_BASED_PARAMETERS {
        PhysicalDeviceObject: pdo,
        InterruptObject: &mut kint,
        ServiceRoutine: Some(claiming_isr),
        ServiceContext: std::ptr::null_mut(),
        SpinLock: std::ptr::null_mut(),
        SynchronizeIrql: 0,
        FloatingSave: 0,
    };
    // SAFETY: valid parameters.
    assert_eq!(unsafe { sys::IoConnectInterruptEx(&mut p) }, 0);
    assert_eq!(
        emu.fire_line(emu.device_of(a)),
        Some(true),
        "the second ISR claims it"
    );
    assert_eq!(
        seen(),
        vec![Seen::Isr {
            cpu: seen_cpu(),
            message: None
        }]
    );
    assert_eq!(CLAIMS.with(|c| c.get()), 1);
    // Whatever the first ISR returned, NDIS queues the DPCs it asked for.
    set(|k| k.isr = IsrMode::NotMineButQueue);
    emu.fire_line(emu.device_of(a));
    assert!(
        matches!(seen()[1], Seen::Dpc { message: None, .. }),
        "{:?}",
        seen()
    );
    let mut d = sys::IO_DISCONNECT_INTERRUPT_PARAMETERS {
        Version: sys::CONNECT_LINE_BASED,
        ConnectionContext: sys::IO_DISCONNECT_INTERRUPT_CONTEXT {
            InterruptObject: kint,
        },
    };
    // SAFETY: the connection made above.
    unsafe { sys::IoDisconnectInterruptEx(&mut d) };
    stop(&emu, a);
}

fn seen_cpu() -> u32 {
    match seen()[0] {
        Seen::Isr { cpu, .. } => cpu,
        _ => unreachable!(),
    }
}

thread_local! {
    static CLAIMS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

unsafe extern "win64-unwind" fn claiming_isr(_k: sys::PKINTERRUPT, _c: sys::PVOID) -> sys::BOOLEAN {
    CLAIMS.with(|c| c.set(c.get() + 1));
    1
}
