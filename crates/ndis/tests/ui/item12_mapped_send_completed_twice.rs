// Item 12: a mapped send owns its list and its scatter/gather list until completed: `complete`
// and `into_held` consume it, so the scatter/gather list is freed and the list completed once.
use ndis::Status;
use ndis::nbl::{MappedSend, SendCompletion};

fn done(mapped: MappedSend, batch: &mut SendCompletion<'_>) {
    mapped.complete(batch, Status::SUCCESS);
    let _held = mapped.into_held();
}

fn main() {}
