// Broken item 6 (found in review): configuration space is read through initialize's token; the
// accessor cannot be kept in the adapter, where an ISR, `shutdown` or a use after halt could
// reach NdisMGetBusData.
use ndis::io::PciConfig;
use ndis::miniport::Init;

struct Adapter {
    pci: PciConfig<'static>,
}

fn initialize(init: &mut Init<'_>) -> Adapter {
    Adapter { pci: init.pci_config() }
}

fn main() {}
