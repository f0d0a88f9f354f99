//! Software RSS steering: every received frame goes to the processor the indirection table
//! names for its hash, and is indicated by a DPC on that processor, in the order the device
//! delivered it.
//!
//! Each processor has a bounded FIFO of frames waiting to be indicated there. A receive DPC
//! pushes each frame it pops onto its target's FIFO *while it still holds the receive ring's
//! lock*, so frames of one ring enter every FIFO in ring order, whichever processor pops them;
//! it then queues a DPC on each other processor it pushed to (`NdisMQueueDpcEx`) and drains its
//! own FIFO. Only DPCs on a processor drain its FIFO, one at a time (DPCs on one processor do
//! not nest), so a flow (one hash, one target, one ring) is indicated in order. A FIFO holds
//! every receive buffer the adapter has, so a push never finds it full.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use ndis::Status;
use ndis::irql::AtMostDispatch;
use ndis::nbl::RxFrame;
use ndis::sync::SpinLock;

/// Frames waiting for one processor: a ring of a power-of-two number of items (indexes
/// wrap by a mask).
pub struct Fifo {
    items: Vec<(u16, RxFrame)>,
    head: usize,
    len: usize,
}

impl Fifo {
    #[inline(always)]
    fn push(&mut self, item: (u16, RxFrame)) -> bool {
        let capacity = self.items.len();
        if self.len == capacity {
            return false;
        }
        let at = (self.head + self.len) & (capacity - 1);
        if let Some(slot) = self.items.get_mut(at) {
            *slot = item;
            self.len += 1;
            return true;
        }
        false
    }

    /// Moves up to `out.len()` items, oldest first, into `out`; returns how many.
    #[inline(always)]
    fn pop_into(&mut self, out: &mut [(u16, RxFrame)]) -> usize {
        let n = self.len.min(out.len());
        let mask = self.items.len() - 1;
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = self.items[(self.head + i) & mask];
        }
        self.head = (self.head + n) & mask;
        self.len -= n;
        n
    }
}

pub struct Steering {
    fifos: Vec<SpinLock<Fifo>>,
    /// Frames in all FIFOs: a DPC with RSS off looks at this once (not per frame).
    pub waiting: AtomicUsize,
}

impl Steering {
    /// One FIFO of `capacity` frames (rounded up to a power of two) per processor (`cpus`).
    pub fn new(
        cpus: usize,
        capacity: usize,
        irql: &impl ndis::irql::AtMostDispatch,
    ) -> Result<Steering, Status> {
        let mut fifos = ndis::heap::try_vec(cpus, irql)?;
        for _ in 0..cpus {
            let capacity = capacity
                .max(1)
                .checked_next_power_of_two()
                .ok_or(Status::INVALID_PARAMETER)?;
            let items = ndis::heap::try_filled((0, RxFrame::default()), capacity, irql)?;
            ndis::heap::try_push(
                &mut fifos,
                SpinLock::new(Fifo {
                    items,
                    head: 0,
                    len: 0,
                }),
                irql,
            )?;
        }
        Ok(Steering {
            fifos,
            waiting: AtomicUsize::new(0),
        })
    }

    /// Queues `frame` of pair `pair` for processor `cpu`; false if it cannot (no such
    /// processor, or full).
    pub fn push<C: AtMostDispatch>(
        &self,
        cpu: usize,
        pair: u16,
        frame: RxFrame,
        irql: &mut C,
    ) -> bool {
        let Some(f) = self.fifos.get(cpu) else {
            return false;
        };
        let pushed = f.with(irql, |f, _| f.push((pair, frame)));
        if pushed {
            self.waiting.fetch_add(1, Ordering::Relaxed);
        }
        pushed
    }

    /// Whether nothing waits for `cpu` (true for a processor without a FIFO).
    pub fn is_empty<C: AtMostDispatch>(&self, cpu: usize, irql: &mut C) -> bool {
        self.fifos
            .get(cpu)
            .is_none_or(|f| f.with(irql, |f, _| f.len == 0))
    }

    /// Takes up to `out.len()` frames waiting for `cpu`, oldest first.
    pub fn take<C: AtMostDispatch>(
        &self,
        cpu: usize,
        out: &mut [(u16, RxFrame)],
        irql: &mut C,
    ) -> usize {
        let Some(f) = self.fifos.get(cpu) else {
            return 0;
        };
        let n = f.with(irql, |f, _| f.pop_into(out));
        self.waiting.fetch_sub(n, Ordering::Relaxed);
        n
    }
}
