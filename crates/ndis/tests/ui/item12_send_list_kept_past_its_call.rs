// Item 12: a list of a send call is valid during the call only. `SendNbl::hold` is the one way to
// keep it (a `HeldSend`); the `&SendNbl` the closure gets cannot leave it.
use ndis::Status;
use ndis::nbl::{SendLists, SendNbl};

fn send<'k>(lists: &mut SendLists<'_>, kept: &mut Vec<&'k SendNbl<'k>>) {
    lists.each(|list| {
        kept.push(list);
        Status::SUCCESS
    });
}

fn main() {}
