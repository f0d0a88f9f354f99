// Broken item 1: inside a DPC's synchronize function (DIRQL) the DPC's DISPATCH_LEVEL token is
// borrowed, so taking a spin lock with it does not compile.
use ndis::interrupt::{DpcContext, InterruptShared};
use ndis::sync::SpinLock;

fn dpc(ctx: &mut DpcContext<'_>, shared: &InterruptShared<u32>, lock: &SpinLock<u32>) {
    ctx.synchronize(shared, |v, _dirql| {
        lock.with(ctx.irql(), |n, _| *n += *v);
    });
}

fn main() {}
