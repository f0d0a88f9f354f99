//! Models of [`Shared`] (`--cfg loom`; see docs/architecture.md).

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use super::Shared;
use crate::irql::Passive;
use crate::sync::recorder::model;

/// A value that counts its drops and writes itself when dropped: loom fails the model if the
/// drop could overlap (or not follow) a reader's access through another `Shared`.
struct Probe {
    value: UnsafeCell<u32>,
    drops: Arc<AtomicUsize>,
}

// SAFETY: `value` is written only by its owner (`drop`, or the caller of a successful
// `try_unwrap`); readers share it otherwise.
unsafe impl Sync for Probe {}

impl Probe {
    fn read(&self) -> u32 {
        // SAFETY: a shared read; loom checks it against the writes.
        self.value.with(|v| unsafe { *v })
    }

    fn write(&mut self, value: u32) {
        // SAFETY: `&mut self`; loom checks it against the reads.
        self.value.with_mut(|v| unsafe { *v = value });
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.write(0);
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn probe() -> (Shared<Probe>, Arc<AtomicUsize>) {
    let drops = Arc::new(AtomicUsize::new(0));
    let value = Probe {
        value: UnsafeCell::new(7),
        drops: drops.clone(),
    };
    // SAFETY: the model's main thread stands for a PASSIVE_LEVEL caller.
    let passive = unsafe { Passive::assume() };
    let Ok(shared) = Shared::try_new(value, &passive) else {
        panic!("allocation failed");
    };
    (shared, drops)
}

/// References cloned and dropped on two processors (a clone made from a clone while the
/// original is dropped): the value is dropped exactly once, after every reader is done.
#[test]
fn loom_shared_clone_and_drop_race() {
    model(|| {
        let (shared, drops) = probe();
        let mine = shared.clone();
        let other = thread::spawn(move || {
            let again = mine.clone();
            drop(mine);
            assert_eq!(again.read(), 7);
            drop(again);
        });
        assert_eq!(shared.read(), 7);
        drop(shared);
        other.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

/// `try_unwrap` races the drop of the other reference: when it succeeds the value is the
/// caller's alone (its write follows the other reader's access); when it fails the value is
/// still dropped exactly once, by whichever reference goes last.
#[test]
fn loom_shared_try_unwrap_race() {
    model(|| {
        let (shared, drops) = probe();
        let mine = shared.clone();
        let other = thread::spawn(move || {
            assert_eq!(mine.read(), 7);
            drop(mine);
        });
        match Shared::try_unwrap(shared) {
            Ok(mut value) => {
                value.write(8);
                drop(value);
                assert_eq!(drops.load(Ordering::SeqCst), 1);
            }
            Err(shared) => drop(shared),
        }
        other.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}
