//! WDM interrupt connection (`IoConnectInterruptEx`, wdm.h 33075-33104): the three parameter
//! versions and the `Version` in/out protocol NDIS builds on.

use crate::base::*;
use crate::interrupt::{KINTERRUPT_MODE, PIO_INTERRUPT_MESSAGE_INFO};
use crate::layout::layout;

// IoConnectInterruptEx versions (not the NDIS_CONNECT_* values).
pub const CONNECT_FULLY_SPECIFIED: ULONG = 0x1;
pub const CONNECT_LINE_BASED: ULONG = 0x2;
pub const CONNECT_MESSAGE_BASED: ULONG = 0x3;
pub const CONNECT_FULLY_SPECIFIED_GROUP: ULONG = 0x4;
pub const CONNECT_MESSAGE_BASED_PASSIVE: ULONG = 0x5;
pub const CONNECT_CURRENT_VERSION: ULONG = 0x5;

/// `KSERVICE_ROUTINE`: a line-based ISR at DIRQL.
pub type PKSERVICE_ROUTINE = Option<
    unsafe extern "win64-unwind" fn(Interrupt: PKINTERRUPT, ServiceContext: PVOID) -> BOOLEAN,
>;
/// `KMESSAGE_SERVICE_ROUTINE`: a message-based ISR at the message's DIRQL.
pub type PKMESSAGE_SERVICE_ROUTINE = Option<
    unsafe extern "win64-unwind" fn(
        Interrupt: PKINTERRUPT,
        ServiceContext: PVOID,
        MessageId: ULONG,
    ) -> BOOLEAN,
>;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_CONNECT_INTERRUPT_FULLY_SPECIFIED_PARAMETERS {
    pub PhysicalDeviceObject: PDEVICE_OBJECT,
    /// Out.
    pub InterruptObject: *mut PKINTERRUPT,
    pub ServiceRoutine: PKSERVICE_ROUTINE,
    pub ServiceContext: PVOID,
    pub SpinLock: *mut KSPIN_LOCK,
    pub SynchronizeIrql: KIRQL,
    pub FloatingSave: BOOLEAN,
    pub ShareVector: BOOLEAN,
    pub Vector: ULONG,
    pub Irql: KIRQL,
    pub InterruptMode: KINTERRUPT_MODE,
    pub ProcessorEnableMask: KAFFINITY,
    pub Group: USHORT,
}
layout!(IO_CONNECT_INTERRUPT_FULLY_SPECIFIED_PARAMETERS, size = 72, align = 8, {
    PhysicalDeviceObject: 0, InterruptObject: 8, ServiceRoutine: 16, ServiceContext: 24,
    SpinLock: 32, SynchronizeIrql: 40, FloatingSave: 41, ShareVector: 42, Vector: 44, Irql: 48,
    InterruptMode: 52, ProcessorEnableMask: 56, Group: 64,
});

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_CONNECT_INTERRUPT_LINE_BASED_PARAMETERS {
    pub PhysicalDeviceObject: PDEVICE_OBJECT,
    /// Out.
    pub InterruptObject: *mut PKINTERRUPT,
    pub ServiceRoutine: PKSERVICE_ROUTINE,
    pub ServiceContext: PVOID,
    pub SpinLock: *mut KSPIN_LOCK,
    pub SynchronizeIrql: KIRQL,
    pub FloatingSave: BOOLEAN,
}
layout!(IO_CONNECT_INTERRUPT_LINE_BASED_PARAMETERS, size = 48, align = 8, {
    PhysicalDeviceObject: 0, InterruptObject: 8, ServiceRoutine: 16, ServiceContext: 24,
    SpinLock: 32, SynchronizeIrql: 40, FloatingSave: 41,
});

/// Out-pointer of a message-based connection: which member is written depends on the `Version`
/// the call returns (message table for `CONNECT_MESSAGE_BASED`, interrupt object for the fallback).
#[repr(C)]
#[derive(Clone, Copy)]
pub union IO_CONNECT_INTERRUPT_MESSAGE_BASED_CONTEXT {
    pub Generic: *mut PVOID,
    pub InterruptMessageTable: *mut PIO_INTERRUPT_MESSAGE_INFO,
    pub InterruptObject: *mut PKINTERRUPT,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct IO_CONNECT_INTERRUPT_MESSAGE_BASED_PARAMETERS {
    pub PhysicalDeviceObject: PDEVICE_OBJECT,
    pub ConnectionContext: IO_CONNECT_INTERRUPT_MESSAGE_BASED_CONTEXT,
    pub MessageServiceRoutine: PKMESSAGE_SERVICE_ROUTINE,
    pub ServiceContext: PVOID,
    pub SpinLock: *mut KSPIN_LOCK,
    pub SynchronizeIrql: KIRQL,
    pub FloatingSave: BOOLEAN,
    /// Connected instead when the device only has a line interrupt (`Version` comes back as
    /// `CONNECT_LINE_BASED`).
    pub FallBackServiceRoutine: PKSERVICE_ROUTINE,
}
layout!(IO_CONNECT_INTERRUPT_MESSAGE_BASED_PARAMETERS, size = 56, align = 8, {
    PhysicalDeviceObject: 0, ConnectionContext: 8, MessageServiceRoutine: 16, ServiceContext: 24,
    SpinLock: 32, SynchronizeIrql: 40, FloatingSave: 41, FallBackServiceRoutine: 48,
});

#[repr(C)]
#[derive(Clone, Copy)]
pub union IO_CONNECT_INTERRUPT_PARAMETERS_U {
    pub FullySpecified: IO_CONNECT_INTERRUPT_FULLY_SPECIFIED_PARAMETERS,
    pub LineBased: IO_CONNECT_INTERRUPT_LINE_BASED_PARAMETERS,
    pub MessageBased: IO_CONNECT_INTERRUPT_MESSAGE_BASED_PARAMETERS,
}

/// `Version` is in/out: on return it says what was connected, or (on a platform without
/// line/message-based support) `CONNECT_FULLY_SPECIFIED`, asking the caller to retry that way.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IO_CONNECT_INTERRUPT_PARAMETERS {
    pub Version: ULONG,
    pub u: IO_CONNECT_INTERRUPT_PARAMETERS_U,
}
layout!(IO_CONNECT_INTERRUPT_PARAMETERS, size = 80, align = 8, { Version: 0, u: 8 });

#[repr(C)]
#[derive(Clone, Copy)]
pub union IO_DISCONNECT_INTERRUPT_CONTEXT {
    pub Generic: PVOID,
    pub InterruptObject: PKINTERRUPT,
    pub InterruptMessageTable: PIO_INTERRUPT_MESSAGE_INFO,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct IO_DISCONNECT_INTERRUPT_PARAMETERS {
    /// The `Version` `IoConnectInterruptEx` returned.
    pub Version: ULONG,
    pub ConnectionContext: IO_DISCONNECT_INTERRUPT_CONTEXT,
}
layout!(IO_DISCONNECT_INTERRUPT_PARAMETERS, size = 16, align = 8, {
    Version: 0, ConnectionContext: 8,
});
