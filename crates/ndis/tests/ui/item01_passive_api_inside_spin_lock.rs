// Broken item 1: under a spin lock the caller's PASSIVE_LEVEL token is borrowed by the lock, so a
// PASSIVE_LEVEL-only call (here, opening the registry in initialize) does not compile inside.
use ndis::miniport::Init;
use ndis::sync::SpinLock;

fn initialize(init: &mut Init<'_>, lock: &SpinLock<u32>) {
    lock.with(init.passive_mut(), |n, _dispatch| {
        let _ = init.configuration();
        *n += 1;
    });
}

fn main() {}
