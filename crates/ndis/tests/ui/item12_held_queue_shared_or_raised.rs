// Item 12, for the queue of held lists: a `HeldQueue` moves between processors with the lists
// it holds (`Send`) but, like a `HeldSend`, is never shared (`!Sync`: no bare `static`, no
// `&HeldQueue` on two threads), is not interrupt-shared state (`InterruptShared` holds `Copy`
// values only), and cannot be moved into a synchronize closure (`Copy + Send`) to pop and
// complete its lists at DIRQL. Under a spin lock, as vionet keeps its backlog, it compiles.
use ndis::interrupt::{DpcContext, InterruptShared};
use ndis::nbl::HeldQueue;

static QUEUE: HeldQueue = HeldQueue::new();

fn share(queue: &HeldQueue) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let _ = queue.len();
        });
    });
}

fn interrupt_shared(ctx: &mut DpcContext<'_>, queue: &InterruptShared<HeldQueue>) {
    ctx.synchronize(queue, |_, _| ());
}

fn moved_into_synchronize(ctx: &mut DpcContext<'_>, shared: &InterruptShared<u32>, mut queue: HeldQueue) {
    ctx.synchronize(shared, move |_, _| drop(queue.pop_front()));
}

fn main() {}
