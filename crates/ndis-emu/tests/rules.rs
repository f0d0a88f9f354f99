//! Rules of the kernel the emulator stops at like Windows: an adapter handle used after halt,
//! shared memory freed after its DMA registration, the datapath's `*_DISPATCH_LEVEL` flags
//! (Dispatch IRQL tracking), and the driver heap's fallible allocations in a fault sweep. A raw
//! miniport whose initialize and halt run per-test scripts, with send and return handlers.

use std::cell::{Cell, RefCell};

use ndis_emu::{Config, Emulator, FALLIBLE_SITE, InterruptResources, SendIrql, rule};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

type Script = Box<dyn Fn(sys::NDIS_HANDLE) -> sys::NDIS_STATUS>;

/// How the send handler completes its lists and indicates its receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Complete {
    /// `NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL` exactly when the send was flagged (correct).
    Propagate,
    /// The flag always set, whatever the send said (wrong unless at DISPATCH_LEVEL).
    AlwaysFlagged,
}

thread_local! {
    static ON_INIT: RefCell<Option<Script>> = RefCell::new(None);
    static ON_HALT: RefCell<Option<Script>> = RefCell::new(None);
    static HANDLE: Cell<usize> = const { Cell::new(0) };
    static DRIVER: Cell<usize> = const { Cell::new(0) };
    static COMPLETE: Cell<Complete> = const { Cell::new(Complete::Propagate) };
    /// The flags the send and return handlers got, last call.
    static SEND_FLAGS: Cell<Option<u32>> = const { Cell::new(None) };
    static RETURN_FLAGS: Cell<Option<u32>> = const { Cell::new(None) };
    /// The receive indication claims DISPATCH_LEVEL whatever the send said (wrong at PASSIVE).
    static RECEIVE_ALWAYS_FLAGGED: Cell<bool> = const { Cell::new(false) };
    /// The receive list the send handler indicates (pool, MDL, list, memory).
    static RX: Cell<[usize; 4]> = const { Cell::new([0; 4]) };
    /// The DMA registration and one shared-memory block (handle, va, pa).
    static DMA: Cell<(usize, usize, i64)> = const { Cell::new((0, 0, 0)) };
    /// The driver's fallibly allocated buffer, from initialize to halt.
    static BUFFER: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    /// Initializes that failed cleanly because the fallible allocation failed.
    static ALLOCATION_FAILURES: Cell<u32> = const { Cell::new(0) };
}

const TAG: u32 = u32::from_le_bytes(*b"rule");

fn handle() -> sys::NDIS_HANDLE {
    HANDLE.get() as sys::NDIS_HANDLE
}

unsafe extern "win64-unwind" fn initialize(
    h: sys::NDIS_HANDLE,
    _d: sys::NDIS_HANDLE,
    _p: *mut sys::NDIS_MINIPORT_INIT_PARAMETERS,
) -> sys::NDIS_STATUS {
    HANDLE.set(h as usize);
    // SAFETY: initialize's own handle.
    let s = unsafe { ndis_emu::raw::set_required_attributes(h, 1 as sys::NDIS_HANDLE) };
    if s != sys::NDIS_STATUS_SUCCESS {
        return s;
    }
    ON_INIT.with(|f| f.borrow().as_ref().map_or(0, |f| f(h)))
}

unsafe extern "win64-unwind" fn halt(_c: sys::NDIS_HANDLE, _a: sys::NDIS_HALT_ACTION) {
    ON_HALT.with(|f| f.borrow().as_ref().map(|f| f(handle())));
}

unsafe extern "win64-unwind" fn unload(_o: sys::PDRIVER_OBJECT) {
    // SAFETY: the registered driver handle.
    unsafe { sys::NdisMDeregisterMiniportDriver(DRIVER.get() as sys::NDIS_HANDLE) };
}

unsafe extern "win64-unwind" fn send(
    _c: sys::NDIS_HANDLE,
    nbls: *mut sys::NET_BUFFER_LIST,
    _port: u32,
    flags: u32,
) {
    SEND_FLAGS.set(Some(flags));
    let flagged = flags & sys::NDIS_SEND_FLAGS_DISPATCH_LEVEL != 0;
    let always = COMPLETE.get() == Complete::AlwaysFlagged;
    let mut nbl = nbls;
    while !nbl.is_null() {
        // SAFETY: the chain NDIS handed over; each list completed once.
        let next = unsafe { (*nbl).Next };
        // SAFETY: as above.
        unsafe {
            (*nbl).Next = std::ptr::null_mut();
            (*nbl).Status = sys::NDIS_STATUS_SUCCESS;
        }
        let complete = if flagged || always {
            sys::NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL
        } else {
            0
        };
        // SAFETY: the adapter's handle and a list NDIS sent.
        unsafe { sys::NdisMSendNetBufferListsComplete(handle(), nbl, complete) };
        nbl = next;
    }
    let rx = RX.get();
    if rx[2] != 0 {
        RX.set([rx[0], rx[1], 0, rx[3]]); // with the protocol until returned
        let receive = if flagged || always || RECEIVE_ALWAYS_FLAGGED.get() {
            sys::NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL
        } else {
            0
        };
        // SAFETY: a list of the driver's pool describing its receive memory.
        unsafe {
            sys::NdisMIndicateReceiveNetBufferLists(
                handle(),
                rx[2] as *mut sys::NET_BUFFER_LIST,
                0,
                1,
                receive,
            )
        };
    }
}

unsafe extern "win64-unwind" fn return_nbls(
    _c: sys::NDIS_HANDLE,
    nbl: *mut sys::NET_BUFFER_LIST,
    flags: u32,
) {
    RETURN_FLAGS.set(Some(flags));
    let rx = RX.get();
    RX.set([rx[0], rx[1], nbl as usize, rx[3]]);
}

unsafe extern "win64-unwind" fn entry(
    o: sys::PDRIVER_OBJECT,
    p: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    let mut chars = ndis_emu::raw::driver_characteristics(20, initialize, halt, unload);
    chars.SendNetBufferListsHandler = Some(send);
    chars.ReturnNetBufferListsHandler = Some(return_nbls);
    // SAFETY: DriverEntry's own arguments.
    let (status, h) = unsafe { ndis_emu::raw::register_driver(o, p, &chars) };
    DRIVER.set(h as usize);
    status
}

fn scripts(
    init: impl Fn(sys::NDIS_HANDLE) -> sys::NDIS_STATUS + 'static,
    halt: impl Fn(sys::NDIS_HANDLE) -> sys::NDIS_STATUS + 'static,
) {
    ON_INIT.with(|f| *f.borrow_mut() = Some(Box::new(init)));
    ON_HALT.with(|f| *f.borrow_mut() = Some(Box::new(halt)));
    COMPLETE.set(Complete::Propagate);
    SEND_FLAGS.set(None);
    RETURN_FLAGS.set(None);
    RX.set([0; 4]);
    RECEIVE_ALWAYS_FLAGGED.set(false);
}

fn start(
    init: impl Fn(sys::NDIS_HANDLE) -> sys::NDIS_STATUS + 'static,
    halt: impl Fn(sys::NDIS_HANDLE) -> sys::NDIS_STATUS + 'static,
) -> (Emulator, ndis_emu::AdapterId) {
    scripts(init, halt);
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(entry), 0);
    let a = emu
        .add_adapter(InterruptResources::None)
        .expect("initialize");
    (emu, a)
}

fn nothing(_h: sys::NDIS_HANDLE) -> sys::NDIS_STATUS {
    sys::NDIS_STATUS_SUCCESS
}

// --- 1. the handle of an adapter NDIS forgot ------------------------------------------------

type AdapterCall = fn(sys::NDIS_HANDLE);

/// One call of every export that takes a MiniportAdapterHandle, with otherwise plausible
/// arguments (the handle is checked first).
fn adapter_handle_calls() -> Vec<(&'static str, AdapterCall)> {
    vec![
        ("NdisMIndicateStatusEx", |h| {
            // SAFETY: all-zero is a valid indication (plain data).
            let mut ind: sys::NDIS_STATUS_INDICATION = unsafe { std::mem::zeroed() };
            ind.Header = sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_STATUS_INDICATION,
                Revision: sys::NDIS_STATUS_INDICATION_REVISION_1,
                Size: sys::NDIS_SIZEOF_STATUS_INDICATION_REVISION_1,
            };
            ind.SourceHandle = h;
            // SAFETY: a valid indication; the handle is the point of the test.
            unsafe { sys::NdisMIndicateStatusEx(h, &mut ind) }
        }),
        ("NdisMIndicateReceiveNetBufferLists", |h| {
            // SAFETY: an empty chain; the handle is the point of the test.
            unsafe { sys::NdisMIndicateReceiveNetBufferLists(h, std::ptr::null_mut(), 0, 0, 0) }
        }),
        ("NdisMSendNetBufferListsComplete", |h| {
            // SAFETY: as above.
            unsafe { sys::NdisMSendNetBufferListsComplete(h, std::ptr::null_mut(), 0) }
        }),
        ("NdisMPauseComplete", |h| {
            // SAFETY: as above.
            unsafe { sys::NdisMPauseComplete(h) }
        }),
        ("NdisMRestartComplete", |h| {
            // SAFETY: as above.
            unsafe { sys::NdisMRestartComplete(h, 0) }
        }),
        ("NdisMResetComplete", |h| {
            // SAFETY: as above.
            unsafe { sys::NdisMResetComplete(h, 0, 0) }
        }),
        ("NdisMOidRequestComplete", |h| {
            // SAFETY: as above.
            unsafe { sys::NdisMOidRequestComplete(h, std::ptr::null_mut(), 0) }
        }),
        ("NdisAllocateMemoryWithTagPriority", |h| {
            // SAFETY: as above.
            unsafe { sys::NdisAllocateMemoryWithTagPriority(h, 16, TAG, sys::NormalPoolPriority) };
        }),
        ("NdisFreeMemoryWithTagPriority", |h| {
            // SAFETY: as above (the handle is refused before the block is looked at).
            unsafe { sys::NdisFreeMemoryWithTagPriority(h, 0x1000 as sys::PVOID, TAG) }
        }),
        ("NdisAllocateNetBufferListPool", |h| {
            let params = sys::NET_BUFFER_LIST_POOL_PARAMETERS {
                Header: sys::NDIS_OBJECT_HEADER {
                    Type: 0x80,
                    Revision: 1,
                    Size: 16,
                },
                ProtocolId: 0,
                fAllocateNetBuffer: 1,
                ContextSize: 0,
                PoolTag: TAG,
                DataSize: 0,
            };
            // SAFETY: as above.
            unsafe { sys::NdisAllocateNetBufferListPool(h, &params) };
        }),
        ("NdisAllocateMdl", |h| {
            let mut byte = 0u8;
            // SAFETY: as above.
            unsafe { sys::NdisAllocateMdl(h, (&raw mut byte).cast(), 1) };
        }),
        ("NdisAllocateTimerObject", |h| {
            // SAFETY: all-zero is valid plain data.
            let mut c: sys::NDIS_TIMER_CHARACTERISTICS = unsafe { std::mem::zeroed() };
            let mut out: sys::NDIS_HANDLE = std::ptr::null_mut();
            // SAFETY: as above.
            unsafe { sys::NdisAllocateTimerObject(h, &mut c, &mut out) };
        }),
        ("NdisMGetBusData", |h| {
            let mut buf = [0u8; 4];
            // SAFETY: as above.
            unsafe {
                sys::NdisMGetBusData(h, sys::PCI_WHICHSPACE_CONFIG, 0, buf.as_mut_ptr().cast(), 4)
            };
        }),
        ("NdisMSetBusData", |h| {
            let mut buf = [0u8; 4];
            // SAFETY: as above.
            unsafe {
                sys::NdisMSetBusData(h, sys::PCI_WHICHSPACE_CONFIG, 4, buf.as_mut_ptr().cast(), 2)
            };
        }),
        ("NdisMMapIoSpace", |h| {
            let mut va: sys::PVOID = std::ptr::null_mut();
            // SAFETY: as above.
            unsafe { sys::NdisMMapIoSpace(&mut va, h, ndis_emu::pci::BAR32_BASE as i64, 16) };
        }),
        ("NdisMUnmapIoSpace", |h| {
            // SAFETY: as above.
            unsafe { sys::NdisMUnmapIoSpace(h, 0x1000 as sys::PVOID, 16) }
        }),
        ("NdisMRegisterScatterGatherDma", |h| {
            let mut d = ndis_emu::raw::sg_dma_description();
            let mut out: sys::NDIS_HANDLE = std::ptr::null_mut();
            // SAFETY: as above.
            unsafe { sys::NdisMRegisterScatterGatherDma(h, &mut d, &mut out) };
        }),
        ("NdisMAllocateSharedMemory", |h| {
            let (mut va, mut pa): (sys::PVOID, sys::PHYSICAL_ADDRESS) = (std::ptr::null_mut(), 0);
            // SAFETY: as above.
            unsafe { sys::NdisMAllocateSharedMemory(h, 4096, 1, &mut va, &mut pa) }
        }),
        ("NdisMFreeSharedMemory", |h| {
            // SAFETY: as above.
            unsafe { sys::NdisMFreeSharedMemory(h, 4096, 1, 0x1000 as sys::PVOID, 0x1_0000_0000) }
        }),
        ("NdisMSetMiniportAttributes", |h| {
            // SAFETY: all-zero is a valid attribute union.
            let mut a: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            unsafe { sys::NdisMSetMiniportAttributes(h, &mut a) };
        }),
        ("NdisMRegisterInterruptEx", |h| {
            // SAFETY: all-zero is valid plain data.
            let mut c: sys::NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS = unsafe { std::mem::zeroed() };
            let mut out: sys::NDIS_HANDLE = std::ptr::null_mut();
            // SAFETY: as above.
            unsafe { sys::NdisMRegisterInterruptEx(h, h, &mut c, &mut out) };
        }),
        ("NdisOpenConfigurationEx", |h| {
            let mut o = sys::NDIS_CONFIGURATION_OBJECT {
                Header: sys::NDIS_OBJECT_HEADER {
                    Type: sys::NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT,
                    Revision: sys::NDIS_CONFIGURATION_OBJECT_REVISION_1,
                    Size: sys::NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1,
                },
                NdisHandle: h,
                Flags: 0,
            };
            let mut out: sys::NDIS_HANDLE = std::ptr::null_mut();
            // SAFETY: as above.
            unsafe { sys::NdisOpenConfigurationEx(&mut o, &mut out) };
        }),
    ]
}

#[test]
fn every_export_called_with_a_halted_adapters_handle_bugchecks() {
    for (name, call) in adapter_handle_calls() {
        let (emu, a) = start(nothing, nothing);
        let h = handle();
        emu.halt(a, sys::NdisHaltDeviceDisabled);
        let b = emu.expect_bugcheck(|| call(h));
        assert_eq!(
            (b.code, b.params),
            (0xC4, [rule::ADAPTER_USED_AFTER_HALT, h as usize, 1, 0]),
            "{name}: {b}"
        );
        assert!(b.message.contains(name), "{name}: {b}");
    }
}

#[test]
fn an_export_called_with_the_handle_of_a_failed_initialize_bugchecks() {
    scripts(|_| sys::NDIS_STATUS_DEVICE_FAILED, nothing);
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(entry), 0);
    assert_eq!(
        emu.add_adapter(InterruptResources::None),
        Err(sys::NDIS_STATUS_DEVICE_FAILED)
    );
    let h = handle();
    for (name, call) in adapter_handle_calls().into_iter().take(1) {
        let b = emu.expect_bugcheck(|| call(h));
        assert_eq!(
            (b.code, b.params),
            (0xC4, [rule::ADAPTER_USED_AFTER_HALT, h as usize, 2, 0]),
            "{name}: {b}"
        );
    }
}

#[test]
fn the_handle_works_until_halt_returns() {
    // The same calls during halt are fine: the adapter is NDIS's until halt returns.
    let (emu, a) = start(nothing, |h| {
        // SAFETY: the adapter's handle, during its halt.
        unsafe {
            let p = sys::NdisAllocateMemoryWithTagPriority(h, 16, TAG, sys::NormalPoolPriority);
            sys::NdisFreeMemoryWithTagPriority(h, p, TAG);
        }
        0
    });
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

// --- 2. shared memory freed after its DMA registration ---------------------------------------

fn register_dma_and_allocate(h: sys::NDIS_HANDLE) -> sys::NDIS_STATUS {
    let mut d = ndis_emu::raw::sg_dma_description();
    let mut dma: sys::NDIS_HANDLE = std::ptr::null_mut();
    // SAFETY: initialize's handle; the description and out-pointer live across the call.
    let s = unsafe { sys::NdisMRegisterScatterGatherDma(h, &mut d, &mut dma) };
    assert_eq!(s, 0);
    let (mut va, mut pa): (sys::PVOID, sys::PHYSICAL_ADDRESS) = (std::ptr::null_mut(), 0);
    // SAFETY: after the DMA registration; out-pointers valid.
    unsafe { sys::NdisMAllocateSharedMemory(h, 8192, 1, &mut va, &mut pa) };
    assert!(!va.is_null());
    DMA.set((dma as usize, va as usize, pa));
    0
}

fn free_shared_memory(h: sys::NDIS_HANDLE) {
    let (_, va, pa) = DMA.get();
    // SAFETY: the block allocated in initialize, with its exact arguments.
    unsafe { sys::NdisMFreeSharedMemory(h, 8192, 1, va as sys::PVOID, pa) };
}

fn deregister_dma() {
    // SAFETY: the registration made in initialize, released once.
    unsafe { sys::NdisMDeregisterScatterGatherDma(DMA.get().0 as sys::NDIS_HANDLE) };
}

#[test]
fn freeing_shared_memory_after_deregistering_dma_bugchecks() {
    let (emu, a) = start(register_dma_and_allocate, |h| {
        deregister_dma();
        free_shared_memory(h);
        0
    });
    let b = emu.expect_bugcheck(|| emu.halt(a, sys::NdisHaltDeviceDisabled));
    let (_, va, pa) = DMA.get();
    assert_eq!(
        (b.code, b.params),
        (
            0xC4,
            [rule::DMA, va, pa as usize, rule::DMA_FREED_AFTER_DEREGISTER]
        ),
        "{b}"
    );
}

#[test]
fn freeing_shared_memory_before_deregistering_dma_is_clean() {
    let (emu, a) = start(register_dma_and_allocate, |h| {
        free_shared_memory(h);
        deregister_dma();
        0
    });
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

// --- 3. the datapath's DISPATCH_LEVEL flags ---------------------------------------------------

/// Initialize: a pool, one receive buffer with its MDL and list, for the send handler to
/// indicate; halt frees them.
fn with_receive_buffer(h: sys::NDIS_HANDLE) -> sys::NDIS_STATUS {
    let params = sys::NET_BUFFER_LIST_POOL_PARAMETERS {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: 0x80,
            Revision: 1,
            Size: 16,
        },
        ProtocolId: 0,
        fAllocateNetBuffer: 1,
        ContextSize: 0,
        PoolTag: TAG,
        DataSize: 0,
    };
    // SAFETY: initialize's handle; arguments live across the calls; all checked non-null.
    unsafe {
        let pool = sys::NdisAllocateNetBufferListPool(h, &params);
        let memory = sys::NdisAllocateMemoryWithTagPriority(h, 64, TAG, sys::NormalPoolPriority);
        let mdl = sys::NdisAllocateMdl(h, memory, 64);
        let nbl = sys::NdisAllocateNetBufferAndNetBufferList(pool, 0, 0, mdl, 0, 60);
        assert!(!pool.is_null() && !memory.is_null() && !mdl.is_null() && !nbl.is_null());
        RX.set([pool as usize, mdl as usize, nbl as usize, memory as usize]);
    }
    0
}

fn free_receive_buffer(h: sys::NDIS_HANDLE) -> sys::NDIS_STATUS {
    let [pool, mdl, nbl, memory] = RX.get();
    assert_ne!(nbl, 0, "the receive came back before halt");
    // SAFETY: the objects allocated in initialize, back with the driver, freed once.
    unsafe {
        sys::NdisFreeNetBufferList(nbl as *mut sys::NET_BUFFER_LIST);
        sys::NdisFreeMdl(mdl as sys::PMDL);
        sys::NdisFreeNetBufferListPool(pool as sys::NDIS_HANDLE);
        sys::NdisFreeMemoryWithTagPriority(h, memory as sys::PVOID, TAG);
    }
    0
}

/// One send and the return of the receive it indicates, with the protocol calling as `how`;
/// returns the flags the send and return handlers got.
fn send_and_return(how: SendIrql, complete: Complete) -> (u32, u32) {
    let (emu, a) = start(with_receive_buffer, free_receive_buffer);
    emu.set_send_irql(how);
    COMPLETE.set(complete);
    assert_eq!(emu.restart(a), 0);
    emu.send(a, &[&[0xAB; 60]]);
    assert_eq!(emu.send_statuses(), vec![sys::NDIS_STATUS_SUCCESS]);
    assert_eq!(emu.received_frames(a).len(), 1);
    emu.return_receives(a);
    emu.pause(a);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
    (SEND_FLAGS.get().unwrap(), RETURN_FLAGS.get().unwrap())
}

#[test]
fn a_flagged_send_and_return_run_at_dispatch_level_with_the_flag() {
    assert_eq!(
        send_and_return(SendIrql::DispatchFlagged, Complete::Propagate),
        (
            sys::NDIS_SEND_FLAGS_DISPATCH_LEVEL,
            sys::NDIS_RETURN_FLAGS_DISPATCH_LEVEL
        )
    );
}

#[test]
fn the_flag_cleared_at_dispatch_level_is_allowed() {
    // The driver completes and indicates without the flag (it does not know its IRQL): allowed.
    assert_eq!(
        send_and_return(SendIrql::DispatchUnflagged, Complete::Propagate),
        (0, 0)
    );
    // And the handlers do run at DISPATCH_LEVEL: completing with the flag set is right there.
    assert_eq!(
        send_and_return(SendIrql::DispatchUnflagged, Complete::AlwaysFlagged),
        (0, 0)
    );
}

#[test]
fn a_passive_send_and_return_get_the_flag_cleared() {
    assert_eq!(
        send_and_return(SendIrql::Passive, Complete::Propagate),
        (0, 0)
    );
}

#[test]
fn send_complete_flagged_dispatch_level_at_passive_level_bugchecks() {
    let (emu, a) = start(nothing, nothing);
    emu.set_send_irql(SendIrql::Passive);
    COMPLETE.set(Complete::AlwaysFlagged);
    assert_eq!(emu.restart(a), 0);
    let b = emu.expect_bugcheck(|| emu.send(a, &[&[1; 60]]));
    assert_eq!(
        (b.code, b.params),
        (
            0xC4,
            [
                rule::IRQL,
                sys::PASSIVE_LEVEL as usize,
                sys::NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL as usize,
                0
            ]
        ),
        "{b}"
    );
    assert!(b.message.contains("NdisMSendNetBufferListsComplete"), "{b}");
}

#[test]
fn a_receive_indication_flagged_dispatch_level_at_passive_level_bugchecks() {
    let (emu, a) = start(with_receive_buffer, nothing);
    emu.set_send_irql(SendIrql::Passive);
    assert_eq!(emu.restart(a), 0);
    // The completion is right (no flag); the indication that follows claims DISPATCH_LEVEL.
    RECEIVE_ALWAYS_FLAGGED.set(true);
    let b = emu.expect_bugcheck(|| emu.send(a, &[&[1; 60]]));
    RECEIVE_ALWAYS_FLAGGED.set(false);
    assert_eq!(
        (b.code, b.params),
        (
            0xC4,
            [
                rule::IRQL,
                sys::PASSIVE_LEVEL as usize,
                sys::NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL as usize,
                0
            ]
        ),
        "{b}"
    );
    assert!(
        b.message.contains("NdisMIndicateReceiveNetBufferLists"),
        "{b}"
    );
}

// --- 6. fallible driver-heap allocations in the fault sweep -----------------------------------

/// Initialize allocates its buffer fallibly (and a Box infallibly, which is never failed).
fn allocate_fallibly(_h: sys::NDIS_HANDLE) -> sys::NDIS_STATUS {
    let infallible = Box::new(7u64);
    std::hint::black_box(&infallible);
    let buffer = ndis_sys::host::fallible_allocation(|| {
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(4096).map(|()| v)
    });
    match buffer {
        Ok(v) => {
            BUFFER.with(|b| *b.borrow_mut() = Some(v));
            sys::NDIS_STATUS_SUCCESS
        }
        Err(_) => {
            ndis_emu::instrumentation(|| ALLOCATION_FAILURES.set(ALLOCATION_FAILURES.get() + 1));
            sys::NDIS_STATUS_RESOURCES
        }
    }
}

fn free_buffer(_h: sys::NDIS_HANDLE) -> sys::NDIS_STATUS {
    BUFFER.with(|b| b.borrow_mut().take());
    0
}

fn sweep_scenario(emu: &Emulator) {
    if emu.load_driver(entry) != 0 {
        return;
    }
    if let Ok(a) = emu.add_adapter(InterruptResources::None) {
        assert_eq!(emu.restart(a), 0);
        emu.pause(a);
        emu.halt(a, sys::NdisHaltDeviceDisabled);
    }
    emu.unload();
}

#[test]
fn the_sweep_fails_a_fallible_heap_allocation_and_the_driver_copes() {
    scripts(allocate_fallibly, free_buffer);
    ALLOCATION_FAILURES.set(0);
    let report = ndis_emu::sweep_fallible_calls(Config::default, sweep_scenario);
    assert_eq!(
        report.sites,
        vec![
            "NdisMRegisterMiniportDriver",
            "NdisMSetMiniportAttributes",
            "NdisMSetMiniportAttributes",
            FALLIBLE_SITE,
        ]
    );
    assert_eq!(
        ALLOCATION_FAILURES.get(),
        1,
        "the run failing the heap allocation saw try_reserve fail, once"
    );
}

#[test]
fn a_plan_fails_a_named_fallible_heap_allocation() {
    scripts(allocate_fallibly, free_buffer);
    ALLOCATION_FAILURES.set(0);
    let mut config = Config::default();
    config.faults.by_name.push((FALLIBLE_SITE.into(), None));
    let emu = Emulator::new(config);
    assert!(emu.leak_detection(), "this binary installs DriverHeap");
    assert_eq!(emu.load_driver(entry), 0);
    assert_eq!(
        emu.add_adapter(InterruptResources::None),
        Err(sys::NDIS_STATUS_RESOURCES)
    );
    assert_eq!(ALLOCATION_FAILURES.get(), 1);
    assert!(
        emu.fallible_calls().contains(&(FALLIBLE_SITE, true)),
        "{:?}",
        emu.fallible_calls()
    );
    emu.unload();
}

#[test]
fn infallible_driver_allocations_are_counted_and_fallible_ones_are_not() {
    scripts(allocate_fallibly, free_buffer);
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(entry), 0);
    assert_eq!(emu.infallible_heap_allocations(), (0, 0));
    let a = emu
        .add_adapter(InterruptResources::None)
        .expect("initialize");
    // The `Box<u64>`; not the 4096-byte buffer reserved inside `fallible_allocation`, and not
    // the emulator's own allocations.
    assert_eq!(emu.infallible_heap_allocations(), (1, 8));
    assert_eq!(emu.restart(a), 0);
    emu.pause(a);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
    assert_eq!(emu.infallible_heap_allocations(), (1, 8));
    drop(emu);
    // A new emulator starts from zero.
    assert_eq!(
        Emulator::new(Config::default()).infallible_heap_allocations(),
        (0, 0)
    );
}

// --- 7. leak detection on -----------------------------------------------------------------------

#[test]
fn with_driver_heap_installed_leak_detection_is_on() {
    assert!(Emulator::new(Config::default()).leak_detection());
}
