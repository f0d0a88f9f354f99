// Broken item 1, compositions: a token cannot be kept for later use in a `Drop` (it borrows its
// callback) nor in a `static` (it is neither Sync nor 'static).
use ndis::irql::Passive;
use ndis::sync::Once;

struct Adapter<'a> {
    passive: &'a Passive<'a>,
}

fn keep(passive: &Passive<'_>) -> Adapter<'static> {
    Adapter { passive }
}

static KEPT: Once<&'static Passive<'static>> = Once::new();

fn main() {}
