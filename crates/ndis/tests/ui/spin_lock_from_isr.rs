// A spin lock needs IRQL <= DISPATCH_LEVEL; an ISR runs at DIRQL and only has a Dirql token.
use ndis::interrupt::{DpcContext, InterruptHandler, IsrContext, IsrOutcome};
use ndis::sync::SpinLock;

struct Nic {
    counter: SpinLock<u32>,
}

impl InterruptHandler for Nic {
    type Queue = ();
    const MSI_SUPPORTED: bool = true;
    fn queues(&self) -> &[()] {
        &[]
    }
    fn isr(&self, _queue: &(), ctx: &IsrContext<'_>) -> IsrOutcome {
        self.counter.with(ctx.irql(), |c, _| *c += 1);
        IsrOutcome::Handled
    }
    fn dpc(&self, _queue: &(), ctx: &mut DpcContext<'_>) {
        // Fine: a DPC runs at DISPATCH_LEVEL.
        self.counter.with(ctx.irql(), |c, _| *c += 1);
    }
}

fn main() {}
