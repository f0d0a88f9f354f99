// Item 12: `NdisMSendNetBufferListsComplete` needs IRQL <= DISPATCH_LEVEL. Completing a batch
// takes an `AtMostDispatch` token, which an ISR (`&Dirql`) and a synchronize function
// (`&mut Dirql`) do not have; and a held or mapped list cannot be state the ISR shares
// (`InterruptShared` holds `Copy` values only), so none is reachable at DIRQL to complete.
use ndis::interrupt::{DpcContext, InterruptShared, IsrContext};
use ndis::nbl::{HeldSend, MappedSend, SendCompletion};

fn isr(ctx: &IsrContext<'_>, done: &mut SendCompletion<'_>) {
    done.complete(ctx.irql());
}

fn dpc(ctx: &mut DpcContext<'_>, shared: &InterruptShared<u32>, done: &mut SendCompletion<'_>) {
    ctx.synchronize(shared, |_, dirql| done.complete(dirql));
}

fn shared_held(ctx: &mut DpcContext<'_>, held: &InterruptShared<Option<HeldSend>>) {
    ctx.synchronize(held, |_, _| ());
}

fn shared_mapped(ctx: &mut DpcContext<'_>, mapped: &InterruptShared<Option<MappedSend>>) {
    ctx.synchronize(mapped, |_, _| ());
}

fn main() {}
