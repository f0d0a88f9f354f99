// Broken item 9: a pool indicates for the adapter that owns it (no adapter argument to pass
// another one), and its buffers' memory is not handed out (writes go through `write`, refused
// while a buffer is lent).
use ndis::irql::Dispatch;
use ndis::miniport::NdisAdapter;
use ndis::nbl::ReceivePool;

fn dpc(pool: &ReceivePool, other: &NdisAdapter, d: &mut Dispatch<'_>) {
    let _ = pool.memory();
    pool.indicate(other, &[(0usize, 0usize, 60usize)], d, |_| {});
}

fn main() {}
