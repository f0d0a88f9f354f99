// Item 12: a held list moves between processors (`HeldSend: Send`, completing on any processor is
// allowed) but is never shared: its view counts copies in a `Cell`, so `HeldSend` is not `Sync`.
// A bare `static` of one, or a reference to one used from two threads, does not compile.
use ndis::nbl::HeldSend;

static HELD: Option<HeldSend> = None;

fn share(held: &HeldSend) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let _ = held.list();
        });
    });
}

fn main() {}
