// Broken item 5, compositions: the initialize-only proof cannot be kept for later calls, in the
// adapter or in a static, where an OID handler or a DPC would reach it.
use ndis::miniport::{Init, Initializing};
use ndis::sync::Once;

struct Adapter {
    init: &'static Initializing<'static>,
}

static KEPT: Once<&'static Initializing<'static>> = Once::new();

fn initialize(init: &mut Init<'_>) -> Adapter {
    Adapter { init: init.initializing() }
}

fn main() {}
