// Broken item 9: a receive chain (`ReceivePool::chain`) is indicated at IRQL <= DISPATCH_LEVEL
// only: not with the DIRQL token of a DPC's synchronize function, not with the DPC's token
// borrowed inside it, and it is not kept in a static (it holds lists lent to it, and borrows
// its pool).
use ndis::interrupt::{DpcContext, InterruptShared};
use ndis::nbl::{ReceivePool, RxChain};

fn with_dirql(ctx: &mut DpcContext<'_>, shared: &InterruptShared<u32>, pool: &ReceivePool) {
    ctx.synchronize(shared, |_, dirql| {
        pool.chain().indicate(dirql, |_| {});
    });
}

fn with_borrowed_dpc_token(
    ctx: &mut DpcContext<'_>,
    shared: &InterruptShared<u32>,
    pool: &ReceivePool,
) {
    ctx.synchronize(shared, |_, _dirql| {
        pool.chain().indicate(ctx.irql(), |_| {});
    });
}

static KEPT: Option<RxChain<'static>> = None;

fn main() {
    let _ = &KEPT;
}
