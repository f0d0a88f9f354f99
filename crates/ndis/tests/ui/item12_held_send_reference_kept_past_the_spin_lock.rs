// Item 12: held lists kept under a spin lock are reached inside the lock only: a reference to
// one (or to its list) cannot be carried out of the closure, where another processor may
// complete it. Moving a `HeldSend` out of the closure is fine (ui-pass/send_path.rs).
use ndis::irql::Dispatch;
use ndis::nbl::{HeldSend, SendNbl};
use ndis::sync::SpinLock;

fn peek<'a>(queue: &'a SpinLock<Vec<HeldSend>>, irql: &mut Dispatch<'_>) -> &'a SendNbl<'a> {
    queue.with(irql, |held, _| held[0].list())
}

fn peek_held<'a>(queue: &'a SpinLock<Vec<HeldSend>>, irql: &mut Dispatch<'_>) -> &'a HeldSend {
    queue.with(irql, |held, _| &held[0])
}

fn main() {}
