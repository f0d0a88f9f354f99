// Deregistering waits for DPCs to drain and needs PASSIVE_LEVEL; a DPC runs at DISPATCH_LEVEL.
use ndis::interrupt::{DpcContext, InterruptHandler, InterruptRegistration};

fn in_a_dpc<H: InterruptHandler>(registration: InterruptRegistration<H>, ctx: &mut DpcContext<'_>) {
    registration.deregister(ctx.irql());
}

fn main() {}
