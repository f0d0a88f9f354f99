//! The power-management and surprise-removal contract of the framework (items 1, 2 and 4 of the
//! lifecycle issue), on a loopback NIC with one register window and a shared line: every frame
//! sent comes back as a receive, so traffic before and after each transition is checked
//! byte-exact. Thread-local knobs make the driver misbehave the ways the emulator must catch.
#![cfg(not(windows))]

use std::cell::{Cell, RefCell};

use ndis::NdisVersion;
use ndis::Status;
use ndis::driver::MiniportDriver;
use ndis::hw::Registers;
use ndis::interrupt::{
    DpcContext, InterruptHandler, InterruptRegistration, IsrContext, IsrOutcome,
};
use ndis::io::IoSpace;
use ndis::irql::{DispatchOrBelow, Passive};
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, PnpEvent, Quiesced};
use ndis::nbl::{ReceivePool, Returned, SendLists};
use ndis::oid::{PendingOid, SetRequest};
use ndis::power::{DevicePowerState, PowerCapabilities};
use ndis::sync::SpinLock;
use ndis_emu::{AdapterId, Config, Emulator, InterruptResources, SystemSleep, WakeError, rule};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

const BUFFER: usize = 2048;
const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x50];
/// The plain function's registers: "enabled" at 0 (1 while the device runs), "cause" at 4.
const ENABLED: usize = 0;
const CAUSE: usize = 4;
/// The shared line of these tests.
const LINE: InterruptResources = InterruptResources::Line {
    line: 7,
    shared: true,
};

#[derive(Default)]
struct Log {
    power_down: Vec<DevicePowerState>,
    power_up: usize,
    line_claims: usize,
    /// power_up fails with this.
    fail_d0: Option<Status>,
    /// return_receives writes a register (wrong while out of D0).
    touch_on_return: bool,
    /// Sets of the packet filter are pended (the device "answers" later).
    pend_filter: bool,
    /// halt touches a register (wrong after surprise removal).
    touch_on_halt: bool,
    /// Whether the driver saw the removal.
    removed: bool,
}

thread_local! {
    static LOG: RefCell<Log> = RefCell::new(Log::default());
    static PENDED: RefCell<Option<PendingOid>> = const { RefCell::new(None) };
    static NPOS: Cell<bool> = const { Cell::new(false) };
}

fn log<R>(f: impl FnOnce(&mut Log) -> R) -> R {
    LOG.with(|l| f(&mut l.borrow_mut()))
}

pub struct Irq {
    regs: IoSpace,
}

impl InterruptHandler for Irq {
    type Queue = ();
    const MSI_SUPPORTED: bool = false;
    fn queues(&self) -> &[()] {
        &[()]
    }
    fn line_claim(&self, _ctx: &IsrContext<'_>) -> bool {
        log(|l| l.line_claims += 1);
        self.regs.read32(CAUSE) != 0
    }
    fn isr(&self, _q: &(), _c: &IsrContext<'_>) -> IsrOutcome {
        IsrOutcome::Handled
    }
    fn dpc(&self, _q: &(), _c: &mut DpcContext<'_>) {}
}

/// `NPOS`: the driver declares NO_PAUSE_ON_SUSPEND.
pub struct Nic<const NPOS: bool> {
    regs: IoSpace,
    pool: ReceivePool,
    _interrupt: InterruptRegistration<Irq>,
    /// Buffers returned while out of D0, kept for the device until D0 (what a NIC would post).
    parked: SpinLock<Vec<usize>>,
}

fn initialize<const NPOS: bool>(init: &mut Init<'_>) -> Result<(Nic<NPOS>, AdapterInfo), Status> {
    let range = init
        .resources()
        .memory()
        .next()
        .ok_or(Status::RESOURCE_CONFLICT)?;
    let regs = init.map(range)?;
    let interrupt = init.register_interrupt(Irq { regs: regs.clone() })?;
    let dma = init.register_dma(BUFFER as u32)?;
    let pool = ReceivePool::new(init, &dma, BUFFER, 16)?;
    regs.write32(ENABLED, 1);
    let nic = Nic {
        regs,
        pool,
        _interrupt: interrupt,
        parked: SpinLock::new(Vec::new()),
    };
    Ok((nic, AdapterInfo::ethernet(MAC, 1500, 1_000_000_000, true)))
}

impl<const NPOS: bool> Miniport for Nic<NPOS> {
    const POWER: Option<PowerCapabilities> = Some(PowerCapabilities {
        no_pause_on_suspend: NPOS,
        ..PowerCapabilities::D3
    });

    fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, irql: &mut DispatchOrBelow<'_>) {
        lists.each(|nbl| {
            let mut frames = Vec::new();
            let mut scratch = [0u8; BUFFER];
            for frame in nbl.frames() {
                let (Some(len), Some(index)) =
                    (frame.copy_to(&mut scratch), self.pool.claim_any(0))
                else {
                    continue;
                };
                assert!(self.pool.write(index, 0, &scratch[..len]));
                frames.push((index, 0, len));
            }
            self.pool
                .indicate(&frames, irql, |index| self.pool.release(index));
            Status::SUCCESS
        });
    }

    fn return_receives(
        &self,
        adapter: &NdisAdapter,
        returned: &mut Returned<'_>,
        irql: &mut DispatchOrBelow<'_>,
    ) {
        let asleep = adapter.power_state() != DevicePowerState::D0;
        let mut back = Vec::new();
        self.pool.take_returned(returned, |i| back.push(i));
        if asleep {
            if log(|l| l.touch_on_return) {
                self.regs.write32(ENABLED, 1); // wrong: the device is in D3
            }
            self.parked.with(irql, |p, _| p.extend(back));
        }
    }

    fn quiesce(&self, adapter: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
        if !adapter.is_surprise_removed() || log(|l| l.touch_on_halt) {
            self.regs.write32(ENABLED, 0);
        }
        Quiesced::device_stopped()
    }

    fn set_packet_filter(
        &self,
        _: &NdisAdapter,
        _filter: u32,
        request: &mut SetRequest<'_>,
    ) -> Result<(), Status> {
        if log(|l| l.pend_filter) {
            let pending = request.pend();
            PENDED.with(|p| *p.borrow_mut() = Some(pending));
        }
        Ok(())
    }

    fn pnp_event(&self, _: &NdisAdapter, event: PnpEvent) {
        if event == PnpEvent::SurpriseRemoved {
            log(|l| l.removed = true);
        }
    }

    fn power_down(&self, _: &NdisAdapter, state: DevicePowerState, _: &mut Passive<'_>) {
        self.regs.write32(ENABLED, 0);
        log(|l| l.power_down.push(state));
    }

    fn power_up(&self, adapter: &NdisAdapter, passive: &mut Passive<'_>) -> Result<(), Status> {
        log(|l| l.power_up += 1);
        if let Some(e) = log(|l| l.fail_d0) {
            return Err(e);
        }
        // The device lost its registers: set them up again.
        self.regs.write32(ENABLED, 1);
        adapter.indicate_link_state(true, 1_000_000_000, passive);
        Ok(())
    }
}

macro_rules! power_driver {
    ($module:ident, $version:expr, $npos:expr) => {
        mod $module {
            use super::*;
            pub struct Driver;
            impl MiniportDriver for Driver {
                const NDIS_VERSIONS: ndis::NdisVersions = $version;
                const DRIVER_VERSION: (u8, u8) = (1, 0);
                type Adapter = Nic<$npos>;
                fn initialize(
                    &'static self,
                    init: &mut Init<'_>,
                ) -> Result<(Nic<$npos>, AdapterInfo), Status> {
                    super::initialize(init)
                }
            }
            ndis::miniport_driver!(Driver = Driver);
        }
    };
}

power_driver!(v620, ndis::NdisVersions::exactly(NdisVersion::V6_20), false);
// 6.30 where the OS has it, 6.20 on Windows 7.
power_driver!(
    npos630,
    ndis::NdisVersions::new(NdisVersion::V6_20, NdisVersion::V6_30),
    true
);
// Declares NO_PAUSE_ON_SUSPEND, but registers NDIS 6.20, which has no such flag.
power_driver!(
    npos620,
    ndis::NdisVersions::exactly(NdisVersion::V6_20),
    true
);

fn start(emu: &Emulator, entry: ndis::driver::DriverEntryFn) -> AdapterId {
    // Room the driver's pushes need, allocated here (test code, not driver heap).
    log(|l| {
        *l = Log {
            power_down: Vec::with_capacity(64),
            ..Log::default()
        }
    });
    assert_eq!(emu.load_driver(entry), sys::STATUS_SUCCESS);
    let a = emu.add_adapter(LINE).expect("initialize");
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    a
}

fn frame(seed: u8) -> Vec<u8> {
    let mut f = MAC.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, seed]);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend((0..50).map(|i: u8| i.wrapping_mul(7) ^ seed));
    f
}

/// Ten frames sent come back byte-exact.
fn traffic(emu: &Emulator, a: AdapterId, seed: u8) {
    let frames: Vec<Vec<u8>> = (0..10).map(|i| frame(seed.wrapping_add(i))).collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    emu.send(a, &refs);
    assert_eq!(
        emu.send_statuses(),
        vec![sys::NDIS_STATUS_SUCCESS; frames.len()]
    );
    assert_eq!(emu.received_frames(a), frames);
    emu.return_receives(a);
}

fn stop(emu: &Emulator, a: AdapterId) {
    emu.return_receives(a);
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

/// (MediaConnectState) of every link indication since the last call.
fn link_reports(emu: &Emulator, a: AdapterId) -> Vec<i32> {
    emu.status_indications(a)
        .into_iter()
        .filter(|(s, _)| *s == sys::NDIS_STATUS_LINK_STATE)
        .map(|(_, b)| i32::from_le_bytes(b[4..8].try_into().unwrap()))
        .collect()
}

#[test]
fn item1_a_power_managed_adapter_is_kept_across_sleep_and_hibernation() {
    for how in [SystemSleep::SLEEP, SystemSleep::HIBERNATE] {
        let emu = Emulator::new(Config::default());
        let a = start(&emu, v620::DRIVER_ENTRY);
        link_reports(&emu, a);
        for cycle in 0..10u8 {
            traffic(&emu, a, cycle * 16);
            emu.sleep(a, how);
            assert_eq!(emu.device_power_state(a), sys::NdisDeviceStateD3);
            // Paused first (no NO_PAUSE_ON_SUSPEND).
            assert_eq!(emu.adapter_state(a), ndis_emu::AdapterState::Paused);
            emu.wake(a).expect("wake-up");
            assert_eq!(emu.device_power_state(a), sys::NdisDeviceStateD0);
            traffic(&emu, a, cycle * 16 + 8);
        }
        assert_eq!(log(|l| l.power_down.clone()), [DevicePowerState::D3; 10]);
        assert_eq!(log(|l| l.power_up), 10);
        // Each sleep: "unknown" as the adapter left D0, "connected" after.
        let connected = sys::MediaConnectStateConnected;
        let unknown = sys::MediaConnectStateUnknown;
        assert_eq!(link_reports(&emu, a), [unknown, connected].repeat(10));
        stop(&emu, a);
    }
}

#[test]
fn item1_without_pause_on_suspend_the_adapter_runs_through_the_sleep() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, npos630::DRIVER_ENTRY);
    for cycle in 0..10u8 {
        traffic(&emu, a, cycle);
        // Receives the protocols hold stay held across the transition (NDIS 6.30 does not
        // wait for them).
        emu.send(a, &[&frame(100 + cycle)]);
        emu.send_completions();
        assert_eq!(emu.received_frames(a), [frame(100 + cycle)]);
        assert_eq!(emu.held_receives(a), 1);
        emu.sleep(a, SystemSleep::SLEEP);
        assert_eq!(emu.adapter_state(a), ndis_emu::AdapterState::Running);
        emu.send(a, &[&frame(1)]);
        assert_eq!(emu.send_statuses(), [sys::NDIS_STATUS_LOW_POWER_STATE]);
        assert!(emu.received_frames(a).is_empty(), "nothing indicated in D3");
        // They come back in D3: the driver keeps the buffers, touching nothing.
        emu.return_receives(a);
        emu.wake(a).unwrap();
        assert_eq!(emu.adapter_state(a), ndis_emu::AdapterState::Running);
    }
    traffic(&emu, a, 200);
    stop(&emu, a);
}

#[test]
fn item1_no_pause_on_suspend_needs_ndis_6_30() {
    // Registered at 6.20 the flag does not exist: the adapter is paused for each sleep.
    let emu = Emulator::new(Config::default());
    let a = start(&emu, npos620::DRIVER_ENTRY);
    emu.sleep(a, SystemSleep::SLEEP);
    assert_eq!(emu.adapter_state(a), ndis_emu::AdapterState::Paused);
    emu.wake(a).unwrap();
    traffic(&emu, a, 1);
    stop(&emu, a);
    drop(emu);
    // On an OS older than 6.30 the same driver registers 6.20, where the flag does not exist.
    let emu = Emulator::new(Config {
        ndis_runtime_version: 0x0006_0014,
        ..Config::default()
    });
    let a = start(&emu, npos630::DRIVER_ENTRY);
    emu.sleep(a, SystemSleep::SLEEP);
    assert_eq!(emu.adapter_state(a), ndis_emu::AdapterState::Paused);
    emu.wake(a).unwrap();
    stop(&emu, a);
}

#[test]
fn item1_undeclared_light_states_reach_the_driver_as_d3() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, v620::DRIVER_ENTRY);
    let d2 = SystemSleep::S3 {
        device_state: sys::NdisDeviceStateD2,
    };
    emu.sleep(a, d2);
    assert_eq!(emu.device_power_state(a), sys::NdisDeviceStateD2);
    assert_eq!(log(|l| l.power_down.clone()), [DevicePowerState::D3]);
    emu.wake(a).unwrap();
    traffic(&emu, a, 3);
    stop(&emu, a);
}

#[test]
fn item2_a_shared_line_firing_during_sleep_never_reaches_the_driver() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, v620::DRIVER_ENTRY);
    // Another device on the same line, powered.
    let (other, _) = emu.add_device(LINE);
    assert_eq!(emu.fire_line(other), Some(false));
    let awake = log(|l| l.line_claims);
    assert_eq!(awake, 1, "awake, the driver's ISR is asked");
    emu.sleep(a, SystemSleep::SLEEP);
    for _ in 0..5 {
        // Asked, the driver would read its cause register in D3 (a bug check).
        assert_eq!(emu.fire_line(other), Some(false));
    }
    assert_eq!(log(|l| l.line_claims), awake, "asked while in D3");
    emu.wake(a).unwrap();
    assert_eq!(emu.fire_line(other), Some(false));
    assert_eq!(log(|l| l.line_claims), awake + 1);
    traffic(&emu, a, 9);
    stop(&emu, a);
}

#[test]
fn item2_register_access_out_of_d0_is_a_bug_check() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, npos630::DRIVER_ENTRY);
    log(|l| l.touch_on_return = true);
    emu.send(a, &[&frame(1), &frame(2)]);
    emu.send_completions();
    assert_eq!(emu.held_receives(a), 2);
    emu.sleep(a, SystemSleep::SLEEP);
    // The returns come in D3, and this driver writes a register then.
    let bug = emu.expect_bugcheck(|| emu.return_receives(a));
    assert_eq!(bug.code, ndis_emu::DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(bug.params[0], rule::LOW_POWER_ACCESS);
}

#[test]
fn item2_a_failed_d0_leaves_the_device_off_and_the_adapter_can_still_be_halted() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, v620::DRIVER_ENTRY);
    emu.sleep(a, SystemSleep::HIBERNATE);
    log(|l| l.fail_d0 = Some(Status::DEVICE_FAILED));
    assert_eq!(
        emu.wake(a),
        Err(WakeError::SetPowerD0(sys::NDIS_STATUS_DEVICE_FAILED))
    );
    // Still out of D0 for the framework: the line is declined, sends refused.
    let (other, _) = emu.add_device(LINE);
    let claims = log(|l| l.line_claims);
    assert_eq!(emu.fire_line(other), Some(false));
    assert_eq!(log(|l| l.line_claims), claims);
    // Even restarted, it sends nothing and indicates nothing.
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    emu.send(a, &[&frame(4)]);
    assert_eq!(emu.send_statuses(), [sys::NDIS_STATUS_LOW_POWER_STATE]);
    assert!(emu.received_frames(a).is_empty());
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceFailed);
    emu.unload();
}

#[test]
fn item1_power_oids_validate_the_state() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, v620::DRIVER_ENTRY);
    for bad in [0u32, 5, 0xFFFF_FFFF] {
        let r = emu.oid_set(a, sys::OID_PNP_SET_POWER, &bad.to_le_bytes());
        assert_eq!(r.status, sys::NDIS_STATUS_INVALID_DATA, "SET_POWER {bad}");
        let r = emu.oid_query_with(a, sys::OID_PNP_QUERY_POWER, &bad.to_le_bytes(), 4);
        assert_eq!(
            r.status,
            sys::NDIS_STATUS_SUCCESS,
            "QUERY_POWER is a query: it succeeds"
        );
    }
    let r = emu.oid_set(a, sys::OID_PNP_SET_POWER, &[4, 0]);
    assert_eq!(
        (r.status, r.bytes_needed),
        (sys::NDIS_STATUS_INVALID_LENGTH, 4)
    );
    // Nothing moved.
    assert!(log(|l| l.power_down.is_empty()));
    traffic(&emu, a, 5);
    stop(&emu, a);
}

#[test]
fn item4_surprise_removal_with_traffic_in_flight() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, v620::DRIVER_ENTRY);
    traffic(&emu, a, 0);
    // In flight: receives the protocol holds, and a set the device has not answered.
    emu.send(a, &[&frame(1), &frame(2), &frame(3)]);
    emu.send_completions();
    assert_eq!(emu.held_receives(a), 3);
    log(|l| l.pend_filter = true);
    let r = emu.oid_set(
        a,
        sys::OID_GEN_CURRENT_PACKET_FILTER,
        &sys::NDIS_PACKET_TYPE_PROMISCUOUS.to_le_bytes(),
    );
    assert_eq!(r.status, sys::NDIS_STATUS_PENDING);
    emu.remove_device(a);
    emu.notify_surprise_removal(a);
    assert!(log(|l| l.removed));
    // The pended set is completed: the device will never answer it.
    let done = emu.oid_completion().expect("completed at removal");
    assert_eq!(done.status, sys::NDIS_STATUS_NOT_ACCEPTED);
    // A late completion by the driver (here: its drop) finds nothing to complete.
    drop(
        PENDED
            .with(|p| p.borrow_mut().take())
            .expect("the driver pended the set"),
    );
    let done = emu
        .oid_completion()
        .expect("still the completion at removal");
    assert_eq!(done.status, sys::NDIS_STATUS_NOT_ACCEPTED);
    let r = emu.oid_query(a, sys::OID_GEN_LINK_SPEED, 4);
    assert_eq!(r.status, sys::NDIS_STATUS_NOT_ACCEPTED);
    emu.send(a, &[&frame(4)]);
    assert_eq!(emu.send_statuses(), [sys::NDIS_STATUS_ADAPTER_REMOVED]);
    // NDIS pauses (the held receives come back) and halts; unload finds no leak.
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceSurpriseRemoved);
    emu.unload();
}

#[test]
fn item4_register_access_after_the_removal_was_reported_is_a_bug_check() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, v620::DRIVER_ENTRY);
    emu.remove_device(a);
    // Before the driver knows: the line it reads sees all ones, nothing else happens.
    let (other, _) = emu.add_device(LINE);
    assert_eq!(
        emu.fire_line(other),
        Some(true),
        "all ones looks like a cause"
    );
    emu.notify_surprise_removal(a);
    log(|l| l.touch_on_halt = true);
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    let bug = emu.expect_bugcheck(|| emu.halt(a, sys::NdisHaltDeviceSurpriseRemoved));
    assert_eq!(bug.params[0], rule::REMOVED_DEVICE_ACCESS);
}
