// Broken item 4: a memory range can only come from the adapter's own resources; one cannot be
// made up (here, the local APIC's page).
use ndis::io::MemoryResource;

fn main() {
    let _lapic = MemoryResource { start: 0xFEE0_0000, length: 4096 };
}
