//! Scatter/gather DMA registration and shared memory (ndis.h, WDK 10).

use crate::base::*;
use crate::layout::layout;
use crate::object::NDIS_OBJECT_HEADER;

/// `SCATTER_GATHER_ELEMENT` (wdm.h): one physically contiguous piece of a mapping.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SCATTER_GATHER_ELEMENT {
    /// The device (logical) address of the piece.
    pub Address: PHYSICAL_ADDRESS,
    pub Length: ULONG,
    pub Reserved: ULONG_PTR,
}
layout!(SCATTER_GATHER_ELEMENT, size = 24, align = 8, {
    Address: 0, Length: 8, Reserved: 16,
});

/// `SCATTER_GATHER_LIST` (wdm.h): `NumberOfElements` entries follow the header in `Elements`
/// (a C flexible array member, declared `Elements[]`); the list lives in memory NDIS (or the
/// miniport's preallocated buffer of `ScatterGatherListSize` bytes) provides.
#[repr(C)]
#[derive(Debug)]
pub struct SCATTER_GATHER_LIST {
    pub NumberOfElements: ULONG,
    pub Reserved: ULONG_PTR,
    pub Elements: [SCATTER_GATHER_ELEMENT; 0],
}
layout!(SCATTER_GATHER_LIST, size = 16, align = 8, {
    NumberOfElements: 0, Reserved: 8, Elements: 16,
});

/// `NdisMAllocateNetBufferSGList` flag (ndis.h): the transfer goes from the NET_BUFFER to the
/// device, as on the send path, where miniports should set it; without it the mapping is for
/// the other direction (with map registers or DMA remapping, data the device would read is
/// not made visible to it).
pub const NDIS_SG_LIST_WRITE_TO_DEVICE: ULONG = 0x0000_0001;

/// `MINIPORT_PROCESS_SG_LIST`: DISPATCH_LEVEL.
pub type MINIPORT_PROCESS_SG_LIST_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        pDO: PDEVICE_OBJECT,
        Reserved: PVOID,
        pSGL: *mut SCATTER_GATHER_LIST,
        Context: PVOID,
    ),
>;
/// `MINIPORT_ALLOCATE_SHARED_MEM_COMPLETE`.
pub type MINIPORT_ALLOCATE_SHARED_MEM_COMPLETE_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportAdapterContext: NDIS_HANDLE,
        VirtualAddress: PVOID,
        PhysicalAddress: *mut PHYSICAL_ADDRESS,
        Length: ULONG,
        Context: PVOID,
    ),
>;

pub const NDIS_SG_DMA_DESCRIPTION_REVISION_1: UCHAR = 1;
pub const NDIS_SG_DMA_DESCRIPTION_REVISION_2: UCHAR = 2;
pub const NDIS_SIZEOF_SG_DMA_DESCRIPTION_REVISION_1: USHORT = 36;
pub const NDIS_SIZEOF_SG_DMA_DESCRIPTION_REVISION_2: USHORT = 48;
pub const NDIS_SG_DMA_64_BIT_ADDRESS: ULONG = 0x1;

/// `NDIS_SG_DMA_DESCRIPTION` at revision 2 (NDIS 6.85: `PdoOverride`); revision 1 is the 36-byte
/// prefix. NDIS writes `ScatterGatherListSize` back on success.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_SG_DMA_DESCRIPTION {
    pub Header: NDIS_OBJECT_HEADER,
    pub Flags: ULONG,
    pub MaximumPhysicalMapping: ULONG,
    pub ProcessSGListHandler: MINIPORT_PROCESS_SG_LIST_HANDLER,
    pub SharedMemAllocateCompleteHandler: MINIPORT_ALLOCATE_SHARED_MEM_COMPLETE_HANDLER,
    pub ScatterGatherListSize: ULONG,
    pub PdoOverride: PDEVICE_OBJECT,
}
layout!(NDIS_SG_DMA_DESCRIPTION, size = 48, align = 8, {
    Header: 0, Flags: 4, MaximumPhysicalMapping: 8, ProcessSGListHandler: 16,
    SharedMemAllocateCompleteHandler: 24, ScatterGatherListSize: 32, PdoOverride: 40,
});
