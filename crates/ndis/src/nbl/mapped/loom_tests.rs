//! Models of a mapping's hand-over and of a pool's free slots (`--cfg loom`; see
//! docs/architecture.md).

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::{FreeSlots, Handoff};
use crate::irql::Passive;
use crate::sync::recorder::model;

/// A request's fields that the two sides write before their mark: the list (the callback) and
/// the hook (`map`).
struct Request {
    state: Handoff,
    list: UnsafeCell<u32>,
    hook: UnsafeCell<u32>,
}

// SAFETY: `list` is written by the callback before its mark and read by `map` after it sees
// that mark; `hook` the other way round (loom checks both).
unsafe impl Sync for Request {}

/// NDIS calls back on another processor while `map` is still returning: exactly one of them
/// takes the send, and it sees what the other wrote before its mark (loom fails the model if
/// a read could overlap or miss the write).
#[test]
fn loom_mapping_handoff_goes_to_exactly_one_side() {
    model(|| {
        let r = Arc::new(Request {
            state: Handoff::new(),
            list: UnsafeCell::new(0),
            hook: UnsafeCell::new(0),
        });
        let callback = {
            let r = r.clone();
            thread::spawn(move || {
                // SAFETY: the callback's write before its mark.
                r.list.with_mut(|l| unsafe { *l = 7 });
                if r.state.called_back() {
                    return false;
                }
                // SAFETY: `map` left: its hook is published, and it touches it no more.
                let hook = r.hook.with(|h| unsafe { *h });
                assert_eq!(hook, 9, "the callback sees the hook `map` set");
                true
            })
        };
        // `map`, after NDIS accepted the request.
        let mut map_takes = r.state.was_called();
        if !map_takes {
            // SAFETY: the callback reads the hook only after `leave` succeeds.
            r.hook.with_mut(|h| unsafe { *h = 9 });
            map_takes = !r.state.leave();
        }
        if map_takes {
            // SAFETY: the callback came first: its list is published.
            let list = r.list.with(|l| unsafe { *l });
            assert_eq!(list, 7, "`map` sees the list the callback set");
        }
        let callback_takes = callback.join().unwrap();
        assert!(
            map_takes != callback_takes,
            "exactly one side takes the send"
        );
    });
}

/// Two processors take and give back slots of a pool of two: no slot is held by both at once
/// (loom fails the model if their writes to it could overlap), and all are free at the end.
#[test]
fn loom_free_slots_are_held_by_one_at_a_time() {
    model(|| {
        // SAFETY: the model's threads stand for callers at IRQL <= DISPATCH_LEVEL.
        let passive = unsafe { Passive::assume() };
        let free = Arc::new(FreeSlots::new(2, &passive).expect("allocated"));
        let slots = Arc::new([UnsafeCell::new(0u32), UnsafeCell::new(0u32)]);
        let workers: [_; 2] = core::array::from_fn(|t| {
            let (free, slots) = (free.clone(), slots.clone());
            thread::spawn(move || {
                for _ in 0..2 {
                    if let Some(i) = free.take() {
                        // SAFETY: slot `i` is this thread's until it gives it back.
                        slots[i].with_mut(|s| unsafe { *s = t as u32 + 1 });
                        free.give(i);
                    }
                }
            })
        });
        for w in workers {
            w.join().unwrap();
        }
        assert!(free.all_free());
    });
}
