// Registering an interrupt is an initialize-only call: an ISR (or any callback but initialize) has
// no `Init`, and the proof cannot be made without `unsafe`.
use ndis::interrupt::{DpcContext, InterruptHandler, IsrContext, IsrOutcome};
use ndis::miniport::Initializing;

struct Nic;

impl InterruptHandler for Nic {
    type Queue = ();
    const MSI_SUPPORTED: bool = true;
    fn queues(&self) -> &[()] {
        &[]
    }
    fn isr(&self, _queue: &(), _ctx: &IsrContext<'_>) -> IsrOutcome {
        let resources = ndis::resources::AdapterResources::new();
        let init = Initializing::assume(core::ptr::null_mut(), &resources, ndis::NdisVersion::V6_20);
        let _ = init.register_interrupt(Nic);
        IsrOutcome::Handled
    }
    fn dpc(&self, _queue: &(), _ctx: &mut DpcContext<'_>) {}
}

fn main() {}
