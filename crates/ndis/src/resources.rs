//! What an adapter holds from NDIS, released by the framework — never by a driver's `Drop`.
//!
//! Interrupt registrations, shared memory, the scatter/gather DMA registration and register
//! mappings may only be created in `MiniportInitializeEx` and released at PASSIVE_LEVEL in
//! `MiniportInitializeEx` or `MiniportHaltEx`. A driver holds them through handles
//! ([`InterruptRegistration`](crate::interrupt::InterruptRegistration),
//! [`SharedMemory`](crate::dma::SharedMemory), [`DmaRegistration`](crate::dma::DmaRegistration),
//! [`IoSpace`](crate::io::IoSpace)) whose drop releases nothing: dropping one in a DPC, under a
//! spin lock or in an OID handler is harmless. The adapter's [`AdapterResources`] holds a
//! reference to each and releases them all when the driver's adapter is gone (after
//! [`Miniport::halt`](crate::miniport::Miniport::halt), or when initialize fails), in a fixed
//! order: interrupts (no ISR or DPC runs afterwards), then shared memory (the device was quiesced,
//! and nothing can reach it through an interrupt), then the DMA registration, then mappings,
//! then port ranges ([`IoPorts`](crate::io::IoPorts)).
//!
//! A handle the driver kept past halt (in a `static`, leaked) keeps its memory alive: its shared
//! memory and mapping are then not released (NDIS, and the emulator, report them as leaked at
//! unload), so nothing is ever freed under a reference; an interrupt is deregistered regardless
//! (NDIS requires it), and a kept registration refuses to synchronize.

use alloc::vec::Vec;

use crate::Status;
use crate::heap::Shared;
use crate::irql::Passive;
use crate::sync::SpinLock;

/// The release order (lower first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Interrupt,
    SharedMemory,
    Dma,
    IoSpace,
    IoPorts,
}

impl Kind {
    /// Every kind, in release order.
    const ORDER: [Kind; Kind::COUNT] = [
        Kind::Interrupt,
        Kind::SharedMemory,
        Kind::Dma,
        Kind::IoSpace,
        Kind::IoPorts,
    ];

    /// Where a kind is released in [`Kind::ORDER`]. Exhaustive: a new kind must be placed here,
    /// and the check below then fails until `ORDER` lists it (a kind missing from `ORDER` would
    /// never be released).
    const fn position(self) -> usize {
        match self {
            Kind::Interrupt => 0,
            Kind::SharedMemory => 1,
            Kind::Dma => 2,
            Kind::IoSpace => 3,
            Kind::IoPorts => 4,
        }
    }

    const COUNT: usize = Kind::IoPorts.position() + 1;
}

const _: () = {
    let mut i = 0;
    while i < Kind::COUNT {
        assert!(
            Kind::ORDER[i].position() == i,
            "Kind::ORDER must list every kind once"
        );
        i += 1;
    }
};

/// An NDIS object behind a [`Shared`] that the framework releases.
pub(crate) trait Release: Send + Sync {
    const KIND: Kind;
    /// Releases the NDIS object (at PASSIVE_LEVEL, in halt or a failed initialize). `kept`: the
    /// driver still holds a handle to it.
    fn release(&self, kept: bool);
}

struct Record {
    kind: Kind,
    object: *const (),
    /// Releases, then drops the framework's reference.
    finish: unsafe fn(*const ()),
}

// SAFETY: `object` is a `Shared<T: Release>` (Send + Sync) turned into a pointer.
unsafe impl Send for Record {}

/// The NDIS objects of one adapter, released together (see the module docs). The framework
/// keeps one per adapter; code that writes its own `MiniportInitializeEx` (tests of the raw
/// layer) makes one and calls [`release_all`](Self::release_all) from its halt.
pub struct AdapterResources {
    records: SpinLock<Vec<Record>>,
    /// Tells one adapter start from any other (objects made for it refuse to serve another).
    id: u64,
    /// The device is out of D0 (or being taken out): interrupts registered for this adapter are
    /// declined without calling the driver's ISR, and their DPCs do not run the driver's.
    device_off: core::sync::atomic::AtomicBool,
}

/// Ids of [`AdapterResources`], never reused.
static NEXT_ID: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

impl Default for AdapterResources {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for AdapterResources {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AdapterResources").finish_non_exhaustive()
    }
}

/// # Safety
/// `object` came from `Shared::<T>::into_raw`, and this is the only call made with it.
unsafe fn finish<T: Release>(object: *const ()) {
    // SAFETY: per this function's contract.
    let shared = unsafe { Shared::<T>::from_raw(object) };
    let kept = Shared::count(&shared) > 1;
    shared.release(kept);
}

impl AdapterResources {
    pub fn new() -> Self {
        AdapterResources {
            records: SpinLock::new(Vec::new()),
            id: NEXT_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed),
            device_off: core::sync::atomic::AtomicBool::new(false),
        }
    }

    /// See `device_off`: read by the interrupt trampolines at any IRQL.
    pub(crate) fn device_off(&self) -> &core::sync::atomic::AtomicBool {
        &self.device_off
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Takes a reference to `object`, to release it with the others.
    pub(crate) fn adopt<T: Release + 'static>(
        &self,
        object: &Shared<T>,
        passive: &Passive<'_>,
    ) -> Result<(), Status> {
        let record = Record {
            kind: T::KIND,
            object: Shared::into_raw(object.clone()),
            finish: finish::<T>,
        };
        let raw = record.object;
        // Growing under the lock is allowed (DISPATCH_LEVEL) and happens in initialize only.
        let pushed = self
            .records
            .with_unchecked(|records| crate::heap::try_push(records, record, passive));
        if pushed.is_err() {
            // SAFETY: the reference made above, not recorded.
            drop(unsafe { Shared::<T>::from_raw(raw) });
        }
        pushed
    }

    /// Releases every object adopted so far, in the order of `Kind` (see the module documentation).
    ///
    /// # Safety
    /// At PASSIVE_LEVEL in `MiniportHaltEx` or in a failing `MiniportInitializeEx` of the adapter
    /// the objects belong to, after the driver's adapter state is gone.
    pub unsafe fn release_all(&self, _passive: &Passive<'_>) {
        let records = self.records.with_unchecked(core::mem::take);
        // One pass per kind, not a sort: a stable sort of more records than its stack buffer
        // holds allocates, and halt cannot fail. Each kind keeps its adoption order.
        for kind in Kind::ORDER {
            for r in records.iter().filter(|r| r.kind == kind) {
                // SAFETY: each record's pointer is finished once (the vector was taken, and
                // each record has one kind).
                unsafe { (r.finish)(r.object) };
            }
        }
    }
}

impl Drop for AdapterResources {
    fn drop(&mut self) {
        // Anything still here was never released (a raw layer that forgot `release_all`): keep
        // the NDIS objects (NDIS reports them) but drop the references.
        let records = core::mem::take(self.records.get_mut());
        // An emulated bug check unwinding out of halt is not that mistake.
        #[cfg(not(windows))]
        let unwinding = std::thread::panicking();
        #[cfg(windows)]
        let unwinding = false;
        debug_assert!(
            unwinding || records.is_empty(),
            "AdapterResources dropped without release_all"
        );
        core::mem::forget(records);
    }
}
