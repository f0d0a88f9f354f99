//! Models of [`Once`] and [`SpinLock`] (`--cfg loom`; see docs/architecture.md).

use loom::sync::Arc;
use loom::thread;

use super::recorder::model;
use super::{Once, SpinLock};
use crate::irql::DispatchOrBelow;

/// Two setters race and a reader reads meanwhile: exactly one setter wins, the value read is
/// the winner's whole value (loom fails the model if the read could overlap the write), and
/// none is seen before it is complete.
#[test]
fn loom_once_two_setters_and_a_reader() {
    model(|| {
        let once = Arc::new(Once::new());
        let setters: [_; 2] = core::array::from_fn(|i| {
            let once = once.clone();
            let value = [i as u64 + 1; 2];
            thread::spawn(move || once.set(value))
        });
        let seen = once.get().copied();
        let [a, b] = setters.map(|t| t.join().unwrap());
        assert!(a != b, "exactly one setter wins (won: {a}, {b})");
        let winner = if a { [1, 1] } else { [2, 2] };
        assert_eq!(once.get(), Some(&winner));
        assert!(seen.is_none() || seen == Some(winner), "read {seen:?}");
    });
}

/// Two processors take the lock (one through `with`, one through `with_unchecked`) and
/// increment in two steps with a switch between them: no update is lost, and loom fails the
/// model if the two critical sections could overlap.
#[test]
fn loom_spin_lock_excludes() {
    model(|| {
        let lock = Arc::new(SpinLock::new(0u32));
        let other = {
            let lock = lock.clone();
            thread::spawn(move || {
                // SAFETY: the model's threads stand for DPCs.
                let mut irql = unsafe { DispatchOrBelow::assume(true) };
                lock.with(&mut irql, |v, _| {
                    let read = *v;
                    thread::yield_now();
                    *v = read + 1;
                });
            })
        };
        lock.with_unchecked(|v| {
            let read = *v;
            thread::yield_now();
            *v = read + 1;
        });
        other.join().unwrap();
        assert_eq!(lock.with_unchecked(|v| *v), 2);
    });
}
