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
/// `CM_PARTIAL_RESOURCE_DESCRIPTOR.Flags` of a port resource: in I/O space (not memory-mapped).
pub const CM_RESOURCE_PORT_IO: USHORT = 0x0001;
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

// ---------------------------------------------------------------------------------------------
// Resource requirements (IRP_MN_FILTER_RESOURCE_REQUIREMENTS hands these to the function driver
// in `Irp->IoStatus.Information`). Natural alignment, unlike the CM_ descriptors.

/// `IO_RESOURCE_DESCRIPTOR.Option`.
pub const IO_RESOURCE_PREFERRED: UCHAR = 0x01;
pub const IO_RESOURCE_DEFAULT: UCHAR = 0x02;
/// An alternative to the descriptor before it (a line behind a message interrupt).
pub const IO_RESOURCE_ALTERNATIVE: UCHAR = 0x08;

/// `IRQ_DEVICE_POLICY` (a USHORT in the descriptor when processor groups are compiled in).
pub type IRQ_DEVICE_POLICY = USHORT;
pub const IrqPolicyMachineDefault: IRQ_DEVICE_POLICY = 0;
pub const IrqPolicyAllCloseProcessors: IRQ_DEVICE_POLICY = 1;
pub const IrqPolicyOneCloseProcessor: IRQ_DEVICE_POLICY = 2;
pub const IrqPolicyAllProcessorsInMachine: IRQ_DEVICE_POLICY = 3;
pub const IrqPolicySpecifiedProcessors: IRQ_DEVICE_POLICY = 4;
pub const IrqPolicySpreadMessagesAcrossAllProcessors: IRQ_DEVICE_POLICY = 5;

/// `IRQ_PRIORITY`.
pub type IRQ_PRIORITY = ULONG;
pub const IrqPriorityUndefined: IRQ_PRIORITY = 0;

/// `u.Interrupt` of an `IO_RESOURCE_DESCRIPTOR`. A message descriptor covers the vectors
/// `MinimumVector..=MaximumVector`, counted down from `CM_RESOURCE_INTERRUPT_MESSAGE_TOKEN`: one
/// message per vector.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_RESOURCE_INTERRUPT {
    pub MinimumVector: ULONG,
    pub MaximumVector: ULONG,
    pub AffinityPolicy: IRQ_DEVICE_POLICY,
    pub Group: USHORT,
    pub PriorityPolicy: IRQ_PRIORITY,
    pub TargetedProcessors: KAFFINITY,
}
layout!(IO_RESOURCE_INTERRUPT, size = 24, align = 8, {
    MinimumVector: 0, MaximumVector: 4, AffinityPolicy: 8, Group: 10, PriorityPolicy: 12,
    TargetedProcessors: 16,
});

/// `u.Memory` and `u.Port` of an `IO_RESOURCE_DESCRIPTOR`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_RESOURCE_MEMORY {
    pub Length: ULONG,
    pub Alignment: ULONG,
    pub MinimumAddress: PHYSICAL_ADDRESS,
    pub MaximumAddress: PHYSICAL_ADDRESS,
}
layout!(IO_RESOURCE_MEMORY, size = 24, align = 8, {
    Length: 0, Alignment: 4, MinimumAddress: 8, MaximumAddress: 16,
});

#[repr(C)]
#[derive(Clone, Copy)]
pub union IO_RESOURCE_DESCRIPTOR_U {
    pub Interrupt: IO_RESOURCE_INTERRUPT,
    pub Memory: IO_RESOURCE_MEMORY,
    pub Port: IO_RESOURCE_MEMORY,
    pub Generic: [ULONG; 6],
}
layout!(IO_RESOURCE_DESCRIPTOR_U, size = 24, align = 8, {});

#[repr(C)]
#[derive(Clone, Copy)]
pub struct IO_RESOURCE_DESCRIPTOR {
    pub Option: UCHAR,
    pub Type: UCHAR,
    pub ShareDisposition: UCHAR,
    pub Spare1: UCHAR,
    pub Flags: USHORT,
    pub Spare2: USHORT,
    pub u: IO_RESOURCE_DESCRIPTOR_U,
}
layout!(IO_RESOURCE_DESCRIPTOR, size = 32, align = 8, {
    Option: 0, Type: 1, ShareDisposition: 2, Spare1: 3, Flags: 4, Spare2: 6, u: 8,
});

/// One alternative configuration: `Count` descriptors from offset 8 (declared with one, as in C).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IO_RESOURCE_LIST {
    pub Version: USHORT,
    pub Revision: USHORT,
    pub Count: ULONG,
    pub Descriptors: [IO_RESOURCE_DESCRIPTOR; 1],
}
layout!(IO_RESOURCE_LIST, size = 40, align = 8, {
    Version: 0, Revision: 2, Count: 4, Descriptors: 8,
});

/// `AlternativeLists` lists follow one another from offset 32; `ListSize` is the byte size of
/// the whole block.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IO_RESOURCE_REQUIREMENTS_LIST {
    pub ListSize: ULONG,
    /// `INTERFACE_TYPE` (`PCIBus` = 5).
    pub InterfaceType: ULONG,
    pub BusNumber: ULONG,
    pub SlotNumber: ULONG,
    pub Reserved: [ULONG; 3],
    pub AlternativeLists: ULONG,
    pub List: [IO_RESOURCE_LIST; 1],
}
layout!(IO_RESOURCE_REQUIREMENTS_LIST, size = 72, align = 8, {
    ListSize: 0, InterfaceType: 4, BusNumber: 8, SlotNumber: 12, Reserved: 16,
    AlternativeLists: 28, List: 32,
});
/// Bytes before the first `IO_RESOURCE_LIST`, and before a list's first descriptor.
pub const IO_RESOURCE_REQUIREMENTS_LIST_HEADER: usize = 32;
pub const IO_RESOURCE_LIST_HEADER: usize = 8;
