// A token borrowed from a callback cannot be kept after the callback returns.
use ndis::interrupt::DpcContext;
use ndis::irql::Dispatch;

fn keep<'a>(ctx: &mut DpcContext<'a>) -> &'static mut Dispatch<'static> {
    ctx.irql()
}

fn main() {}
