//! IRQL as types.
//!
//! Every callback the framework makes into driver code hands it a context that carries a token for
//! the IRQL it runs at: [`Passive`] (PASSIVE_LEVEL: initialize, halt, OID requests), [`Dispatch`]
//! (DISPATCH_LEVEL: DPCs, code under a spin lock), [`DispatchOrBelow`] (sends and returns: NDIS
//! says DISPATCH_LEVEL when it knows, otherwise nothing) or [`Dirql`] (device IRQL: ISRs,
//! synchronize functions). An API that needs PASSIVE_LEVEL takes `&Passive`, so calling it from an
//! ISR or a DPC does not compile. The tokens cannot be built by driver code, are neither `Send`
//! nor `Sync`, and borrow the callback's lifetime, so they cannot be kept past the callback that
//! received them.
//!
//! # Scopes that raise the IRQL
//! A spin lock ([`SpinLock::with`](crate::sync::SpinLock::with)) and a synchronize function
//! ([`DpcContext::synchronize`](crate::interrupt::DpcContext::synchronize),
//! [`InterruptRegistration::synchronize`](crate::interrupt::InterruptRegistration::synchronize))
//! run their closure at a higher IRQL than the caller's. They take the caller's token *mutably*
//! for the whole scope and give the closure a token of the level it really runs at: inside,
//! the outer token is borrowed, so the borrow checker refuses every use of it (a PASSIVE_LEVEL
//! call under a spin lock, a spin lock inside a synchronize function), and the only token in
//! reach is the right one. Callbacks therefore receive `&mut` tokens (or `&mut` contexts); APIs
//! that only need to *know* the IRQL take a shared reference, which a `&mut` token coerces to.

use core::marker::PhantomData;

/// Proof of running at PASSIVE_LEVEL for lifetime `'a`.
#[derive(Debug)]
pub struct Passive<'a>(PhantomData<(&'a (), *mut ())>);

/// Proof of running at DISPATCH_LEVEL for lifetime `'a`.
#[derive(Debug)]
pub struct Dispatch<'a>(PhantomData<(&'a (), *mut ())>);

/// Proof of running at DISPATCH_LEVEL *or lower* for lifetime `'a`, and whether DISPATCH_LEVEL is
/// known. NDIS sets `NDIS_SEND_FLAGS_DISPATCH_LEVEL` / `NDIS_RETURN_FLAGS_DISPATCH_LEVEL` when it
/// knows the call runs at DISPATCH_LEVEL; a caller that does not know its IRQL clears the flag
/// ("Dispatch IRQL Tracking"), so a cleared flag proves nothing but "at most DISPATCH_LEVEL".
/// Enough for spin locks and DISPATCH_LEVEL-or-below calls, never for PASSIVE_LEVEL-only APIs.
#[derive(Debug)]
pub struct DispatchOrBelow<'a> {
    known_dispatch: bool,
    _irql: PhantomData<(&'a (), *mut ())>,
}

impl DispatchOrBelow<'_> {
    /// # Safety
    /// The caller runs at IRQL <= DISPATCH_LEVEL for the token's whole lifetime, and at
    /// DISPATCH_LEVEL if `known_dispatch`.
    pub const unsafe fn assume(known_dispatch: bool) -> Self {
        DispatchOrBelow {
            known_dispatch,
            _irql: PhantomData,
        }
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
    impl Sealed for super::DispatchOrBelow<'_> {}
    impl Sealed for super::Dirql<'_> {}
}

/// Contexts at or below DISPATCH_LEVEL (what most NDIS calls allow, and what a spin lock
/// needs). `known_dispatch` selects the `*_DISPATCH_LEVEL` flags of calls that take them: set
/// only when the IRQL is known to be DISPATCH_LEVEL (a cleared flag is always allowed).
pub trait AtMostDispatch: sealed::Sealed {
    fn known_dispatch(&self) -> bool;
}
impl AtMostDispatch for Passive<'_> {
    fn known_dispatch(&self) -> bool {
        false
    }
}
impl AtMostDispatch for Dispatch<'_> {
    fn known_dispatch(&self) -> bool {
        true
    }
}
impl AtMostDispatch for DispatchOrBelow<'_> {
    fn known_dispatch(&self) -> bool {
        self.known_dispatch
    }
}

/// Any context (for calls allowed at any IRQL).
pub trait AnyIrql: sealed::Sealed {}
impl AnyIrql for Passive<'_> {}
impl AnyIrql for Dispatch<'_> {}
impl AnyIrql for DispatchOrBelow<'_> {}
impl AnyIrql for Dirql<'_> {}
