// Item 12: NDIS may hand a mapping over later, from a DPC on any processor, so a map hook is
// `Send + Sync + 'static`: one holding an `Rc` (or borrowing the caller's stack) is refused.
use std::rc::Rc;

use ndis::heap::Shared;
use ndis::irql::Dispatch;
use ndis::nbl::{MapHook, MappedSend};

struct Ring {
    slots: Rc<Vec<u32>>,
}

impl MapHook for Ring {
    fn mapped(&self, _hook: &Shared<Self>, send: MappedSend, _irql: &mut Dispatch<'_>) {
        let _ = (self.slots.len(), send);
    }
}

fn main() {}
