//! The PnP sequence the emulator plays for a driver with PnP handlers, the grants that follow
//! its filtered resource requirements, the rules that guard the list it hands back, and the
//! registration checks per NDIS version. The driver is written directly against `ndis-sys`, so
//! each test can make it misbehave in one precise way.

use std::cell::{Cell, RefCell};

use ndis_emu::{Config, Emulator, InterruptResources, rule};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

/// What the test driver's filter does to the list it is handed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Filter {
    /// Leave it alone.
    Keep,
    /// Pin message i (in place) to the processors `masks[i]` names.
    Pin(&'static [u64]),
    /// Copy it into a block of its own, keep only `n` message descriptors, free the old block
    /// unless `leak_old`.
    Replace { n: u32, leak_old: bool },
    /// Drop every message descriptor (in place), for a line-based driver.
    Line,
    /// Claim a ListSize past the end of the block.
    Oversize,
    /// Fail the IRP.
    Fail,
}

#[derive(Debug, Clone, Copy)]
struct Knobs {
    minor: u8,
    revision: Option<(u8, u16)>,
    set_add_attributes: bool,
    filter: Filter,
    registration_revision: u8,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            minor: 20,
            revision: None,
            set_add_attributes: true,
            filter: Filter::Keep,
            registration_revision: 1,
        }
    }
}

thread_local! {
    static KNOBS: Cell<Knobs> = Cell::new(Knobs::default());
    static DRIVER: Cell<usize> = const { Cell::new(0) };
    static SEEN_CONTEXT: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Records a context the driver was handed (test bookkeeping, not the driver's heap).
fn see(context: usize) {
    ndis_emu::instrumentation(|| SEEN_CONTEXT.with(|s| s.borrow_mut().push(context)));
}

fn knobs() -> Knobs {
    KNOBS.with(Cell::get)
}

fn set(f: impl FnOnce(&mut Knobs)) {
    let mut k = knobs();
    f(&mut k);
    KNOBS.with(|c| c.set(k));
}

const DESCRIPTOR: usize = 32;
const LIST: usize = sys::IO_RESOURCE_REQUIREMENTS_LIST_HEADER;
const FIRST: usize = LIST + sys::IO_RESOURCE_LIST_HEADER;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn is_message(d: &[u8]) -> bool {
    d[1] == sys::CmResourceTypeInterrupt
        && u16::from_le_bytes([d[4], d[5]]) & sys::CM_RESOURCE_INTERRUPT_MESSAGE != 0
}

/// The first configuration's descriptors, as they stand in `b`.
fn first_descriptors(b: &[u8]) -> Vec<Vec<u8>> {
    let n = u32_at(b, LIST + 4) as usize;
    (0..n)
        .map(|i| b[FIRST + i * DESCRIPTOR..][..DESCRIPTOR].to_vec())
        .collect()
}

/// A one-configuration list of `descriptors`.
fn build(descriptors: &[Vec<u8>], template: &[u8]) -> Vec<u8> {
    let mut b = template[..LIST].to_vec();
    b[28..32].copy_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&template[LIST..FIRST]);
    b[LIST + 4..LIST + 8].copy_from_slice(&(descriptors.len() as u32).to_le_bytes());
    for d in descriptors {
        b.extend_from_slice(d);
    }
    let size = b.len() as u32;
    b[..4].copy_from_slice(&size.to_le_bytes());
    b
}

/// Writes `b` into the list block at `p` (which must be large enough).
unsafe fn write_in_place(p: *mut u8, b: &[u8]) {
    // SAFETY: the caller's block holds at least b.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), p, b.len()) };
}

unsafe extern "win64-unwind" fn filter(
    context: sys::NDIS_HANDLE,
    irp: sys::PIRP,
) -> sys::NDIS_STATUS {
    see(context as usize);
    // SAFETY: the IRP NDIS passes, valid for the call; its list starts with its size.
    let list = unsafe { (*irp).IoStatus.Information } as *mut u8;
    // SAFETY: as above.
    let size = unsafe { list.cast::<u32>().read_unaligned() } as usize;
    // SAFETY: the list's ListSize bytes.
    let old = unsafe { std::slice::from_raw_parts(list, size) }.to_vec();
    let descriptors = first_descriptors(&old);
    match knobs().filter {
        Filter::Keep => {}
        Filter::Pin(masks) => {
            let mut b = old.clone();
            let mut m = 0;
            for i in 0..descriptors.len() {
                let at = FIRST + i * DESCRIPTOR;
                if is_message(&b[at..at + DESCRIPTOR]) && m < masks.len() {
                    b[at + 16..at + 18]
                        .copy_from_slice(&sys::IrqPolicySpecifiedProcessors.to_le_bytes());
                    b[at + 24..at + 32].copy_from_slice(&masks[m].to_le_bytes());
                    m += 1;
                }
            }
            // SAFETY: same size as the block.
            unsafe { write_in_place(list, &b) };
        }
        Filter::Replace { n, leak_old } => {
            let message = descriptors.iter().find(|d| is_message(d)).unwrap().clone();
            let mut kept: Vec<Vec<u8>> = descriptors
                .iter()
                .filter(|d| !is_message(d))
                .cloned()
                .collect();
            for _ in 0..n {
                kept.insert(0, message.clone());
            }
            let b = build(&kept, &old);
            // SAFETY: PASSIVE_LEVEL; paged pool as the IRP asks.
            let new = unsafe { sys::ExAllocatePool2(sys::POOL_FLAG_PAGED, b.len(), 0x6E707274) };
            // SAFETY: a fresh block of b.len() bytes.
            unsafe { write_in_place(new.cast(), &b) };
            if !leak_old {
                // SAFETY: PnP's block, freed as ExFreePool does.
                unsafe { sys::ExFreePoolWithTag(list.cast(), 0) };
            }
            // SAFETY: the IRP is ours for the call.
            unsafe { (*irp).IoStatus.Information = new as usize };
        }
        Filter::Line => {
            let kept: Vec<Vec<u8>> = descriptors
                .iter()
                .filter(|d| !is_message(d))
                .map(|d| {
                    let mut d = d.clone();
                    d[0] &= !sys::IO_RESOURCE_ALTERNATIVE;
                    d
                })
                .collect();
            let b = build(&kept, &old);
            // SAFETY: smaller than the block.
            unsafe { write_in_place(list, &b) };
        }
        Filter::Oversize => {
            let bigger = (size as u32 + 64).to_le_bytes();
            // SAFETY: the first 4 bytes of the block.
            unsafe { write_in_place(list, &bigger) };
        }
        Filter::Fail => return sys::NDIS_STATUS_RESOURCES,
    }
    sys::NDIS_STATUS_SUCCESS
}

unsafe extern "win64-unwind" fn add_device(
    handle: sys::NDIS_HANDLE,
    _driver: sys::NDIS_HANDLE,
) -> sys::NDIS_STATUS {
    if !knobs().set_add_attributes {
        return sys::NDIS_STATUS_SUCCESS;
    }
    let context = Box::into_raw(Box::new(0xADD_u64));
    // SAFETY: all-zero is a valid attribute union.
    let mut a: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = unsafe { std::mem::zeroed() };
    a.AddDeviceRegistrationAttributes = sys::NDIS_MINIPORT_ADD_DEVICE_REGISTRATION_ATTRIBUTES {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_ADD_DEVICE_REGISTRATION_ATTRIBUTES,
            Revision: 1,
            Size: 20,
        },
        MiniportAddDeviceContext: context.cast(),
        Flags: 0,
    };
    // SAFETY: AddDevice's handle, attributes live across the call.
    unsafe { sys::NdisMSetMiniportAttributes(handle, &mut a) }
}

unsafe extern "win64-unwind" fn remove_device(context: sys::NDIS_HANDLE) {
    see(context as usize);
    if !context.is_null() {
        // SAFETY: the box add_device made; RemoveDevice comes once.
        drop(unsafe { Box::from_raw(context as *mut u64) });
    }
}

unsafe extern "win64-unwind" fn start_device(
    context: sys::NDIS_HANDLE,
    _irp: sys::PIRP,
) -> sys::NDIS_STATUS {
    see(context as usize);
    sys::NDIS_STATUS_SUCCESS
}

unsafe extern "win64-unwind" fn set_options(
    driver: sys::NDIS_HANDLE,
    _context: sys::NDIS_HANDLE,
) -> sys::NDIS_STATUS {
    let mut h = sys::NDIS_DRIVER_OPTIONAL_HANDLERS {
        MiniportPnpCharacteristics: sys::NDIS_MINIPORT_PNP_CHARACTERISTICS {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_MINIPORT_PNP_CHARACTERISTICS,
                Revision: 1,
                Size: 44,
            },
            MiniportAddDeviceHandler: Some(add_device),
            MiniportRemoveDeviceHandler: Some(remove_device),
            MiniportFilterResourceRequirementsHandler: Some(filter),
            MiniportStartDeviceHandler: Some(start_device),
            Flags: 0,
        },
    };
    // SAFETY: inside SetOptions with its driver handle.
    unsafe { sys::NdisSetOptionalHandlers(driver, &mut h) }
}

unsafe extern "win64-unwind" fn initialize(
    handle: sys::NDIS_HANDLE,
    _driver: sys::NDIS_HANDLE,
    params: *mut sys::NDIS_MINIPORT_INIT_PARAMETERS,
) -> sys::NDIS_STATUS {
    // SAFETY: NDIS's parameters for the call.
    let context = unsafe { (*params).MiniportAddDeviceContext } as usize;
    see(context);
    let revision = knobs().registration_revision;
    // SAFETY: all-zero is a valid attribute union.
    let mut a: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = unsafe { std::mem::zeroed() };
    a.RegistrationAttributes = sys::NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES,
            Revision: revision,
            Size: 28,
        },
        MiniportAdapterContext: 0x1000 as sys::NDIS_HANDLE,
        AttributeFlags: sys::NDIS_MINIPORT_ATTRIBUTES_HARDWARE_DEVICE,
        CheckForHangTimeInSeconds: 0,
        InterfaceType: sys::NdisInterfacePci,
    };
    // SAFETY: initialize's handle; the attributes live across the call.
    let s = unsafe { sys::NdisMSetMiniportAttributes(handle, &mut a) };
    if s != sys::NDIS_STATUS_SUCCESS {
        return s;
    }
    // SAFETY: all-zero is a valid attribute union.
    let mut g: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = unsafe { std::mem::zeroed() };
    g.GeneralAttributes.Header = sys::NDIS_OBJECT_HEADER {
        Type: sys::NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES,
        Revision: 2,
        Size: 224,
    };
    // SAFETY: as above.
    unsafe { sys::NdisMSetMiniportAttributes(handle, &mut g) }
}

unsafe extern "win64-unwind" fn halt(_c: sys::NDIS_HANDLE, _a: sys::NDIS_HALT_ACTION) {}

unsafe extern "win64-unwind" fn unload(_o: sys::PDRIVER_OBJECT) {
    let h = DRIVER.with(Cell::get);
    // SAFETY: the handle registration returned.
    unsafe { sys::NdisMDeregisterMiniportDriver(h as sys::NDIS_HANDLE) };
}

unsafe extern "win64-unwind" fn driver_entry(
    object: sys::PDRIVER_OBJECT,
    path: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    let k = knobs();
    let mut chars = ndis_emu::raw::driver_characteristics(k.minor, initialize, halt, unload);
    if let Some((revision, size)) = k.revision {
        chars.Header.Revision = revision;
        chars.Header.Size = size;
    }
    chars.SetOptionsHandler = Some(set_options);
    // SAFETY: DriverEntry's own arguments.
    let (status, handle) = unsafe { ndis_emu::raw::register_driver(object, path, &chars) };
    DRIVER.with(|d| d.set(handle as usize));
    status
}

fn emulator(cpus: usize, runtime: u32) -> Emulator {
    KNOBS.with(|k| k.set(Knobs::default()));
    SEEN_CONTEXT.with(|s| s.borrow_mut().clear());
    Emulator::new(Config {
        cpus,
        ndis_runtime_version: runtime,
        ..Config::default()
    })
}

const OS_6_20: u32 = 0x0006_0014;
const OS_6_30: u32 = 0x0006_001E;
const OS_6_89: u32 = 0x0006_0059;

#[test]
fn the_pnp_handlers_run_in_the_order_pnp_and_ndis_use_with_the_add_device_context() {
    let emu = emulator(4, OS_6_89);
    assert_eq!(emu.load_driver(driver_entry), sys::STATUS_SUCCESS);
    assert!(emu.registered_driver().unwrap().pnp_handlers);
    let a = emu.add_adapter(InterruptResources::msix(4)).expect("start");
    assert_eq!(
        emu.lifecycle(a),
        [
            "MiniportAddDevice",
            "MiniportFilterResourceRequirements",
            "MiniportStartDevice",
            "MiniportInitializeEx"
        ]
    );
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    assert_eq!(
        emu.lifecycle(a)[4..],
        ["MiniportHaltEx", "MiniportRemoveDevice"]
    );
    // Filter, start, initialize and remove all got the context AddDevice registered.
    let seen = SEEN_CONTEXT.with(|s| s.borrow().clone());
    assert_eq!(seen.len(), 4);
    assert!(
        seen[0] != 0 && seen.iter().all(|&c| c == seen[0]),
        "{seen:x?}"
    );
    emu.unload();
}

#[test]
fn the_bus_offers_one_message_per_msix_entry_with_the_line_as_alternative() {
    let emu = emulator(4, OS_6_89);
    emu.load_driver(driver_entry);
    let a = emu
        .add_adapter(InterruptResources::MsiX {
            requested: 6,
            granted: 4,
        })
        .expect("start");
    let ask = emu.interrupt_ask(a).unwrap();
    assert_eq!(ask.messages, 6);
    assert!(ask.line);
    assert_eq!(ask.processors, [None; 6]);
    // The platform's limit (4) caps the grant; unpinned messages go round the processors.
    let d = emu.device_of(a);
    assert_eq!(
        emu.assigned_resources(d),
        InterruptResources::MsiX {
            requested: 6,
            granted: 4
        }
    );
    assert_eq!(emu.message_processors(d), [0, 1, 2, 3]);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn pinned_messages_are_granted_on_their_processors_and_their_isrs_run_there() {
    let emu = emulator(4, OS_6_89);
    emu.load_driver(driver_entry);
    set(|k| k.filter = Filter::Pin(&[0b1000, 0b1000, 0b0110, 0b0001]));
    let a = emu.add_adapter(InterruptResources::msix(4)).expect("start");
    assert_eq!(
        emu.interrupt_ask(a).unwrap().processors,
        [Some(3), Some(3), Some(1), Some(0)]
    );
    assert_eq!(emu.message_processors(emu.device_of(a)), [3, 3, 1, 0]);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn a_replaced_list_decides_the_grant_and_the_old_one_must_be_freed() {
    let emu = emulator(2, OS_6_89);
    emu.load_driver(driver_entry);
    set(|k| {
        k.filter = Filter::Replace {
            n: 3,
            leak_old: false,
        }
    });
    // A 16-entry table, a platform that gives up to 8: the driver's 3 decide.
    let a = emu
        .add_adapter(InterruptResources::MsiX {
            requested: 16,
            granted: 8,
        })
        .expect("start");
    assert_eq!(emu.interrupt_ask(a).unwrap().messages, 3);
    assert_eq!(
        emu.assigned_resources(emu.device_of(a)),
        InterruptResources::MsiX {
            requested: 16,
            granted: 3
        }
    );
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
    drop(emu);

    // Replacing without freeing PnP's list leaks it: reported at unload.
    let emu = emulator(2, OS_6_89);
    emu.load_driver(driver_entry);
    set(|k| {
        k.filter = Filter::Replace {
            n: 1,
            leak_old: true,
        }
    });
    let a = emu.add_adapter(InterruptResources::msix(4)).expect("start");
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    let b = emu.expect_bugcheck(|| emu.unload());
    assert_eq!(b.code, ndis_emu::DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(
        b.params[0],
        ndis_emu::VERIFIER_UNLOAD_WITH_OUTSTANDING_ALLOCATIONS
    );
    assert_eq!(b.params[1], 0, "pool, not the driver heap");
}

#[test]
fn removing_every_message_gets_the_line() {
    let emu = emulator(4, OS_6_89);
    emu.load_driver(driver_entry);
    set(|k| k.filter = Filter::Line);
    let a = emu.add_adapter(InterruptResources::msix(8)).expect("start");
    let ask = emu.interrupt_ask(a).unwrap();
    assert_eq!((ask.messages, ask.line), (0, true));
    assert!(matches!(
        emu.assigned_resources(emu.device_of(a)),
        InterruptResources::Line { shared: false, .. }
    ));
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn a_failed_filter_fails_the_start_and_removes_the_device() {
    let emu = emulator(4, OS_6_89);
    emu.load_driver(driver_entry);
    set(|k| k.filter = Filter::Fail);
    let a = emu.add_adapter(InterruptResources::msix(4));
    assert_eq!(a, Err(sys::NDIS_STATUS_RESOURCES));
    assert_eq!(
        emu.lifecycle(ndis_emu::AdapterId(0)),
        [
            "MiniportAddDevice",
            "MiniportFilterResourceRequirements",
            "MiniportRemoveDevice"
        ]
    );
    emu.unload();
}

#[test]
fn rule_resource_requirements_a_list_larger_than_its_block() {
    let emu = emulator(4, OS_6_89);
    emu.load_driver(driver_entry);
    set(|k| k.filter = Filter::Oversize);
    let b = emu.expect_bugcheck(|| {
        let _ = emu.add_adapter(InterruptResources::msix(2));
    });
    assert_eq!(b.code, ndis_emu::DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(b.params[0], rule::RESOURCE_REQUIREMENTS);
    assert_eq!(b.params[2], rule::REQUIREMENTS_MALFORMED);
}

#[test]
fn rule_resource_requirements_a_message_pinned_to_no_processor() {
    let emu = emulator(4, OS_6_89);
    emu.load_driver(driver_entry);
    set(|k| k.filter = Filter::Pin(&[0b1, 1 << 10]));
    let b = emu.expect_bugcheck(|| {
        let _ = emu.add_adapter(InterruptResources::msix(2));
    });
    assert_eq!(b.params[0], rule::RESOURCE_REQUIREMENTS);
    assert_eq!(b.params[2], rule::REQUIREMENTS_NO_PROCESSOR);
    assert_eq!(b.params[3], 1, "message 1");
}

#[test]
fn rule_add_device_attributes_missing() {
    let emu = emulator(4, OS_6_89);
    emu.load_driver(driver_entry);
    set(|k| k.set_add_attributes = false);
    let b = emu.expect_bugcheck(|| {
        let _ = emu.add_adapter(InterruptResources::msix(2));
    });
    assert_eq!(b.params[0], rule::ADD_DEVICE_ATTRIBUTES);
}

#[test]
fn registration_is_checked_against_the_os_ndis_version() {
    // A 6.20 OS refuses a 6.89 driver, and revision 3 characteristics (6.80+) in any form.
    let emu = emulator(4, OS_6_20);
    set(|k| {
        k.minor = 89;
        k.revision = Some((3, 160));
    });
    assert_eq!(emu.load_driver(driver_entry), sys::NDIS_STATUS_BAD_VERSION);
    drop(emu);
    let emu = emulator(4, OS_6_20);
    set(|k| k.revision = Some((3, 160)));
    assert_eq!(
        emu.load_driver(driver_entry),
        sys::NDIS_STATUS_BAD_CHARACTERISTICS
    );
    drop(emu);
    // A 6.20 driver on a 6.20 OS registers; its registration attributes stay at revision 1.
    let emu = emulator(4, OS_6_20);
    assert_eq!(emu.load_driver(driver_entry), sys::STATUS_SUCCESS);
    assert_eq!(
        emu.registered_driver().unwrap(),
        ndis_emu::RegisteredDriver {
            ndis_version: (6, 20),
            characteristics_revision: 2,
            pnp_handlers: true,
        }
    );
    set(|k| k.registration_revision = 2);
    assert_eq!(
        emu.add_adapter(InterruptResources::msix(2)),
        Err(sys::NDIS_STATUS_BAD_VERSION)
    );
    emu.unload();
    drop(emu);
    // The same attributes from a 6.30 driver on a 6.30 OS are accepted.
    let emu = emulator(4, OS_6_30);
    set(|k| {
        k.minor = 30;
        k.registration_revision = 2;
    });
    assert_eq!(emu.load_driver(driver_entry), sys::STATUS_SUCCESS);
    let a = emu.add_adapter(InterruptResources::msix(2)).expect("start");
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

/// The resource requirements list PnP allocates for the filter and frees once the driver
/// handed it back is gone from the leak-report sites too: `allocation_sites` names live blocks
/// only (those `allocations` lists).
#[test]
fn allocation_sites_name_only_live_blocks_after_the_filter() {
    let emu = emulator(4, OS_6_89);
    assert_eq!(emu.load_driver(driver_entry), sys::STATUS_SUCCESS);
    let a = emu.add_adapter(InterruptResources::msix(4)).expect("start");
    assert_eq!(emu.lifecycle(a)[1], "MiniportFilterResourceRequirements");
    let live: Vec<usize> = emu.allocations().into_iter().map(|(p, _)| p).collect();
    let sites: Vec<usize> = emu.allocation_sites().into_iter().map(|(p, _)| p).collect();
    assert!(
        sites.iter().all(|p| live.contains(p)),
        "sites {sites:x?} of blocks not live (live: {live:x?})"
    );
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}
