//! Models of [`NdisAdapter`]'s rundown, gate and link reports (`--cfg loom`; see
//! docs/architecture.md). The NDIS calls they make are recorded
//! ([`crate::sync::recorder`]), and the models read the log.

use alloc::vec::Vec;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use loom::thread;

use super::NdisAdapter;
use crate::adapter::AdapterHandle;
use crate::irql::{DispatchOrBelow, Passive};
use crate::sync::recorder::{Event, events, model, record};

fn adapter() -> Arc<NdisAdapter> {
    // SAFETY: a null handle that reaches no NDIS function: the models record the calls.
    Arc::new(NdisAdapter::new(unsafe {
        AdapterHandle::from_raw(core::ptr::null_mut())
    }))
}

/// A DPC's IRQL token.
fn dpc() -> DispatchOrBelow<'static> {
    // SAFETY: the model's threads stand for DPCs.
    unsafe { DispatchOrBelow::assume(true) }
}

/// What the handle stands for: live until halt returns, when NDIS frees the adapter. Loom fails
/// the model if a call through the handle could overlap or follow the free.
struct Handle(UnsafeCell<bool>);
// SAFETY: the accesses are what the model checks (loom reports any race).
unsafe impl Sync for Handle {}

/// Two DPCs call into NDIS through the handle (`while_live`) while halt runs down the adapter:
/// after `run_down` returns no call is running, and none starts.
#[test]
fn loom_rundown_halt_waits_for_calls_and_refuses_new_ones() {
    model(|| {
        let adapter = adapter();
        let handle = Arc::new(Handle(UnsafeCell::new(true)));
        let calls: [_; 2] = core::array::from_fn(|_| {
            let (adapter, handle) = (adapter.clone(), handle.clone());
            thread::spawn(move || {
                adapter.while_live(|| {
                    // SAFETY: a read of the handle's state, checked by loom.
                    let live = handle.0.with(|h| unsafe { *h });
                    assert!(live, "a call through the handle after halt");
                })
            })
        });
        adapter.run_down();
        assert!(adapter.is_halted());
        // NDIS frees the adapter once MiniportHaltEx returned.
        // SAFETY: the write is checked by loom against the calls' reads.
        handle.0.with_mut(|h| unsafe { *h = false });
        assert!(adapter.while_live(|| ()).is_none());
        for t in calls {
            t.join().unwrap();
        }
    });
}

fn note(what: &'static str) {
    record(Event::Note(what));
}

/// A send on a DPC (`MiniportSendNetBufferLists`).
fn send(adapter: &NdisAdapter) {
    if adapter.begin_send().is_ok() {
        note("send");
        note("send done");
        adapter.end_send();
    }
}

/// An indication of one list on a DPC; with `return_inside`, the protocols return it inside
/// the indicate call. Tells `lent` (1) when the list went up, else (2) that it did not.
fn indicate(adapter: &NdisAdapter, return_inside: bool, lent: &AtomicUsize) {
    if adapter.begin_indication(1) {
        note("indicate");
        lent.store(1, Ordering::Release);
        if return_inside {
            note("return");
            adapter.receives_returned(1);
        }
        note("indicate done");
        adapter.end_indication();
    } else {
        lent.store(2, Ordering::Release);
    }
}

/// `MiniportPause` on the model's main thread; true if it returned PENDING.
fn pause(adapter: &NdisAdapter) -> bool {
    note("pause");
    adapter.begin_pause();
    // The driver's MiniportPause runs here.
    let idle = adapter.pause_returned();
    note(if idle { "SUCCESS" } else { "PENDING" });
    !idle
}

/// The log of one execution: `NdisMPauseComplete` was called once if the pause returned
/// PENDING and never if it returned SUCCESS, and after the pause began; when it was (or when
/// SUCCESS was decided) no indication or send was under way and no list was lent, and none
/// started afterwards.
fn check_pause(log: &[Event], pended: bool) {
    let completions = log.iter().filter(|e| **e == Event::PauseComplete).count();
    assert_eq!(
        completions,
        usize::from(pended),
        "NdisMPauseComplete {completions} times for a pause that returned {}: {log:?}",
        if pended { "PENDING" } else { "SUCCESS" }
    );
    let (mut indicating, mut lent, mut sending) = (0, 0, 0);
    let (mut paused, mut done) = (false, false);
    for e in log {
        match e {
            Event::Note("indicate") => (indicating, lent) = (indicating + 1, lent + 1),
            Event::Note("return") => lent -= 1,
            Event::Note("indicate done") => indicating -= 1,
            Event::Note("send") => sending += 1,
            Event::Note("send done") => sending -= 1,
            Event::Note("hold") => sending += 1,
            Event::Note("held done") => sending -= 1,
            Event::Note("pause") => paused = true,
            Event::PauseComplete | Event::Note("SUCCESS") => {
                assert!(paused, "completed before the pause began: {log:?}");
                assert_eq!(
                    (indicating, lent, sending),
                    (0, 0, 0),
                    "paused while busy: {log:?}"
                );
                done = true;
            }
            _ => {}
        }
        if let Event::Note("indicate" | "send") = e {
            assert!(
                !done,
                "an indication or send began on a paused adapter: {log:?}"
            );
        }
    }
}

fn running_adapter() -> Arc<NdisAdapter> {
    let adapter = adapter();
    adapter.set_running(true);
    adapter
}

/// A pause races an indication (whose lists come back inside the indicate call) and a send.
#[test]
fn loom_gate_pause_vs_indication_and_send() {
    model(|| {
        let adapter = running_adapter();
        let indication = {
            let adapter = adapter.clone();
            thread::spawn(move || indicate(&adapter, true, &AtomicUsize::new(0)))
        };
        let sender = {
            let adapter = adapter.clone();
            thread::spawn(move || send(&adapter))
        };
        let pended = pause(&adapter);
        indication.join().unwrap();
        sender.join().unwrap();
        check_pause(&events(), pended);
    });
}

/// A pause races an indication whose list NDIS returns later, on another processor.
#[test]
fn loom_gate_pause_vs_indication_and_late_return() {
    model(|| {
        let adapter = running_adapter();
        let lent = Arc::new(AtomicUsize::new(0));
        let indication = {
            let (adapter, lent) = (adapter.clone(), lent.clone());
            thread::spawn(move || indicate(&adapter, false, &lent))
        };
        let ndis = {
            let (adapter, lent) = (adapter.clone(), lent.clone());
            thread::spawn(move || {
                loop {
                    match lent.load(Ordering::Acquire) {
                        0 => thread::yield_now(),
                        1 => break,
                        _ => return,
                    }
                }
                note("return");
                adapter.receives_returned(1);
            })
        };
        let pended = pause(&adapter);
        indication.join().unwrap();
        ndis.join().unwrap();
        check_pause(&events(), pended);
    });
}

/// A send call that holds its list past the call (as a driver whose ring is full or whose
/// device still reads the frame does) and completes it later, from a DPC on another processor;
/// tells `held` (1) once it holds it, (2) if the call was refused.
fn send_and_hold(adapter: &NdisAdapter, held: &AtomicUsize) {
    if adapter.begin_send().is_ok() {
        note("send");
        note("hold");
        adapter.hold_send();
        held.store(1, Ordering::Release);
        note("send done");
        adapter.end_send();
    } else {
        held.store(2, Ordering::Release);
    }
}

/// A pause races a send whose list the driver holds and completes later on another processor
/// (the device finished with it): the pause completes only after the held list did.
#[test]
fn loom_gate_pause_waits_for_a_list_held_past_its_call() {
    model(|| {
        let adapter = running_adapter();
        let held = Arc::new(AtomicUsize::new(0));
        let sender = {
            let (adapter, held) = (adapter.clone(), held.clone());
            thread::spawn(move || send_and_hold(&adapter, &held))
        };
        let dpc = {
            let (adapter, held) = (adapter.clone(), held.clone());
            thread::spawn(move || {
                loop {
                    match held.load(Ordering::Acquire) {
                        0 => thread::yield_now(),
                        1 => break,
                        _ => return,
                    }
                }
                note("held done");
                adapter.release_sends(super::SEND_HELD);
            })
        };
        let pended = pause(&adapter);
        sender.join().unwrap();
        dpc.join().unwrap();
        check_pause(&events(), pended);
        assert_eq!(adapter.held_sends(), 0);
    });
}

/// Two send calls on two processors (the lock-free gate's admission) race a pause: each is
/// admitted or refused as a whole, and the pause completes once, after both.
#[test]
fn loom_gate_pause_vs_two_lock_free_sends() {
    model(|| {
        let adapter = running_adapter();
        let senders: [_; 2] = core::array::from_fn(|_| {
            let adapter = adapter.clone();
            thread::spawn(move || send(&adapter))
        });
        let pended = pause(&adapter);
        for t in senders {
            t.join().unwrap();
        }
        check_pause(&events(), pended);
    });
}

/// Restart reopens the gate while a send arrives: a send is refused (PAUSED) or admitted, and
/// once restart returned every send is admitted.
#[test]
fn loom_gate_restart_vs_send() {
    model(|| {
        let adapter = adapter();
        let sender = {
            let adapter = adapter.clone();
            thread::spawn(move || match adapter.begin_send() {
                Ok(()) => adapter.end_send(),
                Err(s) => assert_eq!(s, crate::Status::PAUSED),
            })
        };
        adapter.set_running(true);
        assert!(adapter.begin_send().is_ok(), "refused after restart");
        adapter.end_send();
        sender.join().unwrap();
        assert_eq!(adapter.sends.load(Ordering::Acquire), 0);
    });
}

/// How NDIS sees `(up, speed)` (`NDIS_LINK_STATE`: the speed of a link that is down is
/// unknown).
fn told(state: (bool, u64)) -> Event {
    Event::LinkState(state.0, if state.0 { state.1 } else { u64::MAX })
}

/// The link indications of one execution, after the general attributes told NDIS `initial`:
/// never the same state twice in a row, and the last one (or `initial`) is `latest`.
fn check_link(log: &[Event], initial: (bool, u64), latest: (bool, u64)) {
    let mut now = told(initial);
    for e in log.iter().filter(|e| matches!(e, Event::LinkState(..))) {
        assert_ne!(*e, now, "the same link state twice in a row: {log:?}");
        now = *e;
    }
    assert_eq!(
        now,
        told(latest),
        "NDIS was left with a stale link state: {log:?}"
    );
}

const INITIAL: (bool, u64) = (true, 1_000);

/// The adapter once initialize set the general attributes (link `INITIAL`).
fn initialized_adapter() -> Arc<NdisAdapter> {
    let adapter = adapter();
    // SAFETY: the model's main thread stands for MiniportInitializeEx.
    let passive = unsafe { Passive::assume() };
    let state = adapter.link_for_attributes(INITIAL, &passive);
    adapter.attributes_told(state, &passive);
    adapter
}

/// Two DPCs report different link states at once (`indicate_link_state`), one of them twice:
/// NDIS ends up told the latest, never the same state twice in a row.
#[test]
fn loom_link_concurrent_reports() {
    model(|| {
        let adapter = initialized_adapter();
        let other = {
            let adapter = adapter.clone();
            thread::spawn(move || adapter.indicate_link_state(false, 0, &dpc()))
        };
        adapter.indicate_link_state(true, 10_000, &dpc());
        adapter.indicate_link_state(true, 1_000, &dpc());
        other.join().unwrap();
        check_link(&events(), INITIAL, adapter.link());
    });
}

fn pack((up, speed): (bool, u64)) -> u64 {
    speed | (u64::from(up) << 63)
}

fn unpack(v: u64) -> (bool, u64) {
    (v >> 63 != 0, v & !(1 << 63))
}

/// Two DPCs see the device's link change (`link_changed`, reading the device's state): NDIS
/// ends up told the device's last state, that is a read made after the last change.
#[test]
fn loom_link_changed_reports_a_read_after_the_last_change() {
    model(|| {
        let adapter = initialized_adapter();
        let device = Arc::new(AtomicU64::new(pack(INITIAL)));
        let change = |adapter: &NdisAdapter, device: &AtomicU64, state| {
            device.store(pack(state), Ordering::SeqCst);
            adapter.link_changed(|| unpack(device.load(Ordering::SeqCst)), &dpc());
        };
        let other = {
            let (adapter, device) = (adapter.clone(), device.clone());
            thread::spawn(move || change(&adapter, &device, (false, 0)))
        };
        change(&adapter, &device, (true, 10_000));
        other.join().unwrap();
        let last = unpack(device.load(Ordering::SeqCst));
        let log: Vec<Event> = events();
        check_link(&log, INITIAL, last);
    });
}
