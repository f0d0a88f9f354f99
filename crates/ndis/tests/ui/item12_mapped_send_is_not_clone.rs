// Item 12: a mapped send is not `Clone`: one owner frees its scatter/gather list.
use ndis::nbl::MappedSend;

fn copy(mapped: &MappedSend) -> MappedSend {
    mapped.clone()
}

fn main() {}
