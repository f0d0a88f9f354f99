//! Models of the receive buffers' states ([`Entry`]: free, claimed, lent), as
//! [`ReceivePool`](super::ReceivePool) changes them (`--cfg loom`; see docs/architecture.md).

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use super::{AtomicU8, CLAIMED, Entry, FREE, LENT};
use crate::sync::recorder::model;

/// One buffer: its state, and its bytes, reached by the driver while claimed and by NDIS while
/// lent (loom fails the model if two of these accesses could overlap or be unordered).
struct Buffer {
    entry: Entry,
    bytes: UnsafeCell<u32>,
}

// SAFETY: the entry's state gives the bytes to one side at a time (what the models check); the
// list and MDL pointers are null and never followed.
unsafe impl Send for Buffer {}
// SAFETY: as above.
unsafe impl Sync for Buffer {}

impl Buffer {
    fn new() -> Self {
        Buffer {
            entry: Entry {
                nbl: core::ptr::null_mut(),
                mdl: core::ptr::null_mut(),
                state: AtomicU8::new(FREE),
            },
            bytes: UnsafeCell::new(0),
        }
    }

    /// The driver fills the buffer ([`ReceivePool::write`](super::ReceivePool::write): only
    /// while claimed).
    fn driver_writes(&self, value: u32) {
        assert!(
            self.entry.is(CLAIMED),
            "the driver writes a buffer it does not hold"
        );
        // SAFETY: the claim gives the driver the bytes (checked by loom).
        self.bytes.with_mut(|b| unsafe { *b = value });
    }

    /// NDIS (the protocols) read the lent buffer.
    fn ndis_reads(&self) -> u32 {
        // SAFETY: lent: NDIS has the bytes (checked by loom).
        self.bytes.with(|b| unsafe { *b })
    }
}

/// Two processors indicate the same claimed buffer (the same frame in two DPCs' lists): exactly
/// one lends it to NDIS, and NDIS reads what the driver wrote before.
#[test]
fn loom_receive_buffer_indicated_once() {
    model(|| {
        let buffer = Arc::new(Buffer::new());
        assert!(buffer.entry.claim());
        buffer.driver_writes(42);
        let wins = Arc::new(AtomicUsize::new(0));
        let indicators: [_; 2] = core::array::from_fn(|_| {
            let (buffer, wins) = (buffer.clone(), wins.clone());
            thread::spawn(move || {
                if buffer.entry.lend() {
                    wins.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(buffer.ndis_reads(), 42);
                }
            })
        });
        for t in indicators {
            t.join().unwrap();
        }
        assert_eq!(wins.load(Ordering::SeqCst), 1, "indicated twice or never");
        assert!(buffer.entry.is(LENT));
    });
}

/// NDIS returns a lent buffer while two processors try to claim it for the device: at most one
/// claim succeeds, only once NDIS is done with the bytes (the driver's write follows NDIS's
/// read), and the buffer ends claimed by the winner, or free.
#[test]
fn loom_receive_buffer_return_vs_claim() {
    model(|| {
        let buffer = Arc::new(Buffer::new());
        assert!(buffer.entry.claim());
        buffer.driver_writes(42);
        assert!(buffer.entry.lend());
        let ndis = {
            let buffer = buffer.clone();
            thread::spawn(move || {
                assert_eq!(buffer.ndis_reads(), 42);
                buffer.entry.returned();
            })
        };
        let claims = Arc::new(AtomicUsize::new(0));
        let other = {
            let (buffer, claims) = (buffer.clone(), claims.clone());
            thread::spawn(move || {
                if buffer.entry.claim() {
                    claims.fetch_add(1, Ordering::SeqCst);
                    buffer.driver_writes(1);
                }
            })
        };
        if buffer.entry.claim() {
            claims.fetch_add(1, Ordering::SeqCst);
            buffer.driver_writes(2);
        }
        ndis.join().unwrap();
        other.join().unwrap();
        match claims.load(Ordering::SeqCst) {
            0 => assert!(buffer.entry.is(FREE)),
            1 => assert!(buffer.entry.is(CLAIMED)),
            n => panic!("{n} processors claimed one buffer"),
        }
    });
}

/// NDIS returns a lent buffer to a driver that keeps it ([`ReceivePool::reclaim_returned`]:
/// lent -> claimed in one step) while another processor tries to claim it: the other claim
/// never succeeds, and the returning side's write follows NDIS's read.
///
/// [`ReceivePool::reclaim_returned`]: super::ReceivePool::reclaim_returned
#[test]
fn loom_receive_buffer_reclaimed_on_return_is_nobody_elses() {
    model(|| {
        let buffer = Arc::new(Buffer::new());
        assert!(buffer.entry.claim());
        buffer.driver_writes(42);
        assert!(buffer.entry.lend());
        let ndis = {
            let buffer = buffer.clone();
            thread::spawn(move || {
                assert_eq!(buffer.ndis_reads(), 42);
                buffer.entry.reclaim();
                // The return path posts it again (a driver write, as a tag strip would be).
                buffer.driver_writes(7);
            })
        };
        assert!(!buffer.entry.claim(), "claimed a buffer lent or reclaimed");
        ndis.join().unwrap();
        assert!(buffer.entry.is(CLAIMED));
        assert_eq!(buffer.ndis_reads(), 7);
    });
}
