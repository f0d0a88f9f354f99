//! Base Windows types as the x64 kernel sees them (LLP64: `ULONG` is 32 bits on every host).

use core::ffi::c_void;
use core::marker::{PhantomData, PhantomPinned};

use crate::layout::layout;

pub type UCHAR = u8;
pub type USHORT = u16;
pub type ULONG = u32;
pub type LONG = i32;
pub type UINT = u32;
pub type ULONG64 = u64;
pub type ULONG_PTR = usize;
pub type SIZE_T = usize;
pub type PVOID = *mut c_void;
/// `UCHAR`; only the low byte of a returned `BOOLEAN` is defined (read AL, not RAX).
pub type BOOLEAN = u8;
pub const TRUE: BOOLEAN = 1;
pub const FALSE: BOOLEAN = 0;
pub type NTSTATUS = i32;
pub type NDIS_HANDLE = PVOID;
pub type NDIS_STATUS = i32;
pub type NDIS_OID = ULONG;
pub type NDIS_PORT_NUMBER = ULONG;
pub type NET_IFTYPE = u16;
pub type KIRQL = UCHAR;
/// Bit *n* is processor *n* of one processor group.
pub type KAFFINITY = ULONG_PTR;
pub type KSPIN_LOCK = ULONG_PTR;
/// `LARGE_INTEGER` in C: an 8-byte union passed and laid out exactly like an `i64`.
pub type PHYSICAL_ADDRESS = i64;
/// `ULONG64` in C (`POOL_FLAG_*`).
pub type POOL_FLAGS = u64;

// IRQL values on AMD64 (wdm.h). Device IRQLs (DIRQL) lie between DISPATCH_LEVEL and CLOCK_LEVEL.
pub const PASSIVE_LEVEL: KIRQL = 0;
pub const APC_LEVEL: KIRQL = 1;
pub const DISPATCH_LEVEL: KIRQL = 2;
pub const CMCI_LEVEL: KIRQL = 5;
pub const CLOCK_LEVEL: KIRQL = 13;
pub const IPI_LEVEL: KIRQL = 14;
pub const POWER_LEVEL: KIRQL = 14;
pub const PROFILE_LEVEL: KIRQL = 15;
pub const HIGH_LEVEL: KIRQL = 15;

/// Processors per group on x64.
pub const MAXIMUM_PROC_PER_GROUP: u32 = 64;

// POOL_FLAGS for ExAllocatePool2 (wdm.h).
pub const POOL_FLAG_UNINITIALIZED: POOL_FLAGS = 0x0000_0000_0000_0002;
pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x0000_0000_0000_0040;
pub const POOL_FLAG_NON_PAGED_EXECUTE: POOL_FLAGS = 0x0000_0000_0000_0080;
pub const POOL_FLAG_PAGED: POOL_FLAGS = 0x0000_0000_0000_0100;

/// `POOL_TYPE` (a C enum, wdm.h) for `ExAllocatePoolWithTag`.
pub type POOL_TYPE = i32;
pub const NonPagedPool: POOL_TYPE = 0;
pub const PagedPool: POOL_TYPE = 1;
/// Non-paged, not executable (Windows 8 and later); what HVCI-compatible drivers use.
pub const NonPagedPoolNx: POOL_TYPE = 512;

/// The signature of `ExAllocatePool2`, for a driver that resolves it at run time with
/// `MmGetSystemRoutineAddress` because the oldest Windows it supports lacks it.
pub type PFN_EX_ALLOCATE_POOL2 =
    unsafe extern "win64-unwind" fn(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;

/// `EX_POOL_PRIORITY` (a C enum) for `NdisAllocateMemoryWithTagPriority`.
pub type EX_POOL_PRIORITY = i32;
pub const LowPoolPriority: EX_POOL_PRIORITY = 0;
pub const NormalPoolPriority: EX_POOL_PRIORITY = 16;
pub const HighPoolPriority: EX_POOL_PRIORITY = 32;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct UNICODE_STRING {
    /// Bytes, not characters, excluding any terminator.
    pub Length: USHORT,
    pub MaximumLength: USHORT,
    pub Buffer: *mut u16,
}
layout!(UNICODE_STRING, size = 16, align = 8, { Length: 0, MaximumLength: 2, Buffer: 8 });

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PROCESSOR_NUMBER {
    pub Group: USHORT,
    pub Number: UCHAR,
    pub Reserved: UCHAR,
}
layout!(PROCESSOR_NUMBER, size = 4, align = 2, { Group: 0, Number: 2, Reserved: 3 });

/// `GROUP_AFFINITY` (miniport.h): a processor set within one group.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GROUP_AFFINITY {
    pub Mask: KAFFINITY,
    pub Group: USHORT,
    /// Must be zero.
    pub Reserved: [USHORT; 3],
}
layout!(GROUP_AFFINITY, size = 16, align = 8, { Mask: 0, Group: 8, Reserved: 10 });

macro_rules! opaque {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {$(
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug)]
        pub struct $name {
            _data: [u8; 0],
            _marker: PhantomData<(*mut u8, PhantomPinned)>,
        }
    )*};
}

opaque!(
    /// Only ever handled by pointer; the framework never reads its fields.
    DRIVER_OBJECT,
    /// Only ever handled by pointer.
    DEVICE_OBJECT,
    /// The kernel's interrupt object; only ever handled by pointer.
    KINTERRUPT,
);

pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;
pub type PDEVICE_OBJECT = *mut DEVICE_OBJECT;
pub type PKINTERRUPT = *mut KINTERRUPT;
pub type PIRP = *mut IRP;

/// `IO_STATUS_BLOCK`: `Status` shares its 8-byte slot with `Pointer`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_STATUS_BLOCK {
    pub Status: usize,
    pub Information: ULONG_PTR,
}
layout!(IO_STATUS_BLOCK, size = 16, align = 8, { Status: 0, Information: 8 });

/// `IRP` (wdm.h). Only the head up to `IoStatus` is spelled out, which is all a miniport's PnP
/// handlers read (`IoStatus.Information` carries the resource requirements list); the rest is
/// kept opaque at its real size so an IRP built on the host has the kernel's shape.
#[repr(C)]
#[derive(Debug)]
pub struct IRP {
    pub Type: i16,
    pub Size: USHORT,
    pub AllocationProcessorNumber: USHORT,
    pub Reserved: USHORT,
    pub MdlAddress: PVOID,
    pub Flags: ULONG,
    pub AssociatedIrp: PVOID,
    pub ThreadListEntry: [PVOID; 2],
    pub IoStatus: IO_STATUS_BLOCK,
    pub Rest: [u64; 18],
}
layout!(IRP, size = 0xD0, align = 8, {
    Type: 0, Size: 2, MdlAddress: 8, Flags: 16, AssociatedIrp: 24, ThreadListEntry: 32,
    IoStatus: 48, Rest: 64,
});
/// `IO_TYPE_IRP`.
pub const IO_TYPE_IRP: i16 = 6;
