//! Software RSS steering: every received frame goes to the processor the indirection table
//! names for its hash, and is indicated by a DPC on that processor, in the order the device
//! delivered it.
//!
//! Each ring has a chain of frames per processor ([`Outbox`]), kept in the ring and guarded by
//! the ring's lock. A receive DPC pushes each frame it pops onto its target's chain of that ring
//! *while it holds the ring's lock* (which it holds anyway to pop): the push lends the frame's
//! list and fills it in as an indication would, so the target takes the whole chain over in a
//! few stores, whatever its length. The ring then flags itself to each processor it pushed to
//! ([`Steering`]) and queues a DPC there (`NdisMQueueDpcEx`), unless one is due there already (an
//! ISR queued it, or another ring did, and it has not started); the DPC takes the flags of its
//! processor and, for each ring flagged, that ring's chain for it, under the ring's lock. Only
//! DPCs on a processor take its chains, one at a time (DPCs on one processor do not nest), so a
//! flow (one hash, one target, one ring) is indicated in order.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use ndis::Status;
use ndis::irql::AtMostDispatch;
use ndis::nbl::{HeldChain, ReceivePool, RxChain, RxFrame};

/// The frames one ring steered, per processor, waiting to be indicated there; guarded by the
/// ring's lock.
pub struct Outbox {
    held: Vec<HeldChain>,
}

impl Outbox {
    /// One chain of `pool`'s receives per processor (`cpus`, at most 64).
    pub fn new(
        cpus: usize,
        pool: &ReceivePool,
        irql: &impl AtMostDispatch,
    ) -> Result<Self, Status> {
        let cpus = cpus.min(64);
        let mut held = ndis::heap::try_vec(cpus, irql)?;
        for _ in 0..cpus {
            ndis::heap::try_push(&mut held, pool.held(), irql)?;
        }
        Ok(Outbox { held })
    }

    /// Pushes `frame` through `chain` (of this ring's pool) onto the chain for processor `cpu`;
    /// a frame the filter refuses goes to `refused`, still claimed. False, with nothing done,
    /// for a processor without a chain (past 64).
    #[inline(always)]
    pub fn push(
        &mut self,
        chain: &mut RxChain<'_>,
        cpu: usize,
        frame: &RxFrame,
        refused: impl FnMut(usize),
    ) -> bool {
        let Some(held) = self.held.get_mut(cpu) else {
            return false;
        };
        chain.push_held(held, frame, refused);
        true
    }

    /// Whether nothing of this ring waits for `cpu` (true for a processor without a chain).
    pub fn is_empty(&self, cpu: usize) -> bool {
        self.held.get(cpu).is_none_or(HeldChain::is_empty)
    }

    /// Moves everything waiting for `cpu` to the end of `chain` (of this ring's pool), in order.
    pub fn take(&mut self, cpu: usize, chain: &mut RxChain<'_>) {
        if let Some(held) = self.held.get_mut(cpu) {
            chain.append_held(held);
        }
    }

    /// Gives every frame waiting back to `pool` (this ring's), free: for a ring going away.
    pub fn release(&mut self, pool: &ReceivePool) {
        for held in &mut self.held {
            pool.release_held(held);
        }
    }
}

pub struct Steering {
    /// Per processor, the rings (below 64) that pushed to it since a DPC there last looked:
    /// read without the rings' locks, so that a DPC takes the lock only of the rings that have
    /// frames for it.
    rings_for: Vec<AtomicU64>,
    /// Per processor, a DPC of this device is queued there and has not started: it takes the
    /// rings flagged to it when it runs, so a ring that pushes there queues no other.
    due: Vec<AtomicBool>,
    /// Per processor, the queues (below 64) whose interrupt (or whose own DPC, for more work)
    /// queued this device's DPC there since it last ran for them.
    interrupted: Vec<AtomicU64>,
    /// Flags set in `rings_for`: a DPC with RSS off looks at this once (not per processor).
    pub waiting: AtomicUsize,
}

impl Steering {
    /// The flags of `pairs` rings (at most 64) for `cpus` processors (at most 64).
    pub fn new(pairs: usize, cpus: usize, irql: &impl AtMostDispatch) -> Result<Steering, Status> {
        if pairs > 64 {
            return Err(Status::INVALID_PARAMETER);
        }
        let cpus = cpus.min(64);
        let mut rings_for = ndis::heap::try_vec(cpus, irql)?;
        let mut due = ndis::heap::try_vec(cpus, irql)?;
        let mut interrupted = ndis::heap::try_vec(cpus, irql)?;
        for _ in 0..cpus {
            ndis::heap::try_push(&mut rings_for, AtomicU64::new(0), irql)?;
            ndis::heap::try_push(&mut due, AtomicBool::new(false), irql)?;
            ndis::heap::try_push(&mut interrupted, AtomicU64::new(0), irql)?;
        }
        Ok(Steering {
            rings_for,
            due,
            interrupted,
            waiting: AtomicUsize::new(0),
        })
    }

    /// An ISR of queue `queue` on `cpu` queued this device's DPC there (or a DPC there asked
    /// to run again for more work).
    #[inline]
    pub fn dpc_queued(&self, cpu: usize, queue: u16) {
        if let Some(i) = self.interrupted.get(cpu) {
            i.fetch_or(1u64.wrapping_shl(u32::from(queue)), Ordering::SeqCst);
        }
        if let Some(d) = self.due.get(cpu) {
            d.store(true, Ordering::SeqCst);
        }
    }

    /// A DPC of this device starts on `cpu`, for `queue`, before it takes the rings flagged to
    /// it: a ring that flags one after this queues another DPC (`tell`). Returns whether the
    /// DPC was asked for by queue `queue` ([`dpc_queued`](Self::dpc_queued)), or may have been
    /// (a queue past 64, a processor past 64): false only for one steering alone queued.
    #[inline]
    pub fn dpc_started(&self, cpu: usize, queue: u16) -> bool {
        if let Some(d) = self.due.get(cpu) {
            // SeqCst against `tell`: either it sees this (and queues a DPC), or the rings (and
            // `waiting`) this DPC reads next show its flag.
            d.store(false, Ordering::SeqCst);
        }
        let Some(i) = self.interrupted.get(cpu) else {
            return true;
        };
        if queue >= 64 {
            return true;
        }
        let bit = 1u64 << queue;
        // An interrupt after this queues the DPC again (it is no longer queued once it runs).
        i.load(Ordering::Relaxed) & bit != 0 && i.fetch_and(!bit, Ordering::SeqCst) & bit != 0
    }

    /// Flags ring `j` to the processors (below 64) in `pushed_to` (once per pass, under the
    /// ring's lock, before the DPCs that take its frames are queued); returns those, other than
    /// `here` (whose DPC takes them next), that need a DPC queued: not those a DPC is due on
    /// already, which takes the ring's lock after this pass lets it go and finds these frames.
    pub fn tell(&self, j: usize, pushed_to: u64, here: usize) -> u64 {
        let bit = 1u64 << (j & 63);
        let mut flagged = 0;
        let mut rest = pushed_to;
        while rest != 0 {
            let c = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if let Some(r) = self.rings_for.get(c)
                && r.fetch_or(bit, Ordering::SeqCst) & bit == 0
            {
                flagged += 1;
            }
        }
        // Counted before any DPC is let off (below): one with RSS off looks only at this.
        if flagged > 0 {
            self.waiting.fetch_add(flagged, Ordering::SeqCst);
        }
        let mut kick = 0u64;
        let mut rest = pushed_to & !1u64.wrapping_shl(here as u32);
        while rest != 0 {
            let c = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            // Set before the DPC is queued, so that it clears it when it starts.
            if self
                .due
                .get(c)
                .is_some_and(|d| !d.swap(true, Ordering::SeqCst))
            {
                kick |= 1 << c;
            }
        }
        kick
    }

    /// The rings flagged to `cpu` (below 64), clearing them: the caller takes each one's chain
    /// for `cpu`. A ring that pushes again meanwhile flags itself again.
    pub fn take_rings(&self, cpu: usize) -> u64 {
        let Some(r) = self.rings_for.get(cpu) else {
            return 0;
        };
        if r.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        let rings = r.swap(0, Ordering::SeqCst);
        if rings != 0 {
            self.waiting
                .fetch_sub(rings.count_ones() as usize, Ordering::Relaxed);
        }
        rings
    }
}
