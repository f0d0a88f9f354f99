// Broken item 7 (found in review): state an ISR or a synchronize function reaches is plain data
// (`Copy`): taking or replacing it there frees nothing (a `Vec` freed at DIRQL would free pool
// above DISPATCH_LEVEL).
use ndis::interrupt::{InterruptShared, MessageId};

fn main() {
    let _bytes = InterruptShared::new(MessageId(0), Vec::<u8>::new());
}
