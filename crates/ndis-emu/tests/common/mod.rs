//! A raw miniport written directly against ndis-sys (as C drivers are), with behaviour knobs, so
//! the emulator is tested independently of the framework. Each test thread has its own knobs and
//! record of what the driver saw.
#![allow(dead_code)]

use std::cell::RefCell;

use ndis_emu::{Config, Emulator};
use ndis_sys as sys;

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsrMode {
    /// Claim it and ask for the default DPC on this processor.
    QueueDefault,
    /// Claim it, ask for DPCs through the obsolete TargetProcessors mask.
    Targets(u32),
    /// Claim it, queue DPCs with NdisMQueueDpcEx on these processors (driver context = 0x5A5A).
    QueueDpcEx(usize),
    /// Not mine: return FALSE but still ask for the default DPC (NDIS queues it anyway).
    NotMineButQueue,
    /// Not mine, no DPC.
    NotMine,
}

#[derive(Debug, Clone)]
pub struct Knobs {
    pub ndis_minor: u8,
    pub register_interrupt: bool,
    pub msi_supported: bool,
    pub sync_all_messages: bool,
    pub set_registration: bool,
    pub set_general: bool,
    /// Fail initialize after registering the interrupt; deregister first when true.
    pub fail_init: Option<bool>,
    pub deregister_in_halt: bool,
    pub deregister_driver_in_unload: bool,
    pub isr: IsrMode,
    /// The DPC sets MoreNblsPending this many times in a row (u32::MAX: forever).
    pub more_pending: u32,
    /// Bytes of NDIS memory allocated in initialize (and freed in halt unless `leak`).
    pub alloc_bytes: u32,
    pub leak: bool,
    /// Initialize's failure paths forget to free the memory (a classic bug).
    pub leak_on_init_failure: bool,
    /// Initialize leaks a 100-byte heap block (Box::leak).
    pub leak_box: bool,
    /// Call NdisMSynchronizeWithInterruptEx in halt after deregistering.
    pub synchronize_after_deregister: bool,
    /// The ISR calls NdisMRegisterInterruptEx (an IRQL violation).
    pub register_from_isr: bool,
    /// The DPC stalls (a preemption point) before finishing.
    pub stall_in_dpc: bool,
    /// Register the interrupt with a corrupt header.
    pub bad_interrupt_header: bool,
    /// The ISR allocates (and frees) a 48-byte heap block: not allowed above DISPATCH_LEVEL.
    pub allocate_in_isr: bool,
    /// The DPC allocates (and frees) a 48-byte heap block: allowed at DISPATCH_LEVEL.
    pub allocate_in_dpc: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            ndis_minor: 20,
            register_interrupt: true,
            msi_supported: true,
            sync_all_messages: false,
            set_registration: true,
            set_general: true,
            fail_init: None,
            deregister_in_halt: true,
            deregister_driver_in_unload: true,
            isr: IsrMode::QueueDefault,
            more_pending: 0,
            alloc_bytes: 256,
            leak: false,
            leak_on_init_failure: false,
            leak_box: false,
            synchronize_after_deregister: false,
            register_from_isr: false,
            stall_in_dpc: false,
            bad_interrupt_header: false,
            allocate_in_isr: false,
            allocate_in_dpc: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Isr {
        cpu: u32,
        message: Option<u32>,
    },
    Dpc {
        cpu: u32,
        message: Option<u32>,
        context: usize,
        max_nbls: u32,
    },
    DpcEnd {
        cpu: u32,
    },
    Sync {
        cpu: u32,
    },
}

#[derive(Debug, Default, Clone)]
pub struct Grant {
    pub interrupt_type: i32,
    pub messages: u32,
    pub unified_irql: u8,
    pub entries: Vec<(u32, u8, usize)>, // vector, irql, target set
    pub table_null: bool,
}

thread_local! {
    pub static KNOBS: RefCell<Knobs> = RefCell::new(Knobs::default());
    pub static SEEN: RefCell<Vec<Seen>> = const { RefCell::new(Vec::new()) };
    pub static GRANT: RefCell<Option<Grant>> = const { RefCell::new(None) };
    static DRIVER_HANDLE: RefCell<usize> = const { RefCell::new(0) };
    static INTERRUPT_HANDLE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static DPC_MORE_LEFT: RefCell<u32> = const { RefCell::new(0) };
}

pub fn knobs() -> Knobs {
    KNOBS.with(|k| k.borrow().clone())
}

pub fn set(f: impl FnOnce(&mut Knobs)) {
    KNOBS.with(|k| f(&mut k.borrow_mut()));
    SEEN.with(|s| s.borrow_mut().clear());
    GRANT.with(|g| *g.borrow_mut() = None);
}

/// The interrupt handle the last registration returned.
pub fn interrupt_handle() -> sys::NDIS_HANDLE {
    INTERRUPT_HANDLE.with(|h| h.get()) as sys::NDIS_HANDLE
}

/// A 48-byte heap block, allocated and dropped (kept from being optimized out).
pub fn touch_heap() {
    let block = Box::new([0x5Au8; 48]);
    std::hint::black_box(&block);
}

pub fn seen() -> Vec<Seen> {
    SEEN.with(|s| s.borrow().clone())
}

pub fn grant() -> Grant {
    GRANT
        .with(|g| g.borrow().clone())
        .expect("no interrupt granted")
}

fn record(s: Seen) {
    ndis_emu::instrumentation(|| SEEN.with(|v| v.borrow_mut().push(s)));
}

fn cpu() -> u32 {
    // SAFETY: a null out-pointer is allowed.
    unsafe { sys::KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) }
}

const TAG: u32 = u32::from_le_bytes(*b"test");

pub struct Adapter {
    pub handle: sys::NDIS_HANDLE,
    pub interrupt: sys::NDIS_HANDLE,
    pub memory: sys::PVOID,
}

pub fn emulator(cpus: usize) -> Emulator {
    Emulator::new(Config {
        cpus,
        trace: true,
        ..Config::default()
    })
}

pub fn emulator_with(config: Config) -> Emulator {
    Emulator::new(config)
}

// --- driver -----------------------------------------------------------------------------------

pub unsafe extern "win64-unwind" fn driver_entry(
    object: sys::PDRIVER_OBJECT,
    path: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    let chars = ndis_emu::raw::driver_characteristics(knobs().ndis_minor, initialize, halt, unload);
    // SAFETY: DriverEntry's own arguments.
    let (status, handle) = unsafe { ndis_emu::raw::register_driver(object, path, &chars) };
    DRIVER_HANDLE.with(|h| *h.borrow_mut() = handle as usize);
    status
}

unsafe extern "win64-unwind" fn unload(_object: sys::PDRIVER_OBJECT) {
    if knobs().deregister_driver_in_unload {
        let h = DRIVER_HANDLE.with(|h| *h.borrow());
        // SAFETY: the handle registration returned.
        unsafe { sys::NdisMDeregisterMiniportDriver(h as sys::NDIS_HANDLE) };
    }
}

fn set_attributes(handle: sys::NDIS_HANDLE, ctx: *mut Adapter, k: &Knobs) -> sys::NDIS_STATUS {
    if k.set_registration && k.set_general {
        // SAFETY: called from initialize with its handle.
        return unsafe { ndis_emu::raw::set_required_attributes(handle, ctx.cast()) };
    }
    // The knobs below leave one out on purpose (ordering rules).
    if k.set_registration {
        // SAFETY: all-zero is a valid attribute union.
        let mut a: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = unsafe { std::mem::zeroed() };
        a.RegistrationAttributes = sys::NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: 0x9E,
                Revision: 1,
                Size: 28,
            },
            MiniportAdapterContext: ctx.cast(),
            AttributeFlags: sys::NDIS_MINIPORT_ATTRIBUTES_HARDWARE_DEVICE
                | sys::NDIS_MINIPORT_ATTRIBUTES_BUS_MASTER,
            CheckForHangTimeInSeconds: 0,
            InterfaceType: sys::NdisInterfacePci,
        };
        // SAFETY: valid handle and attributes.
        let s = unsafe { sys::NdisMSetMiniportAttributes(handle, &mut a) };
        if s != 0 {
            return s;
        }
    }
    if k.set_general {
        // SAFETY: all-zero is a valid attribute union.
        let mut a: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = unsafe { std::mem::zeroed() };
        // Writing a union field is safe: set the general member's header.
        a.GeneralAttributes.Header = sys::NDIS_OBJECT_HEADER {
            Type: 0x9F,
            Revision: 2,
            Size: 224,
        };
        // SAFETY: valid handle and attributes.
        let s = unsafe { sys::NdisMSetMiniportAttributes(handle, &mut a) };
        if s != 0 {
            return s;
        }
    }
    0
}

unsafe extern "win64-unwind" fn initialize(
    handle: sys::NDIS_HANDLE,
    _driver_ctx: sys::NDIS_HANDLE,
    _params: *mut sys::NDIS_MINIPORT_INIT_PARAMETERS,
) -> sys::NDIS_STATUS {
    let k = knobs();
    let ctx = Box::into_raw(Box::new(Adapter {
        handle,
        interrupt: std::ptr::null_mut(),
        memory: std::ptr::null_mut(),
    }));
    let fail = |status: sys::NDIS_STATUS, ctx: *mut Adapter| {
        // SAFETY: ctx came from Box::into_raw above and is freed once on this path.
        let a = unsafe { Box::from_raw(ctx) };
        if !a.memory.is_null() && !k.leak_on_init_failure {
            // SAFETY: allocated with this tag below.
            unsafe { sys::NdisFreeMemoryWithTagPriority(handle, a.memory, TAG) };
        }
        status
    };
    if k.leak_box {
        Box::leak(Box::new([7u8; 100]));
    }
    let s = set_attributes(handle, ctx, &k);
    if s != 0 {
        return fail(s, ctx);
    }
    if k.alloc_bytes > 0 {
        // SAFETY: valid handle.
        let p = unsafe {
            sys::NdisAllocateMemoryWithTagPriority(
                handle,
                k.alloc_bytes,
                TAG,
                sys::NormalPoolPriority,
            )
        };
        if p.is_null() {
            return fail(sys::NDIS_STATUS_RESOURCES, ctx);
        }
        // SAFETY: ctx is live.
        unsafe { (*ctx).memory = p };
    }
    if k.register_interrupt {
        // SAFETY: all-zero is valid.
        let mut c: sys::NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS = unsafe { std::mem::zeroed() };
        c.Header = sys::NDIS_OBJECT_HEADER {
            Type: 0x84,
            Revision: 1,
            Size: 96,
        };
        if k.bad_interrupt_header {
            c.Header.Size = 88;
        }
        c.InterruptHandler = Some(isr);
        c.InterruptDpcHandler = Some(dpc);
        c.DisableInterruptHandler = Some(enable_disable);
        c.EnableInterruptHandler = Some(enable_disable);
        if k.msi_supported {
            c.MsiSupported = 1;
            c.MsiSyncWithAllMessages = k.sync_all_messages as u8;
            c.MessageInterruptHandler = Some(msg_isr);
            c.MessageInterruptDpcHandler = Some(msg_dpc);
            c.DisableMessageInterruptHandler = Some(msg_enable_disable);
            c.EnableMessageInterruptHandler = Some(msg_enable_disable);
        }
        let mut ih: sys::NDIS_HANDLE = std::ptr::null_mut();
        // SAFETY: valid arguments; ctx is the interrupt context.
        let s = unsafe { sys::NdisMRegisterInterruptEx(handle, ctx.cast(), &mut c, &mut ih) };
        if s != 0 {
            return fail(s, ctx);
        }
        // SAFETY: ctx is live.
        unsafe { (*ctx).interrupt = ih };
        INTERRUPT_HANDLE.with(|h| h.set(ih as usize));
        // What the test learns of the grant is test-owned memory.
        ndis_emu::instrumentation(|| {
            let mut g = Grant {
                interrupt_type: c.InterruptType,
                table_null: c.MessageInfoTable.is_null(),
                ..Grant::default()
            };
            if !c.MessageInfoTable.is_null() {
                // SAFETY: NDIS's table, valid until deregistration.
                unsafe {
                    let t = &*c.MessageInfoTable;
                    g.messages = t.MessageCount;
                    g.unified_irql = t.UnifiedIrql;
                    for i in 0..t.MessageCount as usize {
                        let e = &*t.MessageInfo.as_ptr().add(i);
                        g.entries.push((e.Vector, e.Irql, e.TargetProcessorSet));
                    }
                }
            }
            GRANT.with(|x| *x.borrow_mut() = Some(g));
        });
        if let Some(deregister) = k.fail_init {
            if deregister {
                // SAFETY: the handle just registered.
                unsafe { sys::NdisMDeregisterInterruptEx(ih) };
            }
            return fail(sys::NDIS_STATUS_DEVICE_FAILED, ctx);
        }
    }
    0
}

unsafe extern "win64-unwind" fn halt(ctx: sys::NDIS_HANDLE, _action: sys::NDIS_HALT_ACTION) {
    let k = knobs();
    // SAFETY: our adapter context, freed once here.
    let a = unsafe { Box::from_raw(ctx.cast::<Adapter>()) };
    if !a.interrupt.is_null() && k.deregister_in_halt {
        // SAFETY: registered in initialize.
        unsafe { sys::NdisMDeregisterInterruptEx(a.interrupt) };
        if k.synchronize_after_deregister {
            // SAFETY: deliberately misused handle (the test expects the bug check).
            unsafe {
                sys::NdisMSynchronizeWithInterruptEx(
                    a.interrupt,
                    0,
                    Some(sync_fn),
                    std::ptr::null_mut(),
                )
            };
        }
    }
    if !a.memory.is_null() && !k.leak {
        // SAFETY: allocated in initialize with TAG.
        unsafe { sys::NdisFreeMemoryWithTagPriority(a.handle, a.memory, TAG) };
    }
}

pub unsafe extern "win64-unwind" fn sync_fn(_ctx: sys::PVOID) -> sys::BOOLEAN {
    record(Seen::Sync { cpu: cpu() });
    0x5A
}

unsafe extern "win64-unwind" fn enable_disable(_c: sys::NDIS_HANDLE) {}
unsafe extern "win64-unwind" fn msg_enable_disable(_c: sys::NDIS_HANDLE, _m: u32) {}

fn isr_common(
    ctx: sys::NDIS_HANDLE,
    message: Option<u32>,
    qd: *mut sys::BOOLEAN,
    tp: *mut u32,
) -> sys::BOOLEAN {
    let k = knobs();
    record(Seen::Isr {
        cpu: cpu(),
        message,
    });
    if k.allocate_in_isr {
        touch_heap();
    }
    if k.register_from_isr {
        let mut ih: sys::NDIS_HANDLE = std::ptr::null_mut();
        // SAFETY: deliberately wrong IRQL (the test expects the bug check); pointers valid.
        unsafe {
            let a = &*ctx.cast::<Adapter>();
            let mut c: sys::NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS = std::mem::zeroed();
            sys::NdisMRegisterInterruptEx(a.handle, ctx, &mut c, &mut ih);
        }
    }
    // SAFETY: NDIS's out-pointers.
    unsafe {
        match k.isr {
            IsrMode::QueueDefault => {
                *qd = 1;
                1
            }
            IsrMode::Targets(mask) => {
                *qd = 0;
                *tp = mask;
                1
            }
            IsrMode::QueueDpcEx(mask) => {
                *qd = 0;
                *tp = 0;
                let a = &*ctx.cast::<Adapter>();
                let mut ga = sys::GROUP_AFFINITY {
                    Mask: mask,
                    Group: 0,
                    Reserved: [0; 3],
                };
                sys::NdisMQueueDpcEx(
                    a.interrupt,
                    message.unwrap_or(0),
                    &mut ga,
                    0x5A5A as sys::PVOID,
                );
                1
            }
            IsrMode::NotMineButQueue => {
                *qd = 1;
                0
            }
            IsrMode::NotMine => 0,
        }
    }
}

unsafe extern "win64-unwind" fn isr(
    ctx: sys::NDIS_HANDLE,
    qd: *mut sys::BOOLEAN,
    tp: *mut u32,
) -> sys::BOOLEAN {
    isr_common(ctx, None, qd, tp)
}

unsafe extern "win64-unwind" fn msg_isr(
    ctx: sys::NDIS_HANDLE,
    m: u32,
    qd: *mut sys::BOOLEAN,
    tp: *mut u32,
) -> sys::BOOLEAN {
    isr_common(ctx, Some(m), qd, tp)
}

fn dpc_common(message: Option<u32>, dpc_ctx: sys::PVOID, throttle: sys::PVOID) {
    let k = knobs();
    let t = throttle.cast::<sys::NDIS_RECEIVE_THROTTLE_PARAMETERS>();
    // SAFETY: NDIS passes a valid throttle block to 6.20+ drivers.
    let max = unsafe { (*t).MaxNblsToIndicate };
    record(Seen::Dpc {
        cpu: cpu(),
        message,
        context: dpc_ctx as usize,
        max_nbls: max,
    });
    if k.allocate_in_dpc {
        touch_heap();
    }
    if k.stall_in_dpc {
        // SAFETY: a plain call; a preemption point in the emulator.
        unsafe { sys::KeStallExecutionProcessor(1) };
    }
    let more = DPC_MORE_LEFT.with(|left| {
        let mut left = left.borrow_mut();
        if *left == 0
            && k.more_pending > 0
            && !SEEN.with(|s| s.borrow().iter().any(|x| matches!(x, Seen::DpcEnd { .. })))
        {
            *left = k.more_pending;
        }
        if *left > 0 {
            if *left != u32::MAX {
                *left -= 1;
            }
            true
        } else {
            false
        }
    });
    if more {
        // SAFETY: as above.
        unsafe { (*t).Flags |= sys::NDIS_RECEIVE_THROTTLE_MORE_NBLS_PENDING };
    }
    record(Seen::DpcEnd { cpu: cpu() });
}

unsafe extern "win64-unwind" fn dpc(
    _ctx: sys::NDIS_HANDLE,
    dpc_ctx: sys::PVOID,
    throttle: sys::PVOID,
    _r: sys::PVOID,
) {
    dpc_common(None, dpc_ctx, throttle)
}

unsafe extern "win64-unwind" fn msg_dpc(
    _ctx: sys::NDIS_HANDLE,
    m: u32,
    dpc_ctx: sys::PVOID,
    throttle: sys::PVOID,
    _r: sys::PVOID,
) {
    dpc_common(Some(m), dpc_ctx, throttle)
}

/// Load the test driver and start one adapter with `resources` (panics on failure).
pub fn start(emu: &Emulator, resources: ndis_emu::InterruptResources) -> ndis_emu::AdapterId {
    assert_eq!(emu.load_driver(driver_entry), 0, "DriverEntry");
    emu.add_adapter(resources).expect("initialize")
}

/// Restart/pause/halt/unload.
pub fn stop(emu: &Emulator, a: ndis_emu::AdapterId) {
    if emu.adapter_state(a) == ndis_emu::AdapterState::Running {
        emu.pause(a);
    }
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}
