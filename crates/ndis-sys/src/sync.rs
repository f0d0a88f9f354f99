//! Spin locks, timers, status indications and pause/restart parameters (ndis.h, WDK 10; offsets
//! agree with x64 debug-symbol dumps where noted in docs/ndis-sys.md).

use crate::base::*;
use crate::layout::layout;
use crate::object::NDIS_OBJECT_HEADER;

/// `NDIS_SPIN_LOCK`. On x64 the WDK implements the NdisXxxSpinLock routines as macros over
/// KeAcquireSpinLock & co.; ndis.sys still exports all six, which is what this crate imports.
#[repr(C)]
#[derive(Debug, Default)]
pub struct NDIS_SPIN_LOCK {
    pub SpinLock: KSPIN_LOCK,
    pub OldIrql: KIRQL,
}
layout!(NDIS_SPIN_LOCK, size = 16, align = 8, { SpinLock: 0, OldIrql: 8 });

pub const NDIS_OBJECT_TYPE_TIMER_CHARACTERISTICS: UCHAR = 0x97;
pub const NDIS_TIMER_CHARACTERISTICS_REVISION_1: UCHAR = 1;
pub const NDIS_SIZEOF_TIMER_CHARACTERISTICS_REVISION_1: USHORT = 24;

/// `NDIS_TIMER_FUNCTION`: runs at DISPATCH_LEVEL.
pub type NDIS_TIMER_FUNCTION = Option<
    unsafe extern "win64-unwind" fn(
        SystemSpecific1: PVOID,
        FunctionContext: PVOID,
        SystemSpecific2: PVOID,
        SystemSpecific3: PVOID,
    ),
>;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_TIMER_CHARACTERISTICS {
    pub Header: NDIS_OBJECT_HEADER,
    pub AllocationTag: ULONG,
    pub TimerFunction: NDIS_TIMER_FUNCTION,
    pub FunctionContext: PVOID,
}
layout!(NDIS_TIMER_CHARACTERISTICS, size = 24, align = 8, {
    Header: 0, AllocationTag: 4, TimerFunction: 8, FunctionContext: 16,
});

pub const NDIS_STATUS_INDICATION_REVISION_1: UCHAR = 1;
pub const NDIS_SIZEOF_STATUS_INDICATION_REVISION_1: USHORT = 112;

/// `GUID`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GUID {
    pub Data1: u32,
    pub Data2: u16,
    pub Data3: u16,
    pub Data4: [u8; 8],
}
layout!(GUID, size = 16, align = 4, { Data1: 0, Data2: 4, Data3: 6, Data4: 8 });

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_STATUS_INDICATION {
    pub Header: NDIS_OBJECT_HEADER,
    pub SourceHandle: NDIS_HANDLE,
    pub PortNumber: NDIS_PORT_NUMBER,
    pub StatusCode: NDIS_STATUS,
    pub Flags: ULONG,
    pub DestinationHandle: NDIS_HANDLE,
    pub RequestId: PVOID,
    pub StatusBuffer: PVOID,
    pub StatusBufferSize: ULONG,
    pub Guid: GUID,
    pub NdisReserved: [PVOID; 4],
}
layout!(NDIS_STATUS_INDICATION, size = 112, align = 8, {
    Header: 0, SourceHandle: 8, PortNumber: 16, StatusCode: 20, Flags: 24, DestinationHandle: 32,
    RequestId: 40, StatusBuffer: 48, StatusBufferSize: 56, Guid: 60, NdisReserved: 80,
});

/// `NDIS_STATUS_LINK_STATE`: the status code of a link-state indication (buffer: NDIS_LINK_STATE).
pub const NDIS_STATUS_LINK_STATE: NDIS_STATUS = 0x4001_0017;

pub const NDIS_LINK_STATE_REVISION_1: UCHAR = 1;
pub const NDIS_SIZEOF_LINK_STATE_REVISION_1: USHORT = 40;
pub const NDIS_LINK_SPEED_UNKNOWN: ULONG64 = u64::MAX;

/// `NDIS_MEDIA_CONNECT_STATE`.
pub const MediaConnectStateUnknown: i32 = 0;
pub const MediaConnectStateConnected: i32 = 1;
pub const MediaConnectStateDisconnected: i32 = 2;
/// `NDIS_MEDIA_DUPLEX_STATE`.
pub const MediaDuplexStateUnknown: i32 = 0;
pub const MediaDuplexStateHalf: i32 = 1;
pub const MediaDuplexStateFull: i32 = 2;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_LINK_STATE {
    pub Header: NDIS_OBJECT_HEADER,
    pub MediaConnectState: i32,
    pub MediaDuplexState: i32,
    pub XmitLinkSpeed: ULONG64,
    pub RcvLinkSpeed: ULONG64,
    pub PauseFunctions: i32,
    pub AutoNegotiationFlags: ULONG,
}
layout!(NDIS_LINK_STATE, size = 40, align = 8, {
    Header: 0, MediaConnectState: 4, MediaDuplexState: 8, XmitLinkSpeed: 16, RcvLinkSpeed: 24,
    PauseFunctions: 32, AutoNegotiationFlags: 36,
});
