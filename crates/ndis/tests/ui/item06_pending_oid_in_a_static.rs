// Broken item 6 (found in review): a pended request cannot be parked in a `static`, where code
// at any IRQL (an ISR, `shutdown`) could complete or drop it.
use ndis::oid::PendingOid;
use ndis::sync::Once;

static PARKED: Once<PendingOid> = Once::new();

fn main() {}
