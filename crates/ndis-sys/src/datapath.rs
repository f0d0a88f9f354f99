//! The datapath structures: NET_BUFFER_LIST, NET_BUFFER, MDL, pools, and the send/receive flags
//! (ndis/nbl.h, ndis/nblapi.h, wdm.h). Offsets checked against x64 debug-symbol dumps of ndis.sys
//! and the kernel (see docs/ndis-sys.md).
//!
//! The WDK aligns `NdisReserved`, `ProtocolReserved` and `MiniportReserved` to
//! MEMORY_ALLOCATION_ALIGNMENT (16): `NET_BUFFER_LIST` has 8 bytes of padding before
//! `NdisReserved`, and both lists and buffers are 16-byte aligned.

use crate::base::*;
use crate::layout::layout;
use crate::object::NDIS_OBJECT_HEADER;

/// `MDL` (wdm.h). The page-frame array follows at offset 0x30.
#[repr(C)]
#[derive(Debug)]
pub struct MDL {
    pub Next: *mut MDL,
    pub Size: i16,
    pub MdlFlags: i16,
    pub _Reserved: u32,
    pub Process: PVOID,
    pub MappedSystemVa: PVOID,
    pub StartVa: PVOID,
    pub ByteCount: ULONG,
    pub ByteOffset: ULONG,
}
layout!(MDL, size = 0x30, align = 8, {
    Next: 0, Size: 8, MdlFlags: 0xA, Process: 0x10, MappedSystemVa: 0x18, StartVa: 0x20,
    ByteCount: 0x28, ByteOffset: 0x2C,
});
pub type PMDL = *mut MDL;

pub const MDL_MAPPED_TO_SYSTEM_VA: i16 = 0x0001;
pub const MDL_PAGES_LOCKED: i16 = 0x0002;
pub const MDL_SOURCE_IS_NONPAGED_POOL: i16 = 0x0004;
pub const MDL_ALLOCATED_FIXED_SIZE: i16 = 0x0008;
pub const MDL_PARTIAL: i16 = 0x0010;
pub const MDL_NETWORK_HEADER: i16 = 0x1000;

/// `DataLength` (ULONG) overlaid on `stDataLength` (SIZE_T).
#[repr(C)]
#[derive(Clone, Copy)]
pub union NET_BUFFER_DATA_LENGTH {
    pub DataLength: ULONG,
    pub stDataLength: SIZE_T,
}

/// `NET_BUFFER` (ndis/nbl.h), including the NDIS 6.20 shared-memory union. 16-byte aligned.
#[repr(C, align(16))]
pub struct NET_BUFFER {
    pub Next: *mut NET_BUFFER,
    pub CurrentMdl: PMDL,
    pub CurrentMdlOffset: ULONG,
    pub DataLength: NET_BUFFER_DATA_LENGTH,
    pub MdlChain: PMDL,
    pub DataOffset: ULONG,
    /// The C header/data union is 0x30 bytes (it overlays an SLIST_HEADER chain).
    pub _DataOffsetPad: ULONG,
    pub ChecksumBias: USHORT,
    pub Reserved: USHORT,
    pub NdisPoolHandle: NDIS_HANDLE,
    pub NdisReserved: [PVOID; 2],
    pub ProtocolReserved: [PVOID; 6],
    pub MiniportReserved: [PVOID; 4],
    pub DataPhysicalAddress: PHYSICAL_ADDRESS,
    /// `SharedMemoryInfo` / `ScatterGatherList` union (NDIS 6.20+).
    pub SharedMemoryInfo: PVOID,
}
layout!(NET_BUFFER, size = 0xB0, align = 16, {
    Next: 0, CurrentMdl: 8, CurrentMdlOffset: 0x10, DataLength: 0x18, MdlChain: 0x20,
    DataOffset: 0x28, ChecksumBias: 0x30, Reserved: 0x32, NdisPoolHandle: 0x38,
    NdisReserved: 0x40, ProtocolReserved: 0x50, MiniportReserved: 0x80,
    DataPhysicalAddress: 0xA0, SharedMemoryInfo: 0xA8,
});

/// `NetBufferListInfo` entries of an NDIS 6.20 driver (`MaxNetBufferListInfo` on x64). NDIS
/// allocates the lists (with room for its own, larger count); the length only bounds the indices
/// this crate lets a driver use.
pub const MAX_NET_BUFFER_LIST_INFO_620: usize = 18;

/// `NDIS_NET_BUFFER_LIST_INFO` indices used by this framework.
pub const TcpIpChecksumNetBufferListInfo: usize = 0;
pub const TcpLargeSendNetBufferListInfo: usize = 2;
pub const Ieee8021QNetBufferListInfo: usize = 4;
pub const NetBufferListCancelId: usize = 5;
pub const NetBufferListHashValue: usize = 8;
pub const NetBufferListHashInfo: usize = 9;

/// `NET_BUFFER_LIST` (ndis/nbl.h) as an NDIS 6.20 driver sees it. 16-byte aligned, with the
/// WDK's padding before `NdisReserved`.
#[repr(C, align(16))]
pub struct NET_BUFFER_LIST {
    pub Next: *mut NET_BUFFER_LIST,
    pub FirstNetBuffer: *mut NET_BUFFER,
    pub Context: PVOID,
    pub ParentNetBufferList: *mut NET_BUFFER_LIST,
    pub NdisPoolHandle: NDIS_HANDLE,
    pub _AlignNdisReserved: PVOID,
    pub NdisReserved: [PVOID; 2],
    pub ProtocolReserved: [PVOID; 4],
    pub MiniportReserved: [PVOID; 2],
    pub Scratch: PVOID,
    pub SourceHandle: NDIS_HANDLE,
    pub NblFlags: ULONG,
    pub ChildRefCount: LONG,
    pub Flags: ULONG,
    pub Status: NDIS_STATUS,
    pub NetBufferListInfo: [PVOID; MAX_NET_BUFFER_LIST_INFO_620],
}
layout!(NET_BUFFER_LIST, size = 0x120, align = 16, {
    Next: 0, FirstNetBuffer: 8, Context: 0x10, ParentNetBufferList: 0x18, NdisPoolHandle: 0x20,
    NdisReserved: 0x30, ProtocolReserved: 0x40, MiniportReserved: 0x60, Scratch: 0x70,
    SourceHandle: 0x78, NblFlags: 0x80, ChildRefCount: 0x84, Flags: 0x88, Status: 0x8C,
    NetBufferListInfo: 0x90,
});

/// `NET_BUFFER_LIST_POOL_PARAMETERS` (ndis/nblapi.h).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NET_BUFFER_LIST_POOL_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub ProtocolId: UCHAR,
    pub fAllocateNetBuffer: BOOLEAN,
    pub ContextSize: USHORT,
    pub PoolTag: ULONG,
    pub DataSize: ULONG,
}
layout!(NET_BUFFER_LIST_POOL_PARAMETERS, size = 16, align = 4, {
    Header: 0, ProtocolId: 4, fAllocateNetBuffer: 5, ContextSize: 6, PoolTag: 8, DataSize: 12,
});
pub const NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1: UCHAR = 1;
pub const NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1: USHORT = 16;
pub const NDIS_PROTOCOL_ID_DEFAULT: UCHAR = 0x00;

pub const NDIS_DEFAULT_PORT_NUMBER: NDIS_PORT_NUMBER = 0;

pub const NDIS_SEND_FLAGS_DISPATCH_LEVEL: ULONG = 0x1;
pub const NDIS_SEND_FLAGS_CHECK_FOR_LOOPBACK: ULONG = 0x2;
pub const NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL: ULONG = 0x1;
pub const NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL: ULONG = 0x1;
pub const NDIS_RECEIVE_FLAGS_RESOURCES: ULONG = 0x2;
pub const NDIS_RECEIVE_FLAGS_MORE_NBLS: ULONG = 0x2000;
pub const NDIS_RETURN_FLAGS_DISPATCH_LEVEL: ULONG = 0x1;
