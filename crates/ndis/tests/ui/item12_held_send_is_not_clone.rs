// Item 12: a held list has one owner: `HeldSend` is neither `Clone` nor `Copy`, so no second
// handle can complete the list again.
use ndis::nbl::HeldSend;

fn copy(held: &HeldSend) -> HeldSend {
    held.clone()
}

fn main() {}
