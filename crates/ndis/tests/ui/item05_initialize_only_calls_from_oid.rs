// Broken item 5: mapping registers, registering DMA and allocating shared memory need the
// initialize proof; an OID handler has only a PASSIVE_LEVEL token.
use ndis::dma::DmaRegistration;
use ndis::io::{IoSpace, MemoryResource};
use ndis::irql::Passive;
use ndis::nbl::ReceivePool;

fn oid_set(dma: &DmaRegistration, range: MemoryResource<'_>, passive: &mut Passive<'_>) {
    let _ = dma.allocate(passive, 4096);
    let _ = DmaRegistration::register(passive, 4096);
    let _ = IoSpace::map(passive, range);
    let _ = ReceivePool::new(passive, dma, 2048, 8);
}

fn main() {}
