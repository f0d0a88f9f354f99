//! IoConnectInterruptEx: each version, the message-based fallback, and the pre-Vista retry
//! protocol, driven as a WDM driver would.

use std::cell::RefCell;

use ndis_emu::{Config, Emulator, InterruptResources};
use ndis_sys as sys;

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

thread_local! {
    static CALLS: RefCell<Vec<(&'static str, Option<u32>)>> = const { RefCell::new(Vec::new()) };
}

/// Records a call from an ISR: test instrumentation (its buffer is the test's, grown at DIRQL).
fn record(call: (&'static str, Option<u32>)) {
    ndis_emu::instrumentation(|| CALLS.with(|c| c.borrow_mut().push(call)));
}

fn calls() -> Vec<(&'static str, Option<u32>)> {
    CALLS.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

unsafe extern "win64-unwind" fn line_isr(_k: sys::PKINTERRUPT, ctx: sys::PVOID) -> sys::BOOLEAN {
    assert_eq!(ctx as usize, 0xC0FFEE);
    record(("line", None));
    1
}

unsafe extern "win64-unwind" fn fallback_isr(
    _k: sys::PKINTERRUPT,
    ctx: sys::PVOID,
) -> sys::BOOLEAN {
    assert_eq!(ctx as usize, 0xC0FFEE);
    record(("fallback", None));
    1
}

unsafe extern "win64-unwind" fn message_isr(
    _k: sys::PKINTERRUPT,
    ctx: sys::PVOID,
    id: u32,
) -> sys::BOOLEAN {
    assert_eq!(ctx as usize, 0xC0FFEE);
    record(("message", Some(id)));
    1
}

fn zeroed() -> sys::IO_CONNECT_INTERRUPT_PARAMETERS {
    // SAFETY: all-zero is a valid parameter block.
    unsafe { std::mem::zeroed() }
}

fn message_based(
    pdo: sys::PDEVICE_OBJECT,
    out: *mut sys::PVOID,
    spin_lock: *mut sys::KSPIN_LOCK,
) -> sys::IO_CONNECT_INTERRUPT_PARAMETERS {
    let mut p = zeroed();
    p.Version = sys::CONNECT_MESSAGE_BASED;
    p.u.MessageBased = sys::IO_CONNECT_INTERRUPT_MESSAGE_BASED_PARAMETERS {
        PhysicalDeviceObject: pdo,
        ConnectionContext: sys::IO_CONNECT_INTERRUPT_MESSAGE_BASED_CONTEXT { Generic: out },
        MessageServiceRoutine: Some(message_isr),
        ServiceContext: 0xC0FFEE as sys::PVOID,
        SpinLock: spin_lock,
        SynchronizeIrql: 0,
        FloatingSave: 0,
        FallBackServiceRoutine: Some(fallback_isr),
    };
    p
}

fn connect(p: &mut sys::IO_CONNECT_INTERRUPT_PARAMETERS) -> sys::NTSTATUS {
    // SAFETY: a valid parameter block with valid out-pointers.
    unsafe { sys::IoConnectInterruptEx(p) }
}

fn disconnect(version: u32, context: sys::PVOID) {
    let mut d = sys::IO_DISCONNECT_INTERRUPT_PARAMETERS {
        Version: version,
        ConnectionContext: sys::IO_DISCONNECT_INTERRUPT_CONTEXT { Generic: context },
    };
    // SAFETY: the connection made by the test.
    unsafe { sys::IoDisconnectInterruptEx(&mut d) };
}

#[test]
fn message_based_on_an_msix_device_connects_every_message() {
    let emu = Emulator::new(Config {
        cpus: 2,
        ..Config::default()
    });
    let (dev, pdo) = emu.add_device(InterruptResources::msix(3));
    let mut table: sys::PVOID = std::ptr::null_mut();
    let mut p = message_based(pdo, &mut table, std::ptr::null_mut());
    assert_eq!(connect(&mut p), 0);
    assert_eq!(p.Version, sys::CONNECT_MESSAGE_BASED);
    let info = table.cast::<sys::IO_INTERRUPT_MESSAGE_INFO>();
    // SAFETY: the table the kernel wrote.
    assert_eq!(unsafe { (*info).MessageCount }, 3);
    emu.fire_message(dev, 2);
    assert_eq!(calls(), vec![("message", Some(2))]);
    disconnect(sys::CONNECT_MESSAGE_BASED, table);
    emu.check_released();
}

#[test]
fn message_based_on_a_line_only_device_falls_back_and_answers_line_based() {
    let emu = Emulator::new(Config::default());
    let (dev, pdo) = emu.add_device(InterruptResources::line());
    let mut object: sys::PVOID = std::ptr::null_mut();
    let mut p = message_based(pdo, &mut object, std::ptr::null_mut());
    assert_eq!(connect(&mut p), 0);
    assert_eq!(
        p.Version,
        sys::CONNECT_LINE_BASED,
        "Version tells the caller what was connected"
    );
    assert!(
        !object.is_null(),
        "the interrupt object was written through ConnectionContext"
    );
    emu.fire_line(dev);
    assert_eq!(calls(), vec![("fallback", None)]);
    disconnect(sys::CONNECT_LINE_BASED, object);
    emu.check_released();
}

#[test]
fn message_based_without_a_fallback_on_a_line_only_device_fails() {
    let emu = Emulator::new(Config::default());
    let (_dev, pdo) = emu.add_device(InterruptResources::line());
    let mut object: sys::PVOID = std::ptr::null_mut();
    let mut p = message_based(pdo, &mut object, std::ptr::null_mut());
    p.u.MessageBased.FallBackServiceRoutine = None;
    assert!(connect(&mut p) < 0);
    emu.check_released();
}

#[test]
fn line_based_and_fully_specified_connect_the_line() {
    let emu = Emulator::new(Config::default());
    let (dev, pdo) = emu.add_device(InterruptResources::Line {
        line: 2,
        shared: false,
    });
    let mut k1: sys::PKINTERRUPT = std::ptr::null_mut();
    let mut p = zeroed();
    p.Version = sys::CONNECT_LINE_BASED;
    p.u.LineBased = sys::IO_CONNECT_INTERRUPT_LINE_BASED_PARAMETERS {
        PhysicalDeviceObject: pdo,
        InterruptObject: &mut k1,
        ServiceRoutine: Some(line_isr),
        ServiceContext: 0xC0FFEE as sys::PVOID,
        SpinLock: std::ptr::null_mut(),
        SynchronizeIrql: 0,
        FloatingSave: 0,
    };
    assert_eq!(connect(&mut p), 0);
    emu.fire_line(dev);
    assert_eq!(calls(), vec![("line", None)]);
    // A second connection to an unshared line conflicts.
    assert!(connect(&mut p) < 0);
    disconnect(sys::CONNECT_LINE_BASED, k1.cast());

    let mut k2: sys::PKINTERRUPT = std::ptr::null_mut();
    let mut fully = |vector| {
        let mut p = zeroed();
        p.Version = sys::CONNECT_FULLY_SPECIFIED;
        p.u.FullySpecified = sys::IO_CONNECT_INTERRUPT_FULLY_SPECIFIED_PARAMETERS {
            PhysicalDeviceObject: pdo,
            InterruptObject: &mut k2,
            ServiceRoutine: Some(line_isr),
            ServiceContext: 0xC0FFEE as sys::PVOID,
            SpinLock: std::ptr::null_mut(),
            SynchronizeIrql: 5,
            FloatingSave: 0,
            ShareVector: 0,
            Vector: vector,
            Irql: 5,
            InterruptMode: sys::LevelSensitive,
            ProcessorEnableMask: 0b1111,
            Group: 0,
        };
        p
    };
    assert_eq!(
        connect(&mut fully(0x99)),
        sys::STATUS_INVALID_PARAMETER,
        "not the device's vector"
    );
    assert_eq!(connect(&mut fully(0x52)), 0);
    emu.fire_line(dev);
    assert_eq!(calls(), vec![("line", None)]);
    disconnect(sys::CONNECT_FULLY_SPECIFIED, k2.cast());
    emu.check_released();
}

#[test]
fn line_based_on_a_message_only_device_is_not_found() {
    let emu = Emulator::new(Config::default());
    let (_dev, pdo) = emu.add_device(InterruptResources::msix(2));
    let mut k: sys::PKINTERRUPT = std::ptr::null_mut();
    let mut p = zeroed();
    p.Version = sys::CONNECT_LINE_BASED;
    p.u.LineBased = sys::IO_CONNECT_INTERRUPT_LINE_BASED_PARAMETERS {
        PhysicalDeviceObject: pdo,
        InterruptObject: &mut k,
        ServiceRoutine: Some(line_isr),
        ServiceContext: std::ptr::null_mut(),
        SpinLock: std::ptr::null_mut(),
        SynchronizeIrql: 0,
        FloatingSave: 0,
    };
    assert!(connect(&mut p) < 0);
}

/// The protocol from "Using IoConnectInterruptEx Prior to Windows Vista": try message-based; on
/// an error with Version switched to CONNECT_FULLY_SPECIFIED, retry fully specified.
#[test]
fn pre_vista_platform_answers_fully_specified_and_the_retry_succeeds() {
    let emu = Emulator::new(Config {
        pre_vista_io_connect: true,
        ..Config::default()
    });
    let (dev, pdo) = emu.add_device(InterruptResources::line());
    let mut out: sys::PVOID = std::ptr::null_mut();
    let mut p = message_based(pdo, &mut out, std::ptr::null_mut());
    let status = connect(&mut p);
    assert!(status < 0);
    assert_eq!(p.Version, sys::CONNECT_FULLY_SPECIFIED);
    let mut k: sys::PKINTERRUPT = std::ptr::null_mut();
    let mut retry = zeroed();
    retry.Version = sys::CONNECT_FULLY_SPECIFIED;
    retry.u.FullySpecified = sys::IO_CONNECT_INTERRUPT_FULLY_SPECIFIED_PARAMETERS {
        PhysicalDeviceObject: pdo,
        InterruptObject: &mut k,
        ServiceRoutine: Some(line_isr),
        ServiceContext: 0xC0FFEE as sys::PVOID,
        SpinLock: std::ptr::null_mut(),
        SynchronizeIrql: 5,
        FloatingSave: 0,
        ShareVector: 0,
        Vector: 0x50,
        Irql: 5,
        InterruptMode: sys::LevelSensitive,
        ProcessorEnableMask: 1,
        Group: 0,
    };
    assert_eq!(connect(&mut retry), 0);
    emu.fire_line(dev);
    assert_eq!(calls(), vec![("line", None)]);
    disconnect(sys::CONNECT_FULLY_SPECIFIED, k.cast());
}

#[test]
fn a_shared_spin_lock_serializes_every_message_at_one_unified_irql() {
    let emu = Emulator::new(Config::default());
    let (_dev, pdo) = emu.add_device(InterruptResources::msix(4));
    let mut lock: sys::KSPIN_LOCK = 0;
    let mut table: sys::PVOID = std::ptr::null_mut();
    let mut p = message_based(pdo, &mut table, &mut lock);
    assert_eq!(connect(&mut p), 0);
    let info = table.cast::<sys::IO_INTERRUPT_MESSAGE_INFO>();
    // SAFETY: the table the kernel wrote, 4 entries.
    let (unified, irqls) = unsafe {
        (
            (*info).UnifiedIrql,
            (0..4)
                .map(|i| (*(*info).MessageInfo.as_ptr().add(i)).Irql)
                .collect::<Vec<_>>(),
        )
    };
    assert_ne!(unified, 0);
    assert_eq!(unified, *irqls.iter().max().unwrap());
    disconnect(sys::CONNECT_MESSAGE_BASED, table);
}

#[test]
fn disconnecting_twice_is_caught() {
    let emu = Emulator::new(Config::default());
    let (_dev, pdo) = emu.add_device(InterruptResources::msix(1));
    let mut table: sys::PVOID = std::ptr::null_mut();
    let mut p = message_based(pdo, &mut table, std::ptr::null_mut());
    assert_eq!(connect(&mut p), 0);
    disconnect(sys::CONNECT_MESSAGE_BASED, table);
    let b = emu.expect_bugcheck(|| disconnect(sys::CONNECT_MESSAGE_BASED, table));
    assert_eq!(
        (b.code, b.params[0]),
        (0xC4, ndis_emu::rule::INVALID_HANDLE)
    );
}

#[test]
fn win64_export_table_lists_every_import_by_module_and_name() {
    let exports = ndis_emu::win64_exports();
    for (module, name) in sys::HostImports::NAMES {
        assert!(
            exports
                .iter()
                .any(|e| e.module == *module && e.name == *name && e.address != 0),
            "{module}!{name} missing from the win64 export table"
        );
    }
    // Besides the host imports: the C run-time functions ntoskrnl.exe exports, which images
    // import (ndis_sys::crt) and host builds take from the host's C library.
    let mut extra: Vec<String> = exports
        .iter()
        .filter(|e| !sys::HostImports::NAMES.contains(&(e.module, e.name)))
        .map(|e| format!("{}!{}", e.module, e.name))
        .collect();
    extra.sort();
    assert_eq!(
        extra,
        [
            "ntoskrnl.exe!__chkstk",
            "ntoskrnl.exe!memcmp",
            "ntoskrnl.exe!memcpy",
            "ntoskrnl.exe!memmove",
            "ntoskrnl.exe!memset",
            "ntoskrnl.exe!strlen"
        ]
    );
    assert_eq!(exports.len(), sys::HostImports::NAMES.len() + extra.len());
}
