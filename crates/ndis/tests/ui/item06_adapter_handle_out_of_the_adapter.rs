// Broken item 6: driver code gets no raw adapter handle to keep past halt: neither `Init` nor
// `NdisAdapter` hands one out.
use ndis::miniport::{Init, NdisAdapter};

fn initialize(init: &mut Init<'_>, adapter: &NdisAdapter) {
    let _ = init.handle();
    let _ = adapter.handle();
}

fn main() {}
