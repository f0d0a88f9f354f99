// Broken item 1: an OID handler's token is borrowed by the lock; it cannot reach a
// PASSIVE_LEVEL-only API (a synchronize call from passive code) inside the closure.
use ndis::interrupt::{InterruptHandler, InterruptRegistration, InterruptShared};
use ndis::irql::Passive;
use ndis::sync::SpinLock;

fn oid_set<H: InterruptHandler>(
    lock: &SpinLock<u32>,
    irq: &InterruptRegistration<H>,
    shared: &InterruptShared<u32>,
    passive: &mut Passive<'_>,
) {
    lock.with(passive, |n, _| {
        *n += irq.synchronize(passive, shared, |v, _| *v);
    });
}

fn main() {}
