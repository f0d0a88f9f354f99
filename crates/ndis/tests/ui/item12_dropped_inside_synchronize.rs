// Item 12 (a soundness fix): a synchronize function runs at DIRQL, where NDIS allows neither
// `NdisMFreeNetBufferSGList` nor `NdisMSendNetBufferListsComplete`. Before the fix, a mapped send
// or a batch moved into the closure and dropped there compiled and made those calls at DIRQL.
// The closure must now be `Copy + Send`: it owns nothing, and reaches no `Cell` either.
use std::cell::Cell;

use ndis::Status;
use ndis::interrupt::{DpcContext, InterruptShared};
use ndis::nbl::{HeldSend, MappedSend, SendCompletion};

fn mapped_dropped(ctx: &mut DpcContext<'_>, shared: &InterruptShared<u32>, mapped: MappedSend) {
    ctx.synchronize(shared, move |_, _| drop(mapped));
}

fn batch_dropped(
    ctx: &mut DpcContext<'_>,
    shared: &InterruptShared<u32>,
    mut done: SendCompletion<'_>,
    held: HeldSend,
) {
    ctx.synchronize(shared, move |_, _| {
        done.push(held, Status::SUCCESS);
        drop(done);
    });
}

fn taken_from_a_cell(
    ctx: &mut DpcContext<'_>,
    shared: &InterruptShared<u32>,
    slot: &Cell<Option<MappedSend>>,
) {
    ctx.synchronize(shared, |_, _| drop(slot.take()));
}

fn main() {}
