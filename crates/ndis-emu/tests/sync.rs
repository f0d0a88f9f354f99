//! Spin locks, timers on the virtual clock, and status indications. The raw test driver runs a
//! per-test closure in initialize and in halt.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use ndis_emu::{Config, Emulator, InterruptResources, rule};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[path = "support/scripted_driver.rs"]
mod scripted_driver;
use scripted_driver::ON_INIT;

thread_local! {
    static TIMER: Cell<usize> = const { Cell::new(0) };
    static FIRED: RefCell<Vec<(u32, usize)>> = const { RefCell::new(Vec::new()) };
}

unsafe extern "win64-unwind" fn entry(
    o: sys::PDRIVER_OBJECT,
    p: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    // SAFETY: DriverEntry's own arguments.
    unsafe { scripted_driver::register(o, p, &scripted_driver::characteristics()) }
}

fn start(
    init: impl Fn(sys::NDIS_HANDLE) + 'static,
    halt: impl Fn(sys::NDIS_HANDLE) + 'static,
) -> (Emulator, ndis_emu::AdapterId) {
    FIRED.with(|f| f.borrow_mut().clear());
    scripted_driver::start(entry, init, halt)
}

fn stop(emu: &Emulator, a: ndis_emu::AdapterId) {
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

/// Something PASSIVE_LEVEL-only, to observe the IRQL from inside the driver.
fn passive_only_call(h: sys::NDIS_HANDLE) {
    // SAFETY: a deregistration of an interrupt that does not exist would bug-check on the handle;
    // NdisMSetMiniportAttributes with a zero header checks the IRQL first, which is what we need.
    unsafe {
        let mut attributes: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = std::mem::zeroed();
        attributes.Header = sys::NDIS_OBJECT_HEADER {
            Type: 0x42,
            Revision: 1,
            Size: 4,
        };
        sys::NdisMSetMiniportAttributes(h, &mut attributes);
    }
}

#[test]
fn a_spin_lock_raises_to_dispatch_and_its_release_restores_the_irql() {
    let lock =
        Box::leak(Box::new(sys::NDIS_SPIN_LOCK::default())) as *mut sys::NDIS_SPIN_LOCK as usize;
    // Acquire, release, then a PASSIVE_LEVEL-only call: fine.
    let (emu, a) = start(
        move |h| {
            let lock = lock as *mut sys::NDIS_SPIN_LOCK;
            // SAFETY: a valid lock, acquired and released once.
            unsafe {
                sys::NdisAllocateSpinLock(lock);
                sys::NdisAcquireSpinLock(lock);
                sys::NdisReleaseSpinLock(lock);
                sys::NdisFreeSpinLock(lock);
            }
            passive_only_call(h);
        },
        |_| {},
    );
    stop(&emu, a);
    drop(emu);
    // The same call while holding the lock: IRQL 2, so the PASSIVE_LEVEL rule fires.
    ON_INIT.with(|f| {
        *f.borrow_mut() = Some(Box::new(move |h| {
            let lock = lock as *mut sys::NDIS_SPIN_LOCK;
            // SAFETY: a valid lock.
            unsafe { sys::NdisAcquireSpinLock(lock) };
            passive_only_call(h);
        }))
    });
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(entry), 0);
    let b = emu.expect_bugcheck(|| {
        let _ = emu.add_adapter(InterruptResources::None);
    });
    assert_eq!(
        (b.code, b.params[0], b.params[1], b.params[2]),
        (0xC4, rule::IRQL, 2, 0)
    );
}

fn expect_spin_bugcheck(script: impl Fn(*mut sys::NDIS_SPIN_LOCK) + 'static) -> ndis_emu::BugCheck {
    let lock =
        Box::leak(Box::new(sys::NDIS_SPIN_LOCK::default())) as *mut sys::NDIS_SPIN_LOCK as usize;
    ON_INIT.with(|f| {
        *f.borrow_mut() = Some(Box::new(move |_h| script(lock as *mut sys::NDIS_SPIN_LOCK)))
    });
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(entry), 0);
    emu.expect_bugcheck(|| {
        let _ = emu.add_adapter(InterruptResources::None);
    })
}

#[test]
fn acquiring_a_spin_lock_twice_on_one_processor_is_caught() {
    // SAFETY: deliberately wrong use of a valid lock.
    let b = expect_spin_bugcheck(|l| unsafe {
        sys::NdisAcquireSpinLock(l);
        sys::NdisAcquireSpinLock(l);
    });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::SPIN_LOCK));
    assert!(b.message.contains("already holds"), "{b}");
}

#[test]
fn releasing_a_spin_lock_that_is_not_held_is_caught() {
    // SAFETY: deliberately wrong use of a valid lock.
    let b = expect_spin_bugcheck(|l| unsafe { sys::NdisReleaseSpinLock(l) });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::SPIN_LOCK));
}

#[test]
fn returning_from_a_callback_with_a_spin_lock_held_is_caught() {
    // SAFETY: deliberately wrong use of a valid lock.
    let b = expect_spin_bugcheck(|l| unsafe { sys::NdisAcquireSpinLock(l) });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::SPIN_LOCK));
    assert!(b.message.contains("returned holding"), "{b}");
}

#[test]
fn the_dpr_variant_at_passive_level_is_an_irql_violation() {
    // SAFETY: deliberately wrong IRQL for a valid lock.
    let b = expect_spin_bugcheck(|l| unsafe { sys::NdisDprAcquireSpinLock(l) });
    assert_eq!((b.code, b.params[0], b.params[1]), (0xC4, rule::IRQL, 0));
}

unsafe extern "win64-unwind" fn on_timer(
    _s1: sys::PVOID,
    context: sys::PVOID,
    _s2: sys::PVOID,
    _s3: sys::PVOID,
) {
    // SAFETY: a null out-pointer is allowed.
    let cpu = unsafe { sys::KeGetCurrentProcessorNumberEx(std::ptr::null_mut()) };
    ndis_emu::instrumentation(|| FIRED.with(|f| f.borrow_mut().push((cpu, context as usize))));
}

fn allocate_timer(h: sys::NDIS_HANDLE) -> sys::NDIS_HANDLE {
    let mut chars = sys::NDIS_TIMER_CHARACTERISTICS {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: 0x97,
            Revision: 1,
            Size: 24,
        },
        AllocationTag: u32::from_le_bytes(*b"tmr "),
        TimerFunction: Some(on_timer),
        FunctionContext: 7 as sys::PVOID,
    };
    let mut timer: sys::NDIS_HANDLE = std::ptr::null_mut();
    // SAFETY: valid characteristics and out-pointer.
    let status = unsafe { sys::NdisAllocateTimerObject(h, &mut chars, &mut timer) };
    assert_eq!(status, 0);
    TIMER.set(timer as usize);
    timer
}

fn free_timer(_h: sys::NDIS_HANDLE) {
    let timer = TIMER.get() as sys::NDIS_HANDLE;
    // SAFETY: the timer allocated in initialize.
    unsafe {
        sys::NdisCancelTimerObject(timer);
        sys::NdisFreeTimerObject(timer);
    }
}

#[test]
fn a_one_shot_timer_fires_once_when_its_time_comes() {
    let (emu, a) = start(
        |h| {
            let t = allocate_timer(h);
            // SAFETY: a live timer; 10 ms relative (100 ns units, negative).
            let was_queued =
                unsafe { sys::NdisSetTimerObject(t, -100_000, 0, std::ptr::null_mut()) };
            assert_eq!(was_queued, 0);
        },
        free_timer,
    );
    emu.advance_time(Duration::from_millis(9));
    assert!(FIRED.with(|f| f.borrow().is_empty()), "not yet due");
    emu.advance_time(Duration::from_millis(1));
    emu.advance_time(Duration::from_millis(100));
    assert_eq!(
        FIRED.with(|f| f.borrow().clone()),
        vec![(0, 7)],
        "once, with the characteristics' context"
    );
    stop(&emu, a);
}

#[test]
fn a_periodic_timer_fires_every_period_with_its_own_context() {
    let (emu, a) = start(
        |h| {
            let t = allocate_timer(h);
            // SAFETY: a live timer: first in 5 ms, then every 20 ms, context 9.
            unsafe { sys::NdisSetTimerObject(t, -50_000, 20, 9 as sys::PVOID) };
        },
        free_timer,
    );
    emu.advance_time(Duration::from_millis(66));
    assert_eq!(FIRED.with(|f| f.borrow().len()), 4, "at 5, 25, 45, 65 ms");
    assert!(FIRED.with(|f| f.borrow().iter().all(|&(_, c)| c == 9)));
    stop(&emu, a);
}

#[test]
fn cancel_and_set_report_whether_the_timer_was_queued() {
    let (emu, a) = start(
        |h| {
            let t = allocate_timer(h);
            // SAFETY: a live timer.
            unsafe {
                assert_eq!(
                    sys::NdisSetTimerObject(t, -1_000_000, 0, std::ptr::null_mut()),
                    0
                );
                assert_eq!(
                    sys::NdisSetTimerObject(t, -1_000_000, 0, std::ptr::null_mut()),
                    1,
                    "already queued"
                );
                assert_eq!(sys::NdisCancelTimerObject(t), 1);
                assert_eq!(sys::NdisCancelTimerObject(t), 0, "nothing left to cancel");
            }
        },
        free_timer,
    );
    emu.advance_time(Duration::from_secs(1));
    assert!(FIRED.with(|f| f.borrow().is_empty()));
    stop(&emu, a);
}

#[test]
fn halting_with_a_timer_still_set_is_caught() {
    let (emu, a) = start(
        |h| {
            let t = allocate_timer(h);
            // SAFETY: a live timer.
            unsafe { sys::NdisSetTimerObject(t, -1_000_000, 0, std::ptr::null_mut()) };
        },
        |_| {},
    );
    let b = emu.expect_bugcheck(|| emu.halt(a, sys::NdisHaltDeviceDisabled));
    assert_eq!((b.code, b.params[0], b.params[2]), (0xC4, rule::TIMER, 1));
}

#[test]
fn a_timer_object_never_freed_is_caught_at_unload() {
    let (emu, a) = start(
        |h| {
            allocate_timer(h);
        },
        |_| {},
    );
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    let b = emu.expect_bugcheck(|| emu.unload());
    assert_eq!(
        (b.code, b.params[0], b.params[1]),
        (0xC4, rule::UNLOAD_WITH_OUTSTANDING_OBJECTS, 1)
    );
}

fn indicate_link(h: sys::NDIS_HANDLE, header_type: u8) {
    let mut link = sys::NDIS_LINK_STATE {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: header_type,
            Revision: 1,
            Size: 40,
        },
        MediaConnectState: sys::MediaConnectStateConnected,
        MediaDuplexState: sys::MediaDuplexStateFull,
        XmitLinkSpeed: 10_000_000_000,
        RcvLinkSpeed: 10_000_000_000,
        PauseFunctions: 0,
        AutoNegotiationFlags: 0,
    };
    let mut ind = sys::NDIS_STATUS_INDICATION {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: 0x98,
            Revision: 1,
            Size: 112,
        },
        SourceHandle: h,
        PortNumber: 0,
        StatusCode: sys::NDIS_STATUS_LINK_STATE,
        Flags: 0,
        DestinationHandle: std::ptr::null_mut(),
        RequestId: std::ptr::null_mut(),
        StatusBuffer: (&raw mut link).cast(),
        StatusBufferSize: 40,
        Guid: sys::GUID::default(),
        NdisReserved: [std::ptr::null_mut(); 4],
    };
    // SAFETY: a valid indication whose buffer lives across the call.
    unsafe { sys::NdisMIndicateStatusEx(h, &mut ind) };
}

#[test]
fn a_link_state_indication_is_decoded() {
    let (emu, a) = start(|h| indicate_link(h, 0x80), |_| {});
    assert_eq!(
        emu.link_state(a),
        Some(ndis_emu::LinkState {
            connected: true,
            full_duplex: true,
            xmit_speed: 10_000_000_000,
            rcv_speed: 10_000_000_000
        })
    );
    let all = emu.status_indications(a);
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].0, all[0].1.len()),
        (sys::NDIS_STATUS_LINK_STATE, 40)
    );
    stop(&emu, a);
}

#[test]
fn a_link_state_without_a_valid_header_is_7c_21() {
    ON_INIT.with(|f| *f.borrow_mut() = Some(Box::new(|h| indicate_link(h, 0x42))));
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(entry), 0);
    let b = emu.expect_bugcheck(|| {
        let _ = emu.add_adapter(InterruptResources::None);
    });
    assert_eq!((b.code, b.params[0]), (0x7C, 0x21));
}

#[test]
fn a_stall_advances_the_clock_but_a_timer_fires_only_when_the_test_advances_it() {
    let (emu, a) = start(
        |h| {
            let t = allocate_timer(h);
            // SAFETY: a live timer; 5 µs relative (100 ns units, negative).
            unsafe { sys::NdisSetTimerObject(t, -50, 0, std::ptr::null_mut()) };
        },
        free_timer,
    );
    let mut frequency = 0i64;
    // SAFETY: plain calls; a valid out-pointer.
    let before = unsafe { sys::KeQueryPerformanceCounter(&mut frequency) };
    // SAFETY: a plain call (a busy wait of 10 µs).
    unsafe { sys::KeStallExecutionProcessor(10) };
    // SAFETY: as above.
    let after = unsafe { sys::KeQueryPerformanceCounter(&mut frequency) };
    assert!(
        after - before >= 100,
        "10 µs of 100 ns ticks passed: {before} -> {after}"
    );
    assert!(
        FIRED.with(|f| f.borrow().is_empty()),
        "the stall fires no timer"
    );
    // The timer is overdue: the next advance, however short, fires it.
    emu.advance_time(Duration::ZERO);
    assert_eq!(FIRED.with(|f| f.borrow().clone()), vec![(0, 7)]);
    stop(&emu, a);
}
