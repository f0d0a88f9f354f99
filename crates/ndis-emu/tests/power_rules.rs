//! The power rules the emulator enforces, each tripped by a raw miniport (written against
//! `ndis-sys`, as a C driver is) that declares power management and then breaks one of them:
//! a power OID that does not succeed, a receive indication in D3, a malformed
//! `NDIS_PM_CAPABILITIES` header.

use std::cell::Cell;

use ndis_emu::{Config, Emulator, InterruptResources, SystemSleep, rule};
use ndis_sys as sys;

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

thread_local! {
    static HANDLE: Cell<usize> = const { Cell::new(0) };
    static DRIVER: Cell<usize> = const { Cell::new(0) };
    /// What the OID handler answers the power OIDs.
    static POWER_ANSWER: Cell<sys::NDIS_STATUS> = const { Cell::new(sys::NDIS_STATUS_SUCCESS) };
    /// The revision and size the PM capabilities header claims.
    static PM_HEADER: Cell<(u8, u16)> = const { Cell::new((1, 52)) };
}

unsafe extern "win64-unwind" fn initialize(
    h: sys::NDIS_HANDLE,
    _d: sys::NDIS_HANDLE,
    _p: *mut sys::NDIS_MINIPORT_INIT_PARAMETERS,
) -> sys::NDIS_STATUS {
    HANDLE.set(h as usize);
    // SAFETY: all-zero is a valid attribute union; the handle is initialize's own; the
    // attributes and the capabilities they point to live across each call.
    unsafe {
        let mut a: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = std::mem::zeroed();
        a.RegistrationAttributes = sys::NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES,
                Revision: sys::NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_1,
                Size: sys::NDIS_SIZEOF_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_1,
            },
            MiniportAdapterContext: 1 as sys::NDIS_HANDLE,
            AttributeFlags: sys::NDIS_MINIPORT_ATTRIBUTES_HARDWARE_DEVICE
                | sys::NDIS_MINIPORT_ATTRIBUTES_NO_HALT_ON_SUSPEND,
            CheckForHangTimeInSeconds: 0,
            InterfaceType: sys::NdisInterfacePci,
        };
        let s = sys::NdisMSetMiniportAttributes(h, &mut a);
        if s != sys::NDIS_STATUS_SUCCESS {
            return s;
        }
        let (revision, size) = PM_HEADER.get();
        let mut pm = sys::NDIS_PM_CAPABILITIES {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_DEFAULT,
                Revision: revision,
                Size: size,
            },
            ..Default::default()
        };
        let mut g: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = std::mem::zeroed();
        g.GeneralAttributes.Header = sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES,
            Revision: sys::NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2,
            Size: sys::NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2,
        };
        g.GeneralAttributes.PowerManagementCapabilitiesEx =
            (&mut pm as *mut sys::NDIS_PM_CAPABILITIES).cast();
        sys::NdisMSetMiniportAttributes(h, &mut g)
    }
}

unsafe extern "win64-unwind" fn halt(_c: sys::NDIS_HANDLE, _a: sys::NDIS_HALT_ACTION) {}

unsafe extern "win64-unwind" fn unload(_o: sys::PDRIVER_OBJECT) {
    // SAFETY: the registered driver handle.
    unsafe { sys::NdisMDeregisterMiniportDriver(DRIVER.get() as sys::NDIS_HANDLE) };
}

unsafe extern "win64-unwind" fn oid(
    _c: sys::NDIS_HANDLE,
    r: *mut sys::NDIS_OID_REQUEST,
) -> sys::NDIS_STATUS {
    // SAFETY: NDIS's request; both members start with the OID.
    let oid = unsafe { (*r).DATA.QUERY_INFORMATION.Oid };
    match oid {
        sys::OID_PNP_QUERY_POWER | sys::OID_PNP_SET_POWER => POWER_ANSWER.get(),
        // The filter TCP/IP sets at bind, and anything else.
        _ => sys::NDIS_STATUS_SUCCESS,
    }
}

unsafe extern "win64-unwind" fn entry(
    o: sys::PDRIVER_OBJECT,
    p: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    let mut chars = ndis_emu::raw::driver_characteristics(30, initialize, halt, unload);
    chars.OidRequestHandler = Some(oid);
    // SAFETY: DriverEntry's own arguments.
    let (status, h) = unsafe { ndis_emu::raw::register_driver(o, p, &chars) };
    DRIVER.set(h as usize);
    status
}

fn start(answer: sys::NDIS_STATUS, pm_header: (u8, u16)) -> (Emulator, ndis_emu::AdapterId) {
    POWER_ANSWER.set(answer);
    PM_HEADER.set(pm_header);
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(entry), 0);
    let a = emu
        .add_adapter(InterruptResources::None)
        .expect("initialize");
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    (emu, a)
}

#[test]
fn a_power_oid_that_does_not_succeed_is_a_bug_check() {
    let (emu, a) = start(sys::NDIS_STATUS_NOT_SUPPORTED, (1, 52));
    let bug = emu.expect_bugcheck(|| emu.sleep(a, SystemSleep::SLEEP));
    assert_eq!(bug.code, ndis_emu::DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(bug.params[0], rule::POWER_OID);
    assert_eq!(
        bug.params[3],
        sys::NDIS_STATUS_NOT_SUPPORTED as u32 as usize
    );
}

#[test]
fn a_receive_indication_in_d3_is_a_bug_check() {
    let (emu, a) = start(sys::NDIS_STATUS_SUCCESS, (2, 60));
    emu.sleep(a, SystemSleep::HIBERNATE);
    assert_eq!(emu.device_power_state(a), sys::NdisDeviceStateD3);
    let bug = emu.expect_bugcheck(|| {
        // What a driver's stray DPC would do: indicate while its device sleeps.
        // SAFETY: the adapter's live handle; the emulator stops at the state before it reads
        // the (empty) chain.
        unsafe {
            sys::NdisMIndicateReceiveNetBufferLists(
                HANDLE.get() as sys::NDIS_HANDLE,
                std::ptr::null_mut(),
                0,
                0,
                0,
            )
        }
    });
    assert_eq!(bug.params[0], rule::LOW_POWER_ACCESS);
    assert_eq!(bug.params[2], sys::NdisDeviceStateD3 as usize);
}

#[test]
fn a_wake_up_without_faults_needs_no_driver_work_of_a_raw_driver() {
    // The control case of the two above: the same driver, answering SUCCESS, sleeps and wakes.
    let (emu, a) = start(sys::NDIS_STATUS_SUCCESS, (1, 52));
    emu.sleep_cycle(a, SystemSleep::SLEEP).expect("wake-up");
    assert_eq!(emu.device_power_state(a), sys::NdisDeviceStateD0);
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn malformed_pm_capabilities_are_a_bug_check() {
    // Revision 1 is 52 bytes; revision 2 (60) only from NDIS 6.30, which this driver is.
    for header in [(1u8, 40u16), (2, 52), (3, 60)] {
        PM_HEADER.set(header);
        POWER_ANSWER.set(sys::NDIS_STATUS_SUCCESS);
        let emu = Emulator::new(Config::default());
        assert_eq!(emu.load_driver(entry), 0);
        let bug = emu.expect_bugcheck(|| {
            let _ = emu.add_adapter(InterruptResources::None);
        });
        assert_eq!(bug.code, ndis_emu::BUGCODE_NDIS_DRIVER, "{header:?}");
        assert_eq!(bug.params[0], 0x21, "{header:?}");
    }
}
