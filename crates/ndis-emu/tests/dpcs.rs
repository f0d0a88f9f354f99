//! DPC queueing, targeting, throttling, preemption, synchronization and deterministic scheduling.

mod common;
use common::*;
use ndis_emu::{Config, InterruptResources};
use ndis_sys as sys;

#[test]
fn queue_dpc_ex_from_the_isr_runs_one_dpc_per_target_cpu_with_the_driver_context() {
    let emu = emulator(4);
    set(|k| k.isr = IsrMode::QueueDpcEx(0b1100));
    let a = start(&emu, InterruptResources::msix(4));
    emu.fire_message(emu.device_of(a), 0);
    let mut dpcs: Vec<_> = seen()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Dpc {
                cpu,
                message,
                context,
                ..
            } => Some((cpu, message, context)),
            _ => None,
        })
        .collect();
    dpcs.sort();
    assert_eq!(dpcs, vec![(2, Some(0), 0x5A5A), (3, Some(0), 0x5A5A)]);
    stop(&emu, a);
}

#[test]
fn queue_dpc_ex_returns_only_newly_queued_processors() {
    let emu = emulator(4);
    set(|k| k.isr = IsrMode::QueueDpcEx(0b0011));
    let a = start(&emu, InterruptResources::msix(2));
    // Queue from the synchronize function (DIRQL) twice: the second finds both slots queued.
    let handle = interrupt_handle_of_first_adapter();
    RESULTS.with(|r| r.borrow_mut().clear());
    // SAFETY: the live interrupt handle; the function and context are valid.
    unsafe { sys::NdisMSynchronizeWithInterruptEx(handle, 1, Some(queue_twice), handle) };
    assert_eq!(RESULTS.with(|r| r.borrow().clone()), vec![0b0011, 0b0000]);
    let dpcs = seen()
        .iter()
        .filter(|s| {
            matches!(
                s,
                Seen::Dpc {
                    message: Some(1),
                    ..
                }
            )
        })
        .count();
    assert_eq!(dpcs, 2, "each slot ran once: {:?}", seen());
    stop(&emu, a);
}

thread_local! {
    static RESULTS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    static HANDLE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn interrupt_handle_of_first_adapter() -> sys::NDIS_HANDLE {
    // The emulator hands out interrupt handles in order; the first one.
    0x4E44_4900_0001usize as sys::NDIS_HANDLE
}

unsafe extern "win64-unwind" fn queue_twice(ctx: sys::PVOID) -> sys::BOOLEAN {
    for _ in 0..2 {
        let mut ga = sys::GROUP_AFFINITY {
            Mask: 0b0011,
            Group: 0,
            Reserved: [0; 3],
        };
        // SAFETY: ctx is the live interrupt handle.
        let r = unsafe { sys::NdisMQueueDpcEx(ctx, 1, &mut ga, std::ptr::null_mut()) };
        ndis_emu::instrumentation(|| RESULTS.with(|x| x.borrow_mut().push(r)));
    }
    1
}

#[test]
fn more_nbls_pending_requeues_the_dpc_until_the_work_drains() {
    let emu = emulator_with(Config {
        cpus: 2,
        max_nbls_per_dpc: 16,
        trace: true,
        ..Config::default()
    });
    set(|k| k.more_pending = 3);
    let a = start(&emu, InterruptResources::msix(1));
    emu.fire_message(emu.device_of(a), 0);
    let dpcs: Vec<_> = seen()
        .into_iter()
        .filter(|s| matches!(s, Seen::Dpc { .. }))
        .collect();
    assert_eq!(dpcs.len(), 4, "1 + 3 requeues: {dpcs:?}");
    assert!(dpcs.iter().all(|d| matches!(
        d,
        Seen::Dpc {
            cpu: 0,
            max_nbls: 16,
            ..
        }
    )));
    let requeued = emu
        .trace()
        .iter()
        .filter(|l| l.ends_with("MoreNblsPending, requeued"))
        .count();
    assert_eq!(requeued, 3);
    stop(&emu, a);
}

#[test]
fn a_dpc_that_never_drains_trips_the_dpc_watchdog() {
    let emu = emulator_with(Config {
        cpus: 1,
        dpc_requeue_limit: 100,
        ..Config::default()
    });
    set(|k| k.more_pending = u32::MAX);
    let a = start(&emu, InterruptResources::msix(1));
    let b = emu.expect_bugcheck(|| {
        emu.fire_message(emu.device_of(a), 0);
    });
    assert_eq!(b.code, ndis_emu::DPC_WATCHDOG_VIOLATION);
    assert_eq!(b.params[0], 1);
}

#[test]
fn an_interrupt_preempts_a_dpc_on_the_same_processor() {
    let emu = emulator(1);
    set(|k| k.stall_in_dpc = true);
    let a = start(&emu, InterruptResources::msix(2));
    let dev = emu.device_of(a);
    // Message 1 is asserted but not yet delivered; message 0 fires, and its DPC stalls (a
    // preemption point): message 1's DIRQL is above DISPATCH_LEVEL, so its ISR runs right there.
    emu.assert_pending(dev, Some(1), 0);
    emu.fire_message(dev, 0);
    let order = seen();
    let first_dpc = order.iter().position(|s| {
        matches!(
            s,
            Seen::Dpc {
                message: Some(0),
                ..
            }
        )
    });
    let isr1 = order.iter().position(|s| {
        matches!(
            s,
            Seen::Isr {
                message: Some(1),
                ..
            }
        )
    });
    let end0 = order.iter().position(|s| matches!(s, Seen::DpcEnd { .. }));
    assert!(
        first_dpc.is_some() && isr1.is_some() && end0.is_some(),
        "{order:?}"
    );
    assert!(
        first_dpc < isr1 && isr1 < end0,
        "ISR of message 1 must run inside the DPC of message 0: {order:?}"
    );
    stop(&emu, a);
}

#[test]
fn synchronize_runs_at_dirql_under_the_lock_and_returns_the_functions_value() {
    let emu = emulator(2);
    set(|_| {});
    let a = start(&emu, InterruptResources::msix(2));
    let h = interrupt_handle_of_first_adapter();
    // SAFETY: a live handle, valid function.
    let r =
        unsafe { sys::NdisMSynchronizeWithInterruptEx(h, 1, Some(sync_fn), std::ptr::null_mut()) };
    assert_eq!(r, 0x5A);
    let line = emu
        .trace()
        .into_iter()
        .find(|l| l.contains("synchronize msg 1"))
        .unwrap();
    let irql: u8 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(
        irql as u32,
        grant().entries[1].0 >> 4,
        "runs at the message's DIRQL: {line}"
    );
    stop(&emu, a);
}

#[test]
fn deregistration_runs_interrupts_in_flight_and_drains_their_dpcs_before_returning() {
    let emu = emulator(2);
    set(|_| {});
    let a = start(&emu, InterruptResources::msix(2));
    emu.assert_pending(emu.device_of(a), Some(1), 1);
    emu.pause_if_running(a);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    let s = seen();
    assert!(
        s.contains(&Seen::Isr {
            cpu: 1,
            message: Some(1)
        }),
        "{s:?}"
    );
    assert!(
        s.iter().any(|x| matches!(
            x,
            Seen::Dpc {
                cpu: 1,
                message: Some(1),
                ..
            }
        )),
        "{s:?}"
    );
    emu.unload();
}

trait PauseIfRunning {
    fn pause_if_running(&self, a: ndis_emu::AdapterId);
}
impl PauseIfRunning for ndis_emu::Emulator {
    fn pause_if_running(&self, a: ndis_emu::AdapterId) {
        if self.adapter_state(a) == ndis_emu::AdapterState::Running {
            self.pause(a);
        }
    }
}

fn interleaved_trace(seed: u64) -> Vec<String> {
    let emu = emulator_with(Config {
        cpus: 4,
        seed,
        interleave_dpcs: true,
        trace: true,
        ..Config::default()
    });
    set(|k| {
        k.isr = IsrMode::QueueDpcEx(0b1111);
        k.stall_in_dpc = true;
    });
    let a = start(
        &emu,
        InterruptResources::Line {
            line: 1,
            shared: false,
        },
    );
    for _ in 0..8 {
        emu.fire_line(emu.device_of(a));
    }
    let t = emu.trace();
    stop(&emu, a);
    t
}

#[test]
fn the_same_seed_replays_the_same_interleaving_and_another_seed_explores_another() {
    let a = interleaved_trace(7);
    assert_eq!(a, interleaved_trace(7));
    let differs = (8..16).any(|s| interleaved_trace(s) != a);
    assert!(differs, "eight other seeds all produced the same schedule");
}
