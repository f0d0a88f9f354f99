//! Zero-copy sends: a held list's frame mapped for DMA (`NdisMAllocateNetBufferSGList`), its
//! scatter/gather list handed to the driver's [`MapHook`] when NDIS calls the registration's
//! `ProcessSGListHandler`, freed (`NdisMFreeNetBufferSGList`) when the driver completes the
//! [`MappedSend`].
//!
//! The flow: inside a send call (or later) the driver holds a list ([`SendNbl::hold`]) and asks
//! for a mapping ([`HeldSend::map`]) with its hook and a value of its own (a ring index, say).
//! NDIS calls back at DISPATCH_LEVEL, from inside the request (the usual case) or later from a
//! DPC, possibly on another processor; the framework turns the list into a [`MappedSend`],
//! which owns the held list and the scatter/gather list, and calls
//! [`MapHook::mapped`]. The driver programs the device with [`MappedSend::element`]s
//! (guest-physical address and length, bounds-checked), and once the device is done, completes
//! it ([`MappedSend::complete`]): the scatter/gather list is freed, then the list completed in
//! the [`SendCompletion`] batch. A `MappedSend` dropped without completing frees its
//! scatter/gather list (none leaks) and leaks the send, as a dropped [`HeldSend`] does.

use alloc::boxed::Box;

use ndis_sys as sys;

use super::{HeldSend, SendCompletion, SendNbl};
use crate::Status;
use crate::dma::DmaRegistration;
use crate::heap::Shared;
use crate::irql::{AtMostDispatch, Dispatch};

/// The driver's side of a mapping: called once per successful [`HeldSend::map`], at
/// DISPATCH_LEVEL, when NDIS hands over the scatter/gather list. It may run before `map`
/// returns (on the same processor, so it must not need a lock the caller of `map` holds) or
/// later, from a DPC on any processor.
///
/// The hook is a [`Shared`] (allocated fallibly, unlike an `Arc`): each pending mapping keeps
/// a reference to it, and `mapped` gets that reference as `hook` (the same value as `self`),
/// to map the next send with.
///
/// A hook that queues each mapped send for the device under its own lock; the TX DPC takes them
/// out and completes them once the device is done (a run of it on the emulator, with a device
/// that reads the mapped frames, is `tests/zero_copy.rs` of the reference driver):
///
/// ```
/// use ndis::Status;
/// use ndis::heap::Shared;
/// use ndis::irql::Dispatch;
/// use ndis::miniport::NdisAdapter;
/// use ndis::nbl::{MapHook, MappedSend, SendCompletion};
/// use ndis::sync::SpinLock;
///
/// struct TxRing {
///     posted: SpinLock<Vec<MappedSend>>,
/// }
///
/// impl MapHook for TxRing {
///     fn mapped(&self, _hook: &Shared<Self>, send: MappedSend, irql: &mut Dispatch<'_>) {
///         // (write `send.elements()` into descriptors here)
///         self.posted.with(irql, |posted, _| posted.push(send));
///     }
/// }
///
/// impl TxRing {
///     /// From the TX DPC: the device used every posted frame.
///     fn reap(&self, adapter: &NdisAdapter, irql: &mut Dispatch<'_>) {
///         let used: Vec<MappedSend> = self.posted.with(irql, |p, _| p.drain(..).collect());
///         let mut done = SendCompletion::new(adapter);
///         for send in used {
///             send.complete(&mut done, Status::SUCCESS); // frees the scatter/gather list
///         }
///         done.complete(irql);
///     }
/// }
/// # fn main() { let _ = TxRing::reap; }
/// ```
pub trait MapHook: Send + Sync + Sized + 'static {
    fn mapped(&self, hook: &Shared<Self>, send: MappedSend, irql: &mut Dispatch<'_>);
}

/// A reference to a [`MapHook`] with its type erased: the pointer of a `Shared<H>` and the
/// functions that call and release it.
struct ErasedHook {
    raw: *const (),
    mapped: unsafe fn(*const (), MappedSend, &mut Dispatch<'_>),
    release: unsafe fn(*const ()),
}

impl ErasedHook {
    fn new<H: MapHook>(hook: &Shared<H>) -> Self {
        ErasedHook {
            raw: Shared::into_raw(hook.clone()),
            mapped: call_hook::<H>,
            release: release_hook::<H>,
        }
    }

    fn call(self, send: MappedSend, irql: &mut Dispatch<'_>) {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `raw` is the reference `new` made, handed back once (`self` is consumed and
        // its drop does not run).
        unsafe { (this.mapped)(this.raw, send, irql) }
    }
}

impl Drop for ErasedHook {
    fn drop(&mut self) {
        // SAFETY: the reference `new` made, not called (`call` skips this drop).
        unsafe { (self.release)(self.raw) }
    }
}

/// # Safety
/// `raw` came from `Shared::<H>::into_raw`, and is turned back once.
unsafe fn call_hook<H: MapHook>(raw: *const (), send: MappedSend, irql: &mut Dispatch<'_>) {
    // SAFETY: per this function's contract.
    let hook = unsafe { Shared::<H>::from_raw(raw) };
    hook.mapped(&hook, send, irql);
}

/// # Safety
/// As [`call_hook`].
unsafe fn release_hook<H: MapHook>(raw: *const ()) {
    // SAFETY: per this function's contract.
    drop(unsafe { Shared::<H>::from_raw(raw) });
}

/// Elements held in the request itself: a list of up to this many needs no allocation by NDIS
/// (more than a 64 KiB mapping over 4 KiB pages needs).
const INLINE_ELEMENTS: usize = 20;
const INLINE_WORDS: usize = (core::mem::size_of::<sys::SCATTER_GATHER_LIST>()
    + INLINE_ELEMENTS * core::mem::size_of::<sys::SCATTER_GATHER_ELEMENT>())
    / 8;

/// One mapping, from the request to its completion: what the callback's context points to.
struct MapRequest {
    held: HeldSend,
    nb: *mut sys::NET_BUFFER,
    dma: DmaRegistration,
    hook: Option<ErasedHook>,
    cookie: usize,
    /// Storage offered to NDIS for the list (`SCATTER_GATHER_LIST` is 8-aligned); NDIS writes
    /// it, nothing reads it but through the list pointer NDIS hands back, so it starts
    /// uninitialized (no per-send zeroing).
    storage: [core::mem::MaybeUninit<u64>; INLINE_WORDS],
}

/// One piece of a mapped frame: where the device reads it and how many bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SgElement {
    /// The device (logical) address, as for [`crate::hw::DeviceMemory::device_address`].
    pub address: u64,
    pub length: u32,
}

/// A held send whose frame NDIS mapped for DMA: the list and its scatter/gather list, owned
/// until [`complete`](Self::complete) (see the module documentation).
#[must_use = "a mapped send must be completed (MappedSend::complete)"]
pub struct MappedSend {
    /// None once the list is freed (taken apart by `complete` or `into_held`).
    request: Option<Box<MapRequest>>,
    list: *mut sys::SCATTER_GATHER_LIST,
    elements: usize,
}

// SAFETY: the held list is `Send` (see `HeldSend`); the scatter/gather list is NDIS memory the
// miniport owns until it frees it, from any processor at IRQL <= DISPATCH_LEVEL; the NET_BUFFER
// belongs to the held list.
unsafe impl Send for MappedSend {}
// SAFETY: `MapRequest` moves between processors only inside a `Box` owned by one party at a time
// (the caller of `map`, NDIS's context pointer, then a `MappedSend`); its hook is a reference
// to a `Send + Sync` value (`MapHook`).
unsafe impl Send for MapRequest {}

impl HeldSend {
    /// Maps the list's frame for DMA (`NdisMAllocateNetBufferSGList` on `dma`, from its
    /// current MDL and offset over its data length): `hook.mapped` gets the
    /// [`MappedSend`] when NDIS calls back, with `cookie`. The list must have exactly one frame.
    /// On failure the list comes back with the status (`RESOURCES` for an allocation NDIS or
    /// the framework could not make), still held: send it another way.
    pub fn map<H: MapHook, C: AtMostDispatch>(
        self,
        dma: &DmaRegistration,
        hook: &Shared<H>,
        cookie: usize,
        irql: &C,
    ) -> Result<(), (HeldSend, Status)> {
        let nbl = self.list.nbl;
        // SAFETY: the held list is the miniport's until completed; its NET_BUFFER chain is
        // valid.
        let nb = unsafe { (*nbl).FirstNetBuffer };
        // SAFETY: as above.
        if nb.is_null() || !unsafe { (*nb).Next }.is_null() {
            return Err((self, Status::INVALID_PARAMETER));
        }
        let request = MapRequest {
            held: self,
            nb,
            dma: dma.clone(),
            hook: Some(ErasedHook::new(hook)),
            cookie,
            storage: [core::mem::MaybeUninit::uninit(); INLINE_WORDS],
        };
        let request = match crate::heap::try_box_or_back(request, irql) {
            Ok(r) => r,
            Err(r) => return Err((r.held, Status::RESOURCES)),
        };
        let size = core::mem::size_of_val(&request.storage);
        let raw = Box::into_raw(request);
        // SAFETY: `raw` is the live request (owned through the pointer from here on).
        let buffer = unsafe { core::ptr::addr_of_mut!((*raw).storage) }.cast::<core::ffi::c_void>();
        let (buffer, size) = if dma.sg_list_size() <= size {
            (buffer, size as u32)
        } else {
            (core::ptr::null_mut(), 0)
        };
        // SAFETY: the registration's live handle (kept by the request); a NET_BUFFER of a list
        // the miniport holds (not completed before the mapping is freed: the request owns the
        // `HeldSend`); the context is the request, which NDIS passes once to
        // `process_sg_list` (inline or later); the buffer, if offered, lives in the request
        // until the list is freed. IRQL <= DISPATCH_LEVEL (the token).
        let status = unsafe {
            sys::NdisMAllocateNetBufferSGList(dma.handle(), nb, raw.cast(), 0, buffer, size)
        };
        if status != sys::NDIS_STATUS_SUCCESS {
            // SAFETY: NDIS refused: it keeps no reference to the context, which is still the
            // request from `Box::into_raw` above.
            let request = unsafe { Box::from_raw(raw) };
            return Err((request.held, Status(status)));
        }
        Ok(())
    }
}

/// `MINIPORT_PROCESS_SG_LIST`: NDIS hands over the list made for a [`HeldSend::map`] request.
///
/// # Safety
/// Called by NDIS at DISPATCH_LEVEL, once per successful `NdisMAllocateNetBufferSGList`, with
/// the context that call passed (a `MapRequest` from `Box::into_raw`) and the list it made.
pub(crate) unsafe extern "win64-unwind" fn process_sg_list(
    _device: sys::PDEVICE_OBJECT,
    _reserved: sys::PVOID,
    list: *mut sys::SCATTER_GATHER_LIST,
    context: sys::PVOID,
) {
    // SAFETY: the function's contract: the request, handed back once.
    let mut request = unsafe { Box::from_raw(context.cast::<MapRequest>()) };
    let hook = request.hook.take();
    // SAFETY: NDIS's list, valid until freed; its header says how many elements follow.
    let elements = unsafe { (*list).NumberOfElements } as usize;
    let send = MappedSend {
        request: Some(request),
        list,
        elements,
    };
    // SAFETY: NDIS calls this handler at DISPATCH_LEVEL.
    let mut dispatch = unsafe { Dispatch::assume() };
    match hook {
        Some(h) => h.call(send, &mut dispatch),
        // Not reachable (`map` always sets a hook); the send would leak, the list does not.
        None => drop(send),
    }
}

impl MappedSend {
    /// The list, to read headers from (the frame's bytes are unchanged while mapped).
    pub fn list(&self) -> &SendNbl<'_> {
        self.request
            .as_ref()
            .map(|r| r.held.list())
            .expect("a mapped send is whole until taken apart")
    }

    /// The value given to [`HeldSend::map`].
    pub fn cookie(&self) -> usize {
        self.request.as_ref().map_or(0, |r| r.cookie)
    }

    /// How many elements the mapping has.
    pub fn len(&self) -> usize {
        self.elements
    }

    pub fn is_empty(&self) -> bool {
        self.elements == 0
    }

    /// Element `i` (None past the last).
    pub fn element(&self, i: usize) -> Option<SgElement> {
        if i >= self.elements {
            return None;
        }
        // SAFETY: `i` is below the list's `NumberOfElements`; NDIS's list (or the request's
        // storage it wrote it into) holds that many elements after the header until freed.
        let e = unsafe {
            core::ptr::addr_of!((*self.list).Elements)
                .cast::<sys::SCATTER_GATHER_ELEMENT>()
                .add(i)
                .read()
        };
        Some(SgElement {
            address: e.Address as u64,
            length: e.Length,
        })
    }

    /// The elements in order.
    /// Where byte `offset` of the frame lies: (element, offset inside it). None at or past the
    /// end of the mapping.
    pub fn locate(&self, offset: usize) -> Option<(usize, u32)> {
        let mut left = offset;
        for (i, e) in self.elements().enumerate() {
            let len = e.length as usize;
            if left < len {
                return Some((i, left as u32));
            }
            left -= len;
        }
        None
    }

    pub fn elements(&self) -> impl Iterator<Item = SgElement> + '_ {
        (0..self.elements).filter_map(|i| self.element(i))
    }

    /// Frees the scatter/gather list (the device is done with the frame) and returns the list.
    fn free(&mut self) -> Option<Box<MapRequest>> {
        let request = self.request.take()?;
        // SAFETY: the list NDIS made for this request's NET_BUFFER on its registration (kept
        // registered by the request), freed once (`request` is taken); the device no longer
        // reads the frame (the caller's word, see `complete`). At IRQL <= DISPATCH_LEVEL, where
        // every holder of a `MappedSend` runs.
        unsafe { sys::NdisMFreeNetBufferSGList(request.dma.handle(), self.list, request.nb) };
        Some(request)
    }

    /// The device is done with the frame: frees the scatter/gather list, then adds the list to
    /// `done` with `status` (completed with the batch).
    pub fn complete(mut self, done: &mut SendCompletion<'_>, status: Status) {
        if let Some(request) = self.free() {
            done.push(request.held, status);
        }
    }

    /// Frees the mapping without completing: the list comes back held (to copy instead, say).
    /// Only once the device no longer reads the frame.
    pub fn into_held(mut self) -> HeldSend {
        match self.free() {
            Some(request) => request.held,
            None => unreachable!("a mapped send is whole until taken apart"),
        }
    }
}

impl Drop for MappedSend {
    fn drop(&mut self) {
        // Not completed: the scatter/gather list is still freed (the held list leaks, as a
        // dropped `HeldSend` does, and NDIS reports it).
        let _ = self.free();
    }
}
