// Broken item 7: the registry handle borrows initialize: it cannot be kept in the adapter, nor
// closed (dropped) inside a spin lock.
use ndis::config::Configuration;
use ndis::miniport::Init;
use ndis::sync::SpinLock;

struct Adapter {
    config: Configuration<'static>,
}

fn initialize(init: &mut Init<'_>, lock: &SpinLock<u32>) -> Adapter {
    let config = init.configuration().unwrap();
    lock.with(init.passive_mut(), |_, _| drop(config));
    Adapter { config: init.configuration().unwrap() }
}

fn main() {}
