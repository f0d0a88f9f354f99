// The passive-level synchronize entry point cannot be called with an ISR's token.
use ndis::interrupt::{InterruptHandler, InterruptRegistration, InterruptShared, IsrContext};

fn in_an_isr<H: InterruptHandler>(registration: &InterruptRegistration<H>, shared: &InterruptShared<u32>, ctx: &IsrContext<'_>) {
    registration.synchronize(ctx.irql(), shared, |n, _| *n += 1);
}

fn main() {}
