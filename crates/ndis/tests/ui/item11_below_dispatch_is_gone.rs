// Broken item 11: there is no "below DISPATCH" token to build from a cleared send flag.
use ndis::irql::BelowDispatch;

fn main() {}
