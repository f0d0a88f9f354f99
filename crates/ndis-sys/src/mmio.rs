//! Device register access: `READ_REGISTER_*` / `WRITE_REGISTER_*` and `READ_PORT_*` /
//! `WRITE_PORT_*` (wdm.h).
//!
//! On Windows x64 these are inline volatile accesses of a mapping from `NdisMMapIoSpace` (the WDK
//! defines them as macros over `*(volatile T *)`, with a compiler barrier), and inline `in` /
//! `out` instructions on a port from `NdisMRegisterIoPortRange` (wdm.h's x64 `READ_PORT_UCHAR`
//! is `__inbyte`); nothing is imported.
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

    macro_rules! port_access {
        ($($read:ident / $write:ident : $ty:ty, $reg:tt;)*) => {$(
            /// # Safety
            /// `port` lies inside a range registered with `NdisMRegisterIoPortRange`.
            #[inline]
            pub unsafe fn $read(port: *const $ty) -> $ty {
                let value: $ty;
                compiler_fence(Ordering::SeqCst);
                // SAFETY: per this function's contract: a port of the device. Not `nomem`: the
                // access stays ordered with the memory (DMA) accesses around it.
                unsafe {
                    core::arch::asm!(concat!("in ", $reg, ", dx"), out($reg) value,
                        in("dx") port as usize as u16, options(nostack, preserves_flags))
                };
                compiler_fence(Ordering::SeqCst);
                value
            }
            /// # Safety
            /// As for the read.
            #[inline]
            pub unsafe fn $write(port: *mut $ty, value: $ty) {
                compiler_fence(Ordering::SeqCst);
                // SAFETY: as for the read.
                unsafe {
                    core::arch::asm!(concat!("out dx, ", $reg), in("dx") port as usize as u16,
                        in($reg) value, options(nostack, preserves_flags))
                };
                compiler_fence(Ordering::SeqCst);
            }
        )*};
    }

    port_access! {
        READ_PORT_UCHAR / WRITE_PORT_UCHAR: u8, "al";
        READ_PORT_USHORT / WRITE_PORT_USHORT: u16, "ax";
        READ_PORT_ULONG / WRITE_PORT_ULONG: u32, "eax";
    }
}

/// How the host emulator implements register access: `width` is 1, 2, 4 or 8 bytes, the value
/// in the low `width` bytes (a read returns the upper bytes zero; a write's are ignored).
#[cfg(not(windows))]
#[derive(Clone, Copy, Debug)]
pub struct HostMmio {
    pub read: unsafe extern "win64-unwind" fn(address: usize, width: u32) -> u64,
    pub write: unsafe extern "win64-unwind" fn(address: usize, width: u32, value: u64),
    /// Port I/O: `width` is 1, 2 or 4 bytes, `port` what `NdisMRegisterIoPortRange` returned
    /// plus the register's offset.
    pub port_read: unsafe extern "win64-unwind" fn(port: usize, width: u32) -> u32,
    pub port_write: unsafe extern "win64-unwind" fn(port: usize, width: u32, value: u32),
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

    macro_rules! forwarded_port_access {
        ($($read:ident / $write:ident : $ty:ty = $width:literal;)*) => {$(
            /// # Safety
            /// `port` lies inside a range registered with `NdisMRegisterIoPortRange`.
            #[inline]
            pub unsafe fn $read(port: *const $ty) -> $ty {
                // SAFETY: the installed implementation has this function's contract; the value
                // is at most `width` bytes wide.
                unsafe { (super::host::mmio().port_read)(port as usize, $width) as $ty }
            }
            /// # Safety
            /// As for the read.
            #[inline]
            pub unsafe fn $write(port: *mut $ty, value: $ty) {
                // SAFETY: as for the read.
                unsafe { (super::host::mmio().port_write)(port as usize, $width, u32::from(value)) }
            }
        )*};
    }

    forwarded_port_access! {
        READ_PORT_UCHAR / WRITE_PORT_UCHAR: u8 = 1;
        READ_PORT_USHORT / WRITE_PORT_USHORT: u16 = 2;
        READ_PORT_ULONG / WRITE_PORT_ULONG: u32 = 4;
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
