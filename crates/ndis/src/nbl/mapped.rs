//! Zero-copy sends: a held list's frame mapped for DMA (`NdisMAllocateNetBufferSGList`), its
//! scatter/gather list handed to the driver's [`MapHook`] when NDIS calls the registration's
//! `ProcessSGListHandler`, freed (`NdisMFreeNetBufferSGList`) when the driver completes the
//! [`MappedSend`].
//!
//! The flow: inside a send call (or later) the driver holds a list ([`SendNbl::hold`]) and asks
//! for a mapping ([`HeldSend::map`]) with its hook and a value of its own (a ring index, say).
//! NDIS calls back at DISPATCH_LEVEL, from inside the request (the usual case) or later from a
//! DPC, possibly on another processor; the framework turns the list into a [`MappedSend`],
//! which owns the held list and the scatter/gather list. A callback that comes before the
//! request returns hands the send back to the caller of `map` (`Ok(Some(send))`: no hook call,
//! so the caller may keep holding its own locks); a later one calls [`MapHook::mapped`]. A
//! [`MapPool`] makes the requests once (at initialize) instead of one allocation per mapping.
//! The driver programs the device with [`MappedSend::element`]s
//! (guest-physical address and length, bounds-checked), and once the device is done, completes
//! it ([`MappedSend::complete`]): the scatter/gather list is freed, then the list completed in
//! the [`SendCompletion`] batch. A `MappedSend` dropped without completing frees its
//! scatter/gather list (none leaks) and leaks the send, as a dropped [`HeldSend`] does.

use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr::{NonNull, addr_of, addr_of_mut};

use ndis_sys as sys;

use super::{HeldSend, SendCompletion, SendFrame, SendNbl};
use crate::Status;
use crate::dma::DmaRegistration;
use crate::heap::Shared;
use crate::irql::{AtMostDispatch, Dispatch};
use crate::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// The driver's side of a mapping: called once per [`HeldSend::map`] that returned `Ok(None)`,
/// at DISPATCH_LEVEL, when NDIS hands over the scatter/gather list, after `map` returned (from
/// a DPC, on any processor). A list NDIS hands over before `map` returns comes back from `map`
/// itself and never reaches the hook.
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
const STORAGE_BYTES: usize = INLINE_WORDS * 8;

/// Bytes of a request's storage offered to NDIS for the lists of `dma`: all of it when the
/// largest list (`ScatterGatherListSize`) fits, so that NDIS allocates nothing for them; 0 when
/// it does not (a size too small for the list makes NDIS allocate it).
fn list_storage(dma: &DmaRegistration) -> u32 {
    if dma.sg_list_size() <= STORAGE_BYTES {
        STORAGE_BYTES as u32
    } else {
        0
    }
}

/// Who of a mapping's callback and the end of its `map` call hands the send over, whichever
/// comes second: it sees the other's mark (one atomic, moved once from `MAPPING`).
///
/// - The callback ([`called_back`](Self::called_back)) before `map` returned: `map` takes the
///   send and returns it (the callback calls no hook).
/// - `map` first ([`leave`](Self::leave), after it set the hook): the callback takes the send
///   and calls the hook.
///
/// Whatever the first one wrote before its mark (the list, the hook) is visible to the second
/// (release, then acquire).
pub(crate) struct Handoff(AtomicU8);

impl Handoff {
    /// `map` has not returned, NDIS has not called back.
    const MAPPING: u8 = 0;
    /// NDIS called back before `map` returned.
    const CALLED: u8 = 1;
    /// `map` returned first.
    const RETURNED: u8 = 2;

    pub(crate) fn new() -> Self {
        Handoff(AtomicU8::new(Self::MAPPING))
    }

    /// From the callback: true if `map` has not left yet (it takes the send); false if it did
    /// (the callback takes it).
    pub(crate) fn called_back(&self) -> bool {
        self.0
            .compare_exchange(
                Self::MAPPING,
                Self::CALLED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// From `map`: the callback came already (a fast check before setting the hook).
    pub(crate) fn was_called(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::CALLED
    }

    /// From `map`: true if it leaves the send to a callback still to come; false if the
    /// callback came meanwhile (`map` takes the send).
    pub(crate) fn leave(&self) -> bool {
        self.0
            .compare_exchange(
                Self::MAPPING,
                Self::RETURNED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

/// One mapping, from the request to its completion: what the callback's context points to.
/// It lives in a [`MapPool`] slot or, when none is free (or without a pool), in a heap block
/// of its own; it is written field by field (the list storage is never initialized; a pool's
/// slot keeps its registration and home from one request to the next) and taken apart the
/// same way ([`MapRequest::release`]).
struct MapRequest {
    held: HeldSend,
    /// The registration's handle, kept registered by `home`.
    dma: sys::NDIS_HANDLE,
    home: Home,
    /// Who hands the send over: the callback or the end of `map`.
    state: Handoff,
    /// Set by `map` before it leaves the send to the callback ([`Handoff::leave`]); taken by
    /// the callback then.
    hook: Option<ErasedHook>,
    cookie: usize,
    /// The list NDIS made (set by the callback); its header says how many elements it has.
    list: *mut sys::SCATTER_GATHER_LIST,
    /// Storage offered to NDIS for the list (`SCATTER_GATHER_LIST` is 8-aligned); NDIS writes
    /// it, nothing reads it but through the list pointer NDIS hands back, so it starts
    /// uninitialized (no per-send zeroing).
    storage: [MaybeUninit<u64>; INLINE_WORDS],
}

/// Where a request's memory comes from, and what keeps its registration alive.
enum Home {
    /// A heap block of its own (freed with the request).
    Heap(DmaRegistration),
    /// Slot `.1` of the pool (given back with the request; the pool keeps the registration,
    /// and lives while any of its slots is out).
    Pool(NonNull<PoolInner>, usize),
}

/// Requests made once, at initialize, for the mappings of one transmit ring (or adapter):
/// [`MapPool::map`] takes a free one instead of allocating per send, and gives it back when the
/// mapped send is completed. When every request is in use, a mapping allocates one as
/// [`HeldSend::map`] does (and fails with `RESOURCES` only if that fails too): a pool never
/// loses a send. Its memory is freed with it, or, if a request of it is still out then (a send
/// not completed, a bug NDIS reports), left allocated for good, so that the request stays
/// valid.
pub struct MapPool {
    /// From `Box::leak`: freed by the drop only when every slot is free.
    inner: NonNull<PoolInner>,
}

// SAFETY: the pool is `PoolInner`, which is `Send + Sync`; the pointer is owned (a leaked box).
unsafe impl Send for MapPool {}
// SAFETY: as above.
unsafe impl Sync for MapPool {}

struct PoolInner {
    dma: DmaRegistration,
    /// Bytes of each request's storage offered to NDIS ([`list_storage`]).
    list_storage: u32,
    slots: Box<[Slot]>,
    free: FreeSlots,
}

/// A request's memory. Nothing in it is dropped with the pool: every request in use keeps the
/// pool alive (its [`Home`]), so at the last reference each slot is free and holds no request.
struct Slot(UnsafeCell<MaybeUninit<MapRequest>>);

// SAFETY: a slot is reached only by whoever took it from `free` (one party at a time: the
// caller of `map`, NDIS's context pointer, then a `MappedSend`), and given back with a release
// that the next taker's acquire pairs with (`FreeSlots`); the rest is shared read-only or
// atomic.
unsafe impl Sync for PoolInner {}
// SAFETY: as above; `MapRequest` is `Send`.
unsafe impl Send for PoolInner {}

impl PoolInner {
    /// Slot `i`'s request memory, for an `i` that `free.take` gave.
    #[inline(always)]
    fn slot(&self, i: usize) -> *mut MapRequest {
        debug_assert!(i < self.slots.len());
        // SAFETY: `take` gives only an index below `free`'s length, which is the slots' (both
        // `requests` long, see `MapPool::new`).
        unsafe { self.slots.get_unchecked(i) }
            .0
            .get()
            .cast::<MapRequest>()
    }
}

impl MapPool {
    /// A pool of `requests` requests mapping through `dma` (allocated now: initialize or
    /// restart). A driver sizes it for the mapped sends it keeps in flight at once (a ring's
    /// worth): past that, mappings allocate.
    pub fn new<C: AtMostDispatch>(
        dma: &DmaRegistration,
        requests: usize,
        irql: &C,
    ) -> Result<Self, Status> {
        let mut slots = crate::heap::try_vec(requests, irql)?;
        // Within capacity: allocates nothing.
        slots.resize_with(requests, || Slot(UnsafeCell::new(MaybeUninit::uninit())));
        if slots.capacity() != slots.len() {
            // `into_boxed_slice` would reallocate (infallibly); see `heap::try_boxed_slice`.
            return Err(Status::RESOURCES);
        }
        let free = FreeSlots::new(requests, irql)?;
        let inner = PoolInner {
            dma: dma.clone(),
            list_storage: list_storage(dma),
            slots: slots.into_boxed_slice(),
            free,
        };
        let inner = NonNull::from(Box::leak(crate::heap::try_box(inner, irql)?));
        // What every request of a slot shares (the registration, where it lives) is written
        // once, here, not per mapping (see `submit`); nothing in it needs a drop.
        // SAFETY: the pool was just made and no slot is out: each slot's memory is ours.
        unsafe {
            let pool = inner.as_ref();
            for (i, slot) in pool.slots.iter().enumerate() {
                let raw = slot.0.get().cast::<MapRequest>();
                addr_of_mut!((*raw).dma).write(pool.dma.handle());
                addr_of_mut!((*raw).home).write(Home::Pool(inner, i));
            }
        }
        Ok(MapPool { inner })
    }

    fn inner(&self) -> &PoolInner {
        // SAFETY: the pool's box, alive while the pool is (see `Drop`).
        unsafe { self.inner.as_ref() }
    }

    /// How many requests the pool holds.
    pub fn capacity(&self) -> usize {
        self.inner().slots.len()
    }

    /// How many of them are free now (a snapshot).
    pub fn available(&self) -> usize {
        self.inner().free.available()
    }

    /// As [`HeldSend::map`] on the pool's registration, with a request of the pool (or, when
    /// all are in use, one allocated for this mapping).
    #[inline]
    pub fn map<H: MapHook, C: AtMostDispatch>(
        &self,
        held: HeldSend,
        hook: &Shared<H>,
        cookie: usize,
        irql: &C,
    ) -> Result<Option<MappedSend>, (HeldSend, Status)> {
        let pool = self.inner();
        let Some(i) = pool.free.take() else {
            return held.map(&pool.dma, hook, cookie, irql);
        };
        let raw = pool.slot(i);
        // SAFETY: slot `i` is ours (its free flag was cleared by `take`), and uninitialized.
        unsafe {
            addr_of_mut!((*raw).held).write(held);
            submit(raw, &pool.dma, pool.list_storage, None, hook, cookie)
        }
    }

    /// Holds `list` ([`SendNbl::hold`]) and maps it ([`map`](Self::map)), the held list made
    /// in the request itself; see [`ListMapping`] for what comes of it.
    #[inline]
    pub fn map_list<H: MapHook, C: AtMostDispatch>(
        &self,
        list: &SendNbl<'_>,
        hook: &Shared<H>,
        cookie: usize,
        irql: &C,
    ) -> ListMapping {
        let pool = self.inner();
        let Some(i) = pool.free.take() else {
            let Some(held) = list.hold() else {
                return ListMapping::NotHeld;
            };
            return ListMapping::of(held.map(&pool.dma, hook, cookie, irql));
        };
        let raw = pool.slot(i);
        // SAFETY: slot `i` is ours (its free flag was cleared by `take`), and uninitialized.
        if !unsafe { list.hold_at(addr_of_mut!((*raw).held)) } {
            pool.free.give(i);
            return ListMapping::NotHeld;
        }
        // SAFETY: as above, with the held list written.
        ListMapping::of(unsafe { submit(raw, &pool.dma, pool.list_storage, None, hook, cookie) })
    }
}

/// What [`MapPool::map_list`] came to: one flat choice (no nested results to take apart on
/// the send path).
#[must_use = "a mapped send must be completed, a held list sent or completed"]
pub enum ListMapping {
    /// NDIS handed the scatter/gather list over before the request returned: the send is the
    /// caller's (no hook runs).
    Mapped(MappedSend),
    /// NDIS calls back later: the hook gets the send then.
    Deferred,
    /// The list could not be held (already held, or a held list's view): nothing changed.
    NotHeld,
    /// The list is held and the mapping failed, with its status: send it another way.
    Failed(HeldSend, Status),
}

impl ListMapping {
    /// What `submit` (or `HeldSend::map`) said, as a `ListMapping` (not a public conversion).
    #[inline(always)]
    fn of(r: Result<Option<MappedSend>, (HeldSend, Status)>) -> Self {
        match r {
            Ok(Some(send)) => ListMapping::Mapped(send),
            Ok(None) => ListMapping::Deferred,
            Err((held, status)) => ListMapping::Failed(held, status),
        }
    }
}

impl Drop for MapPool {
    fn drop(&mut self) {
        if self.inner().free.all_free() {
            // SAFETY: the pool's box (from `Box::leak`), with no request out: nothing reaches
            // it any more (a request gives its slot back as its last access to the pool).
            drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
        }
        // Otherwise a request is still out: the pool stays allocated, for good.
    }
}

/// The free slots of a pool: a flag per slot, set while it is free. Taking clears a flag
/// (acquire), giving sets it (release): a slot's uses are ordered, whichever processors they
/// run on, and flags are independent (no ABA as a free list of indexes has). A cursor, a
/// hint only, names the slot after the last one taken: slots come back about in the order
/// they went out, so the slot there is usually free, and a take is one exchange (no search).
pub(crate) struct FreeSlots {
    flags: Box<[AtomicBool]>,
    cursor: AtomicUsize,
}

impl FreeSlots {
    /// `slots` slots, all free.
    pub(crate) fn new<C: AtMostDispatch>(slots: usize, irql: &C) -> Result<Self, Status> {
        let flags = crate::heap::try_collect((0..slots).map(|_| AtomicBool::new(true)), irql)?;
        if flags.capacity() != flags.len() {
            // `into_boxed_slice` would reallocate (infallibly); see `heap::try_boxed_slice`.
            return Err(Status::RESOURCES);
        }
        Ok(FreeSlots {
            flags: flags.into_boxed_slice(),
            cursor: AtomicUsize::new(0),
        })
    }

    /// Takes a free slot (clears its flag), if any: the one at the cursor when it is free
    /// (inlined into every mapping request), or the first free one.
    #[inline(always)]
    pub(crate) fn take(&self) -> Option<usize> {
        let i = self.cursor.load(Ordering::Relaxed);
        // Acquire: pairs with the release of `give`, after the slot's last use. A clear flag
        // (another's slot) is left as it is: no write to it.
        if let Some(flag) = self.flags.get(i)
            && flag
                .compare_exchange(true, false, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            // Past the last slot, the next take searches from the first.
            self.cursor.store(i + 1, Ordering::Relaxed);
            return Some(i);
        }
        self.search()
    }

    /// [`take`](Self::take) when the slot at the cursor is not free.
    #[inline(never)]
    fn search(&self) -> Option<usize> {
        for (i, flag) in self.flags.iter().enumerate() {
            // As in `take`; a flag seen clear is not even tried.
            if flag.load(Ordering::Relaxed)
                && flag
                    .compare_exchange(true, false, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                self.cursor.store(i + 1, Ordering::Relaxed);
                return Some(i);
            }
        }
        None
    }

    /// Gives slot `i` back (taken, and used no more).
    pub(crate) fn give(&self, i: usize) {
        if let Some(flag) = self.flags.get(i) {
            flag.store(true, Ordering::Release);
        }
    }

    /// Every slot free (none out).
    pub(crate) fn all_free(&self) -> bool {
        // Acquire: pairs with the release of each `give`.
        self.flags.iter().all(|f| f.load(Ordering::Acquire))
    }

    /// How many slots are free (a snapshot).
    pub(crate) fn available(&self) -> usize {
        self.flags
            .iter()
            .filter(|f| f.load(Ordering::Relaxed))
            .count()
    }
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
    /// The request (initialized, owned by this send), with the list NDIS made for it: one
    /// pointer, cheap to move and store.
    request: NonNull<MapRequest>,
}

// SAFETY: the held list is `Send` (see `HeldSend`); the scatter/gather list is NDIS memory the
// miniport owns until it frees it, from any processor at IRQL <= DISPATCH_LEVEL; the NET_BUFFER
// belongs to the held list; the request is owned by this send alone.
unsafe impl Send for MappedSend {}
// SAFETY: `MapRequest` moves between processors owned by one party at a time (the caller of
// `map`, NDIS's context pointer, then a `MappedSend`); its hook is a reference to a
// `Send + Sync` value (`MapHook`).
unsafe impl Send for MapRequest {}

impl HeldSend {
    /// Maps the list's frame for DMA (`NdisMAllocateNetBufferSGList` on `dma`, from its
    /// current MDL and offset over its data length), with `cookie` for [`MappedSend::cookie`].
    /// The list must have exactly one frame. The request is allocated for this mapping (a
    /// [`MapPool`] saves that).
    ///
    /// `Ok(Some(send))`: NDIS handed the scatter/gather list over before the request returned
    /// (the usual case), and the send is the caller's now; the hook is not called.
    /// `Ok(None)`: NDIS calls back later, and `hook.mapped` gets the [`MappedSend`] then.
    /// On failure the list comes back with the status (`RESOURCES` for an allocation NDIS or
    /// the framework could not make), still held: send it another way.
    pub fn map<H: MapHook, C: AtMostDispatch>(
        self,
        dma: &DmaRegistration,
        hook: &Shared<H>,
        cookie: usize,
        irql: &C,
    ) -> Result<Option<MappedSend>, (HeldSend, Status)> {
        // Uninitialized: written field by field here and by `submit`.
        let Ok(block) = crate::heap::try_box_or_back(MaybeUninit::<MapRequest>::uninit(), irql)
        else {
            return Err((self, Status::RESOURCES));
        };
        let raw = Box::into_raw(block).cast::<MapRequest>();
        // SAFETY: a fresh heap block for one request, owned here.
        unsafe {
            addr_of_mut!((*raw).held).write(self);
            submit(
                raw,
                dma,
                list_storage(dma),
                Some(Home::Heap(dma.clone())),
                hook,
                cookie,
            )
        }
    }
}

/// Writes the rest of the request at `raw` and asks NDIS for the mapping (see
/// [`HeldSend::map`]).
///
/// `home`: where the request lives, written with the registration's handle; None for a pool's
/// slot, which has both written once and for all ([`MapPool::new`]).
///
/// # Safety
/// `raw` is memory for one `MapRequest` that `home` says where it comes from (or, None, a
/// pool's slot with `dma` and `home` written), owned by the caller, with its `held` written
/// and nothing else initialized (nothing in it is dropped).
// Inlined: the held list is written straight from the caller's into the request.
#[inline(always)]
unsafe fn submit<H: MapHook>(
    raw: *mut MapRequest,
    dma: &DmaRegistration,
    list_storage: u32,
    home: Option<Home>,
    hook: &Shared<H>,
    cookie: usize,
) -> Result<Option<MappedSend>, (HeldSend, Status)> {
    // SAFETY: `held` is written (the caller's contract): its first NET_BUFFER and their count,
    // read when the list came in (the chain does not change while the list is the miniport's).
    let (nb, bad) = unsafe { ((*raw).held.list.first, (*raw).held.list.frame_count != 1) };
    // SAFETY: `raw` is the caller's, for one request; each other field is written once (`dma`
    // and `home` already are for a pool's slot), the storage is left uninitialized (NDIS
    // writes it), and so is `list`, which the callback writes before anything reads it (only a
    // `MappedSend` does, made after it).
    unsafe {
        if let Some(home) = home {
            addr_of_mut!((*raw).dma).write(dma.handle());
            addr_of_mut!((*raw).home).write(home);
        }
        addr_of_mut!((*raw).state).write(Handoff::new());
        addr_of_mut!((*raw).hook).write(None);
        addr_of_mut!((*raw).cookie).write(cookie);
    }
    if bad {
        // SAFETY: the request just written, owned here, not handed to NDIS.
        return Err((
            unsafe { MapRequest::release(raw) },
            Status::INVALID_PARAMETER,
        ));
    }
    // The frame is sent in place: counted now, as a copy of it would be, so that its completion
    // counts it like any other (`release` undoes this when the list goes back to the caller).
    // Before NDIS sees the request: a deferred callback may hand the send on at once.
    // SAFETY: the held list (written) is owned here; `nb` is its one NET_BUFFER.
    unsafe {
        SendFrame {
            nb,
            copies: &(*raw).held.list.copies,
        }
        .count_in_place()
    };

    // Offered with `list_storage` bytes: with 0 (a registration whose lists do not fit), NDIS
    // allocates the list instead ("If this size is too small, NDIS allocates storage").
    // SAFETY: `raw` is the live request (owned through the pointer from here on).
    let buffer = unsafe { addr_of_mut!((*raw).storage) }.cast::<core::ffi::c_void>();
    // SAFETY: the registration's live handle (kept by the request's home); a NET_BUFFER of a
    // list the miniport holds (not completed before the mapping is freed: the request owns the
    // `HeldSend`); the context is the request, which NDIS passes once to `process_sg_list`
    // (inline or later); the buffer, if offered, lives in the request until the list is freed.
    // IRQL <= DISPATCH_LEVEL (the caller's token).
    let status = unsafe {
        sys::NdisMAllocateNetBufferSGList(
            dma.handle(),
            nb,
            raw.cast(),
            // A send: the device reads the frame.
            sys::NDIS_SG_LIST_WRITE_TO_DEVICE,
            buffer,
            list_storage,
        )
    };
    if status != sys::NDIS_STATUS_SUCCESS {
        // SAFETY: NDIS refused: it keeps no reference to the context, which is still the
        // request written above.
        return Err((unsafe { MapRequest::release(raw) }, Status(status)));
    }
    // SAFETY: the request lives until one of `map` and the callback takes it (whichever sees
    // the other's state); only `state` is shared until then, and it is atomic.
    let state = unsafe { &(*raw).state };
    if !state.was_called() {
        // The callback may still come: it needs the hook. Set before the mark that tells the
        // callback to use it (`leave` publishes it).
        // SAFETY: the callback reads `hook` only after `leave` succeeded, which comes after
        // this write; nothing else touches it.
        unsafe { (*raw).hook = Some(ErasedHook::new(hook)) };
        if state.leave() {
            // The callback's now: it takes the request.
            return Ok(None);
        }
        // Called meanwhile (on another processor): the send is ours after all.
        // SAFETY: as above: the callback came first and left the hook alone.
        drop(unsafe { (*raw).hook.take() });
    }
    // The callback came first (`was_called` or a failed `leave`, both acquiring its mark): it
    // left the request, with its list set, to `map`, which owns it again.
    Ok(Some(MappedSend {
        // SAFETY: `raw` is the request's address, not null.
        request: unsafe { NonNull::new_unchecked(raw) },
    }))
}

impl MapRequest {
    /// `NdisMFreeNetBufferSGList` of the list NDIS made for this request.
    fn free_list(&self) {
        // SAFETY: the list NDIS made for this request's NET_BUFFER on its registration (kept
        // registered by `home`), freed once (its `MappedSend` is consumed or dropped); the
        // device no longer reads the frame (the caller's word, see `MappedSend::complete`). At
        // IRQL <= DISPATCH_LEVEL, where every holder of a `MappedSend` runs.
        unsafe { sys::NdisMFreeNetBufferSGList(self.dma, self.list, self.held.list.first) };
    }

    /// Takes the request at `raw` apart: its held list back, its memory freed or given back
    /// to its pool.
    ///
    /// # Safety
    /// `raw` is an initialized request owned by the caller (NDIS holds no reference to it);
    /// it is not used again.
    #[inline(always)]
    unsafe fn release(raw: *mut MapRequest) -> HeldSend {
        // SAFETY: the caller's contract: the held list is moved out once, then the rest taken
        // apart.
        unsafe {
            let held = addr_of!((*raw).held).read();
            Self::release_memory(raw);
            // Not sent in place after all (see `submit`): whatever the caller does with it
            // counts it.
            held.list.copies.set_uncounted();
            held
        }
    }

    /// Frees the request at `raw` (or gives it back to its pool), its held list already used
    /// (moved out, or completed in place: a `HeldSend` needs no drop).
    ///
    /// # Safety
    /// `raw` is an initialized request owned by the caller (NDIS holds no reference to it),
    /// whose `held` is used no more; the request is not used again.
    #[inline(always)]
    unsafe fn release_memory(raw: *mut MapRequest) {
        // SAFETY: the caller's contract: each field that owns something (but `held`) is moved
        // out once; the rest (pointers, numbers, an atomic, the storage) needs no drop.
        let (home, hook) = unsafe { (addr_of!((*raw).home).read(), addr_of!((*raw).hook).read()) };
        drop(hook);
        match home {
            Home::Heap(dma) => {
                // SAFETY: the block `HeldSend::map` allocated, as a `MaybeUninit` (nothing
                // dropped), now empty.
                drop(unsafe { Box::from_raw(raw.cast::<MaybeUninit<MapRequest>>()) });
                drop(dma);
            }
            Home::Pool(pool, i) => {
                // After the last read of the slot (the release in `give`), and the last access
                // to the pool: alive until then, as one of its slots is out.
                // SAFETY: as just said.
                unsafe { pool.as_ref() }.free.give(i);
            }
        }
    }
}

// `release_memory` leaves a request's held list undropped once it is completed in place.
const _: () = assert!(!core::mem::needs_drop::<HeldSend>());

/// `MINIPORT_PROCESS_SG_LIST`: NDIS hands over the list made for a [`HeldSend::map`] request.
///
/// # Safety
/// Called by NDIS at DISPATCH_LEVEL, once per successful `NdisMAllocateNetBufferSGList`, with
/// the context that call passed (an initialized `MapRequest`) and the list it made.
pub(crate) unsafe extern "win64-unwind" fn process_sg_list(
    _device: sys::PDEVICE_OBJECT,
    _reserved: sys::PVOID,
    list: *mut sys::SCATTER_GATHER_LIST,
    context: sys::PVOID,
) {
    let raw = context.cast::<MapRequest>();
    // SAFETY: the function's contract: the request, live until `map` or this callback takes it;
    // `map` touches only `state` (and `hook`, before it leaves) until it sees the callback's mark.
    unsafe { (*raw).list = list };
    // SAFETY: as above.
    let state = unsafe { &(*raw).state };
    if state.called_back() {
        // `map` has not returned: it takes the send (the mark publishes the list).
        return;
    }
    // SAFETY: `map` left first (acquired by the failed `called_back`) and left the request,
    // with its hook, to this callback, which NDIS calls once.
    let hook = unsafe { (*raw).hook.take() };
    let send = MappedSend {
        // SAFETY: NDIS's context, the request pointer `map` passed: not null.
        request: unsafe { NonNull::new_unchecked(raw) },
    };
    // SAFETY: NDIS calls this handler at DISPATCH_LEVEL.
    let mut dispatch = unsafe { Dispatch::assume() };
    match hook {
        Some(h) => h.call(send, &mut dispatch),
        // Not reachable (`map` sets the hook before it leaves); the send would leak, the list
        // does not.
        None => drop(send),
    }
}

impl MappedSend {
    fn request(&self) -> &MapRequest {
        // SAFETY: an initialized request this send owns until it is taken apart (consuming it).
        unsafe { self.request.as_ref() }
    }

    /// The list, to read headers from (the frame's bytes are unchanged while mapped).
    pub fn list(&self) -> &SendNbl<'_> {
        self.request().held.list()
    }

    /// The value given to [`HeldSend::map`].
    pub fn cookie(&self) -> usize {
        self.request().cookie
    }

    /// How many elements the mapping has.
    pub fn len(&self) -> usize {
        // SAFETY: NDIS's list (set by the callback before this send was made), valid and
        // unchanged until freed, which consumes the send.
        unsafe { (*self.request().list).NumberOfElements as usize }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` (None past the last).
    pub fn element(&self, i: usize) -> Option<SgElement> {
        let request = self.request();
        if i >= self.len() {
            return None;
        }
        // SAFETY: `i` is below the list's `NumberOfElements`; NDIS's list (or the request's
        // storage it wrote it into) holds that many elements after the header until freed.
        let e = unsafe {
            addr_of!((*request.list).Elements)
                .cast::<sys::SCATTER_GATHER_ELEMENT>()
                .add(i)
                .read()
        };
        Some(SgElement {
            address: e.Address as u64,
            length: e.Length,
        })
    }

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

    /// The elements in order.
    pub fn elements(&self) -> impl Iterator<Item = SgElement> + '_ {
        (0..self.len()).filter_map(|i| self.element(i))
    }

    /// Frees the scatter/gather list (the device is done with the frame) and returns the held
    /// list.
    fn free(self) -> HeldSend {
        let this = core::mem::ManuallyDrop::new(self);
        this.request().free_list();
        // SAFETY: the request this send owned (not dropped: `this` skips its drop), used no
        // more.
        unsafe { MapRequest::release(this.request.as_ptr()) }
    }

    /// The device is done with the frame: frees the scatter/gather list, then adds the list to
    /// `done` with `status` (completed with the batch).
    #[inline]
    pub fn complete(self, done: &mut SendCompletion<'_>, status: Status) {
        let this = core::mem::ManuallyDrop::new(self);
        this.request().free_list();
        let raw = this.request.as_ptr();
        // SAFETY: the request this send owned (not dropped: `this` skips its drop): its held
        // list is completed in place and used no more, then the request is taken apart.
        unsafe {
            done.push_at(&(*raw).held, status);
            MapRequest::release_memory(raw);
        }
    }

    /// Frees the mapping without completing: the list comes back held (to copy instead, say).
    /// Only once the device no longer reads the frame.
    pub fn into_held(self) -> HeldSend {
        self.free()
    }
}

impl Drop for MappedSend {
    fn drop(&mut self) {
        // Not completed: the scatter/gather list is still freed (the held list leaks, as a
        // dropped `HeldSend` does, and NDIS reports it); the request's memory is freed or given
        // back with it.
        self.request().free_list();
        // SAFETY: the request this send owns, used no more (the send is being dropped).
        drop(unsafe { MapRequest::release(self.request.as_ptr()) });
    }
}

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(all(test, not(loom)))]
mod tests {
    use alloc::vec::Vec;

    use super::*;
    use crate::irql::Passive;

    /// Takes and gives in any order (a fixed pseudo-random sequence over 5 slots): a take
    /// finds a free slot whenever one is, never one that is out, wherever the cursor is.
    #[test]
    fn free_slots_take_only_free_ones_in_any_order() {
        // SAFETY: the test thread stands for a caller at IRQL <= DISPATCH_LEVEL.
        let passive = unsafe { Passive::assume() };
        let free = FreeSlots::new(5, &passive).expect("allocated");
        let mut out = [false; 5];
        let mut x = 0x2545_F491u32;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = (x % 5) as usize;
            if x & 0x100 == 0 {
                match free.take() {
                    Some(t) => {
                        assert!(!out[t], "slot {t} taken twice");
                        out[t] = true;
                    }
                    None => assert!(out.iter().all(|&o| o), "a free slot was not found"),
                }
            } else if out[i] {
                out[i] = false;
                free.give(i);
            }
            assert_eq!(free.available(), out.iter().filter(|&&o| !o).count());
        }
    }

    /// Every slot is taken once, then none is left; one given back is the next taken; the
    /// pool is whole again once all are back (70 slots).
    #[test]
    fn free_slots_hand_out_each_slot_once() {
        // SAFETY: the test thread stands for a PASSIVE_LEVEL caller.
        let passive = unsafe { Passive::assume() };
        let free = FreeSlots::new(70, &passive).expect("allocated");
        assert!(free.all_free());
        let mut taken: Vec<usize> = core::iter::from_fn(|| free.take()).collect();
        assert_eq!(free.available(), 0);
        assert!(!free.all_free());
        taken.sort_unstable();
        assert_eq!(taken, (0..70).collect::<Vec<_>>());
        free.give(65);
        assert_eq!(free.take(), Some(65));
        assert_eq!(free.take(), None);
        for i in taken {
            free.give(i);
        }
        assert_eq!(free.available(), 70);
        assert!(free.all_free());
        let none = FreeSlots::new(0, &passive).expect("allocated");
        assert_eq!(none.take(), None);
        assert!(none.all_free());
    }

    /// The callback first: `map` finds it came (and takes the send); `map` first: the
    /// callback finds it left (and takes it). Never both.
    #[test]
    fn handoff_goes_to_the_second_one() {
        let h = Handoff::new();
        assert!(h.called_back());
        assert!(h.was_called());
        assert!(!h.leave());
        let h = Handoff::new();
        assert!(!h.was_called());
        assert!(h.leave());
        assert!(!h.called_back());
    }
}
