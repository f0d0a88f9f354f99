//! Fallible heap allocation for the framework's initialize, restart and OID paths.
//!
//! In the kernel an infallible Rust allocation (`Box::new`, `Vec::push`) that finds the pool
//! exhausted panics, and a panic is a bug check. Paths that NDIS lets fail (initialize, restart,
//! OID requests) allocate through these functions instead, and turn an exhausted pool into
//! `NDIS_STATUS_RESOURCES`. On the host each of them is a fallible call site of the emulator's
//! fault sweep (the allocation is marked with [`ndis_sys::host`]'s fallible-allocation guard), so
//! a test fails them one at a time.
//!
//! Allocation of any kind is allowed only at IRQL <= DISPATCH_LEVEL (`ExAllocatePool2`,
//! `NdisAllocateMemoryWithTagPriority`); these functions take a token that proves it.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;

use crate::Status;
use crate::irql::AtMostDispatch;
use crate::sync::atomic::{self, AtomicUsize, Ordering};

/// Runs an allocation the caller handles failing of (the host's fault sweep may fail it).
use ndis_sys::fallible_allocation as fallible;

/// `Box::new(value)`, or `RESOURCES` (with `value` dropped) when the heap is exhausted.
pub fn try_box<T, C: AtMostDispatch>(value: T, irql: &C) -> Result<Box<T>, Status> {
    try_box_or_back(value, irql).map_err(|_| Status::RESOURCES)
}

/// `Box::new(value)`, or `value` back when the heap is exhausted.
pub fn try_box_or_back<T, C: AtMostDispatch>(value: T, _irql: &C) -> Result<Box<T>, T> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(value)); // allocates nothing
    }
    // SAFETY: a non-zero-sized layout.
    let p = fallible(|| unsafe { alloc::alloc::alloc(layout) }).cast::<T>();
    if p.is_null() {
        return Err(value);
    }
    // SAFETY: `p` is a fresh, suitably aligned block for one `T` from the global allocator,
    // which is what `Box` frees with; writing initializes it before the box owns it.
    unsafe {
        p.write(value);
        Ok(Box::from_raw(p))
    }
}

/// An empty vector with room for `capacity` elements, or `RESOURCES`.
pub fn try_vec<T, C: AtMostDispatch>(capacity: usize, _irql: &C) -> Result<Vec<T>, Status> {
    let mut v = Vec::new();
    fallible(|| v.try_reserve_exact(capacity)).map_err(|_| Status::RESOURCES)?;
    Ok(v)
}

/// `vec![value; len]`, or `RESOURCES`.
pub fn try_filled<T: Clone, C: AtMostDispatch>(
    value: T,
    len: usize,
    irql: &C,
) -> Result<Vec<T>, Status> {
    let mut v = try_vec(len, irql)?;
    v.resize(len, value); // within capacity: allocates nothing
    Ok(v)
}

/// `iter.collect::<Vec<_>>()`, or `RESOURCES`: room for the iterator's lower size bound is
/// reserved at once, anything past it grows fallibly.
pub fn try_collect<T, C: AtMostDispatch>(
    iter: impl IntoIterator<Item = T>,
    irql: &C,
) -> Result<Vec<T>, Status> {
    let iter = iter.into_iter();
    let mut v = try_vec(iter.size_hint().0, irql)?;
    for item in iter {
        try_push(&mut v, item, irql)?;
    }
    Ok(v)
}

/// `vec![value; len].into_boxed_slice()`, or `RESOURCES`.
pub fn try_boxed_slice<T: Clone, C: AtMostDispatch>(
    value: T,
    len: usize,
    irql: &C,
) -> Result<Box<[T]>, Status> {
    let v = try_filled(value, len, irql)?;
    if v.capacity() != v.len() {
        // `into_boxed_slice` would reallocate (infallibly) to shrink; the allocator gave more
        // than was asked for, which the global allocators here never do.
        return Err(Status::RESOURCES);
    }
    Ok(v.into_boxed_slice())
}

/// An empty double-ended queue with room for `capacity` elements, or `RESOURCES`.
pub fn try_deque<T, C: AtMostDispatch>(capacity: usize, _irql: &C) -> Result<VecDeque<T>, Status> {
    let mut q = VecDeque::new();
    fallible(|| q.try_reserve_exact(capacity)).map_err(|_| Status::RESOURCES)?;
    Ok(q)
}

/// Appends to `v`, growing it fallibly.
pub fn try_push<T, C: AtMostDispatch>(v: &mut Vec<T>, value: T, _irql: &C) -> Result<(), Status> {
    if v.len() == v.capacity() {
        fallible(|| v.try_reserve(1)).map_err(|_| Status::RESOURCES)?;
    }
    v.push(value); // within capacity: allocates nothing
    Ok(())
}

/// A reference-counted value allocated fallibly (`Arc` has no fallible constructor on stable
/// Rust). No weak references; `T` is dropped and freed with the last [`Shared`].
pub struct Shared<T> {
    ptr: NonNull<SharedBlock<T>>,
}

struct SharedBlock<T> {
    refs: AtomicUsize,
    value: T,
}

// SAFETY: like `Arc<T>`: clones on several processors share `&T`, and the last one drops `T`.
unsafe impl<T: Send + Sync> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Shared<T> {}

impl<T> Shared<T> {
    pub fn try_new<C: AtMostDispatch>(value: T, irql: &C) -> Result<Self, Status> {
        Self::try_new_or_back(value, irql).map_err(|_| Status::RESOURCES)
    }

    /// Like [`try_new`](Self::try_new), giving `value` back on failure.
    pub fn try_new_or_back<C: AtMostDispatch>(value: T, irql: &C) -> Result<Self, T> {
        let block = SharedBlock {
            refs: AtomicUsize::new(1),
            value,
        };
        match try_box_or_back(block, irql) {
            Ok(b) => Ok(Shared {
                ptr: NonNull::from(Box::leak(b)),
            }),
            Err(b) => Err(b.value),
        }
    }

    /// How many `Shared` point to the value (a snapshot).
    pub fn count(this: &Self) -> usize {
        this.block().refs.load(Ordering::Acquire)
    }

    /// The value back, if this is the only reference.
    pub fn try_unwrap(this: Self) -> Result<T, Self> {
        if this
            .block()
            .refs
            .compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(this);
        }
        let this = core::mem::ManuallyDrop::new(this);
        // SAFETY: the count was 1 and is now 0: nobody else can reach the block; it came from
        // `try_box`, and `this` will not run its drop.
        let block = unsafe { Box::from_raw(this.ptr.as_ptr()) };
        Ok(block.value)
    }

    /// The reference as a pointer (for type-erased holders); see [`from_raw`](Self::from_raw).
    pub(crate) fn into_raw(this: Self) -> *const () {
        let this = core::mem::ManuallyDrop::new(this);
        this.ptr.as_ptr() as *const ()
    }

    /// # Safety
    /// `raw` came from [`into_raw`](Self::into_raw) of a `Shared<T>`, and is turned back once.
    pub(crate) unsafe fn from_raw(raw: *const ()) -> Self {
        Shared {
            // SAFETY: `into_raw` gave a non-null block pointer.
            ptr: unsafe { NonNull::new_unchecked(raw as *mut SharedBlock<T>) },
        }
    }

    fn block(&self) -> &SharedBlock<T> {
        // SAFETY: the block lives while any `Shared` to it does, and this is one.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        // Relaxed, as Arc: a new reference can only be made from an existing one.
        self.block().refs.fetch_add(1, Ordering::Relaxed);
        Shared { ptr: self.ptr }
    }
}

impl<T> core::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.block().value
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        if self.block().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        atomic::fence(Ordering::Acquire);
        // SAFETY: the last reference: nobody else can reach the block; it came from `try_box`.
        drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
