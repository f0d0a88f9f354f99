// Interrupt-shared state has no way in except under the interrupt lock.
use ndis::interrupt::{InterruptShared, MessageId};

fn main() {
    let shared = InterruptShared::new(MessageId(0), 5u32);
    let _ = &shared.value;
    let _: &u32 = &*shared;
}
