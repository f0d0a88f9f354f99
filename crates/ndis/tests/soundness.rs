//! What the types cannot stop is stopped at run time, without breaking the NDIS contract: each
//! test is named after the item of the soundness issue it covers (the compile-time half is in
//! `tests/ui/item*`).
#![cfg(not(windows))]

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};

use ndis::dma::DmaRegistration;
use ndis::driver::MiniportDriver;
use ndis::heap::Shared;
use ndis::interrupt::{
    DpcContext, InterruptHandler, InterruptRegistration, InterruptShared, IsrContext, IsrOutcome,
    MessageId,
};
use ndis::irql::{DispatchOrBelow, Passive};
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
use ndis::nbl::{ReceivePool, Returned, SendLists};
use ndis::oid::{PendingOid, SetData, SetRequest};
use ndis::{NdisVersion, Status};
use ndis_emu::{AdapterId, Config, Emulator, FALLIBLE_SITE, InterruptResources, rule};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

const BUFFER: usize = 2048;
/// Sets the link down (for the kept-reference test: a driver report after halt).
const OID_SYNCHRONIZE_99: u32 = 0xFF02_0001;
/// Pends the set (data[0]: 0 completed by the next DPC, 1 completed at once, 2 dropped).
const OID_PEND: u32 = 0xFF02_0002;
/// Synchronizes with this adapter's interrupt on state of another adapter's handler.
const OID_SYNCHRONIZE_FOREIGN: u32 = 0xFF02_0003;

thread_local! {
    /// A reference to the framework's adapter state the driver kept past halt.
    static KEPT_ADAPTER: RefCell<Option<Shared<NdisAdapter>>> = const { RefCell::new(None) };
    /// A handle to its own registration the handler drops in its DPC.
    static OWN_REGISTRATION: RefCell<Option<InterruptRegistration<Nic>>> = const { RefCell::new(None) };
    static DPCS: Cell<u32> = const { Cell::new(0) };
    /// How many times the send path lists each frame's buffer.
    static LIST_TWICE: Cell<bool> = const { Cell::new(false) };
    static WRITE_WHILE_LENT: Cell<Option<bool>> = const { Cell::new(None) };
    /// A set request the driver pended, completed by the next DPC with `COMPLETE_WITH`.
    static PENDING: RefCell<Option<PendingOid>> = const { RefCell::new(None) };
    static COMPLETE_WITH: Cell<Result<(), Status>> = const { Cell::new(Ok(())) };
    static ALLOCATE_IN_ISR: Cell<bool> = const { Cell::new(false) };
    /// A DMA registration kept from another adapter's initialize, and what allocating from it
    /// in the next initialize gave.
    static KEEP_DMA: Cell<bool> = const { Cell::new(false) };
    static KEPT_DMA: RefCell<Option<DmaRegistration>> = const { RefCell::new(None) };
    static FOREIGN_DMA: Cell<Option<Status>> = const { Cell::new(None) };
    /// Another adapter's registration, whose interrupt-shared state an OID reaches.
    static OTHER_REGISTRATION: RefCell<Option<InterruptRegistration<Nic>>> = const { RefCell::new(None) };
}

struct Nic {
    shared: InterruptShared<u32>,
    stray: InterruptShared<u32>,
}

impl InterruptHandler for Nic {
    type Queue = ();
    const MSI_SUPPORTED: bool = true;
    fn queues(&self) -> &[()] {
        &[()]
    }
    fn isr(&self, _: &(), _: &IsrContext<'_>) -> IsrOutcome {
        if ALLOCATE_IN_ISR.get() {
            // Safe code the types cannot stop: a heap allocation at DIRQL.
            std::hint::black_box(Vec::<u8>::with_capacity(48));
        }
        IsrOutcome::QueueDpc
    }
    fn dpc(&self, _: &(), ctx: &mut DpcContext<'_>) {
        DPCS.set(DPCS.get() + 1);
        if let Some(p) = PENDING.with(|p| p.borrow_mut().take()) {
            p.complete(COMPLETE_WITH.get(), ctx.irql());
        }
        // Dropping a handle in the interrupt's own DPC: releases nothing (no deregistration
        // from the DPC, which would deadlock and free what the DPC runs on).
        drop(OWN_REGISTRATION.with(|r| r.borrow_mut().take()));
    }
}

struct Driver;
struct Adapter {
    receive: ReceivePool,
    interrupt: InterruptRegistration<Nic>,
}

impl MiniportDriver for Driver {
    const NDIS_VERSIONS: ndis::NdisVersions = ndis::NdisVersions::exactly(NdisVersion::V6_20);
    const DRIVER_VERSION: (u8, u8) = (1, 0);
    type Adapter = Adapter;
    fn initialize(&'static self, init: &mut Init<'_>) -> Result<(Adapter, AdapterInfo), Status> {
        let dma = init.register_dma(BUFFER as u32)?;
        if let Some(other) = KEPT_DMA.with(|k| k.borrow_mut().take()) {
            let r = other.allocate(init.initializing(), 4096);
            FOREIGN_DMA.set(Some(r.err().unwrap_or(Status::SUCCESS)));
        }
        if KEEP_DMA.replace(false) {
            KEPT_DMA.with(|k| *k.borrow_mut() = Some(dma.clone()));
        }
        let receive = ReceivePool::new(init, &dma, BUFFER, 8)?;
        let nic = Nic {
            shared: InterruptShared::new(MessageId(0), 0),
            stray: InterruptShared::new(MessageId(99), 0),
        };
        let interrupt = init.register_interrupt(nic)?;
        OWN_REGISTRATION.with(|r| *r.borrow_mut() = Some(interrupt.clone()));
        KEPT_ADAPTER.with(|k| *k.borrow_mut() = Some(init.adapter().clone()));
        let info = AdapterInfo::ethernet([2, 0, 0, 0, 0, 1], 1500, 1_000_000_000, true);
        Ok((Adapter { receive, interrupt }, info))
    }
}

impl Miniport for Adapter {
    const EXTRA_OIDS: &'static [u32] = &[OID_SYNCHRONIZE_99, OID_PEND, OID_SYNCHRONIZE_FOREIGN];

    fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, irql: &mut DispatchOrBelow<'_>) {
        lists.each(|nbl| {
            let mut frames = Vec::new();
            let mut scratch = [0u8; BUFFER];
            for frame in nbl.frames() {
                let (Some(len), Some(index)) =
                    (frame.copy_to(&mut scratch), self.receive.claim_any(0))
                else {
                    continue;
                };
                assert!(self.receive.write(index, 0, &scratch[..len]));
                frames.push((index, 0, len));
                if LIST_TWICE.get() {
                    frames.push((index, 0, len));
                }
            }
            let first = frames.first().map(|f| f.0);
            self.receive
                .indicate(&frames, irql, |i| self.receive.release(i));
            if let Some(i) = first {
                // Lent to NDIS now (returns are deferred): the pool refuses to write it.
                WRITE_WHILE_LENT.set(Some(self.receive.write(i, 0, &[0xEE; 4])));
            }
            Status::SUCCESS
        });
    }

    fn return_receives(
        &self,
        _: &NdisAdapter,
        returned: &mut Returned<'_>,
        _: &mut DispatchOrBelow<'_>,
    ) {
        self.receive.take_returned(returned, |_| {});
    }

    fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
        Quiesced::device_stopped() // no device
    }

    fn oid_set(
        &self,
        _: &NdisAdapter,
        oid: u32,
        data: &mut SetData<'_>,
        request: &mut SetRequest<'_>,
    ) -> Result<usize, Status> {
        match oid {
            OID_PEND => {
                let pending = request.pend();
                match data.bytes().first() {
                    // Completed before the handler returns (the device answered at once).
                    Some(1) => pending.complete(Ok(()), request.passive()),
                    // Forgotten: dropping it fails the request.
                    Some(2) => drop(pending),
                    // Completed by the next DPC.
                    _ => PENDING.with(|p| *p.borrow_mut() = Some(pending)),
                }
                Ok(data.bytes().len())
            }
            OID_SYNCHRONIZE_FOREIGN => {
                let other = OTHER_REGISTRATION
                    .with(|o| o.borrow().clone())
                    .expect("other");
                let shared = &other.handler().shared;
                Ok(self
                    .interrupt
                    .synchronize(request.passive_mut(), shared, |v, _| *v as usize))
            }
            OID_SYNCHRONIZE_99 => {
                let passive = request.passive_mut();
                let h = self.interrupt.handler();
                let n = self.interrupt.synchronize(passive, &h.shared, |v, _| *v);
                let _ = self.interrupt.synchronize(passive, &h.stray, |v, _| *v + n);
                Ok(0)
            }
            _ => Err(Status::NOT_SUPPORTED),
        }
    }
}

ndis::miniport_driver!(Driver = Driver);

fn start(emu: &Emulator) -> AdapterId {
    assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
    let a = emu
        .add_adapter(InterruptResources::msix(2))
        .expect("initialize");
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    a
}

fn stop(emu: &Emulator, a: AdapterId) {
    emu.return_receives(a);
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    KEPT_ADAPTER.with(|k| k.borrow_mut().take());
    OWN_REGISTRATION.with(|r| r.borrow_mut().take());
    emu.unload();
}

#[test]
fn item06_a_reference_kept_past_halt_reaches_no_ndis_function() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu);
    let kept = KEPT_ADAPTER.with(|k| k.borrow_mut().take()).expect("kept");
    // SAFETY: the test thread stands for a passive-level caller.
    let passive = unsafe { Passive::assume() };
    // While the adapter lives, a report goes out (so the count below can see one).
    let before = emu.status_indications(a).len();
    kept.indicate_link_state(false, 0, &passive);
    assert_eq!(emu.status_indications(a).len(), before + 1);
    emu.return_receives(a);
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    assert!(kept.is_halted());
    let before = emu.status_indications(a).len();
    // Before the fix this reached NdisMIndicateStatusEx with the halted adapter's handle.
    kept.indicate_link_state(false, 0, &passive);
    kept.indicate_link_state(true, 10, &passive);
    assert_eq!(
        emu.status_indications(a).len(),
        before,
        "an indication after halt went out"
    );
    drop(kept);
    OWN_REGISTRATION.with(|r| r.borrow_mut().take());
    emu.unload();
}

#[test]
fn item07_a_registration_dropped_in_its_own_dpc_is_deregistered_at_halt_not_there() {
    let emu = Emulator::new(Config {
        trace: true,
        ..Config::default()
    });
    let a = start(&emu);
    assert!(OWN_REGISTRATION.with(|r| r.borrow().is_some()));
    DPCS.set(0);
    emu.fire_message(emu.device_of(a), 0);
    emu.run_dpcs();
    assert_eq!(DPCS.get(), 1);
    assert!(OWN_REGISTRATION.with(|r| r.borrow().is_none()));
    // Still registered: interrupts keep coming.
    emu.fire_message(emu.device_of(a), 0);
    emu.run_dpcs();
    assert_eq!(DPCS.get(), 2);
    let deregistered = |emu: &Emulator| {
        emu.trace()
            .iter()
            .filter(|l| l.contains("interrupt deregistered"))
            .count()
    };
    assert_eq!(deregistered(&emu), 0);
    stop(&emu, a); // unload checks no interrupt is left registered
    assert_eq!(deregistered(&emu), 1, "{:#?}", emu.trace());
}

#[test]
fn item09_a_buffer_listed_twice_is_indicated_once_and_never_written_while_lent() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu);
    LIST_TWICE.set(true);
    WRITE_WHILE_LENT.set(None);
    let frame = [0xFFu8; 64];
    emu.send(a, &[&frame]);
    LIST_TWICE.set(false);
    assert_eq!(emu.received_frames(a), [frame.to_vec()]);
    assert_eq!(WRITE_WHILE_LENT.get(), Some(false));
    stop(&emu, a);
}

#[test]
fn item11_interrupt_shared_state_guarded_by_a_message_outside_the_grant_is_refused() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu);
    let r = catch_unwind(AssertUnwindSafe(|| emu.oid_set(a, OID_SYNCHRONIZE_99, &[])));
    let message = match r {
        Ok(_) => panic!("synchronize with message 99 of a 2-message grant went through"),
        Err(p) => p.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(
        message.contains("guarded by message 99") && message.contains("2 messages"),
        "{message}"
    );
}

#[test]
fn pended_set_completes_from_the_dpc_when_the_device_answers() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu);
    for (result, status) in [
        (Ok(()), sys::NDIS_STATUS_SUCCESS),
        (Err(Status::DEVICE_FAILED), sys::NDIS_STATUS_DEVICE_FAILED),
        // A success status is no failure reason: the request fails plainly.
        (Err(Status::SUCCESS), sys::NDIS_STATUS_FAILURE),
    ] {
        COMPLETE_WITH.set(result);
        let r = emu.oid_set(a, OID_PEND, &[0, 0, 0]);
        assert_eq!(r.status, sys::NDIS_STATUS_PENDING);
        assert!(PENDING.with(|p| p.borrow().is_some()));
        emu.fire_message(emu.device_of(a), 0);
        let done = emu.oid_completion().expect("completed by the DPC");
        assert_eq!(done.status, status);
        let read = if status == sys::NDIS_STATUS_SUCCESS {
            3
        } else {
            0
        };
        assert_eq!(done.bytes_read, read);
    }
    stop(&emu, a);
}

#[test]
fn a_set_completed_before_its_handler_returns_is_answered_directly() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu);
    let r = emu.oid_set(a, OID_PEND, &[1]);
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    assert_eq!(r.bytes_read, 1);
    stop(&emu, a);
}

#[test]
fn a_pended_set_the_driver_forgets_fails_instead_of_hanging() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu);
    let r = emu.oid_set(a, OID_PEND, &[2]);
    assert_eq!(r.status, sys::NDIS_STATUS_FAILURE);
    stop(&emu, a);
}

#[test]
fn item02_a_heap_allocation_in_an_isr_is_an_emulated_bug_check() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu);
    ALLOCATE_IN_ISR.set(true);
    let b = emu.expect_bugcheck(|| {
        emu.fire_message(emu.device_of(a), 0);
    });
    ALLOCATE_IN_ISR.set(false);
    assert_eq!(
        (b.code, b.params[0], b.params[2]),
        (0xC4, rule::ALLOCATION_IRQL, 48),
        "{b}"
    );
    assert!(b.params[1] > 2, "at DIRQL: {b}");
    KEPT_ADAPTER.with(|k| k.borrow_mut().take());
    OWN_REGISTRATION.with(|r| r.borrow_mut().take());
}

#[test]
fn item03_every_framework_heap_allocation_of_initialize_fails_cleanly_with_resources() {
    // Each of the framework's fallible allocations in initialize (adapter state, resource
    // records, the interrupt's state and message table, the pool's entries) failed in turn:
    // initialize fails with NDIS_STATUS_RESOURCES and unload finds nothing leaked.
    let mut n = 1;
    loop {
        let mut config = Config::default();
        config.faults.by_name.push((FALLIBLE_SITE.into(), Some(n)));
        let emu = Emulator::new(config);
        assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
        let r = emu.add_adapter(InterruptResources::msix(2));
        let failed = emu.fallible_calls().contains(&(FALLIBLE_SITE, true));
        match r {
            Err(status) => {
                assert!(
                    failed,
                    "initialize failed without a heap failure: {status:#x}"
                );
                assert_eq!(status, sys::NDIS_STATUS_RESOURCES, "heap failure #{n}");
                KEPT_ADAPTER.with(|k| k.borrow_mut().take());
                OWN_REGISTRATION.with(|r| r.borrow_mut().take());
                emu.unload(); // finds any leak
            }
            Ok(a) => {
                assert!(!failed, "heap failure #{n} was swallowed");
                stop(&emu, a);
                break;
            }
        }
        n += 1;
    }
    assert!(n > 5, "only {} heap allocations in initialize", n - 1);
}

#[test]
fn item08_halt_frees_shared_memory_after_the_interrupt_and_before_the_dma_registration() {
    // The emulator bug-checks shared memory freed after its DMA registration (and leaks, and an
    // interrupt left registered); the framework's release order passes, whatever the field order
    // of the driver's adapter.
    let emu = Emulator::new(Config::default());
    let a = start(&emu);
    // The pool's buffers are shared memory (receive works), freed by the framework at halt.
    emu.send(a, &[&[0xFFu8; 64]]);
    assert_eq!(emu.received_frames(a).len(), 1);
    stop(&emu, a);
}

fn panic_text(r: std::thread::Result<impl Sized>) -> String {
    match r {
        Ok(_) => panic!("went through"),
        Err(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    }
}

#[test]
fn item08_shared_memory_from_another_adapters_dma_registration_is_refused() {
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
    KEEP_DMA.set(true);
    FOREIGN_DMA.set(None);
    let a = emu.add_adapter(InterruptResources::msix(2)).expect("first");
    let b = emu
        .add_adapter(InterruptResources::msix(2))
        .expect("second");
    // The second adapter's initialize allocated from the first one's registration: refused.
    assert_eq!(FOREIGN_DMA.get(), Some(Status::INVALID_PARAMETER));
    for x in [a, b] {
        assert_eq!(emu.pause(x), sys::NDIS_STATUS_SUCCESS);
        emu.halt(x, sys::NdisHaltDeviceDisabled);
    }
    KEPT_ADAPTER.with(|k| k.borrow_mut().take());
    OWN_REGISTRATION.with(|r| r.borrow_mut().take());
    emu.unload();
}

#[test]
fn item11_another_interrupts_shared_state_is_refused() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu);
    let first = OWN_REGISTRATION.with(|r| r.borrow_mut().take());
    OTHER_REGISTRATION.with(|o| *o.borrow_mut() = first);
    let b = emu
        .add_adapter(InterruptResources::msix(2))
        .expect("second");
    let text = panic_text(catch_unwind(AssertUnwindSafe(|| {
        emu.oid_set(b, OID_SYNCHRONIZE_FOREIGN, &[])
    })));
    assert!(text.contains("another interrupt's lock"), "{text}");
    let _ = a;
    OTHER_REGISTRATION.with(|o| o.borrow_mut().take());
    KEPT_ADAPTER.with(|k| k.borrow_mut().take());
    OWN_REGISTRATION.with(|r| r.borrow_mut().take());
}

#[test]
fn item06_a_registration_kept_past_halt_refuses_to_synchronize() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu);
    let kept = OWN_REGISTRATION.with(|r| r.borrow().clone()).expect("kept");
    stop_without_unload(&emu, a);
    // SAFETY: the test thread stands for a passive-level caller.
    let mut passive = unsafe { Passive::assume() };
    let text = panic_text(catch_unwind(AssertUnwindSafe(|| {
        kept.synchronize(&mut passive, &kept.handler().shared, |v, _| *v)
    })));
    assert!(
        text.contains("after the interrupt was deregistered"),
        "{text}"
    );
    drop(kept);
    OWN_REGISTRATION.with(|r| r.borrow_mut().take());
    emu.unload();
}

fn stop_without_unload(emu: &Emulator, a: AdapterId) {
    emu.return_receives(a);
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    KEPT_ADAPTER.with(|k| k.borrow_mut().take());
}
