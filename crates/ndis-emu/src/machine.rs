//! The emulated machine: processors with their IRQL and DPC queues, interrupt locks, kernel
//! interrupt objects, and a seeded scheduler.
//!
//! # Execution model
//! Everything runs on the test's thread. "Processor" is a logical notion: the machine keeps a
//! current processor and its IRQL, and switches them when it delivers an interrupt or runs a DPC on
//! another processor. Concurrency is modelled by interleaving at *preemption points* (every call
//! the driver makes into the emulator): pending interrupts are delivered there if the target
//! processor's IRQL and the interrupt lock allow it, DPCs queued for a processor at PASSIVE_LEVEL
//! run there, and, with interleaving on, a DPC of another processor may run inside a DPC (a valid
//! linearization of two processors running at once). Choices are drawn from a seeded PRNG, so a
//! failing interleaving replays exactly from its seed.
//!
//! # Borrowing discipline
//! State lives in a `RefCell`; no borrow is ever held while driver code runs (driver code re-enters
//! the emulator). Functions here take the state briefly, copy out what the call needs, release it,
//! call the driver, and take it again.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;
use std::rc::Rc;

use ndis_sys as sys;
use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::bugcheck::{self, rule};
use crate::faults::Faults;
use crate::trace::Event;
use crate::{Config, InterruptResources};

thread_local! {
    static CURRENT: RefCell<Option<Rc<Machine>>> = const { RefCell::new(None) };
    static BUGCHECKED: Cell<bool> = const { Cell::new(false) };
}

pub(crate) fn mark_bugchecked() {
    BUGCHECKED.with(|b| b.set(true));
}

pub(crate) fn bugchecked() -> bool {
    BUGCHECKED.with(|b| b.get())
}

pub(crate) fn reset_bugchecked() {
    BUGCHECKED.with(|b| b.set(false));
}

/// The machine the calling thread's driver runs on. Panics with the fix when there is none.
pub(crate) fn current() -> Rc<Machine> {
    CURRENT.with(|c| c.borrow().clone()).unwrap_or_else(|| {
        panic!("driver code called an emulated export on a thread with no ndis_emu::Emulator")
    })
}

pub(crate) fn install(machine: Rc<Machine>) {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        assert!(
            c.is_none(),
            "one ndis_emu::Emulator per thread at a time: drop the other one first"
        );
        *c = Some(machine);
    });
}

/// The fault plan's answer for a fallible driver-heap allocation (`site`), asked from inside the
/// allocator: false when no machine is installed or its state is borrowed (emulator code).
pub(crate) fn fail_fallible_heap_allocation(site: &'static str) -> bool {
    CURRENT
        .try_with(|c| {
            let m = c.try_borrow().ok()?.clone()?;
            let mut st = m.state.try_borrow_mut().ok()?;
            Some(st.fallible(site))
        })
        .ok()
        .flatten()
        .unwrap_or(false)
}

pub(crate) fn uninstall() {
    CURRENT.with(|c| c.borrow_mut().take());
}

pub(crate) struct Machine {
    pub state: RefCell<State>,
}

impl Machine {
    pub fn st(&self) -> RefMut<'_, State> {
        self.state.borrow_mut()
    }
}

/// Which driver callback is running, for the rules that say where a call may be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Callback {
    DriverEntry,
    SetOptions,
    Unload,
    Initialize(usize),
    Halt(usize),
    Pause(usize),
    Restart(usize),
    Isr(usize),
    Dpc(usize),
    Synchronize(usize),
    WdmIsr,
    Send(usize),
    Return(usize),
    Oid(usize),
    Timer,
    CheckForHang(usize),
    Reset(usize),
    AddDevice(usize),
    FilterResources(usize),
    StartDevice(usize),
    RemoveDevice(usize),
    PnpEvent(usize),
    /// A `ProcessSGListHandler` call for adapter n.
    ProcessSgList(usize),
}

#[derive(Debug, Default)]
pub(crate) struct Cpu {
    pub irql: u8,
    pub queue: VecDeque<DpcRef>,
}

/// A queued NDIS interrupt DPC: slot (interrupt, message, this processor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DpcRef {
    pub interrupt: usize,
    pub message: u32,
}

/// One (message, processor) DPC object of an NDIS interrupt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DpcSlot {
    pub queued: bool,
    pub context: usize,
    pub requeues: u32,
}

/// A kernel interrupt object (what `IoConnectInterruptEx` creates).
#[derive(Debug, Clone)]
pub(crate) struct KInterrupt {
    pub vector: u32,
    /// IRQL the service routine runs at (the synchronize IRQL when a shared lock was given).
    pub sync_irql: u8,
    pub affinity: usize,
    pub routine: Routine,
    pub context: usize,
    pub lock: usize,
    pub connected: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Routine {
    Line(unsafe extern "win64-unwind" fn(sys::PKINTERRUPT, sys::PVOID) -> sys::BOOLEAN),
    Message(
        unsafe extern "win64-unwind" fn(sys::PKINTERRUPT, sys::PVOID, u32) -> sys::BOOLEAN,
        u32,
    ),
}

/// What one `IoConnectInterruptEx` connected.
#[derive(Debug)]
pub(crate) struct Connection {
    pub device: usize,
    pub version: u32,
    pub kints: Vec<usize>,
    /// The IO_INTERRUPT_MESSAGE_INFO handed out (8-byte aligned, stable until disconnect).
    pub table: Option<Box<[u64]>>,
    pub live: bool,
}

/// An emulated PCI function with its assigned interrupt resources.
#[derive(Debug)]
pub(crate) struct Device {
    /// What PnP assigned (for a driver with PnP handlers: after its filtered requirements).
    pub resources: InterruptResources,
    /// What the test set up: the device's interrupt capability and the platform's limit.
    pub offer: InterruptResources,
    /// The processor of each message, from the filtered requirements (empty: message *i* on
    /// processor *i* mod N).
    pub message_cpus: Vec<usize>,
    /// Backing store for the PDO pointer handed to drivers.
    pub pdo: Box<[u64; 8]>,
    /// First message vector.
    pub message_vector_base: u32,
    /// The live message-based connection (its kernel interrupt objects are indexed by message).
    pub message_connection: Option<usize>,
    /// Configuration space, BARs and the device model behind them.
    pub pci: crate::pci::PciState,
    /// The user cleared "Allow the computer to turn off this device to save power"
    /// (`PnPCapabilities` in the device's key): NDIS treats the adapter as not power-managed.
    pub power_management_disabled: bool,
    /// The device's INTx line as its model drives it ([`crate::pci::Bus::set_line`]).
    pub line: LineLevel,
}

/// A level-triggered line: asserted until the model deasserts it, so it interrupts again after
/// every ISR that returns with it still asserted, up to the storm limit.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LineLevel {
    pub asserted: bool,
    /// Deliveries in a row after which the line was still asserted.
    pub unserviced: u32,
}

/// How many deliveries in a row may leave a level-triggered line asserted before the emulator
/// reports `HARDWARE_INTERRUPT_STORM` (see docs/emulator.md, "Choices where Windows' behaviour is
/// not documented"). An ISR that clears its device's cause never gets past 1; one that clears
/// one cause per call (and so is called again for the next) stays far below.
pub const INTERRUPT_STORM_LIMIT: u32 = 1000;

/// Drives device `device`'s line: asserted, it pends one delivery (if none is pending) and keeps
/// interrupting after each ISR until deasserted; deasserted, a delivery not yet made is dropped
/// (the level went away before the processor took it).
pub(crate) fn set_line(st: &mut State, device: usize, asserted: bool) {
    let line = &mut st.devices[device].line;
    line.asserted = asserted;
    if !asserted {
        line.unserviced = 0;
        st.pending.retain(|&(d, m, _)| d != device || m.is_some());
        return;
    }
    pend_line(st, device);
}

/// One pending delivery of `device`'s asserted line, unless one is pending already or nothing
/// is connected to it.
pub(crate) fn pend_line(st: &mut State, device: usize) {
    if st
        .pending
        .iter()
        .any(|&(d, m, _)| d == device && m.is_none())
    {
        return;
    }
    let Some(&first) = targets(st, device, None).first() else {
        return;
    };
    let affinity = st.kints[first].affinity;
    let cpu = pick_cpu(st, affinity);
    st.pending.push((device, None, cpu));
}

/// After the ISRs of `device`'s line returned: a line still asserted interrupts again (and is
/// counted toward the storm limit); one deasserted starts the count over.
fn after_line_isrs(m: &Machine, device: usize, chain: &[usize]) {
    let mut st = m.st();
    let line = &mut st.devices[device].line;
    if !line.asserted {
        line.unserviced = 0;
        return;
    }
    line.unserviced += 1;
    if line.unserviced < INTERRUPT_STORM_LIMIT {
        pend_line(&mut st, device);
        return;
    }
    let first = chain[0];
    let k = &st.kints[first];
    let isr = match k.routine {
        Routine::Line(f) => f as usize,
        Routine::Message(f, _) => f as usize,
    };
    let params = [
        isr,
        k.context,
        kinterrupt_ptr(first) as usize,
        if chain.len() > 1 { 2 } else { 1 },
    ];
    drop(st);
    bugcheck::raise(
        bugcheck::HARDWARE_INTERRUPT_STORM,
        params,
        format!(
            "device {device}'s level-triggered line stayed asserted through {INTERRUPT_STORM_LIMIT} \
             interrupts in a row: the ISR returns (claiming it or not) without making the device \
             release the line. Clear the interrupt cause in the ISR (read or write the register \
             that acknowledges it) before returning TRUE; return FALSE only when the device did \
             not interrupt."
        ),
    );
}

impl Device {
    pub fn line_vector(&self) -> Option<u32> {
        match self.resources {
            InterruptResources::Line { line, .. } => Some(LINE_VECTOR_BASE + line as u32),
            _ => None,
        }
    }

    pub fn message_count(&self) -> u32 {
        match self.resources {
            InterruptResources::Msi { granted, .. } | InterruptResources::MsiX { granted, .. } => {
                granted
            }
            _ => 0,
        }
    }
}

/// Vectors 0x50.. serve lines (IRQL 5), messages are spread over 0x60..0xBF (IRQL 6..11).
pub(crate) const LINE_VECTOR_BASE: u32 = 0x50;
pub(crate) const MESSAGE_VECTOR_BASE: u32 = 0x60;
pub(crate) const MESSAGE_VECTOR_SPAN: u32 = 0x60;

/// The Windows x64 rule: IRQL = vector / 16.
pub(crate) fn vector_irql(vector: u32) -> u8 {
    (vector >> 4) as u8
}

pub(crate) struct State {
    pub config: Config,
    pub cpus: Vec<Cpu>,
    pub cpu: usize,
    pub rng: Pcg64Mcg,
    pub faults: Faults,
    pub trace: Option<Vec<Event>>,
    pub callbacks: Vec<Callback>,
    pub devices: Vec<Device>,
    pub kints: Vec<KInterrupt>,
    pub connections: Vec<Connection>,
    /// Interrupt spin locks: which processor holds each.
    pub locks: Vec<Option<usize>>,
    /// Caller-supplied KSPIN_LOCK addresses -> lock index (a shared lock across messages).
    pub lock_by_address: HashMap<usize, usize>,
    /// Sources asserted while their processor's IRQL or lock did not allow delivery.
    pub pending: Vec<(usize, Option<u32>, usize)>,
    pub next_message_vector: u32,
    pub ndis: crate::ndis::NdisState,
    pub pool: crate::memory::Pool,
    pub datapath: crate::datapath::DatapathState,
    pub oid: Option<crate::oid::PendingOid>,
    pub sync: crate::sync::SyncState,
    pub dma: crate::dma::DmaState,
    pub mmio: crate::pci::MmioState,
    pub config_keys: crate::config::ConfigState,
    pub rss: crate::rss::RssState,
}

impl State {
    pub fn new(config: Config) -> Self {
        let cpus = (0..config.cpus).map(|_| Cpu::default()).collect();
        State {
            rng: Pcg64Mcg::seed_from_u64(config.seed),
            trace: config.trace.then(Vec::new),
            faults: Faults {
                plan: config.faults.clone(),
                log: Vec::new(),
                per_name: Default::default(),
            },
            config,
            cpus,
            cpu: 0,
            callbacks: Vec::new(),
            devices: Vec::new(),
            kints: Vec::new(),
            connections: Vec::new(),
            locks: Vec::new(),
            lock_by_address: HashMap::default(),
            pending: Vec::new(),
            next_message_vector: 0,
            ndis: Default::default(),
            pool: Default::default(),
            datapath: Default::default(),
            oid: None,
            sync: Default::default(),
            dma: Default::default(),
            mmio: Default::default(),
            config_keys: Default::default(),
            rss: Default::default(),
        }
    }

    pub fn all_cpus(&self) -> usize {
        if self.cpus.len() >= 64 {
            usize::MAX
        } else {
            (1usize << self.cpus.len()) - 1
        }
    }

    pub fn irql(&self) -> u8 {
        self.cpus[self.cpu].irql
    }

    pub fn event(&mut self, e: impl FnOnce() -> Event) {
        if let Some(t) = &mut self.trace {
            t.push(e());
        }
    }

    pub fn random_below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    /// IRQL rule: `function` may be called at `max` or below.
    pub fn require_irql(&self, max: u8, function: &str) {
        let irql = self.irql();
        if irql > max {
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::IRQL, irql as usize, max as usize, 0],
                format!(
                    "{function} called at IRQL {irql} on cpu{}, but it may only be called at IRQL <= {max} \
                     ({}). Move the call to a context that runs at {} or lower.",
                    self.cpu,
                    irql_name(max),
                    irql_name(max)
                ),
            );
        }
    }

    pub fn in_callback(&self, pred: impl Fn(Callback) -> bool) -> bool {
        self.callbacks.iter().any(|c| pred(*c))
    }

    pub fn new_lock(&mut self) -> usize {
        self.locks.push(None);
        self.locks.len() - 1
    }

    pub fn fallible(&mut self, name: &'static str) -> bool {
        self.faults.should_fail(name)
    }
}

pub(crate) fn irql_name(irql: u8) -> &'static str {
    match irql {
        0 => "PASSIVE_LEVEL",
        1 => "APC_LEVEL",
        2 => "DISPATCH_LEVEL",
        3..=12 => "DIRQL",
        _ => "HIGH_LEVEL",
    }
}

/// Runs `f` as processor `cpu` at `irql`, restoring the previous processor and its IRQL after.
/// Takes no borrow across `f`.
pub(crate) fn on_cpu<R>(
    m: &Machine,
    cpu: usize,
    irql: u8,
    callback: Callback,
    f: impl FnOnce() -> R,
) -> R {
    let (prev_cpu, prev_irql) = {
        let mut st = m.st();
        let prev = (st.cpu, st.cpus[cpu].irql);
        st.cpu = cpu;
        st.cpus[cpu].irql = irql;
        st.callbacks.push(callback);
        prev
    };
    let r = crate::heap::as_driver(irql, f);
    let mut st = m.st();
    let depth = st.callbacks.len();
    crate::sync::check_released_at_return(&st, cpu, depth);
    st.callbacks.pop();
    st.cpus[cpu].irql = prev_irql;
    st.cpu = prev_cpu;
    drop(st);
    // Heap use above DISPATCH_LEVEL during the callback stops the run when it returns.
    crate::heap::raise_irql_violation();
    r
}

/// Raises an interrupt source of `device`: `message` or its line. Delivered now when the chosen
/// processor's IRQL and the lock allow; otherwise pended until a preemption point allows it.
/// Returns whether a service routine claimed it (None when pended).
pub(crate) fn assert_source(
    m: &Machine,
    device: usize,
    message: Option<u32>,
    cpu: Option<usize>,
) -> Option<bool> {
    let target = {
        let mut st = m.st();
        let first = match message {
            Some(msg) => message_target(&st, device, msg),
            None => targets(&st, device, None).first().copied(),
        };
        let Some(first) = first else {
            panic!(
                "device {device} has no connected interrupt for {} (was the interrupt registered?)",
                message.map_or("its line".into(), |m| format!("message {m}"))
            )
        };
        let affinity = st.kints[first].affinity;
        match cpu {
            Some(c) => c,
            None => pick_cpu(&mut st, affinity),
        }
    };
    deliver(m, device, message, target)
}

pub(crate) fn pick_cpu(st: &mut State, affinity: usize) -> usize {
    let affinity = affinity & st.all_cpus();
    match affinity.count_ones() {
        0 => 0,
        1 => affinity.trailing_zeros() as usize,
        n => {
            let k = st.random_below(n as usize);
            nth_set_bit(affinity, k)
        }
    }
}

fn nth_set_bit(mut mask: usize, n: usize) -> usize {
    for _ in 0..n {
        mask &= mask - 1;
    }
    mask.trailing_zeros() as usize
}

/// The connected interrupt object of one message (O(1): indexed by the connection).
fn message_target(st: &State, device: usize, message: u32) -> Option<usize> {
    let c = st.devices.get(device)?.message_connection?;
    st.connections[c].kints.get(message as usize).copied()
}

/// The connected interrupt objects a source reaches: one for a message, the chain for a line.
pub(crate) fn targets(st: &State, device: usize, message: Option<u32>) -> Vec<usize> {
    match message {
        Some(msg) => message_target(st, device, msg).into_iter().collect(),
        None => {
            let Some(vector) = st.devices.get(device).and_then(Device::line_vector) else {
                return Vec::new();
            };
            st.kints
                .iter()
                .enumerate()
                .filter(|(_, k)| {
                    k.connected && k.vector == vector && matches!(k.routine, Routine::Line(_))
                })
                .map(|(i, _)| i)
                .collect()
        }
    }
}

fn deliver(m: &Machine, device: usize, message: Option<u32>, cpu: usize) -> Option<bool> {
    let chain = match message {
        Some(msg) => Chain::One(message_target(&m.st(), device, msg)),
        None => Chain::Line(targets(&m.st(), device, None)),
    };
    let line_chain: Vec<usize> = match &chain {
        Chain::Line(v) => v.clone(),
        Chain::One(_) => Vec::new(),
    };
    let mut claimed = false;
    for k in chain {
        let (routine, context, irql, lock) = {
            let mut st = m.st();
            let kint = &st.kints[k];
            let (routine, context, irql, lock) =
                (kint.routine, kint.context, kint.sync_irql, kint.lock);
            if st.cpus[cpu].irql >= irql || st.locks[lock].is_some() {
                st.pending.push((device, message, cpu));
                st.event(|| Event::InterruptPended { cpu, message });
                return None;
            }
            st.locks[lock] = Some(cpu);
            (routine, context, irql, lock)
        };
        let kptr = kinterrupt_ptr(k);
        let result = on_cpu(m, cpu, irql, Callback::WdmIsr, || match routine {
            // SAFETY: the routine and context are what the driver connected; the emulator calls
            // them as the kernel does, at the interrupt's IRQL under its lock.
            Routine::Line(f) => unsafe { f(kptr, context as sys::PVOID) },
            // SAFETY: as above, for a message-based connection.
            Routine::Message(f, id) => unsafe { f(kptr, context as sys::PVOID, id) },
        });
        m.st().locks[lock] = None;
        if result != 0 {
            claimed = true;
            break;
        }
    }
    if !line_chain.is_empty() {
        after_line_isrs(m, device, &line_chain);
    }
    Some(claimed)
}

enum Chain {
    One(Option<usize>),
    Line(Vec<usize>),
}

impl IntoIterator for Chain {
    type Item = usize;
    type IntoIter = std::iter::Chain<std::option::IntoIter<usize>, std::vec::IntoIter<usize>>;
    fn into_iter(self) -> Self::IntoIter {
        match self {
            Chain::One(k) => k.into_iter().chain(Vec::new()),
            Chain::Line(v) => None.into_iter().chain(v),
        }
    }
}

/// The fake `PKINTERRUPT` for kernel interrupt object `k` (never dereferenced by drivers).
pub(crate) fn kinterrupt_ptr(k: usize) -> sys::PKINTERRUPT {
    (0x4B49_0000_0000 | (k + 1)) as sys::PKINTERRUPT
}

/// A preemption point: deliver what is pending and allowed, then run DPCs that may run now.
pub(crate) fn preempt(m: &Machine) {
    // A device event that came due acts first (it may raise what is delivered next).
    crate::pci::fire_due_events(m);
    deliver_pending(m);
    let (irql, interleave) = {
        let st = m.st();
        (st.irql(), st.config.interleave_dpcs)
    };
    if irql == sys::PASSIVE_LEVEL {
        run_dpcs(m);
    } else if irql == sys::DISPATCH_LEVEL && interleave {
        // Another processor may be running a DPC right now: sometimes run one of theirs here.
        let pick = {
            let mut st = m.st();
            let me = st.cpu;
            if crate::sync::holds_spin_lock(&st, me) {
                return;
            }
            let eligible: Vec<usize> = (0..st.cpus.len())
                .filter(|&c| {
                    c != me && st.cpus[c].irql < sys::DISPATCH_LEVEL && !st.cpus[c].queue.is_empty()
                })
                .collect();
            if !eligible.is_empty() && st.random_below(4) == 0 {
                let i = st.random_below(eligible.len());
                Some(eligible[i])
            } else {
                None
            }
        };
        if let Some(cpu) = pick {
            run_one_dpc(m, cpu);
        }
    }
}

pub(crate) fn deliver_pending(m: &Machine) {
    if m.st().pending.is_empty() {
        return;
    }
    loop {
        let next = {
            let mut st = m.st();
            let pos = st.pending.iter().position(|&(device, message, cpu)| {
                let kints = targets(&st, device, message);
                kints.first().is_some_and(|&k| {
                    st.cpus[cpu].irql < st.kints[k].sync_irql
                        && st.locks[st.kints[k].lock].is_none()
                })
            });
            pos.map(|p| st.pending.remove(p))
        };
        let Some((device, message, cpu)) = next else {
            return;
        };
        if deliver(m, device, message, cpu).is_none() {
            return;
        }
    }
}

/// Runs queued DPCs on every processor below DISPATCH_LEVEL until none is left, choosing the
/// processor of each step with the seeded PRNG.
pub(crate) fn run_dpcs(m: &Machine) {
    loop {
        // A scatter/gather callback NDIS deferred runs as a DPC too, in the order they were
        // owed.
        if crate::dma::run_deferred_sg_callback(m) {
            continue;
        }
        let cpu = {
            let mut st = m.st();
            let mut eligible = 0usize;
            for (c, cpu) in st.cpus.iter().enumerate() {
                if cpu.irql < sys::DISPATCH_LEVEL && !cpu.queue.is_empty() {
                    eligible |= 1 << c;
                }
            }
            match eligible.count_ones() {
                0 => return,
                1 => eligible.trailing_zeros() as usize,
                n => {
                    let k = st.random_below(n as usize);
                    nth_set_bit(eligible, k)
                }
            }
        };
        run_one_dpc(m, cpu);
    }
}

fn run_one_dpc(m: &Machine, cpu: usize) {
    let Some(dpc) = m.st().cpus[cpu].queue.pop_front() else {
        return;
    };
    crate::ndis::run_interrupt_dpc(m, cpu, dpc);
}
