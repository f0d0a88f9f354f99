// Driver code cannot make an IRQL token out of thin air.
use ndis::irql::Passive;

fn main() {
    let _forged = Passive(core::marker::PhantomData);
}
