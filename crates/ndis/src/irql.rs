//! IRQL as types.
//!
//! Every callback the framework makes into driver code hands it a context that carries a token for
//! the IRQL it runs at: [`Passive`] (PASSIVE_LEVEL: initialize, halt, OID requests), [`Dispatch`]
//! (DISPATCH_LEVEL: DPCs) or [`Dirql`] (device IRQL: ISRs, synchronize functions). An API that
//! needs PASSIVE_LEVEL takes `&Passive`, so calling it from an ISR or a DPC does not compile. The
//! tokens cannot be built by driver code, are neither `Send` nor `Sync`, and borrow the callback's
//! lifetime, so they cannot be kept past the callback that received them.

use core::marker::PhantomData;

/// Proof of running at PASSIVE_LEVEL for lifetime `'a`.
#[derive(Debug)]
pub struct Passive<'a>(PhantomData<(&'a (), *mut ())>);

/// Proof of running at DISPATCH_LEVEL for lifetime `'a`.
#[derive(Debug)]
pub struct Dispatch<'a>(PhantomData<(&'a (), *mut ())>);

/// Proof of running below DISPATCH_LEVEL (PASSIVE_LEVEL or APC_LEVEL: NDIS does not say which)
/// for lifetime `'a`. Enough for spin locks and DISPATCH_LEVEL-or-below calls, not for
/// PASSIVE_LEVEL-only APIs.
#[derive(Debug)]
pub struct BelowDispatch<'a>(PhantomData<(&'a (), *mut ())>);

impl BelowDispatch<'_> {
    /// # Safety
    /// The caller runs below DISPATCH_LEVEL for the token's whole lifetime.
    pub const unsafe fn assume() -> Self {
        BelowDispatch(PhantomData)
    }
}

/// Proof of running at a device IRQL, under an interrupt lock, for lifetime `'a`.
#[derive(Debug)]
pub struct Dirql<'a>(PhantomData<(&'a (), *mut ())>);

impl Passive<'_> {
    /// # Safety
    /// The caller runs at PASSIVE_LEVEL for the token's whole lifetime (framework trampolines of
    /// PASSIVE_LEVEL callbacks, or host tests that emulate one).
    pub const unsafe fn assume() -> Self {
        Passive(PhantomData)
    }
}

impl Dispatch<'_> {
    /// # Safety
    /// The caller runs at DISPATCH_LEVEL for the token's whole lifetime.
    pub const unsafe fn assume() -> Self {
        Dispatch(PhantomData)
    }
}

impl Dirql<'_> {
    /// # Safety
    /// The caller runs at a device IRQL holding an interrupt lock for the token's whole lifetime.
    pub const unsafe fn assume() -> Self {
        Dirql(PhantomData)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Passive<'_> {}
    impl Sealed for super::Dispatch<'_> {}
    impl Sealed for super::BelowDispatch<'_> {}
    impl Sealed for super::Dirql<'_> {}
    impl Sealed for crate::nbl::SendIrql<'_> {}
}

/// Contexts at or below DISPATCH_LEVEL (what most NDIS calls allow, and what a spin lock
/// needs). `at_dispatch` selects the `*_DISPATCH_LEVEL` flags of calls that take them.
pub trait AtMostDispatch: sealed::Sealed {
    fn at_dispatch(&self) -> bool;
}
impl AtMostDispatch for Passive<'_> {
    fn at_dispatch(&self) -> bool {
        false
    }
}
impl AtMostDispatch for BelowDispatch<'_> {
    fn at_dispatch(&self) -> bool {
        false
    }
}
impl AtMostDispatch for Dispatch<'_> {
    fn at_dispatch(&self) -> bool {
        true
    }
}
/// Sends and returns run at PASSIVE_LEVEL or DISPATCH_LEVEL, as NDIS's flags say.
impl AtMostDispatch for crate::nbl::SendIrql<'_> {
    fn at_dispatch(&self) -> bool {
        matches!(self, crate::nbl::SendIrql::AtDispatch(_))
    }
}

/// Any context (for calls allowed at any IRQL).
pub trait AnyIrql: sealed::Sealed {}
impl AnyIrql for Passive<'_> {}
impl AnyIrql for Dispatch<'_> {}
impl AnyIrql for BelowDispatch<'_> {}
impl AnyIrql for Dirql<'_> {}
