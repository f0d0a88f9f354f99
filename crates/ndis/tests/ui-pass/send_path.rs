// The send-path compositions a driver writes, which must keep compiling (trybuild `pass`): hold
// lists in `send`, queue them under a spin lock, move them out of the lock, complete them in a
// batch from a DPC; hand a held list to another thread; map a held list with a hook that keeps
// the mapped sends under its own lock and completes them later.
use std::sync::Arc;

use ndis::Status;
use ndis::interrupt::DpcContext;
use ndis::irql::{Dispatch, DispatchOrBelow};
use ndis::miniport::NdisAdapter;
use ndis::nbl::{HeldSend, MapHook, MappedSend, SendCompletion, SendLists};
use ndis::sync::SpinLock;

struct Tx {
    waiting: SpinLock<Vec<HeldSend>>,
    mapped: SpinLock<Vec<MappedSend>>,
}

impl Tx {
    /// `Miniport::send`: hold what the ring cannot take now.
    fn send(&self, lists: &mut SendLists<'_>, irql: &mut DispatchOrBelow<'_>) {
        let mut held = Vec::new();
        lists.each(|list| match list.hold() {
            Some(h) => {
                held.push(h);
                Status::PENDING
            }
            None => Status::RESOURCES,
        });
        self.waiting.with(irql, |q, _| q.extend(held));
    }

    /// The TX DPC: take the held lists out of the lock, complete them in one batch.
    fn dpc(&self, adapter: &NdisAdapter, ctx: &mut DpcContext<'_>) {
        let ready: Vec<HeldSend> = self.waiting.with(ctx.irql(), |q, _| q.drain(..).collect());
        let mut done = SendCompletion::new(adapter);
        for h in ready {
            let _len = h.list().frames().count();
            done.push(h, Status::SUCCESS);
        }
        let mapped: Vec<MappedSend> = self.mapped.with(ctx.irql(), |q, _| q.drain(..).collect());
        for m in mapped {
            let _first = m.element(0);
            m.complete(&mut done, Status::SUCCESS);
        }
        done.complete(ctx.irql());
    }
}

/// A held list may move to another thread (completing on another processor is allowed).
fn hand_over(held: HeldSend) -> std::thread::JoinHandle<HeldSend> {
    std::thread::spawn(move || held)
}

struct Hook(Arc<Tx>);

impl MapHook for Hook {
    fn mapped(&self, _hook: &ndis::heap::Shared<Self>, send: MappedSend, irql: &mut Dispatch<'_>) {
        self.0.mapped.with(irql, |q, _| q.push(send));
    }
}

fn main() {
    let _ = (Tx::send, Tx::dpc, hand_over, link_events);
}

/// Synchronize functions still compute and return: they capture copies or shared references.
fn link_events(ctx: &mut DpcContext<'_>, events: &ndis::interrupt::InterruptShared<u32>) -> u32 {
    let seen = 1;
    ctx.synchronize(events, |n, _| {
        *n += seen;
        core::mem::take(n)
    })
}
