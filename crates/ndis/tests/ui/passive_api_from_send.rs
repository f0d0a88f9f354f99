// A send whose DISPATCH flag is cleared may still run at DISPATCH_LEVEL ("unknown, at most
// DISPATCH"): its token opens spin locks and indications, never PASSIVE_LEVEL-only APIs.
use ndis::interrupt::{InterruptHandler, InterruptRegistration, InterruptShared};
use ndis::irql::DispatchOrBelow;

fn in_a_send<H: InterruptHandler>(
    registration: &InterruptRegistration<H>,
    shared: &InterruptShared<u32>,
    irql: &mut DispatchOrBelow<'_>,
) {
    registration.synchronize(irql, shared, |n, _| *n += 1);
}

fn main() {}
