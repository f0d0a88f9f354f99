//! Handles NDIS gives a miniport for one adapter.

use ndis_sys as sys;

/// The `NdisMiniportHandle` of one adapter (what `MiniportInitializeEx` receives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterHandle(sys::NDIS_HANDLE);

// SAFETY: an opaque token NDIS accepts from any processor; the driver never dereferences it.
unsafe impl Send for AdapterHandle {}
// SAFETY: as above; sharing the value shares no memory.
unsafe impl Sync for AdapterHandle {}

impl AdapterHandle {
    /// # Safety
    /// `raw` is the `NdisMiniportHandle` NDIS passed to `MiniportInitializeEx` of a live adapter.
    /// The adapter lifecycle layer creates these; until it exists, tests and raw callbacks do.
    pub const unsafe fn from_raw(raw: sys::NDIS_HANDLE) -> Self {
        AdapterHandle(raw)
    }

    pub const fn as_raw(self) -> sys::NDIS_HANDLE {
        self.0
    }
}
