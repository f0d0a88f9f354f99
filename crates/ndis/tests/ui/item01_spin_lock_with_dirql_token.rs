// Broken item 1: the token a synchronize function gets is DIRQL's, which opens no spin lock.
use ndis::interrupt::{DpcContext, InterruptShared};
use ndis::sync::SpinLock;

fn dpc(ctx: &mut DpcContext<'_>, shared: &InterruptShared<u32>, lock: &SpinLock<u32>) {
    ctx.synchronize(shared, |v, dirql| {
        lock.with(dirql, |n, _| *n += *v);
    });
}

fn main() {}
