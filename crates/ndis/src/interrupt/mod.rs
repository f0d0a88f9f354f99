//! Miniport interrupts: register, negotiate the grant, dispatch ISRs and DPCs to queues.
//!
//! A driver implements [`InterruptHandler`] for its interrupt state and calls
//! [`Init::register_interrupt`](crate::miniport::Init::register_interrupt) from
//! `MiniportInitializeEx`. The framework fills
//! `NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS` with monomorphized trampolines (header 0x84/1/96; the
//! message handlers and `MsiSupported` only when [`InterruptHandler::MSI_SUPPORTED`]), reads back
//! `InterruptType` and `MessageInfoTable` into a typed [`Grant`], and routes every interrupt to the
//! queues it serves ([`QueueMap`]). The framework deregisters after halt (or a failed initialize),
//! before the handler state it points to goes away; dropping a handle releases nothing.
//!
//! See `docs/interrupts.md`.

mod shared;
mod types;
pub mod wdm;

use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use ndis_sys as sys;

pub use shared::InterruptShared;
pub use types::{
    Grant, IsrOutcome, MessageId, MessageInfo, Polarity, ProcessorSet, QueueMap, Source,
    TriggerMode,
};

use crate::Status;
use crate::heap::Shared;
use crate::irql::{Dirql, Dispatch, Passive};
use crate::miniport::Initializing;
use crate::resources::{Kind, Release};

/// The driver's interrupt state. Lives inside the registration (pinned, shared with the ISR and
/// DPCs on every processor, hence `Sync`).
///
/// Three queues on a grant of two MSI-X messages, on the emulator: message 0 serves queues 0
/// and 2, and its DPC runs `dpc` for both (docs/interrupts.md, "Which `isr()` and `dpc()` calls
/// run"):
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// use ndis::driver::MiniportDriver;
/// use ndis::interrupt::{DpcContext, InterruptHandler, InterruptRegistration, IsrContext, IsrOutcome};
/// use ndis::irql::{DispatchOrBelow, Passive};
/// use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
/// use ndis::nbl::{Returned, SendLists};
/// use ndis::{NdisVersion, NdisVersions, Status};
/// use ndis_emu::{Config, Emulator, InterruptResources};
/// use ndis_sys as sys;
///
/// #[global_allocator]
/// static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;
///
/// static DPCS: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];
///
/// struct Queue(usize);
/// struct Nic {
///     queues: Vec<Queue>,
/// }
///
/// impl InterruptHandler for Nic {
///     type Queue = Queue;
///     const MSI_SUPPORTED: bool = true;
///     fn queues(&self) -> &[Queue] {
///         &self.queues
///     }
///     fn isr(&self, _queue: &Queue, _ctx: &IsrContext<'_>) -> IsrOutcome {
///         IsrOutcome::QueueDpc // (mask the queue's interrupt on the device here)
///     }
///     fn dpc(&self, queue: &Queue, _ctx: &mut DpcContext<'_>) {
///         DPCS[queue.0].fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// struct Adapter {
///     _interrupt: InterruptRegistration<Nic>, // deregistered by the framework after halt
/// }
///
/// impl Miniport for Adapter {
///     fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, _: &mut DispatchOrBelow<'_>) {
///         lists.each(|_| Status::SUCCESS);
///     }
///     fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &mut DispatchOrBelow<'_>) {}
///     fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
///         Quiesced::device_stopped()
///     }
/// }
///
/// struct Driver;
///
/// impl MiniportDriver for Driver {
///     const NDIS_VERSIONS: NdisVersions = NdisVersions::new(NdisVersion::V6_20, NdisVersion::V6_89);
///     const DRIVER_VERSION: (u8, u8) = (1, 0);
///     type Adapter = Adapter;
///     fn initialize(&'static self, init: &mut Init<'_>) -> Result<(Adapter, AdapterInfo), Status> {
///         let nic = Nic { queues: (0..3).map(Queue).collect() };
///         let interrupt = init.register_interrupt(nic)?; // RegisterError -> Status
///         let info = AdapterInfo::ethernet([2, 0, 0, 0, 0, 3], 1500, 1_000_000_000, true);
///         Ok((Adapter { _interrupt: interrupt }, info))
///     }
/// }
///
/// ndis::miniport_driver!(Driver = Driver);
///
/// fn main() {
///     let emu = Emulator::new(Config::default());
///     assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
///     let a = emu.add_adapter(InterruptResources::msix(2)).expect("initialize");
///     emu.fire_message(emu.device_of(a), 0);
///     let dpcs = DPCS.each_ref().map(|n| n.load(Ordering::Relaxed));
///     assert_eq!(dpcs, [1, 0, 1]);
///     emu.halt(a, sys::NdisHaltDeviceDisabled);
///     emu.unload();
/// }
/// ```
pub trait InterruptHandler: Send + Sync + Sized + 'static {
    /// Per-queue state, reachable from that queue's ISR and DPC without a lock.
    type Queue: Sync;

    /// `MsiSupported`: whether the driver accepts message-based grants. Decided at compile time;
    /// with `false` the message handlers are not even given to NDIS.
    const MSI_SUPPORTED: bool;
    /// `MsiSyncWithAllMessages`: serialize every message ISR under one lock. Costs parallelism;
    /// lets any ISR reach every [`InterruptShared`].
    const SYNC_WITH_ALL_MESSAGES: bool = false;

    /// The queues interrupts are routed to; index = queue number (see [`QueueMap`]).
    fn queues(&self) -> &[Self::Queue];

    /// Line-based grants only, before any queue ISR: is this interrupt ours? Read (and clear) the
    /// device's cause register here. Returning false lets the next ISR on a shared line try.
    fn line_claim(&self, _ctx: &IsrContext<'_>) -> bool {
        true
    }

    /// The ISR work for one queue the interrupt serves, at DIRQL. Mask the queue's interrupt and
    /// ask for a DPC; keep it short.
    fn isr(&self, queue: &Self::Queue, ctx: &IsrContext<'_>) -> IsrOutcome;

    /// The DPC work for one queue, at DISPATCH_LEVEL on the processor the DPC targeted. Indicate at
    /// most [`DpcContext::budget`] receives; re-enable the queue's interrupt when done.
    fn dpc(&self, queue: &Self::Queue, ctx: &mut DpcContext<'_>);

    /// Diagnostic hooks NDIS may call at DIRQL; not part of normal operation.
    fn disable(&self, _queue: &Self::Queue, _ctx: &IsrContext<'_>) {}
    fn enable(&self, _queue: &Self::Queue, _ctx: &IsrContext<'_>) {}
}

/// Grant state shared with the trampolines.
pub(crate) struct Core {
    handle: AtomicPtr<c_void>,
    /// `NOT_READY` until registration returned; then 0 (line) or the message count.
    messages: AtomicU32,
    /// Distance between the queues one message serves: the message count, at least 1.
    step: AtomicU32,
    sync_all: bool,
    /// NDIS 6.20 and later pass `NDIS_RECEIVE_THROTTLE_PARAMETERS` as the DPC's third
    /// argument; before, that argument is `NdisReserved1` and must not be touched.
    throttle: bool,
    /// Passive-level synchronize calls through the handle; run down before deregistration, so
    /// a handle kept past halt never reaches a freed interrupt object.
    calls: crate::sync::Rundown,
    /// Where the handler state lies (start, length): the `InterruptShared` values this
    /// interrupt's lock guards are the ones inside it.
    handler_start: AtomicUsize,
    /// 0 until `register` set it (an early ISR skips the check).
    handler_len: AtomicUsize,
    /// The adapter's "device out of D0" flag (`AdapterResources::device_off`).
    device_off: *const core::sync::atomic::AtomicBool,
}

const NOT_READY: u32 = u32::MAX;

#[cold]
#[track_caller]
fn not_this_interrupts_state() -> ! {
    panic!(
        "InterruptShared state reached through an interrupt whose handler does not hold it: it is \
         guarded by another interrupt's lock (keep InterruptShared inline in the handler)"
    )
}

#[cold]
#[track_caller]
fn guard_outside_grant(m: MessageId, messages: u32) -> ! {
    panic!(
        "InterruptShared guarded by message {} reached, but the grant has {messages} messages \
         (0..{messages}): build it with a MessageId of the grant",
        m.0
    )
}

impl Core {
    /// State guarded by message `m` is reachable only when `m` is in the grant: the lock of a
    /// message NDIS never granted does not exist (`NdisMSynchronizeWithInterruptEx` with such a
    /// `MessageId` reads past the message table). A line grant has one lock and ignores the id.
    ///
    /// And the state must be this interrupt's: inside its handler (another registration's
    /// `InterruptShared` is guarded by another interrupt's lock).
    #[track_caller]
    pub(crate) fn check_guard<T>(&self, shared: &T, m: MessageId) {
        let len = self.handler_len.load(Ordering::Acquire);
        let start = self.handler_start.load(Ordering::Relaxed);
        let at = shared as *const T as usize;
        if len != 0 && !(at >= start && at + core::mem::size_of::<T>() <= start + len) {
            not_this_interrupts_state();
        }
        let messages = self.messages.load(Ordering::Acquire);
        if messages != NOT_READY && messages != 0 && m.0 >= messages {
            guard_outside_grant(m, messages);
        }
    }

    /// The `MessageId` to pass NDIS for state guarded by `m` (0 for a line grant).
    pub(crate) fn sync_message(&self, m: MessageId) -> u32 {
        match self.messages.load(Ordering::Acquire) {
            0 | NOT_READY => 0,
            _ => m.0,
        }
    }

    fn handle(&self) -> sys::NDIS_HANDLE {
        self.handle.load(Ordering::Acquire)
    }

    /// Whether the adapter's device is out of D0 (see [`crate::power`]).
    #[inline(always)]
    fn device_is_off(&self) -> bool {
        // SAFETY: `device_off` points into the `AdapterResources` this interrupt was adopted by;
        // they release (deregister) the interrupt before they are dropped, and NDIS calls no ISR
        // or DPC after deregistration, so the flag outlives every call that reads it.
        unsafe { &*self.device_off }.load(Ordering::Acquire)
    }

    fn queue_dpc_on(&self, source: Source, set: ProcessorSet) -> ProcessorSet {
        let handle = self.handle();
        if handle.is_null() || set.is_empty() {
            return ProcessorSet::EMPTY;
        }
        let message = match source {
            Source::Line => 0,
            Source::Message(MessageId(m)) => m,
        };
        let mut raw = set.to_raw();
        // SAFETY: `handle` is the live interrupt handle (it is published after registration and
        // the registration deregisters only after every ISR and DPC returned); `raw` is a valid
        // local GROUP_AFFINITY. NdisMQueueDpcEx may be called at any IRQL.
        let newly =
            unsafe { sys::NdisMQueueDpcEx(handle, message, &mut raw, core::ptr::null_mut()) };
        ProcessorSet::from_mask(set.group(), newly)
    }
}

fn current_processor() -> (u16, u32) {
    let mut n = sys::PROCESSOR_NUMBER::default();
    // SAFETY: a valid out-pointer; callable at any IRQL.
    unsafe { sys::KeGetCurrentProcessorNumberEx(&mut n) };
    (n.Group, n.Number as u32)
}

/// What an ISR gets: its source, DPC queueing, and ISR-side access to [`InterruptShared`] state.
pub struct IsrContext<'a> {
    core: &'a Core,
    source: Source,
    irql: Dirql<'a>,
}

impl<'a> IsrContext<'a> {
    pub fn source(&self) -> Source {
        self.source
    }

    /// The device-IRQL token of this ISR.
    pub fn irql(&self) -> &Dirql<'a> {
        &self.irql
    }

    /// The processor running this ISR as (group, number).
    pub fn processor(&self) -> (u16, u32) {
        current_processor()
    }

    /// Queues this interrupt's DPC on `set` now (`NdisMQueueDpcEx`); returns the processors that
    /// got a newly queued DPC. Usually the ISR returns [`IsrOutcome::QueueDpcOn`] instead.
    pub fn queue_dpc_on(&self, set: ProcessorSet) -> ProcessorSet {
        self.core.queue_dpc_on(self.source, set)
    }
}

/// The receive throttle of one DPC (`NDIS_RECEIVE_THROTTLE_PARAMETERS`) as a budget to spend.
/// Neither `Copy` nor constructible by a driver: a DPC can only spend its own budget, not put
/// back an earlier or unthrottled one.
#[derive(Debug, PartialEq, Eq)]
pub struct ReceiveBudget {
    remaining: u32,
    throttled: bool,
    more: bool,
}

impl ReceiveBudget {
    fn new(max: u32) -> Self {
        ReceiveBudget {
            remaining: max,
            throttled: max != sys::NDIS_INDICATE_ALL_NBLS,
            more: false,
        }
    }

    /// Whether NDIS set a limit (otherwise the driver bounds its own work).
    pub fn is_throttled(&self) -> bool {
        self.throttled
    }

    /// Receives this DPC may still indicate. Without a throttle this starts at `u32::MAX`: the
    /// driver applies its own bound then.
    #[inline]
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Takes up to `wanted` indications from the budget; returns how many were granted.
    #[inline]
    pub fn take(&mut self, wanted: u32) -> u32 {
        let granted = wanted.min(self.remaining);
        self.remaining -= granted;
        granted
    }

    /// Work is left: have this DPC called again. Under a throttle this sets `MoreNblsPending` and
    /// the interrupt must stay masked; without one the framework requeues the DPC on this
    /// processor itself (NDIS requires `MoreNblsPending = 0` then).
    pub fn request_more(&mut self) {
        self.more = true;
    }

    pub fn more_requested(&self) -> bool {
        self.more
    }
}

/// What a DPC gets: its source, the receive budget, DPC queueing and synchronization.
pub struct DpcContext<'a> {
    core: &'a Core,
    source: Source,
    budget: ReceiveBudget,
    irql: Dispatch<'a>,
}

impl<'a> DpcContext<'a> {
    pub fn source(&self) -> Source {
        self.source
    }

    /// The DISPATCH_LEVEL token of this DPC. Mutable: a scope that raises the IRQL (a spin
    /// lock) takes it for its duration.
    pub fn irql(&mut self) -> &mut Dispatch<'a> {
        &mut self.irql
    }

    pub fn budget(&mut self) -> &mut ReceiveBudget {
        &mut self.budget
    }

    /// The processor running this DPC as (group, number).
    pub fn processor(&self) -> (u16, u32) {
        current_processor()
    }

    /// Queues this interrupt's DPC on more processors; returns the newly queued ones.
    pub fn queue_dpc_on(&self, set: ProcessorSet) -> ProcessorSet {
        self.core.queue_dpc_on(self.source, set)
    }

    /// Runs `f` on state shared with the ISR, under the interrupt lock at DIRQL. The DPC's
    /// context (and its DISPATCH_LEVEL token) is borrowed for the call; `f` gets the DIRQL token
    /// it runs under, so nothing that needs DISPATCH_LEVEL or lower compiles inside.
    ///
    /// `f` is `Copy + Send`: it captures nothing it owns and no `&Cell`/`&RefCell`, so nothing
    /// with a `Drop` can be moved into it and dropped at DIRQL (a [`crate::nbl::MappedSend`]
    /// would free its scatter/gather list there, a [`crate::nbl::SendCompletion`] would complete
    /// its lists: NDIS allows both only at IRQL <= DISPATCH_LEVEL). Return what it computes.
    pub fn synchronize<T: Copy + Send, R>(
        &mut self,
        shared: &InterruptShared<T>,
        f: impl FnOnce(&mut T, &mut Dirql<'_>) -> R + Copy + Send,
    ) -> R {
        shared.synchronize(self.core, f)
    }
}

struct Inner<H> {
    core: Core,
    handler: H,
    /// Written once by `register` before `core.messages` is published; read-only afterwards.
    infos: UnsafeCell<Vec<MessageInfo>>,
}

// SAFETY: `infos` is written only by `register` before the grant is published (the trampolines
// never touch it) and only read afterwards; `core.device_off` points to an atomic (shared
// access is its purpose) that outlives every read (see `Core::device_is_off`); everything else
// is Sync on its own.
unsafe impl<H: Sync> Sync for Inner<H> {}
// SAFETY: moving the state to another processor moves `H` (Send), plain data, and a pointer to
// an atomic that any processor may read.
unsafe impl<H: Send> Send for Inner<H> {}

impl<H: InterruptHandler> Release for Inner<H> {
    const KIND: Kind = Kind::Interrupt;
    fn release(&self, _kept: bool) {
        // Always deregistered: NDIS requires it before halt returns. A handle kept past halt
        // keeps the state alive, and its `synchronize` refuses: no call through the handle
        // starts after the run-down, and those under way end before deregistration.
        self.core.calls.run_down();
        let handle = self
            .core
            .handle
            .swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !handle.is_null() {
            // SAFETY: the live registration, deregistered once (the handle was swapped out), at
            // PASSIVE_LEVEL in halt or initialize; the state outlives it (this reference).
            unsafe { sys::NdisMDeregisterInterruptEx(handle) };
        }
    }
}

/// Registration failed: the status NDIS returned (or `RESOURCES`), and the handler state back
/// (nothing leaked).
#[derive(Debug)]
pub struct RegisterError<H> {
    pub status: Status,
    pub handler: H,
}

impl<H> From<RegisterError<H>> for Status {
    fn from(e: RegisterError<H>) -> Status {
        e.status
    }
}

/// An interrupt registered with NDIS, and the handler state it runs. Registered only in
/// initialize ([`Init::register_interrupt`](crate::miniport::Init::register_interrupt));
/// deregistered by the framework when the adapter's state is gone (after
/// [`Miniport::halt`](crate::miniport::Miniport::halt) or a failed initialize), before the shared
/// memory and mappings the handler may use: dropping this handle releases nothing, so it may be
/// dropped anywhere, even in the interrupt's own DPC. The state lives until the last handle and
/// the framework's reference are gone. Clones share the registration.
pub struct InterruptRegistration<H: InterruptHandler> {
    inner: Shared<Inner<H>>,
}

impl<H: InterruptHandler> Clone for InterruptRegistration<H> {
    fn clone(&self) -> Self {
        InterruptRegistration {
            inner: self.inner.clone(),
        }
    }
}

impl<H: InterruptHandler> core::fmt::Debug for InterruptRegistration<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InterruptRegistration")
            .field("grant", &self.grant())
            .finish_non_exhaustive()
    }
}

impl<H: InterruptHandler> InterruptRegistration<H> {
    /// `NdisMRegisterInterruptEx`, from `MiniportInitializeEx` after the registration attributes
    /// were set. The ISR may run before this returns: interrupts that arrive then are
    /// acknowledged (messages) or offered to [`InterruptHandler::line_claim`] (line) and request
    /// no DPC, so enable device interrupts after registration.
    pub(crate) fn register(init: &Initializing<'_>, handler: H) -> Result<Self, RegisterError<H>> {
        let inner = Inner {
            core: Core {
                handle: AtomicPtr::new(core::ptr::null_mut()),
                messages: AtomicU32::new(NOT_READY),
                step: AtomicU32::new(1),
                sync_all: H::MSI_SUPPORTED && H::SYNC_WITH_ALL_MESSAGES,
                throttle: init.version() >= crate::NdisVersion::V6_20,
                calls: crate::sync::Rundown::new(),
                handler_start: AtomicUsize::new(0),
                handler_len: AtomicUsize::new(0),
                device_off: init.resources().device_off(),
            },
            handler,
            infos: UnsafeCell::new(Vec::new()),
        };
        let inner = match Shared::try_new_or_back(inner, init.passive()) {
            Ok(i) => i,
            Err(inner) => {
                return Err(RegisterError {
                    status: Status::RESOURCES,
                    handler: inner.handler,
                });
            }
        };
        let give_back = |inner: Shared<Inner<H>>, status: Status| -> RegisterError<H> {
            match Shared::try_unwrap(inner) {
                Ok(i) => RegisterError {
                    status,
                    handler: i.handler,
                },
                Err(_) => unreachable!("NDIS holds no reference to a failed registration"),
            }
        };
        let mut chars = characteristics::<H>();
        let mut handle: sys::NDIS_HANDLE = core::ptr::null_mut();
        let context = &*inner as *const Inner<H> as sys::NDIS_HANDLE;
        // SAFETY: inside MiniportInitializeEx of this adapter (the `Initializing` proof); the
        // context points to heap state that never moves and outlives the registration (the
        // framework deregisters before dropping its reference); `chars` and `handle` are valid
        // locals.
        let status = unsafe {
            sys::NdisMRegisterInterruptEx(init.handle().as_raw(), context, &mut chars, &mut handle)
        };
        if status != sys::NDIS_STATUS_SUCCESS {
            return Err(give_back(inner, Status(status)));
        }
        let deregister = || {
            // SAFETY: the registration just made, deregistered once on this failure path.
            unsafe { sys::NdisMDeregisterInterruptEx(handle) }
        };
        let messages = if chars.InterruptType == sys::NDIS_CONNECT_MESSAGE_BASED
            && !chars.MessageInfoTable.is_null()
        {
            // SAFETY: NDIS returned a table of MessageCount entries valid until deregistration.
            let table = unsafe { &*chars.MessageInfoTable };
            let count = table.MessageCount;
            let mut infos = match crate::heap::try_vec(count as usize, init.passive()) {
                Ok(v) => v,
                Err(s) => {
                    deregister();
                    return Err(give_back(inner, s));
                }
            };
            for i in 0..count {
                // SAFETY: entry i < MessageCount lies in the NDIS-owned table.
                let e = unsafe { &*table.MessageInfo.as_ptr().add(i as usize) };
                infos.push(MessageInfo::from_raw(i, e));
            }
            // SAFETY: the trampolines never access `infos`, and the grant is not yet published,
            // so this is the only access.
            unsafe { *inner.infos.get() = infos };
            count
        } else {
            0
        };
        if let Err(s) = init.resources().adopt(&inner, init.passive()) {
            deregister();
            return Err(give_back(inner, s));
        }
        let at = &inner.handler as *const H as usize;
        inner.core.handler_start.store(at, Ordering::Relaxed);
        inner
            .core
            .handler_len
            .store(core::mem::size_of::<H>(), Ordering::Release);
        inner.core.handle.store(handle, Ordering::Release);
        inner.core.step.store(messages.max(1), Ordering::Relaxed);
        inner.core.messages.store(messages, Ordering::Release);
        Ok(InterruptRegistration { inner })
    }

    pub fn handler(&self) -> &H {
        &self.inner.handler
    }

    pub fn grant(&self) -> Grant<'_> {
        if self.inner.core.messages.load(Ordering::Acquire) == 0 {
            Grant::Line
        } else {
            // SAFETY: written before publication, read-only since.
            Grant::Messages(unsafe { &*self.inner.infos.get() })
        }
    }

    /// The queue-to-message mapping in force for the handler's current queue list.
    pub fn queue_map(&self) -> QueueMap {
        QueueMap::new(self.handler().queues().len(), self.grant().message_count())
    }

    /// Runs `f` on state shared with the ISR, under the interrupt lock at DIRQL, from passive
    /// code. The caller's token is borrowed for the call; `f` gets the DIRQL token it runs under.
    /// `f` is `Copy + Send` for the reason [`DpcContext::synchronize`] gives.
    pub fn synchronize<T: Copy + Send, R>(
        &self,
        _at: &mut Passive<'_>,
        shared: &InterruptShared<T>,
        f: impl FnOnce(&mut T, &mut Dirql<'_>) -> R + Copy + Send,
    ) -> R {
        let core = &self.inner.core;
        match core.calls.enter(|| shared.synchronize(core, f)) {
            Some(r) => r,
            None => shared::used_after_deregistration(),
        }
    }
}

/// The characteristics the framework registers for `H`.
pub fn characteristics<H: InterruptHandler>() -> sys::NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS {
    let msi = H::MSI_SUPPORTED;
    sys::NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_INTERRUPT,
            Revision: sys::NDIS_MINIPORT_INTERRUPT_REVISION_1,
            Size: sys::NDIS_SIZEOF_MINIPORT_INTERRUPT_CHARACTERISTICS_REVISION_1,
        },
        InterruptHandler: Some(trampolines::line_isr::<H>),
        InterruptDpcHandler: Some(trampolines::line_dpc::<H>),
        DisableInterruptHandler: Some(trampolines::line_disable::<H>),
        EnableInterruptHandler: Some(trampolines::line_enable::<H>),
        MsiSupported: msi as u8,
        MsiSyncWithAllMessages: (msi && H::SYNC_WITH_ALL_MESSAGES) as u8,
        MessageInterruptHandler: if msi {
            Some(trampolines::message_isr::<H>)
        } else {
            None
        },
        MessageInterruptDpcHandler: if msi {
            Some(trampolines::message_dpc::<H>)
        } else {
            None
        },
        DisableMessageInterruptHandler: if msi {
            Some(trampolines::message_disable::<H>)
        } else {
            None
        },
        EnableMessageInterruptHandler: if msi {
            Some(trampolines::message_enable::<H>)
        } else {
            None
        },
        InterruptType: 0,
        MessageInfoTable: core::ptr::null_mut(),
    }
}

/// The `extern` functions NDIS calls: cast the context back to the registration's state and call
/// the trait. One monomorphized set per handler type.
mod trampolines {
    use super::*;

    /// # Safety
    /// `ctx` is the context `register` passed: a live, pinned `Inner<H>`.
    unsafe fn inner<'a, H>(ctx: sys::NDIS_HANDLE) -> &'a Inner<H> {
        // SAFETY: the caller's contract.
        unsafe { &*(ctx as *const Inner<H>) }
    }

    /// Calls `f` for each queue `source` serves (the [`QueueMap`] policy, walked directly; `step`
    /// is the message count, at least 1).
    #[inline(always)]
    fn for_each_queue<Q>(queues: &[Q], step: u32, source: Source, mut f: impl FnMut(&Q)) {
        match source {
            Source::Message(MessageId(m)) => {
                let step = step as usize;
                let mut q = m as usize;
                while q < queues.len() {
                    f(&queues[q]);
                    q += step;
                }
            }
            Source::Line => queues.iter().for_each(f),
        }
    }

    /// The hot path of both ISR trampolines: route to the queues, combine their outcomes, write
    /// NDIS's outputs. Rare cases (an interrupt before registration returned, DPCs on chosen
    /// processors) leave through cold functions in tail position, so the hot path saves no
    /// registers.
    #[inline(always)]
    fn isr<H: InterruptHandler>(
        inner: &Inner<H>,
        source: Source,
        queue_default: *mut sys::BOOLEAN,
        targets: *mut u32,
    ) -> sys::BOOLEAN {
        if inner.core.messages.load(Ordering::Acquire) == NOT_READY {
            return match source {
                // Messages are never shared: acknowledge, request nothing.
                Source::Message(_) => report(queue_default, targets, false, sys::TRUE),
                Source::Line => early_line_isr(inner, queue_default, targets),
            };
        }
        if inner.core.device_is_off() {
            return device_off_isr(source, queue_default, targets);
        }
        let step = inner.core.step.load(Ordering::Relaxed);
        // SAFETY: NDIS runs ISRs at DIRQL under the interrupt lock.
        let irql = unsafe { Dirql::assume() };
        let ctx = IsrContext {
            core: &inner.core,
            source,
            irql,
        };
        let mut outcome = match source {
            Source::Line => {
                if !inner.handler.line_claim(&ctx) {
                    return report(queue_default, targets, false, sys::FALSE);
                }
                IsrOutcome::Handled
            }
            Source::Message(_) => IsrOutcome::NotMine,
        };
        for_each_queue(inner.handler.queues(), step, source, |queue| {
            outcome = outcome.combine(inner.handler.isr(queue, &ctx));
        });
        match outcome {
            IsrOutcome::QueueDpc => report(queue_default, targets, true, sys::TRUE),
            IsrOutcome::Handled => report(queue_default, targets, false, sys::TRUE),
            IsrOutcome::NotMine => report(queue_default, targets, false, sys::FALSE),
            IsrOutcome::QueueDpcOn(set) => {
                queue_on(&inner.core, source, set, queue_default, targets)
            }
        }
    }

    /// Writes the outputs NDIS reads (NDIS 6.20 style: TargetProcessors stays 0).
    #[inline(always)]
    fn report(
        queue_default: *mut sys::BOOLEAN,
        targets: *mut u32,
        default: bool,
        claimed: sys::BOOLEAN,
    ) -> sys::BOOLEAN {
        // SAFETY: NDIS passes valid out-pointers to the ISR.
        unsafe {
            *queue_default = default as sys::BOOLEAN;
            *targets = 0;
        }
        claimed
    }

    #[cold]
    #[inline(never)]
    fn queue_on(
        core: &Core,
        source: Source,
        set: ProcessorSet,
        queue_default: *mut sys::BOOLEAN,
        targets: *mut u32,
    ) -> sys::BOOLEAN {
        core.queue_dpc_on(source, set);
        report(queue_default, targets, false, sys::TRUE)
    }

    /// The device is out of D0: its registers must not be read (they read all ones), so the
    /// driver is not asked. A line is someone else's interrupt; a message cannot come from a
    /// powered-down device, and is acknowledged without a DPC.
    #[cold]
    #[inline(never)]
    fn device_off_isr(
        source: Source,
        queue_default: *mut sys::BOOLEAN,
        targets: *mut u32,
    ) -> sys::BOOLEAN {
        let claimed = match source {
            Source::Line => sys::FALSE,
            Source::Message(_) => sys::TRUE,
        };
        report(queue_default, targets, false, claimed)
    }

    /// A line interrupt before registration returned: ask `line_claim`, request nothing.
    #[cold]
    #[inline(never)]
    fn early_line_isr<H: InterruptHandler>(
        inner: &Inner<H>,
        queue_default: *mut sys::BOOLEAN,
        targets: *mut u32,
    ) -> sys::BOOLEAN {
        // SAFETY: NDIS runs ISRs at DIRQL under the interrupt lock.
        let irql = unsafe { Dirql::assume() };
        let ctx = IsrContext {
            core: &inner.core,
            source: Source::Line,
            irql,
        };
        let claimed = inner.handler.line_claim(&ctx);
        report(queue_default, targets, false, claimed as sys::BOOLEAN)
    }

    pub(super) unsafe extern "win64-unwind" fn line_isr<H: InterruptHandler>(
        ctx: sys::NDIS_HANDLE,
        queue_default: *mut sys::BOOLEAN,
        targets: *mut u32,
    ) -> sys::BOOLEAN {
        // SAFETY: NDIS passes back the context `register` gave it.
        isr(
            unsafe { inner::<H>(ctx) },
            Source::Line,
            queue_default,
            targets,
        )
    }

    pub(super) unsafe extern "win64-unwind" fn message_isr<H: InterruptHandler>(
        ctx: sys::NDIS_HANDLE,
        message: u32,
        queue_default: *mut sys::BOOLEAN,
        targets: *mut u32,
    ) -> sys::BOOLEAN {
        // SAFETY: NDIS passes back the context `register` gave it.
        isr(
            unsafe { inner::<H>(ctx) },
            Source::Message(MessageId(message)),
            queue_default,
            targets,
        )
    }

    #[inline(always)]
    fn dpc<H: InterruptHandler>(inner: &Inner<H>, source: Source, throttle: sys::PVOID) {
        let throttle = if inner.core.throttle {
            throttle.cast::<sys::NDIS_RECEIVE_THROTTLE_PARAMETERS>()
        } else {
            core::ptr::null_mut() // NdisReserved1 before NDIS 6.20
        };
        let max = if throttle.is_null() {
            sys::NDIS_INDICATE_ALL_NBLS
        } else {
            // SAFETY: NDIS 6.20+ passes a valid throttle block for the DPC's duration.
            unsafe { (*throttle).MaxNblsToIndicate }
        };
        // A DPC queued before the device left D0 finds it off: nothing to do, and its registers
        // must not be touched.
        if inner.core.device_is_off() {
            if !throttle.is_null() {
                // SAFETY: NDIS 6.20+ passes a valid throttle block for the DPC's duration.
                unsafe { (*throttle).Flags &= !sys::NDIS_RECEIVE_THROTTLE_MORE_NBLS_PENDING };
            }
            return;
        }
        // DPCs are only queued once the grant is published: no readiness check here.
        let step = inner.core.step.load(Ordering::Relaxed);
        let mut ctx = DpcContext {
            core: &inner.core,
            source,
            budget: ReceiveBudget::new(max),
            // SAFETY: NDIS runs interrupt DPCs at DISPATCH_LEVEL.
            irql: unsafe { Dispatch::assume() },
        };
        for_each_queue(inner.handler.queues(), step, source, |queue| {
            inner.handler.dpc(queue, &mut ctx)
        });
        if ctx.budget.more {
            more_requested(&inner.core, source, throttle, ctx.budget.is_throttled());
        } else if !throttle.is_null() {
            // SAFETY: as above; bit 0 of Flags is MoreNblsPending, which must end up 0.
            unsafe { (*throttle).Flags &= !sys::NDIS_RECEIVE_THROTTLE_MORE_NBLS_PENDING };
        }
    }

    /// Work is left after the DPC: under a throttle, `MoreNblsPending` makes NDIS call it again;
    /// without one, the DPC is requeued on this processor (and the flag stays 0).
    #[cold]
    #[inline(never)]
    fn more_requested(
        core: &Core,
        source: Source,
        throttle: *mut sys::NDIS_RECEIVE_THROTTLE_PARAMETERS,
        throttled: bool,
    ) {
        if !throttle.is_null() {
            // SAFETY: NDIS's throttle block for this DPC; bit 0 of Flags is MoreNblsPending.
            unsafe {
                if throttled {
                    (*throttle).Flags |= sys::NDIS_RECEIVE_THROTTLE_MORE_NBLS_PENDING;
                    return;
                }
                (*throttle).Flags &= !sys::NDIS_RECEIVE_THROTTLE_MORE_NBLS_PENDING;
            }
        }
        let (group, number) = current_processor();
        core.queue_dpc_on(source, ProcessorSet::single(group, number));
    }

    pub(super) unsafe extern "win64-unwind" fn line_dpc<H: InterruptHandler>(
        ctx: sys::NDIS_HANDLE,
        _dpc_context: sys::PVOID,
        throttle: sys::PVOID,
        _reserved: sys::PVOID,
    ) {
        // SAFETY: NDIS passes back the context `register` gave it.
        dpc(unsafe { inner::<H>(ctx) }, Source::Line, throttle)
    }

    pub(super) unsafe extern "win64-unwind" fn message_dpc<H: InterruptHandler>(
        ctx: sys::NDIS_HANDLE,
        message: u32,
        _dpc_context: sys::PVOID,
        throttle: sys::PVOID,
        _reserved: sys::PVOID,
    ) {
        // SAFETY: NDIS passes back the context `register` gave it.
        dpc(
            unsafe { inner::<H>(ctx) },
            Source::Message(MessageId(message)),
            throttle,
        )
    }

    fn each_queue<H: InterruptHandler>(inner: &Inner<H>, source: Source, enable: bool) {
        let messages = inner.core.messages.load(Ordering::Acquire);
        if messages == NOT_READY {
            return;
        }
        // SAFETY: NDIS calls enable/disable at DIRQL.
        let irql = unsafe { Dirql::assume() };
        let ctx = IsrContext {
            core: &inner.core,
            source,
            irql,
        };
        let queues = inner.handler.queues();
        for q in QueueMap::new(queues.len(), messages).queues_of(source) {
            if enable {
                inner.handler.enable(&queues[q], &ctx);
            } else {
                inner.handler.disable(&queues[q], &ctx);
            }
        }
    }

    pub(super) unsafe extern "win64-unwind" fn line_disable<H: InterruptHandler>(
        ctx: sys::NDIS_HANDLE,
    ) {
        // SAFETY: NDIS passes back the context `register` gave it.
        each_queue(unsafe { inner::<H>(ctx) }, Source::Line, false)
    }

    pub(super) unsafe extern "win64-unwind" fn line_enable<H: InterruptHandler>(
        ctx: sys::NDIS_HANDLE,
    ) {
        // SAFETY: NDIS passes back the context `register` gave it.
        each_queue(unsafe { inner::<H>(ctx) }, Source::Line, true)
    }

    pub(super) unsafe extern "win64-unwind" fn message_disable<H: InterruptHandler>(
        ctx: sys::NDIS_HANDLE,
        m: u32,
    ) {
        // SAFETY: NDIS passes back the context `register` gave it.
        each_queue(
            unsafe { inner::<H>(ctx) },
            Source::Message(MessageId(m)),
            false,
        )
    }

    pub(super) unsafe extern "win64-unwind" fn message_enable<H: InterruptHandler>(
        ctx: sys::NDIS_HANDLE,
        m: u32,
    ) {
        // SAFETY: NDIS passes back the context `register` gave it.
        each_queue(
            unsafe { inner::<H>(ctx) },
            Source::Message(MessageId(m)),
            true,
        )
    }
}
