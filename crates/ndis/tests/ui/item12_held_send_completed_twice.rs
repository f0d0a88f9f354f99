// Item 12 (send-path tokens): a held list completes exactly once. `SendCompletion::push`
// consumes the `HeldSend`: a second completion of the same list is a use after move.
use ndis::Status;
use ndis::nbl::{HeldSend, SendCompletion};

fn complete(held: HeldSend, done: &mut SendCompletion<'_>) {
    done.push(held, Status::SUCCESS);
    done.push(held, Status::SUCCESS);
}

fn main() {}
