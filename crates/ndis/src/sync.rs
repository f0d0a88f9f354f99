//! Spin locks (`NDIS_SPIN_LOCK`) around data, and small processor services.

#[cfg(not(loom))]
use core::cell::UnsafeCell;

use ndis_sys as sys;

use crate::irql::Dispatch;

pub(crate) mod atomic;
pub(crate) mod cell;
#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(loom)]
pub(crate) mod recorder;

use atomic::{AtomicU8, AtomicUsize, Ordering};

/// Data shared by DPCs and send/return paths on several processors, under an NDIS spin lock
/// (the caller runs at DISPATCH_LEVEL while holding it). Data shared with an ISR needs
/// [`InterruptShared`](crate::interrupt::InterruptShared) instead.
///
/// Taking the lock needs a token of a context at or below DISPATCH_LEVEL, so an ISR (which only
/// has a [`Dirql`](crate::irql::Dirql) token) cannot take it: that does not compile. The caller's
/// token is borrowed mutably while the lock is held and the closure gets a [`Dispatch`] token
/// instead, so PASSIVE_LEVEL calls inside the closure do not compile either (see
/// [`crate::irql`]).
///
/// Creating a lock allocates nothing: the `NDIS_SPIN_LOCK` (a `KSPIN_LOCK` word and the saved
/// IRQL) lives inline. It may move while nobody holds it; `with` borrows the lock, so a held
/// lock cannot move.
pub struct SpinLock<T> {
    #[cfg(not(loom))]
    lock: UnsafeCell<sys::NDIS_SPIN_LOCK>,
    /// The model-checking build's stand-in for the NDIS lock.
    #[cfg(loom)]
    lock: loom::sync::Mutex<()>,
    value: cell::UnsafeCell<T>,
}

// SAFETY: the value is only reached under the lock, from one processor at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the owner moves an unheld lock word and the value; nothing points into them
// while nobody holds the lock.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub fn new(value: T) -> Self {
        #[cfg(not(loom))]
        let lock = UnsafeCell::new(sys::NDIS_SPIN_LOCK::default());
        #[cfg(not(loom))]
        // SAFETY: fresh lock storage, initialized before any use; NdisAllocateSpinLock only
        // initializes the word (no allocation, any IRQL).
        unsafe {
            sys::NdisAllocateSpinLock(lock.get())
        };
        #[cfg(loom)]
        let lock = loom::sync::Mutex::new(());
        SpinLock {
            lock,
            value: cell::UnsafeCell::new(value),
        }
    }

    /// Runs `f` with the value, holding the lock at DISPATCH_LEVEL. `irql` is the caller's
    /// token, unusable until `f` returns; `f` gets the DISPATCH_LEVEL token it runs under.
    /// Do not take the same lock inside `f`: it would deadlock (the emulator stops the run
    /// instead).
    pub fn with<C: crate::irql::AtMostDispatch, R>(
        &self,
        _irql: &mut C,
        f: impl FnOnce(&mut T, &mut Dispatch<'_>) -> R,
    ) -> R {
        self.with_unchecked(|value| {
            // SAFETY: the lock is held, so this runs at DISPATCH_LEVEL until it is released,
            // and the token cannot outlive the closure (it borrows this frame).
            let mut dispatch = unsafe { Dispatch::assume() };
            f(value, &mut dispatch)
        })
    }

    /// For framework code that knows its IRQL (<= DISPATCH_LEVEL) without a token at hand, and
    /// whose closure makes no call that needs one.
    pub(crate) fn with_unchecked<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        #[cfg(not(loom))]
        // SAFETY: an initialized lock that cannot move while borrowed; IRQL <= DISPATCH_LEVEL
        // (the token of `with`, or the framework's own knowledge of the callback it runs in).
        unsafe {
            sys::NdisAcquireSpinLock(self.lock.get())
        };
        #[cfg(loom)]
        let held = self.lock.lock().unwrap();
        // SAFETY: the lock is held: exclusive access.
        let r = self.value.with_mut(|value| f(unsafe { &mut *value }));
        #[cfg(not(loom))]
        // SAFETY: acquired above on this processor.
        unsafe {
            sys::NdisReleaseSpinLock(self.lock.get())
        };
        #[cfg(loom)]
        drop(held);
        r
    }

    /// Exclusive access without locking, when the borrow checker proves no one else can reach
    /// the value.
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self`: nobody else can reach the value for the borrow's length.
        self.value.with_mut(|value| unsafe { &mut *value })
    }
}

impl<T> Drop for SpinLock<T> {
    fn drop(&mut self) {
        #[cfg(not(loom))]
        // SAFETY: initialized in `new`, not held (we own it exclusively).
        unsafe {
            sys::NdisFreeSpinLock(self.lock.get())
        };
    }
}

/// The processor the caller runs on: its system-wide index, as `KeGetCurrentProcessorNumberEx`
/// returns it (the group-relative number only on a machine with one processor group).
pub fn current_processor() -> u32 {
    // SAFETY: a null out-pointer is allowed; any IRQL.
    unsafe { sys::KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) }
}

/// Processors in group 0.
pub fn processor_count() -> u32 {
    // SAFETY: any IRQL.
    unsafe { sys::KeQueryActiveProcessorCountEx(0) }
}

/// Busy-waits `microseconds` (device polling during initialize or halt only: it burns the CPU).
pub fn stall(microseconds: u32) {
    // SAFETY: any IRQL.
    unsafe { sys::KeStallExecutionProcessor(microseconds) }
}

/// A value set once (e.g. in initialize, after the interrupt is registered) and read from any
/// IRQL afterwards without a lock; `get` is None until then.
pub struct Once<T> {
    state: AtomicU8,
    value: cell::UnsafeCell<Option<T>>,
}
// SAFETY: the value is written once (state 0 -> 1 -> 2) before any reader sees state 2.
unsafe impl<T: Send + Sync> Sync for Once<T> {}
impl<T> Default for Once<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Once<T> {
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Once {
            state: AtomicU8::new(0),
            value: cell::UnsafeCell::new(None),
        }
    }
    /// Not `const` in the model-checking build: loom's atomics are made at run time.
    #[cfg(loom)]
    pub fn new() -> Self {
        Once {
            state: AtomicU8::new(0),
            value: cell::UnsafeCell::new(None),
        }
    }
    pub fn set(&self, v: T) -> bool {
        if self
            .state
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        // SAFETY: state 1 gives this thread exclusive access.
        self.value.with_mut(|value| unsafe { *value = Some(v) });
        self.state.store(2, Ordering::Release);
        true
    }
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) != 2 {
            return None;
        }
        // SAFETY: state 2: written once, never again.
        self.value.with(|value| unsafe { (*value).as_ref() })
    }
}

/// Rundown protection (as `ExAcquireRundownProtection`): calls that use an object enter it; the
/// owner runs it down once, after which no call starts and it waits for those under way. Lock-free:
/// usable at any IRQL for entering and leaving.
#[derive(Debug, Default)]
pub(crate) struct Rundown {
    /// Calls under way (low bits), and [`RUN_DOWN`].
    state: AtomicUsize,
}

const RUN_DOWN: usize = 1 << (usize::BITS - 1);

impl Rundown {
    pub(crate) fn new() -> Self {
        Rundown {
            state: AtomicUsize::new(0),
        }
    }

    /// Runs `f` unless the object was run down; the run-down waits for it.
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let mut v = self.state.load(Ordering::Acquire);
        loop {
            if v & RUN_DOWN != 0 {
                return None;
            }
            match self
                .state
                .compare_exchange_weak(v, v + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        let r = f();
        self.state.fetch_sub(1, Ordering::Release);
        Some(r)
    }

    /// No call starts from now on; returns once none is under way.
    pub(crate) fn run_down(&self) {
        self.state.fetch_or(RUN_DOWN, Ordering::AcqRel);
        while self.state.load(Ordering::Acquire) != RUN_DOWN {
            atomic::spin_loop();
        }
    }

    pub(crate) fn is_run_down(&self) -> bool {
        self.state.load(Ordering::Acquire) & RUN_DOWN != 0
    }
}
