//! Software RSS steering: every received frame goes to the processor the indirection table
//! names for its hash, and is indicated by a DPC on that processor, in the order the device
//! delivered it.
//!
//! Each ring has a bounded FIFO of frames per processor ([`Outbox`]), kept in the ring and
//! guarded by the ring's lock. A receive DPC pushes each frame it pops onto its target's FIFO of
//! that ring *while it holds the ring's lock* (which it holds anyway to pop), so a push is a store
//! and takes no lock of its own; it then queues a DPC on each other processor it pushed to
//! (`NdisMQueueDpcEx`) and drains its own FIFOs. A DPC drains the FIFOs of every ring that has
//! frames for its processor (a counter per ring and processor, read without the lock, says
//! which), each under that ring's lock, and only DPCs on a processor drain its FIFOs, one at a
//! time (DPCs on one processor do not nest), so a flow (one hash, one target, one ring) is
//! indicated in order. A FIFO holds every receive buffer of its ring, so a push never finds it
//! full.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use ndis::Status;
use ndis::irql::AtMostDispatch;
use ndis::nbl::RxFrame;

/// Frames of one ring waiting for one processor: a ring of a power-of-two number of items
/// (indexes wrap by a mask).
struct Fifo {
    items: Vec<RxFrame>,
    head: usize,
    len: usize,
    /// Pushed since the ring last told [`Steering`] (at the end of its pass).
    fresh: usize,
}

/// The frames one ring steered, per processor, waiting to be indicated there; guarded by the
/// ring's lock.
pub struct Outbox {
    fifos: Vec<Fifo>,
    /// Processors (below 64) whose FIFO has frames the ring has not yet told of.
    touched: u64,
}

impl Outbox {
    /// One FIFO of `capacity` frames (rounded up to a power of two) per processor (`cpus`,
    /// at most 64).
    pub fn new(cpus: usize, capacity: usize, irql: &impl AtMostDispatch) -> Result<Self, Status> {
        let capacity = capacity
            .max(1)
            .checked_next_power_of_two()
            .ok_or(Status::INVALID_PARAMETER)?;
        let mut fifos = ndis::heap::try_vec(cpus, irql)?;
        for _ in 0..cpus.min(64) {
            let items = ndis::heap::try_filled(RxFrame::default(), capacity, irql)?;
            ndis::heap::try_push(
                &mut fifos,
                Fifo {
                    items,
                    head: 0,
                    len: 0,
                    fresh: 0,
                },
                irql,
            )?;
        }
        Ok(Outbox { fifos, touched: 0 })
    }

    /// Queues `frame` for processor `cpu`; false if it cannot (no such processor, or full).
    /// Out of line: the receive loop keeps fewer values live across its hash without it.
    #[inline(never)]
    pub fn push(&mut self, cpu: usize, frame: &RxFrame) -> bool {
        let Some(f) = self.fifos.get_mut(cpu) else {
            return false;
        };
        let capacity = f.items.len();
        if f.len == capacity {
            return false;
        }
        let at = (f.head + f.len) & (capacity - 1);
        let Some(slot) = f.items.get_mut(at) else {
            return false;
        };
        *slot = *frame;
        f.len += 1;
        f.fresh += 1;
        self.touched |= 1 << cpu;
        true
    }

    /// Whether nothing of this ring waits for `cpu` (true for a processor without a FIFO).
    pub fn is_empty(&self, cpu: usize) -> bool {
        self.fifos.get(cpu).is_none_or(|f| f.len == 0)
    }

    /// Takes up to `max` of the oldest frames waiting for `cpu` and hands each to `each`, in
    /// order, where they wait (a frame is large, and every steered one passes here: no copy
    /// out first); returns how many.
    #[inline(always)]
    pub fn take(&mut self, cpu: usize, max: usize, mut each: impl FnMut(&RxFrame)) -> usize {
        let Some(f) = self.fifos.get_mut(cpu) else {
            return 0;
        };
        let mask = f.items.len() - 1;
        let n = f.len.min(max);
        for i in 0..n {
            if let Some(frame) = f.items.get((f.head + i) & mask) {
                each(frame);
            }
        }
        f.head = (f.head + n) & mask;
        f.len -= n;
        n
    }
}

pub struct Steering {
    /// Frames waiting, per ring and processor (ring `j`'s for processor `c` at `j * cpus + c`),
    /// as the rings told: read without the rings' locks, so that a DPC takes the lock only of
    /// the rings that have frames for it.
    waiting_for: Vec<AtomicUsize>,
    cpus: usize,
    /// Frames in all FIFOs: a DPC with RSS off looks at this once (not per frame).
    pub waiting: AtomicUsize,
}

impl Steering {
    /// The counters of `pairs` rings' FIFOs for `cpus` processors (at most 64).
    pub fn new(pairs: usize, cpus: usize, irql: &impl AtMostDispatch) -> Result<Steering, Status> {
        let cpus = cpus.min(64);
        let n = pairs.checked_mul(cpus).ok_or(Status::INVALID_PARAMETER)?;
        let mut waiting_for = ndis::heap::try_vec(n, irql)?;
        for _ in 0..n {
            ndis::heap::try_push(&mut waiting_for, AtomicUsize::new(0), irql)?;
        }
        Ok(Steering {
            waiting_for,
            cpus,
            waiting: AtomicUsize::new(0),
        })
    }

    /// Counts what ring `j` pushed to `outbox` since it last told (once per pass, under the
    /// ring's lock, before the DPCs that drain it are queued); returns the processors (below 64)
    /// it pushed to.
    pub fn tell(&self, j: usize, outbox: &mut Outbox) -> u64 {
        let touched = core::mem::take(&mut outbox.touched);
        let mut rest = touched;
        let mut total = 0;
        while rest != 0 {
            let c = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if let Some(f) = outbox.fifos.get_mut(c) {
                let fresh = core::mem::take(&mut f.fresh);
                total += fresh;
                if let Some(w) = self.waiting_for.get(j * self.cpus + c) {
                    w.fetch_add(fresh, Ordering::Release);
                }
            }
        }
        if total > 0 {
            self.waiting.fetch_add(total, Ordering::Relaxed);
        }
        touched
    }

    /// Whether ring `j` told of frames for `cpu` not yet taken.
    #[inline(always)]
    pub fn has_for(&self, j: usize, cpu: usize) -> bool {
        self.waiting_for
            .get(j * self.cpus + cpu)
            .is_some_and(|w| w.load(Ordering::Acquire) != 0)
    }

    /// Counts `n` frames of ring `j` for `cpu` as taken (after [`Outbox::take`], under the
    /// ring's lock: a ring tells of a frame before it can be taken).
    pub fn taken(&self, j: usize, cpu: usize, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(w) = self.waiting_for.get(j * self.cpus + cpu) {
            w.fetch_sub(n, Ordering::Relaxed);
        }
        self.waiting.fetch_sub(n, Ordering::Relaxed);
    }
}
