// An IRQL token is a fact about this processor, now: it cannot travel to another thread.
use ndis::interrupt::IsrContext;

fn in_an_isr(ctx: &IsrContext<'_>) {
    let token = ctx.irql();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _moved = token;
        });
    });
}

fn main() {}
