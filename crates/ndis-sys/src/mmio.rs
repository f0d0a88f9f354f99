//! Device register access: `READ_REGISTER_*` / `WRITE_REGISTER_*` (wdm.h).
//!
//! On Windows x64 these are inline volatile accesses of a mapping from `NdisMMapIoSpace` (the WDK
//! defines them as macros over `*(volatile T *)`, with a compiler barrier); nothing is imported.
//! On every other target they forward through [`HostMmio`], which the host emulator installs
//! with [`host::install_mmio`]: its `NdisMMapIoSpace` hands out addresses that are never
//! dereferenced, and each access reaches the device model. This is the whole hardware seam: a
//! driver that touches registers only through these functions runs unchanged in both worlds.

use crate::base::*;

pub const PCI_WHICHSPACE_CONFIG: ULONG = 0;
pub const PCI_WHICHSPACE_ROM: ULONG = 0x5253_4920;

#[cfg(windows)]
mod imp {
    use core::sync::atomic::{Ordering, compiler_fence};

    macro_rules! volatile_access {
        ($($read:ident / $write:ident : $ty:ty;)*) => {$(
            /// # Safety
            /// `register` lies inside a live `NdisMMapIoSpace` mapping and is aligned for the width.
            #[inline]
            pub unsafe fn $read(register: *const $ty) -> $ty {
                compiler_fence(Ordering::SeqCst);
                // SAFETY: per this function's contract.
                unsafe { core::ptr::read_volatile(register) }
            }
            /// # Safety
            /// As for the read.
            #[inline]
            pub unsafe fn $write(register: *mut $ty, value: $ty) {
                // SAFETY: per this function's contract.
                unsafe { core::ptr::write_volatile(register, value) };
                compiler_fence(Ordering::SeqCst);
            }
        )*};
    }

    volatile_access! {
        READ_REGISTER_UCHAR / WRITE_REGISTER_UCHAR: u8;
        READ_REGISTER_USHORT / WRITE_REGISTER_USHORT: u16;
        READ_REGISTER_ULONG / WRITE_REGISTER_ULONG: u32;
        READ_REGISTER_ULONG64 / WRITE_REGISTER_ULONG64: u64;
    }
}

/// How the host emulator implements register access: `width` is 1, 2, 4 or 8 bytes, the value
/// in the low `width` bytes (a read returns the upper bytes zero; a write's are ignored).
#[cfg(not(windows))]
#[derive(Clone, Copy, Debug)]
pub struct HostMmio {
    pub read: unsafe extern "win64-unwind" fn(address: usize, width: u32) -> u64,
    pub write: unsafe extern "win64-unwind" fn(address: usize, width: u32, value: u64),
}

#[cfg(not(windows))]
mod imp {
    macro_rules! forwarded_access {
        ($($read:ident / $write:ident : $ty:ty = $width:literal;)*) => {$(
            /// # Safety
            /// `register` lies inside a live `NdisMMapIoSpace` mapping and is aligned for the width.
            #[inline]
            pub unsafe fn $read(register: *const $ty) -> $ty {
                // SAFETY: the installed implementation has this function's contract; the value
                // is at most `width` bytes wide.
                unsafe { (super::host::mmio().read)(register as usize, $width) as $ty }
            }
            /// # Safety
            /// As for the read.
            #[inline]
            pub unsafe fn $write(register: *mut $ty, value: $ty) {
                // SAFETY: as for the read.
                unsafe { (super::host::mmio().write)(register as usize, $width, u64::from(value)) }
            }
        )*};
    }

    forwarded_access! {
        READ_REGISTER_UCHAR / WRITE_REGISTER_UCHAR: u8 = 1;
        READ_REGISTER_USHORT / WRITE_REGISTER_USHORT: u16 = 2;
        READ_REGISTER_ULONG / WRITE_REGISTER_ULONG: u32 = 4;
        READ_REGISTER_ULONG64 / WRITE_REGISTER_ULONG64: u64 = 8;
    }
}

pub use imp::*;

/// Installing the host's register access (see the module docs).
#[cfg(not(windows))]
pub mod host {
    use core::sync::atomic::{AtomicPtr, Ordering};

    use super::HostMmio;

    static MMIO: AtomicPtr<HostMmio> = AtomicPtr::new(core::ptr::null_mut());

    /// Makes `table` the implementation of register access for the whole process.
    pub fn install_mmio(table: &'static HostMmio) {
        MMIO.store(table as *const HostMmio as *mut HostMmio, Ordering::Release);
    }

    #[inline]
    pub(super) fn mmio() -> &'static HostMmio {
        let table = MMIO.load(Ordering::Acquire);
        if table.is_null() {
            no_host_mmio();
        }
        // SAFETY: only `install_mmio` stores into MMIO, always from a `&'static HostMmio`.
        unsafe { &*table }
    }

    #[cold]
    fn no_host_mmio() -> ! {
        panic!(
            "driver code accessed a device register, but no host register access is installed: \
             create an ndis_emu::Emulator (it installs one) before running driver code"
        )
    }
}
