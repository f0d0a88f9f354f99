// Broken item 1: `indicate_link_state` needs IRQL <= DISPATCH_LEVEL; inside a passive-level
// synchronize function (DIRQL) the passive token is borrowed (the DIRQL one does not fit either:
// see item01_spin_lock_with_dirql_token).
use ndis::interrupt::{InterruptHandler, InterruptRegistration, InterruptShared};
use ndis::irql::Passive;
use ndis::miniport::NdisAdapter;

fn oid<H: InterruptHandler>(
    irq: &InterruptRegistration<H>,
    shared: &InterruptShared<u32>,
    adapter: &NdisAdapter,
    passive: &mut Passive<'_>,
) {
    irq.synchronize(passive, shared, |_, _dirql| {
        adapter.indicate_link_state(false, 0, passive);
    });
}

fn main() {}
