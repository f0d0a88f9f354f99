//! NDIS 6 miniport interrupts: characteristics, the message table NDIS returns, receive throttling,
//! and the callback types (ndis.h 9399-9549, wdm.h 32675-32758).

use crate::base::*;
use crate::layout::layout;
use crate::object::NDIS_OBJECT_HEADER;

/// `NDIS_INTERRUPT_TYPE`, written by `NdisMRegisterInterruptEx`. Not the `CONNECT_*` codes of
/// `IoConnectInterruptEx`, which differ (line = 2, message = 3 there).
pub type NDIS_INTERRUPT_TYPE = i32;
pub const NDIS_CONNECT_LINE_BASED: NDIS_INTERRUPT_TYPE = 1;
pub const NDIS_CONNECT_MESSAGE_BASED: NDIS_INTERRUPT_TYPE = 2;

/// `KINTERRUPT_MODE`.
pub type KINTERRUPT_MODE = i32;
pub const LevelSensitive: KINTERRUPT_MODE = 0;
pub const Latched: KINTERRUPT_MODE = 1;

/// `KINTERRUPT_POLARITY`.
pub type KINTERRUPT_POLARITY = i32;
pub const InterruptPolarityUnknown: KINTERRUPT_POLARITY = 0;
pub const InterruptActiveHigh: KINTERRUPT_POLARITY = 1;
pub const InterruptRisingEdge: KINTERRUPT_POLARITY = 1;
pub const InterruptActiveLow: KINTERRUPT_POLARITY = 2;
pub const InterruptFallingEdge: KINTERRUPT_POLARITY = 2;
pub const InterruptActiveBoth: KINTERRUPT_POLARITY = 3;
pub const InterruptActiveBothTriggerLow: KINTERRUPT_POLARITY = 3;
pub const InterruptActiveBothTriggerHigh: KINTERRUPT_POLARITY = 4;

/// `MaxNblsToIndicate` value meaning "no limit".
pub const NDIS_INDICATE_ALL_NBLS: ULONG = !0;

/// One allocated interrupt message; entry *i* of the table serves `MessageId` *i*.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_INTERRUPT_MESSAGE_INFO_ENTRY {
    pub MessageAddress: PHYSICAL_ADDRESS,
    /// Processors of the message's group it may interrupt (the mask carries no group number).
    pub TargetProcessorSet: KAFFINITY,
    pub InterruptObject: PKINTERRUPT,
    pub MessageData: ULONG,
    pub Vector: ULONG,
    pub Irql: KIRQL,
    pub Mode: KINTERRUPT_MODE,
    pub Polarity: KINTERRUPT_POLARITY,
}
layout!(IO_INTERRUPT_MESSAGE_INFO_ENTRY, size = 48, align = 8, {
    MessageAddress: 0, TargetProcessorSet: 8, InterruptObject: 16, MessageData: 24, Vector: 28,
    Irql: 32, Mode: 36, Polarity: 40,
});

/// Variable-length: `MessageCount` entries follow at offset 8 (declared with one, as in C).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_INTERRUPT_MESSAGE_INFO {
    /// Nonzero only when every message is delivered at one synchronize IRQL.
    pub UnifiedIrql: KIRQL,
    pub MessageCount: ULONG,
    pub MessageInfo: [IO_INTERRUPT_MESSAGE_INFO_ENTRY; 1],
}
layout!(IO_INTERRUPT_MESSAGE_INFO, size = 56, align = 8, {
    UnifiedIrql: 0, MessageCount: 4, MessageInfo: 8,
});
pub type PIO_INTERRUPT_MESSAGE_INFO = *mut IO_INTERRUPT_MESSAGE_INFO;

/// NDIS 6.20+: passed to interrupt DPCs. No object header.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_RECEIVE_THROTTLE_PARAMETERS {
    pub MaxNblsToIndicate: ULONG,
    /// C bit-field `ULONG MoreNblsPending : 1` (MSVC allocates from bit 0); see the mask below.
    pub Flags: ULONG,
}
layout!(NDIS_RECEIVE_THROTTLE_PARAMETERS, size = 8, align = 4, { MaxNblsToIndicate: 0, Flags: 4 });
/// `MoreNblsPending` within `NDIS_RECEIVE_THROTTLE_PARAMETERS::Flags`.
pub const NDIS_RECEIVE_THROTTLE_MORE_NBLS_PENDING: ULONG = 0x1;

/// `MINIPORT_ISR`: runs at the line's DIRQL. NDIS queues the DPCs the outputs describe whatever
/// the return value is.
pub type MINIPORT_ISR_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportInterruptContext: NDIS_HANDLE,
        QueueDefaultInterruptDpc: *mut BOOLEAN,
        TargetProcessors: *mut ULONG,
    ) -> BOOLEAN,
>;
/// `MINIPORT_INTERRUPT_DPC` (6.20+ shape): DISPATCH_LEVEL on the CPU it was queued for.
pub type MINIPORT_INTERRUPT_DPC_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportInterruptContext: NDIS_HANDLE,
        MiniportDpcContext: PVOID,
        ReceiveThrottleParameters: PVOID,
        NdisReserved2: PVOID,
    ),
>;
pub type MINIPORT_DISABLE_INTERRUPT_HANDLER =
    Option<unsafe extern "win64-unwind" fn(MiniportInterruptContext: NDIS_HANDLE)>;
pub type MINIPORT_ENABLE_INTERRUPT_HANDLER =
    Option<unsafe extern "win64-unwind" fn(MiniportInterruptContext: NDIS_HANDLE)>;
/// `MINIPORT_MESSAGE_INTERRUPT`: runs at the message's DIRQL.
pub type MINIPORT_MSI_ISR_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportInterruptContext: NDIS_HANDLE,
        MessageId: ULONG,
        QueueDefaultInterruptDpc: *mut BOOLEAN,
        TargetProcessors: *mut ULONG,
    ) -> BOOLEAN,
>;
/// `MINIPORT_MESSAGE_INTERRUPT_DPC` (6.20+ shape); the fifth argument is on the stack on x64.
pub type MINIPORT_MSI_INTERRUPT_DPC_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportInterruptContext: NDIS_HANDLE,
        MessageId: ULONG,
        MiniportDpcContext: PVOID,
        ReceiveThrottleParameters: PVOID,
        NdisReserved2: PVOID,
    ),
>;
pub type MINIPORT_DISABLE_MSI_INTERRUPT_HANDLER = Option<
    unsafe extern "win64-unwind" fn(MiniportInterruptContext: NDIS_HANDLE, MessageId: ULONG),
>;
pub type MINIPORT_ENABLE_MSI_INTERRUPT_HANDLER = Option<
    unsafe extern "win64-unwind" fn(MiniportInterruptContext: NDIS_HANDLE, MessageId: ULONG),
>;
/// `MINIPORT_SYNCHRONIZE_INTERRUPT`: runs at DIRQL under the interrupt lock.
pub type MINIPORT_SYNCHRONIZE_INTERRUPT_HANDLER =
    Option<unsafe extern "win64-unwind" fn(SynchronizeContext: PVOID) -> BOOLEAN>;

/// Input to `NdisMRegisterInterruptEx`; `InterruptType` and `MessageInfoTable` are outputs.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS {
    pub Header: NDIS_OBJECT_HEADER,
    pub InterruptHandler: MINIPORT_ISR_HANDLER,
    pub InterruptDpcHandler: MINIPORT_INTERRUPT_DPC_HANDLER,
    pub DisableInterruptHandler: MINIPORT_DISABLE_INTERRUPT_HANDLER,
    pub EnableInterruptHandler: MINIPORT_ENABLE_INTERRUPT_HANDLER,
    pub MsiSupported: BOOLEAN,
    pub MsiSyncWithAllMessages: BOOLEAN,
    pub MessageInterruptHandler: MINIPORT_MSI_ISR_HANDLER,
    pub MessageInterruptDpcHandler: MINIPORT_MSI_INTERRUPT_DPC_HANDLER,
    pub DisableMessageInterruptHandler: MINIPORT_DISABLE_MSI_INTERRUPT_HANDLER,
    pub EnableMessageInterruptHandler: MINIPORT_ENABLE_MSI_INTERRUPT_HANDLER,
    pub InterruptType: NDIS_INTERRUPT_TYPE,
    pub MessageInfoTable: PIO_INTERRUPT_MESSAGE_INFO,
}
layout!(NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS, size = 96, align = 8, {
    Header: 0, InterruptHandler: 8, InterruptDpcHandler: 16, DisableInterruptHandler: 24,
    EnableInterruptHandler: 32, MsiSupported: 40, MsiSyncWithAllMessages: 41,
    MessageInterruptHandler: 48, MessageInterruptDpcHandler: 56, DisableMessageInterruptHandler: 64,
    EnableMessageInterruptHandler: 72, InterruptType: 80, MessageInfoTable: 88,
});
