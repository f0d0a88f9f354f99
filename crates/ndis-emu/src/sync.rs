//! Spin locks, timers on a virtual clock, and status indications.
//!
//! Spin locks: acquiring raises the processor to DISPATCH_LEVEL and saves the old IRQL in the
//! lock; releasing restores it. A lock acquired twice on one processor, released by a processor
//! that does not hold it, or still held when the callback that took it returns stops the run.
//! The scheduler never interleaves another processor's DPC while the current one holds a spin
//! lock, so contention the emulator cannot resolve (both sides on one host thread) never arises.
//!
//! Timers fire when the test advances the virtual clock ([`Emulator::advance_time`]), at
//! DISPATCH_LEVEL, periodic ones again every period.

use std::time::Duration;

use ndis_sys as sys;

use crate::bugcheck::{self, rule};
use crate::machine::{self, Callback, State, on_cpu};
use crate::ndis::adapter_of_handle;
use crate::{AdapterId, Emulator};

const TIMER_TAG: usize = 0x4E44_5400_0000;

/// What the virtual clock reaches next.
enum Due {
    Timer(
        unsafe extern "win64-unwind" fn(sys::PVOID, sys::PVOID, sys::PVOID, sys::PVOID),
        usize,
        usize,
    ),
    HangCheck(usize),
    /// Device events ([`crate::pci::Bus::schedule`]) due now.
    DeviceEvents,
}

struct Timer {
    function: unsafe extern "win64-unwind" fn(sys::PVOID, sys::PVOID, sys::PVOID, sys::PVOID),
    context: usize,
    /// The adapter whose handle allocated it (None: the driver handle).
    owner: Option<usize>,
    /// Absolute due time in 100 ns units of the virtual clock.
    due: Option<u64>,
    period_ms: i32,
    live: bool,
}

#[derive(Default)]
pub(crate) struct SyncState {
    /// Held spin locks: (address, processor, callback depth when acquired). A driver holds a
    /// handful at most, so a scan beats hashing on this per-packet path.
    held: Vec<(usize, usize, usize)>,
    timers: Vec<Timer>,
    /// Virtual time, 100 ns units.
    now: u64,
    /// `KeQueryPerformanceCounter` calls so far: each reads one tick later than the last, so the
    /// counter advances even while the virtual clock stands still.
    performance_reads: u64,
    indications: Vec<(usize, sys::NDIS_STATUS, Vec<u8>)>,
}

impl SyncState {
    /// Virtual time, 100 ns units.
    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    /// `KeStallExecutionProcessor`: the processor spins, virtual time passes.
    pub(crate) fn stall(&mut self, microseconds: u32) {
        self.now = self.now.saturating_add(u64::from(microseconds) * 10);
    }

    /// `KeQueryPerformanceCounter`: the virtual clock (100 ns ticks) plus one tick per call made
    /// so far, strictly increasing.
    pub(crate) fn performance_counter(&mut self) -> u64 {
        self.performance_reads += 1;
        self.now + self.performance_reads
    }
}

/// Whether processor `cpu` holds a spin lock (the scheduler does not interleave then).
pub(crate) fn holds_spin_lock(st: &State, cpu: usize) -> bool {
    st.sync.held.iter().any(|&(_, c, _)| c == cpu)
}

/// A callback at depth `depth` on `cpu` is returning: it must have released its locks.
pub(crate) fn check_released_at_return(st: &State, cpu: usize, depth: usize) {
    if let Some(&(lock, _, _)) = st
        .sync
        .held
        .iter()
        .find(|&&(_, c, d)| c == cpu && d == depth)
    {
        let callback = st.callbacks.last().copied();
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::SPIN_LOCK, lock, cpu, 0],
            format!(
                "{callback:?} on cpu{cpu} returned holding spin lock {lock:#x}: release every lock before returning"
            ),
        );
    }
}

/// The processor holding `lock`, if any.
fn holder_of(st: &State, lock: *mut sys::NDIS_SPIN_LOCK) -> Option<usize> {
    st.sync
        .held
        .iter()
        .find(|&&(l, _, _)| l == lock as usize)
        .map(|&(_, cpu, _)| cpu)
}

fn spin_violation(lock: usize, what: String) -> ! {
    bugcheck::raise(
        bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
        [rule::SPIN_LOCK, lock, 0, 0],
        what,
    )
}

fn acquire(lock: *mut sys::NDIS_SPIN_LOCK, function: &str, dpr: bool) {
    let m = machine::current();
    let mut st = m.st();
    if dpr {
        if st.irql() != sys::DISPATCH_LEVEL {
            let irql = st.irql();
            drop(st);
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::IRQL, irql as usize, sys::DISPATCH_LEVEL as usize, 0],
                format!(
                    "{function} called at IRQL {irql}; it requires DISPATCH_LEVEL exactly (use NdisAcquireSpinLock below it)"
                ),
            );
        }
    } else {
        st.require_irql(sys::DISPATCH_LEVEL, function);
    }
    let cpu = st.cpu;
    if let Some(holder) = holder_of(&st, lock) {
        drop(st);
        spin_violation(
            lock as usize,
            if holder == cpu {
                format!(
                    "{function}: cpu{cpu} already holds spin lock {lock:p} (recursive acquisition deadlocks)"
                )
            } else {
                format!(
                    "{function}: spin lock {lock:p} is held by cpu{holder}, which cannot run before this one releases"
                )
            },
        );
    }
    let depth = st.callbacks.len();
    st.sync.held.push((lock as usize, cpu, depth));
    if !dpr {
        // SAFETY: the caller passes its NDIS_SPIN_LOCK.
        unsafe { (*lock).OldIrql = st.irql() };
        st.cpus[cpu].irql = sys::DISPATCH_LEVEL;
    }
}

fn release(lock: *mut sys::NDIS_SPIN_LOCK, function: &str, dpr: bool) {
    let m = machine::current();
    let mut st = m.st();
    let cpu = st.cpu;
    match holder_of(&st, lock) {
        Some(holder) if holder == cpu => {}
        other => {
            drop(st);
            spin_violation(
                lock as usize,
                match other {
                    Some(holder) => format!(
                        "{function}: spin lock {lock:p} is held by cpu{holder}, not by cpu{cpu}"
                    ),
                    None => format!("{function}: spin lock {lock:p} is not held"),
                },
            );
        }
    }
    if dpr && st.irql() != sys::DISPATCH_LEVEL {
        let irql = st.irql();
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::IRQL, irql as usize, sys::DISPATCH_LEVEL as usize, 0],
            format!("{function} called at IRQL {irql}; it requires DISPATCH_LEVEL exactly"),
        );
    }
    st.sync.held.retain(|&(l, _, _)| l != lock as usize);
    if !dpr {
        // SAFETY: the caller's NDIS_SPIN_LOCK, which the acquire filled.
        st.cpus[cpu].irql = unsafe { (*lock).OldIrql };
    }
    drop(st);
    machine::preempt(&m);
}

pub(crate) unsafe fn ndis_allocate_spin_lock(lock: *mut sys::NDIS_SPIN_LOCK) {
    // SAFETY: the caller's lock storage.
    unsafe { lock.write(sys::NDIS_SPIN_LOCK::default()) };
}

pub(crate) unsafe fn ndis_free_spin_lock(lock: *mut sys::NDIS_SPIN_LOCK) {
    let m = machine::current();
    let st = m.st();
    if let Some(holder) = holder_of(&st, lock) {
        drop(st);
        spin_violation(
            lock as usize,
            format!("NdisFreeSpinLock: spin lock {lock:p} is still held by cpu{holder}"),
        );
    }
}

pub(crate) unsafe fn ndis_acquire_spin_lock(lock: *mut sys::NDIS_SPIN_LOCK) {
    acquire(lock, "NdisAcquireSpinLock", false)
}

pub(crate) unsafe fn ndis_release_spin_lock(lock: *mut sys::NDIS_SPIN_LOCK) {
    release(lock, "NdisReleaseSpinLock", false)
}

pub(crate) unsafe fn ndis_dpr_acquire_spin_lock(lock: *mut sys::NDIS_SPIN_LOCK) {
    acquire(lock, "NdisDprAcquireSpinLock", true)
}

pub(crate) unsafe fn ndis_dpr_release_spin_lock(lock: *mut sys::NDIS_SPIN_LOCK) {
    release(lock, "NdisDprReleaseSpinLock", true)
}

fn timer_of(st: &State, handle: sys::NDIS_HANDLE, function: &str) -> usize {
    let h = handle as usize;
    if h & !0xFF_FFFF == TIMER_TAG {
        let i = (h & 0xFF_FFFF).wrapping_sub(1);
        if st.sync.timers.get(i).is_some_and(|t| t.live) {
            return i;
        }
    }
    bugcheck::raise(
        bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
        [rule::INVALID_HANDLE, h, 0, 0],
        format!("{function}: {h:#x} is not a live timer object of this driver"),
    )
}

pub(crate) unsafe fn ndis_allocate_timer_object(
    handle: sys::NDIS_HANDLE,
    chars: *mut sys::NDIS_TIMER_CHARACTERISTICS,
    out: *mut sys::NDIS_HANDLE,
) -> sys::NDIS_STATUS {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisAllocateTimerObject");
    crate::ndis::check_ndis_handle(&st, handle, "NdisAllocateTimerObject");
    // SAFETY: the caller passes readable characteristics.
    let c = unsafe { *chars };
    if c.Header.Type != sys::NDIS_OBJECT_TYPE_TIMER_CHARACTERISTICS
        || c.Header.Revision != sys::NDIS_TIMER_CHARACTERISTICS_REVISION_1
        || c.Header.Size < sys::NDIS_SIZEOF_TIMER_CHARACTERISTICS_REVISION_1
    {
        return sys::NDIS_STATUS_BAD_CHARACTERISTICS;
    }
    let Some(function) = c.TimerFunction else {
        return sys::NDIS_STATUS_BAD_CHARACTERISTICS;
    };
    if st.fallible("NdisAllocateTimerObject") {
        return sys::NDIS_STATUS_RESOURCES;
    }
    let owner = crate::ndis::adapter_index(&st, handle);
    st.sync.timers.push(Timer {
        function,
        context: c.FunctionContext as usize,
        owner,
        due: None,
        period_ms: 0,
        live: true,
    });
    // SAFETY: the caller's out-pointer.
    unsafe { out.write((TIMER_TAG | st.sync.timers.len()) as sys::NDIS_HANDLE) };
    sys::NDIS_STATUS_SUCCESS
}

pub(crate) unsafe fn ndis_set_timer_object(
    timer: sys::NDIS_HANDLE,
    due: i64,
    period_ms: i32,
    context: sys::PVOID,
) -> sys::BOOLEAN {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisSetTimerObject");
    let i = timer_of(&st, timer, "NdisSetTimerObject");
    let now = st.sync.now;
    let at = if due < 0 {
        now.saturating_add(due.unsigned_abs())
    } else {
        (due as u64).max(now)
    };
    let t = &mut st.sync.timers[i];
    let was_queued = t.due.is_some();
    t.due = Some(at);
    t.period_ms = period_ms.max(0);
    if !context.is_null() {
        t.context = context as usize;
    }
    was_queued as sys::BOOLEAN
}

pub(crate) unsafe fn ndis_cancel_timer_object(timer: sys::NDIS_HANDLE) -> sys::BOOLEAN {
    let m = machine::current();
    let mut st = m.st();
    let i = timer_of(&st, timer, "NdisCancelTimerObject");
    let max = if st.sync.timers[i].period_ms > 0 {
        sys::PASSIVE_LEVEL
    } else {
        sys::DISPATCH_LEVEL
    };
    st.require_irql(
        max,
        "NdisCancelTimerObject (periodic timers: PASSIVE_LEVEL)",
    );
    st.sync.timers[i].due.take().is_some() as sys::BOOLEAN
}

pub(crate) unsafe fn ndis_free_timer_object(timer: sys::NDIS_HANDLE) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisFreeTimerObject");
    let i = timer_of(&st, timer, "NdisFreeTimerObject");
    if st.sync.timers[i].due.is_some() {
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::TIMER, timer as usize, 0, 0],
            "NdisFreeTimerObject on a timer that is still set: cancel it first",
        );
    }
    st.sync.timers[i].live = false;
}

/// Halt of adapter `a`: none of its timers may still be set (they would fire into freed state).
pub(crate) fn check_timers_at_halt(st: &State, a: usize) {
    let set = st
        .sync
        .timers
        .iter()
        .filter(|t| t.live && t.owner == Some(a) && t.due.is_some())
        .count();
    if set > 0 {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::TIMER, a, set, 0],
            format!(
                "MiniportHaltEx of adapter {a} returned with {set} timer(s) still set: cancel them in halt"
            ),
        );
    }
}

/// Unload: every timer object freed.
pub(crate) fn live_timers(st: &State) -> usize {
    st.sync.timers.iter().filter(|t| t.live).count()
}

pub(crate) unsafe fn ndis_m_indicate_status_ex(
    handle: sys::NDIS_HANDLE,
    indication: *mut sys::NDIS_STATUS_INDICATION,
) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisMIndicateStatusEx");
    let a = adapter_of_handle(&st, handle, "NdisMIndicateStatusEx");
    // SAFETY: the caller passes a readable indication.
    let ind = unsafe { *indication };
    if ind.Header.Type != sys::NDIS_OBJECT_TYPE_STATUS_INDICATION
        || ind.Header.Revision != sys::NDIS_STATUS_INDICATION_REVISION_1
        || ind.Header.Size < sys::NDIS_SIZEOF_STATUS_INDICATION_REVISION_1
    {
        drop(st);
        crate::ndis::header_bugcheck(
            "NdisMIndicateStatusEx",
            "status indication",
            ind.Header,
            "0x98 / 1 / 112",
        );
    }
    if ind.SourceHandle != handle {
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::INVALID_HANDLE, ind.SourceHandle as usize, a, 0],
            "NdisMIndicateStatusEx: SourceHandle must be the adapter's MiniportAdapterHandle",
        );
    }
    let buffer = if ind.StatusBuffer.is_null() {
        Vec::new()
    } else {
        // SAFETY: the indication describes StatusBufferSize readable bytes.
        unsafe {
            std::slice::from_raw_parts(ind.StatusBuffer.cast::<u8>(), ind.StatusBufferSize as usize)
        }
        .to_vec()
    };
    if ind.StatusCode == sys::NDIS_STATUS_LINK_STATE {
        let ok = buffer.len() >= sys::NDIS_SIZEOF_LINK_STATE_REVISION_1 as usize
            && buffer[0] == sys::NDIS_OBJECT_TYPE_DEFAULT
            && buffer[1] == sys::NDIS_LINK_STATE_REVISION_1;
        if !ok {
            drop(st);
            bugcheck::raise(
                bugcheck::BUGCODE_NDIS_DRIVER,
                [
                    bugcheck::NDIS_BUGCHECK_INVALID_OBJECT_HEADER,
                    buffer.len(),
                    0,
                    0,
                ],
                "NDIS_STATUS_LINK_STATE indicated without a valid NDIS_LINK_STATE (0x80 / 1 / 40) as its buffer",
            );
        }
    }
    if ind.StatusCode == sys::NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG {
        if !crate::offload::offload_header_ok(&buffer) {
            drop(st);
            bugcheck::raise(
                bugcheck::BUGCODE_NDIS_DRIVER,
                [
                    bugcheck::NDIS_BUGCHECK_INVALID_OBJECT_HEADER,
                    buffer.len(),
                    0,
                    0,
                ],
                "NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG indicated without a valid NDIS_OFFLOAD (0xA7 / 1+ / 112+) as its buffer",
            );
        }
        let current = crate::offload::ChecksumTasks::from_offload(&buffer);
        let current_lso = crate::offload::LargeSendTasks::from_offload(&buffer);
        match &mut st.ndis.adapters[a].offload {
            Some(o) if current.within(&o.hardware) && current_lso.within(&o.hardware_lso) => {
                o.current = current;
                o.current_lso = current_lso;
                o.indications += 1;
            }
            Some(_) => {
                drop(st);
                bugcheck::raise(
                    bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [rule::OFFLOAD, a, 0, 0],
                    "NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG enables a task the adapter's hardware capabilities do not have",
                );
            }
            None => {
                drop(st);
                bugcheck::raise(
                    bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [rule::OFFLOAD, a, 0, 0],
                    "NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG from an adapter that set no offload attributes",
                );
            }
        }
    }
    st.sync.indications.push((a, ind.StatusCode, buffer));
}

/// A decoded `NDIS_LINK_STATE` indication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    pub connected: bool,
    pub full_duplex: bool,
    pub xmit_speed: u64,
    pub rcv_speed: u64,
}

impl Emulator {
    /// Advances the virtual clock by `by`, firing every timer that comes due on the way (at
    /// DISPATCH_LEVEL on the passive processor, in due order), and the DPCs they queue. Adapters
    /// whose driver registered `MiniportCheckForHangEx` are checked on the way too, every
    /// `CheckForHangTimeInSeconds` (see `docs/emulator.md`).
    pub fn advance_time(&self, by: Duration) {
        let target = {
            let st = self.machine.st();
            st.sync.now + (by.as_nanos() / 100) as u64
        };
        loop {
            let next = {
                let mut st = self.machine.st();
                let timer = st
                    .sync
                    .timers
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| t.due.filter(|&d| t.live && d <= target).map(|d| (d, i)))
                    .min();
                let hang = st
                    .ndis
                    .adapters
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.hang.period > 0 && a.hang.due <= target)
                    .map(|(i, a)| (a.hang.due, i))
                    .min();
                let event = crate::pci::next_event_due(&st, target);
                let first_other = [timer.map(|(d, _)| d), hang.map(|(d, _)| d)]
                    .into_iter()
                    .flatten()
                    .min();
                match (timer, hang) {
                    // A device event first when it is due no later than the next timer or hang
                    // check (the device acts, then the driver's timer sees its effect).
                    _ if event.is_some_and(|e| first_other.is_none_or(|o| e <= o)) => {
                        let e = event.unwrap_or_default();
                        st.sync.now = st.sync.now.max(e);
                        Some(Due::DeviceEvents)
                    }
                    (_, Some((d, a))) if timer.is_none_or(|(t, _)| d < t) => {
                        st.sync.now = st.sync.now.max(d);
                        let h = &mut st.ndis.adapters[a].hang;
                        h.due = d + h.period;
                        Some(Due::HangCheck(a))
                    }
                    (Some((d, i)), _) => {
                        st.sync.now = st.sync.now.max(d);
                        let t = &mut st.sync.timers[i];
                        t.due = (t.period_ms > 0).then(|| d + t.period_ms as u64 * 10_000);
                        Some(Due::Timer(t.function, t.context, st.cpu))
                    }
                    _ => None,
                }
            };
            let (function, context, cpu) = match next {
                None => break,
                Some(Due::DeviceEvents) => {
                    crate::pci::fire_due_events(&self.machine);
                    machine::run_dpcs(&self.machine);
                    continue;
                }
                Some(Due::HangCheck(a)) => {
                    crate::ndis::check_for_hang(&self.machine, a);
                    machine::run_dpcs(&self.machine);
                    continue;
                }
                Some(Due::Timer(function, context, cpu)) => (function, context, cpu),
            };
            on_cpu(
                &self.machine,
                cpu,
                sys::DISPATCH_LEVEL,
                Callback::Timer,
                || {
                    // SAFETY: the driver's timer function with its context, at DISPATCH_LEVEL.
                    unsafe {
                        function(
                            core::ptr::null_mut(),
                            context as sys::PVOID,
                            core::ptr::null_mut(),
                            core::ptr::null_mut(),
                        )
                    }
                },
            );
            machine::run_dpcs(&self.machine);
        }
        let mut st = self.machine.st();
        st.sync.now = st.sync.now.max(target);
    }

    /// `MiniportCheckForHangEx` calls made so far for `adapter` (the virtual clock drives them:
    /// see [`Emulator::advance_time`]).
    pub fn hang_checks(&self, adapter: AdapterId) -> u64 {
        self.machine.st().ndis.adapters[adapter.0].hang.checks
    }

    /// Resets of `adapter` finished since the last call: (status, AddressingReset).
    pub fn resets(&self, adapter: AdapterId) -> Vec<(sys::NDIS_STATUS, bool)> {
        std::mem::take(&mut self.machine.st().ndis.adapters[adapter.0].hang.resets)
    }

    /// Status indications of `adapter` since the last call: (status code, buffer bytes).
    pub fn status_indications(&self, adapter: AdapterId) -> Vec<(sys::NDIS_STATUS, Vec<u8>)> {
        let mut st = self.machine.st();
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut st.sync.indications)
            .into_iter()
            .partition(|(a, _, _)| *a == adapter.0);
        st.sync.indications = rest;
        mine.into_iter().map(|(_, s, b)| (s, b)).collect()
    }

    /// The last link state `adapter` indicated (without consuming indications).
    pub fn link_state(&self, adapter: AdapterId) -> Option<LinkState> {
        let st = self.machine.st();
        let (_, _, b) = st
            .sync
            .indications
            .iter()
            .rev()
            .find(|(a, s, _)| *a == adapter.0 && *s == sys::NDIS_STATUS_LINK_STATE)?;
        let word = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let quad = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        Some(LinkState {
            connected: word(4) as i32 == sys::MediaConnectStateConnected,
            full_duplex: word(8) as i32 == sys::MediaDuplexStateFull,
            xmit_speed: quad(16),
            rcv_speed: quad(24),
        })
    }
}
