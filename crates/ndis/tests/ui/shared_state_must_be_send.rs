// State reached from the ISR on any processor must be Send: an Rc would be shared unsynchronized.
use std::rc::Rc;

use ndis::interrupt::{DpcContext, InterruptHandler, InterruptShared, IsrContext, IsrOutcome, MessageId};

struct Nic {
    shared: InterruptShared<Rc<u32>>,
}

impl InterruptHandler for Nic {
    type Queue = ();
    const MSI_SUPPORTED: bool = true;
    fn queues(&self) -> &[()] {
        &[]
    }
    fn isr(&self, _queue: &(), _ctx: &IsrContext<'_>) -> IsrOutcome {
        IsrOutcome::Handled
    }
    fn dpc(&self, _queue: &(), _ctx: &mut DpcContext<'_>) {}
}

fn main() {
    let _ = Nic { shared: InterruptShared::new(MessageId(0), Rc::new(1)) };
}
