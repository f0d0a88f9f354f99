// Broken item 8: a driver cannot leave out the step that stops its device before the framework
// frees device-visible memory: `quiesce` has no default.
use ndis::irql::DispatchOrBelow;
use ndis::miniport::{Miniport, NdisAdapter};
use ndis::nbl::{Returned, SendLists};
use ndis::Status;

struct Nic;

impl Miniport for Nic {
    fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, _: &mut DispatchOrBelow<'_>) {
        lists.each(|_| Status::SUCCESS);
    }
    fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &mut DispatchOrBelow<'_>) {}
}

fn main() {}
