// Registering an interrupt needs PASSIVE_LEVEL; an ISR runs at DIRQL.
use ndis::adapter::AdapterHandle;
use ndis::interrupt::{DpcContext, InterruptHandler, InterruptRegistration, IsrContext, IsrOutcome};

struct Nic {
    adapter: AdapterHandle,
}

impl InterruptHandler for Nic {
    type Queue = ();
    const MSI_SUPPORTED: bool = true;
    fn queues(&self) -> &[()] {
        &[]
    }
    fn isr(&self, _queue: &(), ctx: &IsrContext<'_>) -> IsrOutcome {
        let _ = InterruptRegistration::register(ctx.irql(), self.adapter, Nic { adapter: self.adapter });
        IsrOutcome::Handled
    }
    fn dpc(&self, _queue: &(), _ctx: &mut DpcContext<'_>) {}
}

fn main() {}
