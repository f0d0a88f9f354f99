//! PnP-assigned resources as NDIS passes them in `AllocatedResources` (wdm.h 11185-11528).
//! The descriptor is compiled under `#pragma pack(4)` in the WDK, hence `packed(4)` here.

use crate::base::*;
use crate::layout::layout;

pub const CmResourceTypeNull: UCHAR = 0;
pub const CmResourceTypePort: UCHAR = 1;
pub const CmResourceTypeInterrupt: UCHAR = 2;
pub const CmResourceTypeMemory: UCHAR = 3;

pub const CmResourceShareUndetermined: UCHAR = 0;
pub const CmResourceShareDeviceExclusive: UCHAR = 1;
pub const CmResourceShareDriverExclusive: UCHAR = 2;
pub const CmResourceShareShared: UCHAR = 3;

// Flags of an interrupt descriptor.
pub const CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE: USHORT = 0x0000;
pub const CM_RESOURCE_INTERRUPT_LATCHED: USHORT = 0x0001;
pub const CM_RESOURCE_INTERRUPT_MESSAGE: USHORT = 0x0002;
pub const CM_RESOURCE_INTERRUPT_POLICY_INCLUDED: USHORT = 0x0004;
pub const CM_RESOURCE_INTERRUPT_SECONDARY_INTERRUPT: USHORT = 0x0010;
pub const CM_RESOURCE_INTERRUPT_WAKE_HINT: USHORT = 0x0020;
pub const CM_RESOURCE_INTERRUPT_MESSAGE_TOKEN: ULONG = -2i32 as ULONG;

/// `u.Interrupt` and `u.MessageInterrupt.Translated`.
#[repr(C, packed(4))]
#[derive(Debug, Clone, Copy)]
pub struct CM_RESOURCE_INTERRUPT {
    /// `Level` (the group number shares this slot when processor groups are enabled).
    pub Level: ULONG,
    pub Vector: ULONG,
    pub Affinity: KAFFINITY,
}
layout!(CM_RESOURCE_INTERRUPT, size = 16, align = 4, { Level: 0, Vector: 4, Affinity: 8 });

/// `u.MessageInterrupt.Raw`: for PCI 2.2 MSI, one descriptor carries the message count.
#[repr(C, packed(4))]
#[derive(Debug, Clone, Copy)]
pub struct CM_RESOURCE_MESSAGE_INTERRUPT_RAW {
    pub Reserved: USHORT,
    pub MessageCount: USHORT,
    pub Vector: ULONG,
    pub Affinity: KAFFINITY,
}
layout!(CM_RESOURCE_MESSAGE_INTERRUPT_RAW, size = 16, align = 4, {
    Reserved: 0, MessageCount: 2, Vector: 4, Affinity: 8,
});

/// `u.Memory` and `u.Port`.
#[repr(C, packed(4))]
#[derive(Debug, Clone, Copy)]
pub struct CM_RESOURCE_MEMORY {
    pub Start: PHYSICAL_ADDRESS,
    pub Length: ULONG,
}
layout!(CM_RESOURCE_MEMORY, size = 12, align = 4, { Start: 0, Length: 8 });

#[repr(C, packed(4))]
#[derive(Clone, Copy)]
pub union CM_PARTIAL_RESOURCE_DESCRIPTOR_U {
    pub Interrupt: CM_RESOURCE_INTERRUPT,
    pub MessageInterruptRaw: CM_RESOURCE_MESSAGE_INTERRUPT_RAW,
    pub Memory: CM_RESOURCE_MEMORY,
    pub Port: CM_RESOURCE_MEMORY,
    pub Generic: [ULONG; 4],
}
layout!(CM_PARTIAL_RESOURCE_DESCRIPTOR_U, size = 16, align = 4, {});

#[repr(C, packed(4))]
#[derive(Clone, Copy)]
pub struct CM_PARTIAL_RESOURCE_DESCRIPTOR {
    pub Type: UCHAR,
    pub ShareDisposition: UCHAR,
    pub Flags: USHORT,
    pub u: CM_PARTIAL_RESOURCE_DESCRIPTOR_U,
}
layout!(CM_PARTIAL_RESOURCE_DESCRIPTOR, size = 20, align = 4, {
    Type: 0, ShareDisposition: 1, Flags: 2, u: 4,
});

/// Variable-length: `Count` descriptors follow at offset 8 (declared with one, as in C).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CM_PARTIAL_RESOURCE_LIST {
    pub Version: USHORT,
    pub Revision: USHORT,
    pub Count: ULONG,
    pub PartialDescriptors: [CM_PARTIAL_RESOURCE_DESCRIPTOR; 1],
}
layout!(CM_PARTIAL_RESOURCE_LIST, size = 28, align = 4, {
    Version: 0, Revision: 2, Count: 4, PartialDescriptors: 8,
});
pub type NDIS_RESOURCE_LIST = CM_PARTIAL_RESOURCE_LIST;
