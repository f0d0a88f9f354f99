//! State shared between an ISR and the rest of the driver.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use ndis_sys as sys;

use super::{Core, IsrContext, MessageId, Source};
use crate::irql::Dirql;

/// State the ISR touches. There is no way to reach the value but these:
/// * from the ISR of the interrupt whose lock guards it: [`IsrContext::with_shared`];
/// * from a DPC or passive code: `synchronize` ([`super::DpcContext::synchronize`],
///   [`super::InterruptRegistration::synchronize`]), which runs the closure under that lock at DIRQL
///   (`NdisMSynchronizeWithInterruptEx`);
/// * with exclusive ownership (`get_mut`, `into_inner`), when no interrupt can reach it.
///
/// The guarding lock is the one of message `guarded_by`; for a line-based grant, or with
/// `SYNC_WITH_ALL_MESSAGES`, one lock covers every ISR and the message id is ignored.
pub struct InterruptShared<T> {
    value: UnsafeCell<T>,
    guarded_by: MessageId,
    busy: AtomicBool,
}

// SAFETY: the value is only reached under the interrupt lock that guards it (checked on the ISR
// side, taken by NdisMSynchronizeWithInterruptEx on the other), one closure at a time (`busy`);
// so sharing the wrapper across processors moves at most `T` between them: `T: Send` suffices.
unsafe impl<T: Send> Sync for InterruptShared<T> {}

impl<T> core::fmt::Debug for InterruptShared<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InterruptShared")
            .field("guarded_by", &self.guarded_by)
            .finish_non_exhaustive()
    }
}

impl<T: Copy + Send> InterruptShared<T> {
    /// `T: Copy`: state an ISR or a synchronize function reaches is plain data. A `Copy` type
    /// has no drop glue and owns nothing, so no heap block, NDIS list or pended request can be
    /// freed or completed at DIRQL by replacing or taking it (`mem::take` of a `Vec` inside an
    /// ISR would free pool above DISPATCH_LEVEL).
    pub const fn new(guarded_by: MessageId, value: T) -> Self {
        InterruptShared {
            value: UnsafeCell::new(value),
            guarded_by,
            busy: AtomicBool::new(false),
        }
    }

    pub fn guarded_by(&self) -> MessageId {
        self.guarded_by
    }

    /// Exclusive access: no ISR can hold a reference while `self` is borrowed mutably.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }

    fn enter<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        if self.busy.swap(true, Ordering::Acquire) {
            panic!(
                "InterruptShared reached re-entrantly (a closure nested in another on the same state)"
            );
        }
        // SAFETY: the caller holds the guarding interrupt lock and `busy` excludes a nested
        // access on this processor, so this is the only reference to the value.
        let r = f(unsafe { &mut *self.value.get() });
        self.busy.store(false, Ordering::Release);
        r
    }

    pub(super) fn synchronize<R, F: FnOnce(&mut T, &mut Dirql<'_>) -> R>(
        &self,
        core: &Core,
        f: F,
    ) -> R {
        core.check_guard(self, self.guarded_by);
        if core.handle().is_null() {
            used_after_deregistration();
        }
        struct Call<'a, T, F, R> {
            shared: &'a InterruptShared<T>,
            f: Option<F>,
            result: Option<R>,
        }
        unsafe extern "win64-unwind" fn run<
            T: Copy + Send,
            F: FnOnce(&mut T, &mut Dirql<'_>) -> R,
            R,
        >(
            context: sys::PVOID,
        ) -> sys::BOOLEAN {
            // SAFETY: `context` is the `Call` below, alive for the synchronous call.
            let call = unsafe { &mut *context.cast::<Call<'_, T, F, R>>() };
            if let Some(f) = call.f.take() {
                // SAFETY: NDIS runs synchronize functions at DIRQL under the interrupt lock; the
                // token lives only inside this call.
                let mut dirql = unsafe { Dirql::assume() };
                call.result = Some(call.shared.enter(|v| f(v, &mut dirql)));
            }
            sys::TRUE
        }
        let mut call = Call {
            shared: self,
            f: Some(f),
            result: None,
        };
        // SAFETY: the handle is live (synchronize is reachable only through a registration or a
        // DPC of it); `run` matches the context type; NDIS calls it before returning.
        unsafe {
            sys::NdisMSynchronizeWithInterruptEx(
                core.handle(),
                core.sync_message(self.guarded_by),
                Some(run::<T, F, R>),
                (&raw mut call).cast(),
            )
        };
        call.result
            .expect("NdisMSynchronizeWithInterruptEx did not call the synchronize function")
    }
}

#[cold]
#[track_caller]
pub(super) fn used_after_deregistration() -> ! {
    panic!(
        "InterruptRegistration::synchronize after the interrupt was deregistered (a handle kept \
         past MiniportHaltEx)"
    )
}

impl IsrContext<'_> {
    /// Runs `f` on state this ISR's interrupt lock guards. Panics if `shared` is guarded by the
    /// lock of another message (that ISR could be running on another processor right now).
    pub fn with_shared<T: Copy + Send, R>(
        &self,
        shared: &InterruptShared<T>,
        f: impl FnOnce(&mut T) -> R,
    ) -> R {
        self.core.check_guard(shared, shared.guarded_by);
        let messages = self.core.messages.load(Ordering::Acquire);
        let covered = self.core.sync_all
            || messages == 0
            || matches!(self.source, Source::Message(m) if m == shared.guarded_by)
            || matches!(self.source, Source::Line);
        assert!(
            covered,
            "the ISR of {:?} reached InterruptShared state guarded by message {}'s lock",
            self.source, shared.guarded_by.0
        );
        shared.enter(f)
    }
}
