// Asserting an IRQL is an unsafe promise, not something safe driver code can do.
use ndis::irql::Passive;

fn main() {
    let _assumed = Passive::assume();
}
