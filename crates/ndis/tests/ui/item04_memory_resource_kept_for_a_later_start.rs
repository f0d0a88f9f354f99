// Broken item 4 (found in review): a memory range borrows the initialize call it came from; it
// cannot be kept for a later start, when PnP may have moved the BARs.
use ndis::io::MemoryResource;
use ndis::miniport::Init;
use ndis::sync::Once;

static KEPT: Once<MemoryResource<'static>> = Once::new();

fn initialize(init: &mut Init<'_>) {
    if let Some(range) = init.resources().memory().next() {
        KEPT.set(range);
    }
}

fn main() {}
