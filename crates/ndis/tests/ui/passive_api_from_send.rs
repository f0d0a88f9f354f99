// Without NDIS_SEND_FLAGS_DISPATCH_LEVEL a send may still run at APC_LEVEL: its token opens spin
// locks and indications, not PASSIVE_LEVEL-only APIs such as opening the registry.
use ndis::config::Configuration;
use ndis::miniport::{Miniport, NdisAdapter};
use ndis::nbl::{Returned, SendIrql, SendLists};
use ndis::Status;

struct Nic;

impl Miniport for Nic {
    fn send(&self, adapter: &NdisAdapter, lists: &mut SendLists<'_>, irql: &SendIrql<'_>) {
        if let SendIrql::BelowDispatch(below) = irql {
            let _ = Configuration::open(adapter.handle(), below);
        }
        lists.each(|_| Status::SUCCESS);
    }
    fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &SendIrql<'_>) {}
}

fn main() {}
