// Broken item 11 (found in review): a DPC spends the budget NDIS gave it; it cannot save it and
// put back a fresh copy to indicate past the throttle.
use ndis::interrupt::DpcContext;

fn dpc(ctx: &mut DpcContext<'_>) {
    let saved = *ctx.budget();
    ctx.budget().take(64);
    *ctx.budget() = saved;
}

fn main() {}
