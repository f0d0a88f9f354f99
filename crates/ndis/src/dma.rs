//! DMA: the scatter/gather registration and shared memory the device reaches by address.

use ndis_sys as sys;

use crate::Status;
use crate::adapter::AdapterHandle;
use crate::heap::Shared;
use crate::hw::DeviceMemory;
use crate::miniport::Initializing;
use crate::resources::{Kind, Release};

/// `NdisMRegisterScatterGatherDma`: NDIS requires it (with the bus-master attribute) before any
/// shared memory. Made only in initialize
/// ([`Init::register_dma`](crate::miniport::Init::register_dma)); released by the framework
/// after every [`SharedMemory`] allocated from it (see [`crate::resources`]).
#[derive(Debug, Clone)]
pub struct DmaRegistration {
    _inner: Shared<DmaInner>,
}

#[derive(Debug)]
struct DmaInner {
    handle: sys::NDIS_HANDLE,
    /// `ScatterGatherListSize` NDIS returned: the bytes a list of one mapping may need.
    sg_list_size: u32,
    /// The adapter start it was registered for ([`AdapterResources`] id).
    ///
    /// [`AdapterResources`]: crate::resources::AdapterResources
    owner: u64,
}

// SAFETY: an opaque NDIS handle, passed back to NDIS only by the framework's release.
unsafe impl Send for DmaInner {}
// SAFETY: as above.
unsafe impl Sync for DmaInner {}

impl Release for DmaInner {
    const KIND: Kind = Kind::Dma;
    fn release(&self, kept: bool) {
        // Kept: shared memory allocated from it is still alive (kept by the driver past halt),
        // and NDIS must not see the registration go before it.
        if !kept {
            // SAFETY: the registration made in `register`, released once (the framework
            // releases each adopted object once), at PASSIVE_LEVEL in halt or initialize.
            unsafe { sys::NdisMDeregisterScatterGatherDma(self.handle) }
        }
    }
}

impl DmaRegistration {
    /// Registers for 64-bit DMA with at most `max_mapping` bytes per mapping.
    pub(crate) fn register(init: &Initializing<'_>, max_mapping: u32) -> Result<Self, Status> {
        let mut description = sys::NDIS_SG_DMA_DESCRIPTION {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_SG_DMA_DESCRIPTION,
                Revision: sys::NDIS_SG_DMA_DESCRIPTION_REVISION_1,
                Size: sys::NDIS_SIZEOF_SG_DMA_DESCRIPTION_REVISION_1,
            },
            Flags: sys::NDIS_SG_DMA_64_BIT_ADDRESS,
            MaximumPhysicalMapping: max_mapping,
            // Every registration can map sends ([`crate::nbl::HeldSend::map`]); NDIS calls it
            // only for lists a driver asked for.
            ProcessSGListHandler: Some(crate::nbl::process_sg_list),
            SharedMemAllocateCompleteHandler: None,
            ScatterGatherListSize: 0,
            PdoOverride: core::ptr::null_mut(),
        };
        let mut handle: sys::NDIS_HANDLE = core::ptr::null_mut();
        // SAFETY: inside MiniportInitializeEx of this adapter (the `Initializing` proof); the
        // description and out-handle live across the call.
        let status = unsafe {
            sys::NdisMRegisterScatterGatherDma(
                init.handle().as_raw(),
                &mut description,
                &mut handle,
            )
        };
        if status != sys::NDIS_STATUS_SUCCESS {
            return Err(Status(status));
        }
        let owner = init.resources().id();
        let sg_list_size = description.ScatterGatherListSize;
        let inner = Shared::try_new(
            DmaInner {
                handle,
                sg_list_size,
                owner,
            },
            init.passive(),
        );
        let inner = match inner {
            Ok(i) => i,
            Err(e) => {
                // SAFETY: just registered, known to nobody else.
                unsafe { sys::NdisMDeregisterScatterGatherDma(handle) };
                return Err(e);
            }
        };
        if let Err(e) = init.resources().adopt(&inner, init.passive()) {
            // SAFETY: as above (dropping `inner` releases nothing).
            unsafe { sys::NdisMDeregisterScatterGatherDma(handle) };
            return Err(e);
        }
        Ok(DmaRegistration { _inner: inner })
    }

    /// The registration's handle, for `NdisMAllocateNetBufferSGList` and its free.
    pub(crate) fn handle(&self) -> sys::NDIS_HANDLE {
        self._inner.handle
    }

    /// The `ScatterGatherListSize` NDIS returned at registration: what one list may need.
    pub fn sg_list_size(&self) -> usize {
        self._inner.sg_list_size as usize
    }

    /// Allocates `length` bytes of shared memory (initialize only).
    pub fn allocate(&self, init: &Initializing<'_>, length: usize) -> Result<SharedMemory, Status> {
        SharedMemory::allocate(init, self, length)
    }
}

/// Shared memory (`NdisMAllocateSharedMemory`): page-aligned, zeroed, cached. Allocated only in
/// initialize from a [`DmaRegistration`], which it keeps registered; freed by the framework
/// after halt (see [`crate::resources`]). Access is volatile and bounds-checked through
/// [`DeviceMemory`]. Clones share the block.
#[derive(Debug, Clone)]
pub struct SharedMemory {
    _block: Shared<MemoryBlock>,
    /// Copies of the block's values, for the datapath.
    va: usize,
    pa: u64,
    length: usize,
    /// For an access of 2, 4, 8 or 16 bytes (index 1 to 4: log2 of the width), one past the
    /// last offset it may start at (0: none): a fixed-width access checks its offset with one
    /// compare against a field, not by working the limit out per access.
    limits: [usize; 5],
}

/// One past the last offset an access of `width` bytes may start at in `length` bytes.
const fn limit(length: usize, width: usize) -> usize {
    match length.checked_sub(width) {
        Some(last) => last + 1,
        None => 0,
    }
}

#[derive(Debug)]
struct MemoryBlock {
    adapter: AdapterHandle,
    va: usize,
    pa: u64,
    length: usize,
    /// Registered as long as the memory exists.
    _dma: DmaRegistration,
}

impl Release for MemoryBlock {
    const KIND: Kind = Kind::SharedMemory;
    fn release(&self, kept: bool) {
        // Kept past halt by the driver: freeing it would leave a reference to freed memory.
        if !kept {
            // SAFETY: the allocation made in `allocate` with these exact arguments, freed once,
            // at PASSIVE_LEVEL in halt or initialize, after the interrupts are deregistered.
            unsafe {
                sys::NdisMFreeSharedMemory(
                    self.adapter.as_raw(),
                    self.length as u32,
                    1,
                    self.va as sys::PVOID,
                    self.pa as i64,
                )
            }
        }
    }
}

// SAFETY: plain memory the allocation owns; every access is a volatile read or write of bytes
// that may also change under the device, which the API never turns into Rust references.
unsafe impl Send for SharedMemory {}
// SAFETY: as above.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    fn allocate(
        init: &Initializing<'_>,
        dma: &DmaRegistration,
        length: usize,
    ) -> Result<Self, Status> {
        let len = u32::try_from(length).map_err(|_| Status::INVALID_PARAMETER)?;
        if len == 0 {
            return Err(Status::INVALID_PARAMETER);
        }
        // Another adapter's registration (or one kept from an earlier start) would allocate on
        // an adapter that never registered for DMA.
        if dma._inner.owner != init.resources().id() {
            return Err(Status::INVALID_PARAMETER);
        }
        let adapter = init.handle();
        let mut va: sys::PVOID = core::ptr::null_mut();
        let mut pa: sys::PHYSICAL_ADDRESS = 0;
        // SAFETY: inside MiniportInitializeEx (the `Initializing` proof), with the adapter's
        // live DMA registration; out-pointers live across the call.
        unsafe { sys::NdisMAllocateSharedMemory(adapter.as_raw(), len, 1, &mut va, &mut pa) };
        if va.is_null() {
            return Err(Status::RESOURCES);
        }
        // SAFETY: NDIS returned `length` bytes at `va`; zeroing them is the documented
        // contents the rest of the module relies on.
        unsafe { core::ptr::write_bytes(va.cast::<u8>(), 0, length) };
        let free = || {
            // SAFETY: the allocation just made, known to nobody else.
            unsafe { sys::NdisMFreeSharedMemory(adapter.as_raw(), len, 1, va, pa) }
        };
        let block = Shared::try_new(
            MemoryBlock {
                adapter,
                va: va as usize,
                pa: pa as u64,
                length,
                _dma: dma.clone(),
            },
            init.passive(),
        );
        let block = match block {
            Ok(b) => b,
            Err(e) => {
                free();
                return Err(e);
            }
        };
        if let Err(e) = init.resources().adopt(&block, init.passive()) {
            free();
            // The block's drop only drops its DMA reference.
            drop(block);
            return Err(e);
        }
        Ok(SharedMemory {
            _block: block,
            va: va as usize,
            pa: pa as u64,
            length,
            limits: core::array::from_fn(|k| limit(length, 1 << k)),
        })
    }

    /// The CPU address, for framework code that must describe this memory to NDIS (MDLs).
    pub(crate) fn virtual_address(&self) -> usize {
        self.va
    }

    /// The CPU address of `width` bytes at `offset`, after checking they lie in the block (a
    /// bulk copy; the fixed-width ring accessors use [`check_fixed`](Self::check_fixed)). The
    /// failure (a driver bug) is out of line.
    #[inline(always)]
    fn check(&self, offset: usize, width: usize) -> usize {
        match self.length.checked_sub(width) {
            Some(last) if offset <= last => self.va + offset,
            _ => outside_block(offset, width, self.length),
        }
    }

    /// [`check`](Self::check) of an access of `W` bytes (2, 4, 8 or 16): one compare against
    /// the limit worked out at allocation.
    #[inline(always)]
    fn check_fixed<const W: usize>(&self, offset: usize) -> usize {
        const { assert!(W.is_power_of_two() && W >= 2 && W <= 16) };
        if offset < self.limits[W.trailing_zeros() as usize] {
            self.va + offset
        } else {
            outside_block(offset, W, self.length)
        }
    }
}

/// An access [`SharedMemory::check`] refused: a driver bug, a panic (a bug check in the
/// kernel image).
#[cold]
#[inline(never)]
fn outside_block(offset: usize, width: usize, length: usize) -> ! {
    panic!("shared-memory access at {offset:#x} ({width} bytes) outside a {length:#x}-byte block")
}

macro_rules! volatile_rw {
    ($($read:ident / $write:ident : $ty:ty;)*) => {$(
        #[inline(always)]
        fn $read(&self, offset: usize) -> $ty {
            let p = self.check_fixed::<{ core::mem::size_of::<$ty>() }>(offset) as *const $ty;
            // SAFETY: inside the block (checked); unaligned reads are allowed for the value's
            // bytes. Volatile: the device may have written it.
            <$ty>::from_le(unsafe { p.read_unaligned_volatile() })
        }
        #[inline(always)]
        fn $write(&self, offset: usize, value: $ty) {
            let p = self.check_fixed::<{ core::mem::size_of::<$ty>() }>(offset) as *mut $ty;
            // SAFETY: as for the read.
            unsafe { p.write_unaligned_volatile(value.to_le()) }
        }
    )*};
}

/// Volatile unaligned access (core has volatile or unaligned, not both): byte by byte when
/// unaligned, one access when aligned.
trait UnalignedVolatile<T> {
    unsafe fn read_unaligned_volatile(self) -> T;
}
trait UnalignedVolatileMut<T> {
    unsafe fn write_unaligned_volatile(self, value: T);
}

macro_rules! unaligned_volatile {
    ($($ty:ty),*) => {$(
        impl UnalignedVolatile<$ty> for *const $ty {
            #[inline(always)]
            unsafe fn read_unaligned_volatile(self) -> $ty {
                if (self as usize).is_multiple_of(core::mem::align_of::<$ty>()) {
                    // SAFETY: the caller's pointer is valid; aligned here.
                    return unsafe { self.read_volatile() };
                }
                let mut bytes = [0u8; core::mem::size_of::<$ty>()];
                for (i, b) in bytes.iter_mut().enumerate() {
                    // SAFETY: the caller's pointer covers the value's bytes.
                    *b = unsafe { self.cast::<u8>().add(i).read_volatile() };
                }
                <$ty>::from_ne_bytes(bytes)
            }
        }
        impl UnalignedVolatileMut<$ty> for *mut $ty {
            #[inline(always)]
            unsafe fn write_unaligned_volatile(self, value: $ty) {
                if (self as usize).is_multiple_of(core::mem::align_of::<$ty>()) {
                    // SAFETY: as for the read.
                    return unsafe { self.write_volatile(value) };
                }
                for (i, b) in value.to_ne_bytes().into_iter().enumerate() {
                    // SAFETY: as for the read.
                    unsafe { self.cast::<u8>().add(i).write_volatile(b) };
                }
            }
        }
    )*};
}
unaligned_volatile!(u16, u32, u64);

impl DeviceMemory for SharedMemory {
    fn device_address(&self) -> u64 {
        self.pa
    }
    fn len(&self) -> usize {
        self.length
    }
    volatile_rw! {
        read_u16 / write_u16: u16;
        read_u32 / write_u32: u32;
        read_u64 / write_u64: u64;
    }
    #[inline(always)]
    fn write_u64_pair(&self, offset: usize, values: [u64; 2]) {
        let p = self.check_fixed::<16>(offset) as *mut u64;
        // SAFETY: 16 bytes inside the block (checked); each store is volatile. Aligned (a ring
        // descriptor always is): two 8-byte stores; otherwise byte by byte, as `write_u64`.
        unsafe {
            if (p as usize).is_multiple_of(8) {
                p.write_volatile(values[0].to_le());
                p.add(1).write_volatile(values[1].to_le());
            } else {
                p.write_unaligned_volatile(values[0].to_le());
                p.add(1).write_unaligned_volatile(values[1].to_le());
            }
        }
    }
    /// Bulk copies are plain (not volatile) copies through raw pointers, bracketed by compiler
    /// fences: a buffer is only copied while the device does not own it (before it is published
    /// to the device, after the device handed it back), and the publish/consume protocol orders
    /// it against the device with [`DeviceMemory::fence`]. No reference to device memory is
    /// ever formed.
    #[inline(always)]
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        let p = self.check(offset, buf.len()) as *const u8;
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        // SAFETY: `buf.len()` bytes inside the block (checked); `buf` is ordinary memory that
        // cannot overlap shared memory handed out by NDIS.
        unsafe { core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
    }
    #[inline(always)]
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        let p = self.check(offset, data.len()) as *mut u8;
        // SAFETY: as for `read_bytes`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    }
}
