//! Each verifier rule: a driver that breaks it, and the bug check it gets.

mod common;
use common::*;
use ndis_emu::{InterruptResources, rule};
use ndis_sys as sys;

#[test]
fn halt_without_deregistering_the_interrupt_is_7c_08() {
    let emu = emulator(2);
    set(|k| k.deregister_in_halt = false);
    let a = start(&emu, InterruptResources::msix(2));
    let b = emu.expect_bugcheck(|| emu.halt(a, sys::NdisHaltDeviceDisabled));
    assert_eq!(b.code, 0x7C);
    assert_eq!(b.params[0], 0x08);
    assert!(b.message.contains("NdisMDeregisterInterruptEx"), "{b}");
}

#[test]
fn failed_initialize_with_a_live_interrupt_is_7c_0b() {
    let emu = emulator(2);
    set(|k| k.fail_init = Some(false));
    assert_eq!(emu.load_driver(driver_entry), 0);
    let b = emu.expect_bugcheck(|| {
        let _ = emu.add_adapter(InterruptResources::msix(2));
    });
    assert_eq!((b.code, b.params[0]), (0x7C, 0x0B));
}

#[test]
fn failed_initialize_that_deregisters_is_clean() {
    let emu = emulator(2);
    set(|k| k.fail_init = Some(true));
    assert_eq!(emu.load_driver(driver_entry), 0);
    assert_eq!(
        emu.add_adapter(InterruptResources::msix(2)),
        Err(sys::NDIS_STATUS_DEVICE_FAILED)
    );
    emu.unload();
}

#[test]
fn corrupt_interrupt_characteristics_header_is_7c_21() {
    let emu = emulator(2);
    set(|k| k.bad_interrupt_header = true);
    assert_eq!(emu.load_driver(driver_entry), 0);
    let b = emu.expect_bugcheck(|| {
        let _ = emu.add_adapter(InterruptResources::msix(2));
    });
    assert_eq!(
        (b.code, b.params[0], b.params[1], b.params[3]),
        (0x7C, 0x21, 0x84, 88)
    );
}

#[test]
fn registering_an_interrupt_at_dirql_is_an_irql_violation() {
    let emu = emulator(2);
    set(|_| {});
    let a = start(&emu, InterruptResources::msix(2));
    set(|k| k.register_from_isr = true);
    let b = emu.expect_bugcheck(|| {
        emu.fire_message(emu.device_of(a), 0);
    });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::IRQL));
    assert!(
        b.params[1] > 2 && b.params[2] == 0,
        "at DIRQL, allowed PASSIVE: {b}"
    );
}

#[test]
fn using_the_interrupt_handle_after_deregistration_is_caught() {
    let emu = emulator(2);
    set(|k| k.synchronize_after_deregister = true);
    let a = start(&emu, InterruptResources::msix(2));
    let b = emu.expect_bugcheck(|| emu.halt(a, sys::NdisHaltDeviceDisabled));
    assert_eq!(
        (b.code, b.params[0]),
        (0xC4, rule::INTERRUPT_USED_AFTER_DEREGISTER)
    );
}

#[test]
fn interrupt_registration_before_registration_attributes_is_caught() {
    let emu = emulator(2);
    set(|k| k.set_registration = false);
    assert_eq!(emu.load_driver(driver_entry), 0);
    let b = emu.expect_bugcheck(|| {
        let _ = emu.add_adapter(InterruptResources::msix(2));
    });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::ATTRIBUTE_ORDER));
}

#[test]
fn initialize_succeeding_without_general_attributes_is_caught() {
    let emu = emulator(2);
    set(|k| k.set_general = false);
    assert_eq!(emu.load_driver(driver_entry), 0);
    let b = emu.expect_bugcheck(|| {
        let _ = emu.add_adapter(InterruptResources::msix(2));
    });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::ATTRIBUTE_ORDER));
    assert!(b.message.contains("general"), "{b}");
}

#[test]
fn target_processors_from_an_ndis_620_isr_is_obsolete() {
    let emu = emulator(2);
    set(|k| k.isr = IsrMode::Targets(0b10));
    let a = start(&emu, InterruptResources::msix(2));
    let b = emu.expect_bugcheck(|| {
        emu.fire_message(emu.device_of(a), 0);
    });
    assert_eq!(
        (b.code, b.params[0], b.params[1]),
        (0xC4, rule::OBSOLETE_INTERFACE, 0b10)
    );
}

#[test]
fn target_processors_still_work_for_an_ndis_61_driver() {
    let emu = emulator(4);
    set(|k| {
        k.ndis_minor = 1;
        k.isr = IsrMode::Targets(0b1010);
    });
    let a = start(&emu, InterruptResources::msix(2));
    emu.fire_message(emu.device_of(a), 0);
    let mut cpus: Vec<u32> = seen()
        .iter()
        .filter_map(|s| {
            if let Seen::Dpc { cpu, .. } = s {
                Some(*cpu)
            } else {
                None
            }
        })
        .collect();
    cpus.sort();
    assert_eq!(cpus, vec![1, 3]);
    stop(&emu, a);
}

#[test]
fn unloading_without_deregistering_the_driver_is_caught() {
    let emu = emulator(1);
    set(|k| k.deregister_driver_in_unload = false);
    let a = start(&emu, InterruptResources::line());
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    let b = emu.expect_bugcheck(|| emu.unload());
    assert_eq!(
        (b.code, b.params[0]),
        (0xC4, rule::UNLOAD_WITHOUT_DEREGISTER)
    );
}

#[test]
fn leaked_memory_at_unload_is_c4_62_with_the_count() {
    let emu = emulator(1);
    set(|k| {
        k.leak = true;
        k.alloc_bytes = 100;
    });
    let a = start(&emu, InterruptResources::line());
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    let b = emu.expect_bugcheck(|| emu.unload());
    assert_eq!(
        (b.code, b.params[0], b.params[2], b.params[3]),
        (0xC4, 0x62, 100, 1)
    );
    assert!(b.message.contains("tag 'test'"), "{b}");
}

#[test]
fn a_leaked_heap_block_is_c4_62_at_unload() {
    let emu = emulator(1);
    set(|k| k.leak_box = true);
    let a = start(&emu, InterruptResources::line());
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    let b = emu.expect_bugcheck(|| emu.unload());
    assert_eq!(
        (b.code, b.params[0], b.params[1], b.params[2], b.params[3]),
        (0xC4, 0x62, 1, 100, 1)
    );
    assert!(b.message.contains("heap allocation"), "{b}");
}

#[test]
fn freeing_memory_twice_is_bad_pool_caller() {
    let emu = emulator(1);
    set(|_| {});
    // SAFETY: plain allocation and (deliberately doubled) free with a matching tag.
    let b = emu.expect_bugcheck(|| unsafe {
        let p = sys::ExAllocatePool2(sys::POOL_FLAG_NON_PAGED, 32, 0x41424344);
        sys::ExFreePoolWithTag(p, 0x41424344);
        sys::ExFreePoolWithTag(p, 0x41424344);
    });
    assert_eq!((b.code, b.params[0]), (0xC2, 0x07));
}

#[test]
fn uninitialized_pool_is_poisoned_and_zeroed_pool_is_zero() {
    let emu = emulator(1);
    // SAFETY: allocations read within their size and freed once.
    unsafe {
        let p = sys::ExAllocatePool2(
            sys::POOL_FLAG_NON_PAGED | sys::POOL_FLAG_UNINITIALIZED,
            16,
            1,
        )
        .cast::<u8>();
        assert_eq!(*p.add(7), 0xCD);
        sys::ExFreePoolWithTag(p.cast(), 1);
        let z = sys::ExAllocatePool2(sys::POOL_FLAG_NON_PAGED, 16, 1).cast::<u8>();
        assert_eq!(*z.add(7), 0);
        sys::ExFreePoolWithTag(z.cast(), 1);
    }
    emu.check_released();
}

#[test]
fn driver_characteristics_are_validated_per_ndis_version() {
    for (minor, revision, size, expected) in [
        (20u8, 2u8, 152u16, sys::NDIS_STATUS_SUCCESS),
        (0, 1, 136, sys::NDIS_STATUS_SUCCESS),
        (80, 3, 160, sys::NDIS_STATUS_SUCCESS),
        (20, 3, 160, sys::NDIS_STATUS_BAD_CHARACTERISTICS), // revision 3 needs NDIS 6.80
        (0, 2, 152, sys::NDIS_STATUS_BAD_CHARACTERISTICS),  // revision 2 needs NDIS 6.1
        (20, 2, 136, sys::NDIS_STATUS_BAD_CHARACTERISTICS), // size of another revision
        (21, 2, 152, sys::NDIS_STATUS_BAD_VERSION),         // no NDIS 6.21
    ] {
        let emu = emulator(1);
        let status = register_with(&emu, minor, revision, size);
        assert_eq!(
            status, expected,
            "NDIS 6.{minor} revision {revision} size {size}"
        );
    }
}

thread_local! {
    static HEADER: std::cell::Cell<(u8, u8, u16)> = const { std::cell::Cell::new((0, 0, 0)) };
}

fn register_with(emu: &ndis_emu::Emulator, minor: u8, revision: u8, size: u16) -> sys::NDIS_STATUS {
    HEADER.with(|h| h.set((minor, revision, size)));
    emu.load_driver(entry_with_header)
}

unsafe extern "win64-unwind" fn entry_with_header(
    o: sys::PDRIVER_OBJECT,
    p: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    let (minor, revision, size) = HEADER.with(|h| h.get());
    // SAFETY: all-zero is valid; handlers copied from a fully filled table.
    let mut c: sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS = unsafe { std::mem::zeroed() };
    set(|k| k.ndis_minor = 20);
    // Reuse the test driver's handler set by registering through it once is not possible
    // (registration is one-shot), so fill the same handlers here.
    fill_handlers(&mut c);
    c.Header = sys::NDIS_OBJECT_HEADER {
        Type: 0x8A,
        Revision: revision,
        Size: size,
    };
    c.MajorNdisVersion = 6;
    c.MinorNdisVersion = minor;
    let mut h: sys::NDIS_HANDLE = std::ptr::null_mut();
    // SAFETY: valid pointers.
    let s = unsafe { sys::NdisMRegisterMiniportDriver(o, p, std::ptr::null_mut(), &c, &mut h) };
    if s == 0 {
        // SAFETY: the handle just returned (keep DriverEntry's failure rule out of this test).
        unsafe { sys::NdisMDeregisterMiniportDriver(h) };
    }
    s
}

fn fill_handlers(c: &mut sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS) {
    unsafe extern "win64-unwind" fn init(
        _: sys::NDIS_HANDLE,
        _: sys::NDIS_HANDLE,
        _: *mut sys::NDIS_MINIPORT_INIT_PARAMETERS,
    ) -> i32 {
        sys::NDIS_STATUS_FAILURE
    }
    unsafe extern "win64-unwind" fn halt(_: sys::NDIS_HANDLE, _: i32) {}
    unsafe extern "win64-unwind" fn unload(_: sys::PDRIVER_OBJECT) {}
    *c = ndis_emu::raw::driver_characteristics(20, init, halt, unload);
}

#[test]
fn a_missing_required_handler_is_bad_characteristics() {
    let emu = emulator(1);
    unsafe extern "win64-unwind" fn entry(
        o: sys::PDRIVER_OBJECT,
        p: *const sys::UNICODE_STRING,
    ) -> sys::NTSTATUS {
        // SAFETY: all-zero is valid.
        let mut c: sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS = unsafe { std::mem::zeroed() };
        fill_handlers(&mut c);
        c.CancelSendHandler = None;
        c.Header = sys::NDIS_OBJECT_HEADER {
            Type: 0x8A,
            Revision: 2,
            Size: 152,
        };
        c.MajorNdisVersion = 6;
        c.MinorNdisVersion = 20;
        let mut h: sys::NDIS_HANDLE = std::ptr::null_mut();
        // SAFETY: valid pointers.
        unsafe { sys::NdisMRegisterMiniportDriver(o, p, std::ptr::null_mut(), &c, &mut h) }
    }
    assert_eq!(emu.load_driver(entry), sys::NDIS_STATUS_BAD_CHARACTERISTICS);
}

// --- MessageId outside the grant -----------------------------------------------------------

unsafe extern "win64-unwind" fn sync_true(_ctx: sys::PVOID) -> sys::BOOLEAN {
    1
}

#[test]
fn synchronize_with_a_message_id_outside_a_message_grant_is_caught() {
    let emu = emulator(2);
    set(|_| {});
    let a = start(&emu, InterruptResources::msix(2));
    let ih = interrupt_handle();
    // The last granted message is fine.
    // SAFETY: the live interrupt handle, at PASSIVE_LEVEL.
    let r = unsafe {
        sys::NdisMSynchronizeWithInterruptEx(ih, 1, Some(sync_true), std::ptr::null_mut())
    };
    assert_eq!(r, 1);
    let b = emu.expect_bugcheck(|| {
        // SAFETY: as above; MessageId 2 of a 2-message grant (the test expects the bug check).
        unsafe {
            sys::NdisMSynchronizeWithInterruptEx(ih, 2, Some(sync_true), std::ptr::null_mut())
        };
    });
    assert_eq!(
        (b.code, b.params),
        (0xC4, [rule::MESSAGE_ID, 2, 2, ih as usize]),
        "{b}"
    );
    let _ = a;
}

#[test]
fn a_line_grant_ignores_the_synchronize_message_id() {
    // "If NDIS did not grant message signaled interrupts for the driver, NDIS ignores this
    // parameter."
    let emu = emulator(1);
    set(|_| {});
    let a = start(&emu, InterruptResources::line());
    // SAFETY: the live interrupt handle, at PASSIVE_LEVEL.
    let r = unsafe {
        sys::NdisMSynchronizeWithInterruptEx(
            interrupt_handle(),
            7,
            Some(sync_true),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, 1);
    stop(&emu, a);
}

#[test]
fn queueing_a_dpc_for_a_message_outside_the_grant_is_caught() {
    let emu = emulator(2);
    set(|_| {});
    let _a = start(&emu, InterruptResources::msix(2));
    let ih = interrupt_handle();
    let mut ga = sys::GROUP_AFFINITY {
        Mask: 1,
        Group: 0,
        Reserved: [0; 3],
    };
    // SAFETY: the live handle; MessageId 5 of a 2-message grant (the test expects the bug check).
    let b = emu.expect_bugcheck(|| unsafe {
        sys::NdisMQueueDpcEx(ih, 5, &mut ga, std::ptr::null_mut());
    });
    assert_eq!(
        (b.code, b.params),
        (0xC4, [rule::MESSAGE_ID, 5, 2, ih as usize]),
        "{b}"
    );
}

// --- heap above DISPATCH_LEVEL ---------------------------------------------------------------

#[test]
fn a_heap_allocation_in_the_isr_is_caught_when_the_isr_returns() {
    let emu = emulator(2);
    set(|k| k.allocate_in_isr = true);
    let a = start(&emu, InterruptResources::msix(2));
    let irql = grant().entries[0].1;
    assert!(irql > 2, "message IRQLs are DIRQL");
    let b = emu.expect_bugcheck(|| {
        emu.fire_message(emu.device_of(a), 0);
    });
    assert_eq!(
        (b.code, b.params),
        (0xC4, [rule::ALLOCATION_IRQL, irql as usize, 48, 0]),
        "{b}"
    );
    // The bug check came when the ISR returned: its DPC never ran.
    assert!(!seen().iter().any(|s| matches!(s, Seen::Dpc { .. })));
}

#[test]
fn a_heap_allocation_in_a_dpc_is_allowed() {
    let emu = emulator(2);
    set(|k| k.allocate_in_dpc = true);
    let a = start(&emu, InterruptResources::msix(2));
    emu.fire_message(emu.device_of(a), 0);
    assert!(seen().iter().any(|s| matches!(s, Seen::DpcEnd { .. })));
    stop(&emu, a);
}

thread_local! {
    static AFTER_EXPORT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

unsafe extern "win64-unwind" fn sync_allocates_then_calls_an_export(
    _ctx: sys::PVOID,
) -> sys::BOOLEAN {
    let v: Vec<u32> = Vec::with_capacity(8);
    std::hint::black_box(&v);
    // SAFETY: a plain call (any IRQL); the emulator stops here.
    unsafe { sys::KeStallExecutionProcessor(1) };
    ndis_emu::instrumentation(|| AFTER_EXPORT.with(|a| a.set(true)));
    1
}

#[test]
fn a_heap_allocation_in_a_synchronize_function_is_caught_at_its_next_export() {
    let emu = emulator(2);
    set(|_| {});
    let _a = start(&emu, InterruptResources::msix(2));
    let irql = grant().entries[1].1;
    let ih = interrupt_handle();
    AFTER_EXPORT.with(|a| a.set(false));
    let b = emu.expect_bugcheck(|| {
        // SAFETY: the live handle, at PASSIVE_LEVEL.
        unsafe {
            sys::NdisMSynchronizeWithInterruptEx(
                ih,
                1,
                Some(sync_allocates_then_calls_an_export),
                std::ptr::null_mut(),
            )
        };
    });
    assert_eq!(
        (b.code, b.params),
        (0xC4, [rule::ALLOCATION_IRQL, irql as usize, 32, 0]),
        "{b}"
    );
    assert!(
        !AFTER_EXPORT.with(|a| a.get()),
        "stopped at the export, not after it"
    );
}

unsafe extern "win64-unwind" fn sync_frees(ctx: sys::PVOID) -> sys::BOOLEAN {
    // SAFETY: the Box the test leaked into the context, freed once here.
    drop(unsafe { Box::from_raw(ctx.cast::<[u8; 24]>()) });
    1
}

#[test]
fn a_heap_free_in_a_synchronize_function_is_caught() {
    let emu = emulator(2);
    set(|_| {});
    let _a = start(&emu, InterruptResources::msix(2));
    let irql = grant().entries[0].1;
    let ih = interrupt_handle();
    let block = Box::into_raw(Box::new([1u8; 24]));
    let b = emu.expect_bugcheck(|| {
        // SAFETY: the live handle; the context is the block sync_frees takes.
        unsafe { sys::NdisMSynchronizeWithInterruptEx(ih, 0, Some(sync_frees), block.cast()) };
    });
    assert_eq!(
        (b.code, b.params),
        (0xC4, [rule::ALLOCATION_IRQL, irql as usize, 24, 1]),
        "{b}"
    );
}

/// `MmGetSystemRoutineAddress` as on `windows`: the address of `name`, or null.
fn routine(emu_windows: sys::availability::WindowsVersion, name: &str) -> sys::PVOID {
    let _emu = ndis_emu::Emulator::new(ndis_emu::Config {
        windows_version: emu_windows,
        ..Default::default()
    });
    let mut units: Vec<u16> = name.encode_utf16().collect();
    let mut s = sys::UNICODE_STRING {
        Length: (units.len() * 2) as u16,
        MaximumLength: (units.len() * 2) as u16,
        Buffer: units.as_mut_ptr(),
    };
    // SAFETY: a valid UNICODE_STRING, at PASSIVE_LEVEL.
    unsafe { sys::MmGetSystemRoutineAddress(&mut s) }
}

#[test]
fn mm_get_system_routine_address_finds_only_what_the_emulated_windows_exports() {
    use sys::availability::{WINDOWS_10_1709, WINDOWS_10_2004};
    assert!(routine(WINDOWS_10_1709, "ExAllocatePool2").is_null());
    assert!(!routine(WINDOWS_10_2004, "ExAllocatePool2").is_null());
    assert!(!routine(WINDOWS_10_1709, "ExAllocatePoolWithTag").is_null());
    assert!(!routine(WINDOWS_10_1709, "KeStallExecutionProcessor").is_null()); // hal.dll
    // ndis.sys exports are not the kernel's or the HAL's; unknown names resolve to nothing.
    assert!(routine(WINDOWS_10_2004, "NdisGetVersion").is_null());
    assert!(routine(WINDOWS_10_2004, "ExAllocatePool3").is_null());
    assert!(routine(WINDOWS_10_2004, "").is_null());

    // The address found is the host-ABI function: calling it allocates.
    let _emu = ndis_emu::Emulator::new(ndis_emu::Config::default());
    let mut units: Vec<u16> = "ExAllocatePool2".encode_utf16().collect();
    let mut s = sys::UNICODE_STRING {
        Length: 30,
        MaximumLength: 30,
        Buffer: units.as_mut_ptr(),
    };
    // SAFETY: a valid UNICODE_STRING, at PASSIVE_LEVEL; the address found is ExAllocatePool2 with
    // the host ABI, and the block is freed once.
    unsafe {
        let f = sys::MmGetSystemRoutineAddress(&mut s);
        let f: sys::PFN_EX_ALLOCATE_POOL2 = core::mem::transmute(f);
        let p = f(sys::POOL_FLAG_NON_PAGED, 24, 0x7a7a7a7a);
        assert!(!p.is_null());
        assert_eq!(*p.cast::<u8>().add(23), 0);
        sys::ExFreePoolWithTag(p, 0x7a7a7a7a);
    }
}

#[test]
fn mm_get_system_routine_address_above_passive_level_is_irql_not_less_or_equal() {
    let emu = emulator(1);
    let mut s = sys::UNICODE_STRING {
        Length: 0,
        MaximumLength: 0,
        Buffer: core::ptr::null_mut(),
    };
    // SAFETY: NDIS_SPIN_LOCK is plain data that NdisAllocateSpinLock initializes.
    let mut lock: sys::NDIS_SPIN_LOCK = unsafe { core::mem::zeroed() };
    let b = emu.expect_bugcheck(|| {
        // SAFETY: the lock is initialized before it is acquired (raising to DISPATCH_LEVEL);
        // the string is a valid (empty) UNICODE_STRING; the IRQL is wrong on purpose.
        unsafe {
            sys::NdisAllocateSpinLock(&mut lock);
            sys::NdisAcquireSpinLock(&mut lock);
            sys::MmGetSystemRoutineAddress(&mut s);
        }
    });
    assert!(b.message.contains("MmGetSystemRoutineAddress"), "{b}");
}

#[test]
fn calling_an_import_newer_than_the_emulated_windows_fails_the_test() {
    let _emu = ndis_emu::Emulator::new(ndis_emu::Config {
        windows_version: sys::availability::WINDOWS_10_1709,
        ..Default::default()
    });
    // SAFETY: a plain allocation call; the emulator refuses it before allocating.
    let err = std::panic::catch_unwind(|| unsafe {
        sys::ExAllocatePool2(sys::POOL_FLAG_NON_PAGED, 8, 1)
    })
    .expect_err("ExAllocatePool2 on Windows 10 1709");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("ntoskrnl.exe!ExAllocatePool2") && msg.contains("10.0.16299"),
        "{msg}"
    );
}
