//! The interrupt layer on the emulator: every grant, routing of each message to its queues, the
//! processor and IRQL each handler runs at, DPC targeting, receive budgets, shared state, and
//! deregistration on every path. The test driver's raw NDIS glue (DriverEntry, initialize, halt)
//! stands in for the adapter lifecycle layer; the interrupt code is the framework's.
#![cfg(not(windows))]

use std::cell::RefCell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use ndis::interrupt::{
    DpcContext, Grant, InterruptHandler, InterruptRegistration, InterruptShared, IsrContext,
    IsrOutcome, MessageId, ProcessorSet, Source,
};
use ndis::irql::Passive;
use ndis::miniport::Initializing;
use ndis::resources::AdapterResources;
use ndis_emu::{Config, Emulator, InterruptResources};
use ndis_sys as sys;

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Isr {
        queue: usize,
        source: Source,
        cpu: u32,
    },
    Dpc {
        queue: usize,
        source: Source,
        cpu: u32,
        budget: u32,
    },
}

const OWN_LIMIT: u32 = 100;

struct Queue {
    index: usize,
    /// Work waiting for the DPC (receives to indicate).
    backlog: AtomicU32,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    QueueDpc,
    QueueDpcOn(usize),
    Handled,
    /// Only this queue's ISR asks for a DPC; the other queues' ISRs say `Handled`.
    OnlyQueue(usize),
}

struct Nic {
    queues: Vec<Queue>,
    events: Mutex<Vec<Event>>,
    claim_line: bool,
    mode: Mode,
    wrong_lock: bool,
    isr_count: InterruptShared<u32>,
}

impl Nic {
    fn new(queues: usize) -> Self {
        Nic {
            queues: (0..queues)
                .map(|index| Queue {
                    index,
                    backlog: AtomicU32::new(0),
                })
                .collect(),
            events: Mutex::new(Vec::new()),
            claim_line: KNOBS.with(|k| k.borrow().claim_line),
            mode: KNOBS.with(|k| k.borrow().mode),
            wrong_lock: KNOBS.with(|k| k.borrow().wrong_lock),
            isr_count: InterruptShared::new(MessageId(0), 0),
        }
    }
}

impl InterruptHandler for Nic {
    type Queue = Queue;
    const MSI_SUPPORTED: bool = true;

    fn queues(&self) -> &[Queue] {
        &self.queues
    }

    fn line_claim(&self, _ctx: &IsrContext<'_>) -> bool {
        self.claim_line
    }

    fn isr(&self, queue: &Queue, ctx: &IsrContext<'_>) -> IsrOutcome {
        // Test instrumentation: the event log grows at DIRQL, which driver code may not do.
        ndis_emu::instrumentation(|| {
            self.events.lock().unwrap().push(Event::Isr {
                queue: queue.index,
                source: ctx.source(),
                cpu: ctx.processor().1,
            })
        });
        if self.wrong_lock || matches!(ctx.source(), Source::Line | Source::Message(MessageId(0))) {
            ctx.with_shared(&self.isr_count, |n| *n += 1);
        }
        match self.mode {
            Mode::QueueDpc => IsrOutcome::QueueDpc,
            Mode::QueueDpcOn(mask) => IsrOutcome::QueueDpcOn(ProcessorSet::from_mask(0, mask)),
            Mode::Handled => IsrOutcome::Handled,
            Mode::OnlyQueue(q) if q == queue.index => IsrOutcome::QueueDpc,
            Mode::OnlyQueue(_) => IsrOutcome::Handled,
        }
    }

    fn dpc(&self, queue: &Queue, ctx: &mut DpcContext<'_>) {
        let budget = ctx.budget().remaining();
        self.events.lock().unwrap().push(Event::Dpc {
            queue: queue.index,
            source: ctx.source(),
            cpu: ctx.processor().1,
            budget,
        });
        let backlog = queue.backlog.load(Ordering::Relaxed);
        // Without an NDIS throttle the driver bounds its own work per DPC.
        let wanted = if ctx.budget().is_throttled() {
            backlog
        } else {
            backlog.min(OWN_LIMIT)
        };
        let done = ctx.budget().take(wanted);
        queue.backlog.store(backlog - done, Ordering::Relaxed);
        if backlog > done {
            ctx.budget().request_more();
        }
    }
}

/// Passive-path knobs and results of the raw glue (one test thread each).
#[derive(Clone)]
struct Knobs {
    queues: usize,
    claim_line: bool,
    mode: Mode,
    fail_after_register: bool,
    /// Register a handler that does not support MSI.
    line_only: bool,
    /// Message 1's ISR touches state guarded by message 0's lock (a bug the framework refuses).
    wrong_lock: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            queues: 4,
            claim_line: true,
            mode: Mode::QueueDpc,
            fail_after_register: false,
            line_only: false,
            wrong_lock: false,
        }
    }
}

thread_local! {
    static KNOBS: RefCell<Knobs> = RefCell::new(Knobs::default());
    static REGISTER_ERROR: RefCell<Option<(sys::NDIS_STATUS, usize)>> = const { RefCell::new(None) };
    static ADAPTER: RefCell<usize> = const { RefCell::new(0) };
    static DRIVER: RefCell<usize> = const { RefCell::new(0) };
}

struct Adapter {
    interrupt: InterruptRegistration<Nic>,
    /// What the raw layer must release in halt (the framework does it for `Miniport`s).
    resources: Box<AdapterResources>,
}

fn adapter() -> &'static Adapter {
    // SAFETY: the test reads the adapter between initialize and halt.
    unsafe { &*(ADAPTER.with(|a| *a.borrow()) as *const Adapter) }
}

struct LineOnly {
    marker: u32,
}

impl InterruptHandler for LineOnly {
    type Queue = ();
    const MSI_SUPPORTED: bool = false;
    fn queues(&self) -> &[()] {
        &[]
    }
    fn isr(&self, _q: &(), _c: &IsrContext<'_>) -> IsrOutcome {
        IsrOutcome::Handled
    }
    fn dpc(&self, _q: &(), _c: &mut DpcContext<'_>) {}
}

unsafe extern "win64-unwind" fn initialize(
    handle: sys::NDIS_HANDLE,
    _d: sys::NDIS_HANDLE,
    _p: *mut sys::NDIS_MINIPORT_INIT_PARAMETERS,
) -> i32 {
    let k = KNOBS.with(|k| k.borrow().clone());
    let resources = Box::new(AdapterResources::new());
    // SAFETY: inside MiniportInitializeEx of this adapter, at PASSIVE_LEVEL; `resources` is
    // released in halt or below on failure.
    let init = unsafe { Initializing::assume(handle, &resources, ndis::NdisVersion::V6_20) };
    let fail = |status: i32| {
        // SAFETY: a failing initialize at PASSIVE_LEVEL; nothing of the driver remains.
        unsafe { resources.release_all(init.passive()) };
        status
    };
    // SAFETY: attribute unions are plain data; the handle is this adapter's.
    unsafe {
        let mut a: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = std::mem::zeroed();
        a.RegistrationAttributes.Header = sys::NDIS_OBJECT_HEADER {
            Type: 0x9E,
            Revision: 1,
            Size: 28,
        };
        a.RegistrationAttributes.MiniportAdapterContext = 1 as sys::NDIS_HANDLE;
        let s = sys::NdisMSetMiniportAttributes(handle, &mut a);
        if s != 0 {
            return s;
        }
        let mut g: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = std::mem::zeroed();
        g.GeneralAttributes.Header = sys::NDIS_OBJECT_HEADER {
            Type: 0x9F,
            Revision: 2,
            Size: 224,
        };
        let s = sys::NdisMSetMiniportAttributes(handle, &mut g);
        if s != 0 {
            return s;
        }
    }
    if k.line_only {
        return match init.register_interrupt(LineOnly { marker: 42 }) {
            Ok(_registered) => fail(sys::NDIS_STATUS_FAILURE),
            Err(e) => {
                REGISTER_ERROR
                    .with(|r| *r.borrow_mut() = Some((e.status.0, e.handler.marker as usize)));
                fail(e.status.0)
            }
        };
    }
    match init.register_interrupt(Nic::new(k.queues)) {
        Ok(interrupt) => {
            if k.fail_after_register {
                // Released on the error path: deregistered.
                drop(interrupt);
                return fail(sys::NDIS_STATUS_DEVICE_FAILED);
            }
            let a = Box::into_raw(Box::new(Adapter {
                interrupt,
                resources,
            }));
            ADAPTER.with(|x| *x.borrow_mut() = a as usize);
            0
        }
        Err(e) => {
            REGISTER_ERROR.with(|r| *r.borrow_mut() = Some((e.status.0, e.handler.queues.len())));
            fail(e.status.0)
        }
    }
}

unsafe extern "win64-unwind" fn halt(_ctx: sys::NDIS_HANDLE, _a: i32) {
    let a = ADAPTER.with(|a| std::mem::take(&mut *a.borrow_mut()));
    // SAFETY: the adapter initialize created.
    let Adapter {
        interrupt,
        resources,
    } = *unsafe { Box::from_raw(a as *mut Adapter) };
    drop(interrupt);
    // SAFETY: MiniportHaltEx at PASSIVE_LEVEL, the driver's state gone: deregisters.
    unsafe { resources.release_all(&Passive::assume()) };
}

unsafe extern "win64-unwind" fn unload(_o: sys::PDRIVER_OBJECT) {
    // SAFETY: the handle DriverEntry registered.
    unsafe { sys::NdisMDeregisterMiniportDriver(DRIVER.with(|d| *d.borrow()) as sys::NDIS_HANDLE) };
}

unsafe extern "win64-unwind" fn driver_entry(
    o: sys::PDRIVER_OBJECT,
    p: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    let chars = ndis_emu::raw::driver_characteristics(20, initialize, halt, unload);
    // SAFETY: DriverEntry's own arguments.
    let (status, handle) = unsafe { ndis_emu::raw::register_driver(o, p, &chars) };
    DRIVER.with(|d| *d.borrow_mut() = handle as usize);
    status
}

fn set(f: impl FnOnce(&mut Knobs)) {
    KNOBS.with(|k| {
        *k.borrow_mut() = Knobs::default();
        f(&mut k.borrow_mut());
    });
}

/// A copy of what the handler recorded (the driver's own buffer stays the driver's: handing it to
/// the test would make it outlive unload, which the heap accounting reports as a leak).
fn events() -> Vec<Event> {
    let mut recorded = adapter().interrupt.handler().events.lock().unwrap();
    let copy = recorded.clone();
    recorded.clear();
    copy
}

fn start(emu: &Emulator, resources: InterruptResources) -> ndis_emu::AdapterId {
    assert_eq!(emu.load_driver(driver_entry), 0);
    emu.add_adapter(resources).expect("initialize")
}

fn stop(emu: &Emulator, a: ndis_emu::AdapterId) {
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

/// IRQL the emulator traced for the last ISR of `message` (the handler cannot read its IRQL).
fn traced_isr_irql(emu: &Emulator, message: u32) -> u8 {
    let needle = format!("ISR msg {message} ");
    let line = emu
        .trace()
        .into_iter()
        .rev()
        .find(|l| l.contains(&needle))
        .expect("traced ISR");
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Fires every granted message and checks: each reaches exactly the queues the map assigns,
/// ISR and DPC on the message's processor, ISR at the message's IRQL, DPC at DISPATCH_LEVEL.
fn check_every_message(
    emu: &Emulator,
    a: ndis_emu::AdapterId,
    queues: usize,
    expected_messages: u32,
) {
    let reg = &adapter().interrupt;
    let Grant::Messages(infos) = reg.grant() else {
        panic!("expected a message-based grant")
    };
    assert_eq!(infos.len() as u32, expected_messages);
    let map = reg.queue_map();
    for info in infos {
        emu.fire_message(emu.device_of(a), info.id.0);
        let cpu = info.affinity.mask().trailing_zeros();
        let served: Vec<usize> = map.queues_of(Source::Message(info.id)).collect();
        let ev = events();
        let isrs: Vec<_> = ev
            .iter()
            .filter(|e| matches!(e, Event::Isr { .. }))
            .copied()
            .collect();
        let dpcs: Vec<_> = ev
            .iter()
            .filter(|e| matches!(e, Event::Dpc { .. }))
            .copied()
            .collect();
        let source = Source::Message(info.id);
        assert_eq!(
            isrs,
            served
                .iter()
                .map(|&queue| Event::Isr { queue, source, cpu })
                .collect::<Vec<_>>(),
            "message {}",
            info.id.0
        );
        assert_eq!(
            dpcs.iter()
                .map(|e| match e {
                    Event::Dpc { queue, cpu, .. } => (*queue, *cpu),
                    _ => unreachable!(),
                })
                .collect::<Vec<_>>(),
            served.iter().map(|&q| (q, cpu)).collect::<Vec<_>>(),
            "message {}",
            info.id.0
        );
        if !served.is_empty() {
            assert_eq!(
                traced_isr_irql(emu, info.id.0),
                info.irql,
                "ISR of message {} at its DIRQL",
                info.id.0
            );
            assert!(
                emu.trace()
                    .iter()
                    .any(|l| l == &format!("cpu{cpu} irql  2 DPC msg {}", info.id.0))
            );
        }
    }
    // Every queue was served by exactly one message.
    for q in 0..queues {
        assert!(map.message_of(q).is_some_and(|m| m.0 < expected_messages));
    }
}

fn emulator(cpus: usize) -> Emulator {
    Emulator::new(Config {
        cpus,
        trace: true,
        ..Config::default()
    })
}

#[test]
fn msix_one_message_per_queue() {
    let emu = emulator(4);
    set(|k| k.queues = 4);
    let a = start(&emu, InterruptResources::msix(4));
    check_every_message(&emu, a, 4, 4);
    stop(&emu, a);
}

#[test]
fn msix_1_serves_every_queue_from_one_message() {
    let emu = emulator(4);
    set(|k| k.queues = 3);
    let a = start(&emu, InterruptResources::msix(1));
    check_every_message(&emu, a, 3, 1);
    stop(&emu, a);
}

#[test]
fn msix_2_shares_messages_round_robin() {
    let emu = emulator(4);
    set(|k| k.queues = 5);
    let a = start(&emu, InterruptResources::msix(2));
    check_every_message(&emu, a, 5, 2);
    stop(&emu, a);
}

#[test]
fn msix_k_fewer_than_asked() {
    let emu = emulator(4);
    set(|k| k.queues = 8);
    let a = start(
        &emu,
        InterruptResources::MsiX {
            requested: 10,
            granted: 3,
        },
    );
    check_every_message(&emu, a, 8, 3);
    stop(&emu, a);
}

#[test]
fn msix_2048_messages() {
    let emu = Emulator::new(Config {
        cpus: 8,
        trace: false,
        ..Config::default()
    });
    set(|k| k.queues = 16);
    let a = start(&emu, InterruptResources::msix(2048));
    let Grant::Messages(infos) = adapter().interrupt.grant() else {
        panic!()
    };
    assert_eq!(infos.len(), 2048);
    for info in infos {
        emu.fire_message(emu.device_of(a), info.id.0);
        let ev = events();
        let cpu = info.affinity.mask().trailing_zeros();
        if (info.id.0 as usize) < 16 {
            assert_eq!(
                ev.len(),
                2,
                "message {} serves queue {}: {ev:?}",
                info.id.0,
                info.id.0
            );
            assert!(ev.iter().all(
                |e| matches!(e, Event::Isr { cpu: c, .. } | Event::Dpc { cpu: c, .. } if *c == cpu)
            ));
        } else {
            assert!(ev.is_empty(), "message {} serves no queue", info.id.0);
        }
    }
    stop(&emu, a);
}

#[test]
fn one_msi_message() {
    let emu = emulator(2);
    set(|k| k.queues = 2);
    let a = start(&emu, InterruptResources::msi());
    check_every_message(&emu, a, 2, 1);
    stop(&emu, a);
}

#[test]
fn line_grant_although_msi_was_offered_runs_every_queue() {
    let emu = emulator(4);
    set(|k| k.queues = 3);
    let a = start(&emu, InterruptResources::line());
    assert_eq!(adapter().interrupt.grant(), Grant::Line);
    emu.fire_on(emu.device_of(a), None, 3);
    let ev = events();
    let expected: Vec<Event> = (0..3)
        .map(|q| Event::Isr {
            queue: q,
            source: Source::Line,
            cpu: 3,
        })
        .chain((0..3).map(|q| Event::Dpc {
            queue: q,
            source: Source::Line,
            cpu: 3,
            budget: 64,
        }))
        .collect();
    assert_eq!(ev, expected);
    assert!(
        emu.trace()
            .iter()
            .any(|l| l == "cpu3 irql  5 ISR line -> TRUE, DPC on cpu3"),
        "{:#?}",
        emu.trace()
    );
    stop(&emu, a);
}

#[test]
fn shared_line_not_claimed_passes_on_and_runs_no_queue() {
    let emu = emulator(2);
    set(|k| k.claim_line = false);
    assert_eq!(emu.load_driver(driver_entry), 0);
    let a = emu
        .add_adapter(InterruptResources::Line {
            line: 4,
            shared: true,
        })
        .unwrap();
    assert_eq!(
        emu.fire_line(emu.device_of(a)),
        Some(false),
        "nobody claimed it"
    );
    assert!(
        events().is_empty(),
        "no queue ISR or DPC for an interrupt that is not ours"
    );
    stop(&emu, a);
}

#[test]
fn characteristics_follow_msi_support_at_compile_time() {
    let line = ndis::interrupt::characteristics::<LineOnly>();
    assert_eq!(
        (
            line.Header.Type,
            line.Header.Revision,
            line.Header.Size,
            line.MsiSupported
        ),
        (0x84, 1, 96, 0)
    );
    assert!(line.MessageInterruptHandler.is_none() && line.MessageInterruptDpcHandler.is_none());
    assert!(
        line.DisableMessageInterruptHandler.is_none()
            && line.EnableMessageInterruptHandler.is_none()
    );
    assert!(line.InterruptHandler.is_some() && line.InterruptDpcHandler.is_some());
    assert!(line.DisableInterruptHandler.is_some() && line.EnableInterruptHandler.is_some());
    let msi = ndis::interrupt::characteristics::<Nic>();
    assert_eq!((msi.MsiSupported, msi.MsiSyncWithAllMessages), (1, 0));
    assert!(msi.MessageInterruptHandler.is_some() && msi.MessageInterruptDpcHandler.is_some());
    assert!(
        msi.DisableMessageInterruptHandler.is_some() && msi.EnableMessageInterruptHandler.is_some()
    );
}

#[test]
fn message_resources_for_a_driver_without_msi_are_refused_and_the_state_comes_back() {
    let emu = emulator(2);
    set(|k| k.line_only = true);
    assert_eq!(emu.load_driver(driver_entry), 0);
    assert_eq!(
        emu.add_adapter(InterruptResources::msix(4)),
        Err(sys::NDIS_STATUS_RESOURCE_CONFLICT)
    );
    assert_eq!(
        REGISTER_ERROR.with(|r| r.borrow_mut().take()),
        Some((sys::NDIS_STATUS_RESOURCE_CONFLICT, 42))
    );
    emu.unload();
}

#[test]
fn no_interrupt_resource_is_refused_and_the_state_comes_back() {
    let emu = emulator(2);
    set(|_| {});
    assert_eq!(emu.load_driver(driver_entry), 0);
    assert_eq!(
        emu.add_adapter(InterruptResources::None),
        Err(sys::NDIS_STATUS_RESOURCE_CONFLICT)
    );
    assert_eq!(
        REGISTER_ERROR.with(|r| r.borrow_mut().take()),
        Some((sys::NDIS_STATUS_RESOURCE_CONFLICT, 4))
    );
    emu.unload();
}

#[test]
fn queue_dpc_on_runs_the_dpc_on_each_chosen_processor() {
    let emu = emulator(4);
    set(|k| {
        k.queues = 1;
        k.mode = Mode::QueueDpcOn(0b0110);
    });
    let a = start(&emu, InterruptResources::msix(1));
    emu.fire_message(emu.device_of(a), 0);
    let mut cpus: Vec<u32> = events()
        .iter()
        .filter_map(|e| {
            if let Event::Dpc { cpu, .. } = e {
                Some(*cpu)
            } else {
                None
            }
        })
        .collect();
    cpus.sort();
    assert_eq!(cpus, vec![1, 2]);
    stop(&emu, a);
}

#[test]
fn the_receive_budget_throttles_and_more_pending_reruns_the_dpc() {
    let emu = Emulator::new(Config {
        cpus: 2,
        max_nbls_per_dpc: 8,
        trace: true,
        ..Config::default()
    });
    set(|k| k.queues = 1);
    let a = start(&emu, InterruptResources::msix(1));
    adapter().interrupt.handler().queues[0]
        .backlog
        .store(20, Ordering::Relaxed);
    emu.fire_message(emu.device_of(a), 0);
    let budgets: Vec<u32> = events()
        .iter()
        .filter_map(|e| {
            if let Event::Dpc { budget, .. } = e {
                Some(*budget)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(budgets, vec![8, 8, 8], "three DPC runs of 8, 8, 4 receives");
    assert_eq!(
        adapter().interrupt.handler().queues[0]
            .backlog
            .load(Ordering::Relaxed),
        0
    );
    assert_eq!(
        emu.trace()
            .iter()
            .filter(|l| l.ends_with("MoreNblsPending, requeued"))
            .count(),
        2
    );
    stop(&emu, a);
}

#[test]
fn without_a_throttle_the_framework_requeues_the_dpc_itself() {
    let emu = Emulator::new(Config {
        cpus: 2,
        max_nbls_per_dpc: sys::NDIS_INDICATE_ALL_NBLS,
        trace: true,
        ..Config::default()
    });
    set(|k| k.queues = 1);
    let a = start(&emu, InterruptResources::msix(1));
    // 250 receives, the driver's own limit is 100 per DPC: three runs, requeued by the framework
    // with NdisMQueueDpcEx on the same processor, never through MoreNblsPending.
    adapter().interrupt.handler().queues[0]
        .backlog
        .store(250, Ordering::Relaxed);
    emu.fire_message(emu.device_of(a), 0);
    let dpcs: Vec<Event> = events()
        .into_iter()
        .filter(|e| matches!(e, Event::Dpc { .. }))
        .collect();
    assert_eq!(dpcs.len(), 3, "{dpcs:?}");
    assert!(
        dpcs.iter().all(|e| matches!(
            e,
            Event::Dpc {
                cpu: 0,
                budget: u32::MAX,
                ..
            }
        )),
        "{dpcs:?}"
    );
    assert_eq!(
        adapter().interrupt.handler().queues[0]
            .backlog
            .load(Ordering::Relaxed),
        0
    );
    assert!(
        !emu.trace().iter().any(|l| l.contains("MoreNblsPending")),
        "MoreNblsPending must stay 0 without a throttle"
    );
    stop(&emu, a);
}

#[test]
fn shared_state_is_counted_by_the_isr_and_read_under_the_lock() {
    let emu = emulator(2);
    set(|k| k.queues = 2);
    let a = start(&emu, InterruptResources::msix(2));
    for _ in 0..5 {
        emu.fire_message(emu.device_of(a), 0);
    }
    // SAFETY: the test thread is the passive-level caller.
    let mut passive = unsafe { Passive::assume() };
    let reg = &adapter().interrupt;
    let seen = reg.synchronize(&mut passive, &reg.handler().isr_count, |n, _| *n);
    assert_eq!(seen, 5);
    assert!(emu.trace().iter().any(|l| l.ends_with("synchronize msg 0")));
    stop(&emu, a);
}

#[test]
fn an_isr_reaching_state_guarded_by_another_messages_lock_is_refused() {
    let emu = emulator(2);
    set(|k| {
        k.queues = 2;
        k.wrong_lock = true;
    });
    let a = start(&emu, InterruptResources::msix(2));
    // Message 0's ISR may touch it (its own lock) ...
    emu.fire_message(emu.device_of(a), 0);
    // ... message 1's may not: it could run on another processor at the same time.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        emu.fire_message(emu.device_of(a), 1);
    }));
    let text = r.expect_err("the framework let message 1's ISR reach message 0's state");
    let text = text.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        text.contains("reached InterruptShared state guarded by message 0's lock"),
        "{text}"
    );
}

#[test]
fn an_interrupt_during_registration_is_acknowledged_and_runs_no_queue() {
    let emu = emulator(2);
    set(|k| k.queues = 2);
    assert_eq!(emu.load_driver(driver_entry), 0);
    // Device 0 will be the adapter's; its message 1 is asserted before the driver registers.
    emu.assert_pending(ndis_emu::DeviceId(0), Some(1), 1);
    let a = emu.add_adapter(InterruptResources::msix(2)).unwrap();
    assert!(
        emu.trace()
            .iter()
            .any(|l| l == "cpu1 irql  6 ISR msg 1 -> TRUE"),
        "{:#?}",
        emu.trace()
    );
    assert!(
        events().is_empty(),
        "no queue ISR or DPC before the grant is known"
    );
    stop(&emu, a);
}

#[test]
fn the_initialize_error_path_deregisters_when_the_resources_are_released() {
    let emu = emulator(2);
    set(|k| k.fail_after_register = true);
    assert_eq!(emu.load_driver(driver_entry), 0);
    // Without the deregistration the emulator would bug-check 0x7C/0x0B here.
    assert_eq!(
        emu.add_adapter(InterruptResources::msix(2)),
        Err(sys::NDIS_STATUS_DEVICE_FAILED)
    );
    emu.unload();
}

#[test]
fn every_fallible_call_failed_in_turn_leaks_nothing() {
    set(|_| {});
    let report = ndis_emu::sweep_fallible_calls(Config::default, |emu| {
        if emu.load_driver(driver_entry) != 0 {
            return;
        }
        if let Ok(a) = emu.add_adapter(InterruptResources::msix(4)) {
            emu.fire_message(emu.device_of(a), 3);
            emu.halt(a, sys::NdisHaltDeviceDisabled);
        }
        emu.unload();
    });
    assert!(
        report.sites.contains(&"NdisMRegisterInterruptEx")
            && report.sites.contains(&"IoConnectInterruptEx"),
        "{:?}",
        report.sites
    );
}

#[test]
fn a_handled_interrupt_runs_no_dpc() {
    let emu = emulator(2);
    set(|k| {
        k.queues = 2;
        k.mode = Mode::Handled;
    });
    let a = start(&emu, InterruptResources::msix(2));
    emu.fire_message(emu.device_of(a), 1);
    assert_eq!(
        events(),
        vec![Event::Isr {
            queue: 1,
            source: Source::Message(MessageId(1)),
            cpu: 1
        }]
    );
    assert!(
        emu.trace()
            .iter()
            .any(|l| l == "cpu1 irql  6 ISR msg 1 -> TRUE"),
        "{:#?}",
        emu.trace()
    );
    stop(&emu, a);
}

/// The DPC events of `events()`: (queue, source, budget left when its `dpc` began).
fn dpc_runs(ev: &[Event]) -> Vec<(usize, Source, u32)> {
    ev.iter()
        .filter_map(|e| match *e {
            Event::Dpc {
                queue,
                source,
                budget,
                ..
            } => Some((queue, source, budget)),
            Event::Isr { .. } => None,
        })
        .collect()
}

/// docs/interrupts.md, "Which `isr()` and `dpc()` calls run": a DPC runs `dpc` for every queue its source
/// serves, in queue order, whichever of their ISRs asked for it, and they share one budget.
#[test]
fn a_shared_messages_dpc_runs_every_queue_it_serves_with_one_budget() {
    let emu = Emulator::new(Config {
        cpus: 2,
        max_nbls_per_dpc: 64,
        trace: true,
        ..Config::default()
    });
    // 5 queues on 2 messages: message 0 serves queues 0, 2, 4; message 1 serves 1, 3.
    set(|k| {
        k.queues = 5;
        k.mode = Mode::OnlyQueue(4);
    });
    let a = start(&emu, InterruptResources::msix(2));
    let queues = &adapter().interrupt.handler().queues;
    queues[0].backlog.store(10, Ordering::Relaxed);
    queues[2].backlog.store(20, Ordering::Relaxed);
    emu.fire_message(emu.device_of(a), 0);
    let m0 = Source::Message(MessageId(0));
    let ev = events();
    let isrs: Vec<usize> = ev
        .iter()
        .filter_map(|e| match *e {
            Event::Isr { queue, .. } => Some(queue),
            Event::Dpc { .. } => None,
        })
        .collect();
    assert_eq!(isrs, vec![0, 2, 4], "every ISR of the message's queues");
    // Only queue 4's ISR asked; queues 0 and 2 run too, and see what 0 and 2 took.
    assert_eq!(dpc_runs(&ev), vec![(0, m0, 64), (2, m0, 54), (4, m0, 34)]);
    assert_eq!(queues[0].backlog.load(Ordering::Relaxed), 0);
    assert_eq!(queues[2].backlog.load(Ordering::Relaxed), 0);

    // No ISR asked (queues 1 and 3 both say Handled): no DPC at all, for any queue.
    emu.fire_message(emu.device_of(a), 1);
    assert_eq!(dpc_runs(&events()), vec![]);
    stop(&emu, a);
}

/// The same rule for a rerun: a queue that asks for more runs the whole set again, every queue
/// of the source with a fresh budget.
#[test]
fn a_rerun_of_a_shared_messages_dpc_runs_every_queue_again() {
    let emu = Emulator::new(Config {
        cpus: 2,
        max_nbls_per_dpc: 8,
        trace: true,
        ..Config::default()
    });
    set(|k| {
        k.queues = 2;
        k.mode = Mode::QueueDpc;
    });
    // One message for both queues; queue 1 has 12 receives waiting, queue 0 none.
    let a = start(&emu, InterruptResources::msix(1));
    adapter().interrupt.handler().queues[1]
        .backlog
        .store(12, Ordering::Relaxed);
    emu.fire_message(emu.device_of(a), 0);
    let m0 = Source::Message(MessageId(0));
    assert_eq!(
        dpc_runs(&events()),
        vec![(0, m0, 8), (1, m0, 8), (0, m0, 8), (1, m0, 8)],
        "two runs (8 then 4 receives of queue 1), each over both queues"
    );
    stop(&emu, a);
}

/// The line: one DPC for the whole device, every queue in order, whichever ISR asked.
#[test]
fn the_lines_dpc_runs_every_queue_whichever_isr_asked() {
    let emu = emulator(2);
    set(|k| {
        k.queues = 3;
        k.mode = Mode::OnlyQueue(1);
    });
    let a = start(&emu, InterruptResources::line());
    emu.fire_on(emu.device_of(a), None, 1);
    let line = Source::Line;
    assert_eq!(
        dpc_runs(&events()),
        vec![(0, line, 64), (1, line, 64), (2, line, 64)]
    );
    stop(&emu, a);
}
