//! Miniport driver registration, adapter attributes and the per-adapter callbacks
//! (ndis.h 10150-10910, 9586-9597, 12450-12466).

use crate::base::*;
use crate::datapath::NET_BUFFER_LIST;
use crate::layout::layout;
use crate::object::NDIS_OBJECT_HEADER;
use crate::oid::NDIS_OID_REQUEST;
use crate::resources::CM_PARTIAL_RESOURCE_LIST;

macro_rules! opaque {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {$(
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug)]
        pub struct $name {
            _data: [u8; 0],
            _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
        }
    )*};
}

opaque!(
    /// Handled by pointer until the PnP layer reads it.
    NET_DEVICE_PNP_EVENT,
);

/// Input of `MiniportPause` (Type NDIS_OBJECT_TYPE_DEFAULT, revision 1, size 12).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_MINIPORT_PAUSE_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub Flags: ULONG,
    pub PauseReason: ULONG,
}
layout!(NDIS_MINIPORT_PAUSE_PARAMETERS, size = 12, align = 4, { Header: 0, Flags: 4, PauseReason: 8 });
pub const NDIS_MINIPORT_PAUSE_PARAMETERS_REVISION_1: UCHAR = 1;
pub const NDIS_SIZEOF_MINIPORT_PAUSE_PARAMETERS_REVISION_1: USHORT = 12;
pub const NDIS_PAUSE_NDIS_INTERNAL: ULONG = 0x0000_0001;
pub const NDIS_PAUSE_LOW_POWER: ULONG = 0x0000_0002;

/// Input of `MiniportRestart` (Type NDIS_OBJECT_TYPE_DEFAULT, revision 1, size 20).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_MINIPORT_RESTART_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    /// `PNDIS_RESTART_ATTRIBUTES`.
    pub RestartAttributes: PVOID,
    pub Flags: ULONG,
}
layout!(NDIS_MINIPORT_RESTART_PARAMETERS, size = 24, align = 8, { Header: 0, RestartAttributes: 8, Flags: 16 });
pub const NDIS_MINIPORT_RESTART_PARAMETERS_REVISION_1: UCHAR = 1;
pub const NDIS_SIZEOF_MINIPORT_RESTART_PARAMETERS_REVISION_1: USHORT = 20;

/// `NDIS_HALT_ACTION`.
pub type NDIS_HALT_ACTION = i32;
pub const NdisHaltDeviceDisabled: NDIS_HALT_ACTION = 0;
pub const NdisHaltDeviceInstanceDeInitialized: NDIS_HALT_ACTION = 1;
pub const NdisHaltDevicePoweredDown: NDIS_HALT_ACTION = 2;
pub const NdisHaltDeviceSurpriseRemoved: NDIS_HALT_ACTION = 3;
pub const NdisHaltDeviceFailed: NDIS_HALT_ACTION = 4;
pub const NdisHaltDeviceInitializationFailed: NDIS_HALT_ACTION = 5;
pub const NdisHaltDeviceStopped: NDIS_HALT_ACTION = 6;

/// `NDIS_SHUTDOWN_ACTION`: power-off runs at PASSIVE_LEVEL, bug-check at HIGH_LEVEL.
pub type NDIS_SHUTDOWN_ACTION = i32;
/// `NDIS_DEVICE_PNP_EVENT` (`NET_DEVICE_PNP_EVENT.DevicePnPEvent`).
pub const NdisDevicePnPEventQueryRemoved: ULONG = 0;
pub const NdisDevicePnPEventRemoved: ULONG = 1;
pub const NdisDevicePnPEventSurpriseRemoved: ULONG = 2;
pub const NdisDevicePnPEventQueryStopped: ULONG = 3;
pub const NdisDevicePnPEventStopped: ULONG = 4;
pub const NdisDevicePnPEventPowerProfileChanged: ULONG = 5;
pub const NdisDevicePnPEventFilterListChanged: ULONG = 6;

pub const NdisShutdownPowerOff: NDIS_SHUTDOWN_ACTION = 0;
pub const NdisShutdownBugCheck: NDIS_SHUTDOWN_ACTION = 1;

/// `NDIS_INTERFACE_TYPE` (= `INTERFACE_TYPE`; 6 and 7 are not used by NDIS).
pub type NDIS_INTERFACE_TYPE = i32;
pub const NdisInterfaceInternal: NDIS_INTERFACE_TYPE = 0;
pub const NdisInterfaceIsa: NDIS_INTERFACE_TYPE = 1;
pub const NdisInterfaceEisa: NDIS_INTERFACE_TYPE = 2;
pub const NdisInterfaceMca: NDIS_INTERFACE_TYPE = 3;
pub const NdisInterfaceTurboChannel: NDIS_INTERFACE_TYPE = 4;
pub const NdisInterfacePci: NDIS_INTERFACE_TYPE = 5;
pub const NdisInterfacePcMcia: NDIS_INTERFACE_TYPE = 8;
pub const NdisInterfaceCBus: NDIS_INTERFACE_TYPE = 9;
pub const NdisInterfaceMPIBus: NDIS_INTERFACE_TYPE = 10;
pub const NdisInterfaceMPSABus: NDIS_INTERFACE_TYPE = 11;
pub const NdisInterfaceProcessorInternal: NDIS_INTERFACE_TYPE = 12;
pub const NdisInterfaceInternalPowerBus: NDIS_INTERFACE_TYPE = 13;
pub const NdisInterfacePNPISABus: NDIS_INTERFACE_TYPE = 14;
pub const NdisInterfacePNPBus: NDIS_INTERFACE_TYPE = 15;
pub const NdisInterfaceUSB: NDIS_INTERFACE_TYPE = 16;
pub const NdisInterfaceIrda: NDIS_INTERFACE_TYPE = 17;
pub const NdisInterface1394: NDIS_INTERFACE_TYPE = 18;

/// `NDIS_MEDIUM` (only the value an Ethernet miniport uses).
pub type NDIS_MEDIUM = i32;
pub const NdisMedium802_3: NDIS_MEDIUM = 0;
/// `NDIS_PHYSICAL_MEDIUM`.
pub type NDIS_PHYSICAL_MEDIUM = i32;
pub const NdisPhysicalMediumUnspecified: NDIS_PHYSICAL_MEDIUM = 0;
pub const NdisPhysicalMedium802_3: NDIS_PHYSICAL_MEDIUM = 14;

// NDIS_MINIPORT_DRIVER_CHARACTERISTICS.Flags
pub const NDIS_INTERMEDIATE_DRIVER: ULONG = 0x0000_0001;
pub const NDIS_WDM_DRIVER: ULONG = 0x0000_0002;
pub const NDIS_DRIVER_FLAGS_RESERVED: ULONG = 0x0000_0008;

// NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES.AttributeFlags
pub const NDIS_MINIPORT_ATTRIBUTES_HARDWARE_DEVICE: ULONG = 0x0000_0001;
pub const NDIS_MINIPORT_ATTRIBUTES_NDIS_WDM: ULONG = 0x0000_0002;
pub const NDIS_MINIPORT_ATTRIBUTES_SURPRISE_REMOVE_OK: ULONG = 0x0000_0004;
pub const NDIS_MINIPORT_ATTRIBUTES_NOT_CO_NDIS: ULONG = 0x0000_0008;
pub const NDIS_MINIPORT_ATTRIBUTES_DO_NOT_BIND_TO_ALL_CO: ULONG = 0x0000_0010;
pub const NDIS_MINIPORT_ATTRIBUTES_NO_HALT_ON_SUSPEND: ULONG = 0x0000_0020;
pub const NDIS_MINIPORT_ATTRIBUTES_BUS_MASTER: ULONG = 0x0000_0040;
pub const NDIS_MINIPORT_ATTRIBUTES_CONTROLS_DEFAULT_PORT: ULONG = 0x0000_0080;
pub const NDIS_MINIPORT_ATTRIBUTES_NO_PAUSE_ON_SUSPEND: ULONG = 0x0000_0100;
pub const NDIS_MINIPORT_ATTRIBUTES_NO_OID_INTERCEPT_ON_NONDEFAULT_PORTS: ULONG = 0x0000_0200;
pub const NDIS_MINIPORT_ATTRIBUTES_REGISTER_BUGCHECK_CALLBACK: ULONG = 0x0000_0400;

/// `NdisGetVersion()` value for NDIS 6.20: `(major << 16) | minor`.
pub const NDIS_RUNTIME_VERSION_620: ULONG = 0x0006_0014;

pub type SET_OPTIONS_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        NdisDriverHandle: NDIS_HANDLE,
        DriverContext: NDIS_HANDLE,
    ) -> NDIS_STATUS,
>;
pub type MINIPORT_INITIALIZE_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        NdisMiniportHandle: NDIS_HANDLE,
        MiniportDriverContext: NDIS_HANDLE,
        MiniportInitParameters: *mut NDIS_MINIPORT_INIT_PARAMETERS,
    ) -> NDIS_STATUS,
>;
pub type MINIPORT_HALT_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportAdapterContext: NDIS_HANDLE,
        HaltAction: NDIS_HALT_ACTION,
    ),
>;
pub type MINIPORT_DRIVER_UNLOAD =
    Option<unsafe extern "win64-unwind" fn(DriverObject: PDRIVER_OBJECT)>;
pub type MINIPORT_PAUSE_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportAdapterContext: NDIS_HANDLE,
        PauseParameters: *mut NDIS_MINIPORT_PAUSE_PARAMETERS,
    ) -> NDIS_STATUS,
>;
pub type MINIPORT_RESTART_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportAdapterContext: NDIS_HANDLE,
        RestartParameters: *mut NDIS_MINIPORT_RESTART_PARAMETERS,
    ) -> NDIS_STATUS,
>;
pub type MINIPORT_OID_REQUEST_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportAdapterContext: NDIS_HANDLE,
        OidRequest: *mut NDIS_OID_REQUEST,
    ) -> NDIS_STATUS,
>;
pub type MINIPORT_SEND_NET_BUFFER_LISTS_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportAdapterContext: NDIS_HANDLE,
        NetBufferList: *mut NET_BUFFER_LIST,
        PortNumber: NDIS_PORT_NUMBER,
        SendFlags: ULONG,
    ),
>;
pub type MINIPORT_RETURN_NET_BUFFER_LISTS_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportAdapterContext: NDIS_HANDLE,
        NetBufferLists: *mut NET_BUFFER_LIST,
        ReturnFlags: ULONG,
    ),
>;
pub type MINIPORT_CANCEL_SEND_HANDLER =
    Option<unsafe extern "win64-unwind" fn(MiniportAdapterContext: NDIS_HANDLE, CancelId: PVOID)>;
pub type MINIPORT_CHECK_FOR_HANG_HANDLER =
    Option<unsafe extern "win64-unwind" fn(MiniportAdapterContext: NDIS_HANDLE) -> BOOLEAN>;
pub type MINIPORT_RESET_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportAdapterContext: NDIS_HANDLE,
        AddressingReset: *mut BOOLEAN,
    ) -> NDIS_STATUS,
>;
pub type MINIPORT_DEVICE_PNP_EVENT_NOTIFY_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportAdapterContext: NDIS_HANDLE,
        NetDevicePnPEvent: *mut NET_DEVICE_PNP_EVENT,
    ),
>;
pub type MINIPORT_SHUTDOWN_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportAdapterContext: NDIS_HANDLE,
        ShutdownAction: NDIS_SHUTDOWN_ACTION,
    ),
>;
pub type MINIPORT_CANCEL_OID_REQUEST_HANDLER =
    Option<unsafe extern "win64-unwind" fn(MiniportAdapterContext: NDIS_HANDLE, RequestId: PVOID)>;
pub type MINIPORT_DIRECT_OID_REQUEST_HANDLER = MINIPORT_OID_REQUEST_HANDLER;
pub type MINIPORT_CANCEL_DIRECT_OID_REQUEST_HANDLER = MINIPORT_CANCEL_OID_REQUEST_HANDLER;
pub type MINIPORT_SYNCHRONOUS_OID_REQUEST_HANDLER = MINIPORT_OID_REQUEST_HANDLER;

/// Passed to `NdisMRegisterMiniportDriver`, which copies it. Declared at revision 3; revisions 1
/// and 2 are prefixes of it (`Header.Size` 136 / 152).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_MINIPORT_DRIVER_CHARACTERISTICS {
    pub Header: NDIS_OBJECT_HEADER,
    pub MajorNdisVersion: UCHAR,
    pub MinorNdisVersion: UCHAR,
    pub MajorDriverVersion: UCHAR,
    pub MinorDriverVersion: UCHAR,
    pub Flags: ULONG,
    pub SetOptionsHandler: SET_OPTIONS_HANDLER,
    pub InitializeHandlerEx: MINIPORT_INITIALIZE_HANDLER,
    pub HaltHandlerEx: MINIPORT_HALT_HANDLER,
    pub UnloadHandler: MINIPORT_DRIVER_UNLOAD,
    pub PauseHandler: MINIPORT_PAUSE_HANDLER,
    pub RestartHandler: MINIPORT_RESTART_HANDLER,
    pub OidRequestHandler: MINIPORT_OID_REQUEST_HANDLER,
    pub SendNetBufferListsHandler: MINIPORT_SEND_NET_BUFFER_LISTS_HANDLER,
    pub ReturnNetBufferListsHandler: MINIPORT_RETURN_NET_BUFFER_LISTS_HANDLER,
    pub CancelSendHandler: MINIPORT_CANCEL_SEND_HANDLER,
    pub CheckForHangHandlerEx: MINIPORT_CHECK_FOR_HANG_HANDLER,
    pub ResetHandlerEx: MINIPORT_RESET_HANDLER,
    pub DevicePnPEventNotifyHandler: MINIPORT_DEVICE_PNP_EVENT_NOTIFY_HANDLER,
    pub ShutdownHandlerEx: MINIPORT_SHUTDOWN_HANDLER,
    pub CancelOidRequestHandler: MINIPORT_CANCEL_OID_REQUEST_HANDLER,
    pub DirectOidRequestHandler: MINIPORT_DIRECT_OID_REQUEST_HANDLER,
    pub CancelDirectOidRequestHandler: MINIPORT_CANCEL_DIRECT_OID_REQUEST_HANDLER,
    pub SynchronousOidRequestHandler: MINIPORT_SYNCHRONOUS_OID_REQUEST_HANDLER,
}
layout!(NDIS_MINIPORT_DRIVER_CHARACTERISTICS, size = 160, align = 8, {
    Header: 0, MajorNdisVersion: 4, MinorNdisVersion: 5, MajorDriverVersion: 6,
    MinorDriverVersion: 7, Flags: 8, SetOptionsHandler: 16, InitializeHandlerEx: 24,
    HaltHandlerEx: 32, UnloadHandler: 40, PauseHandler: 48, RestartHandler: 56,
    OidRequestHandler: 64, SendNetBufferListsHandler: 72, ReturnNetBufferListsHandler: 80,
    CancelSendHandler: 88, CheckForHangHandlerEx: 96, ResetHandlerEx: 104,
    DevicePnPEventNotifyHandler: 112, ShutdownHandlerEx: 120, CancelOidRequestHandler: 128,
    DirectOidRequestHandler: 136, CancelDirectOidRequestHandler: 144,
    SynchronousOidRequestHandler: 152,
});

/// Input of `MiniportInitializeEx`, built by NDIS.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_MINIPORT_INIT_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub Flags: ULONG,
    /// `PNDIS_RESOURCE_LIST`: the resources PnP assigned (interrupts, memory, ports).
    pub AllocatedResources: *mut CM_PARTIAL_RESOURCE_LIST,
    pub IMDeviceInstanceContext: NDIS_HANDLE,
    pub MiniportAddDeviceContext: NDIS_HANDLE,
    pub IfIndex: ULONG,
    /// `NET_LUID` (a 64-bit union).
    pub NetLuid: ULONG64,
    pub DefaultPortAuthStates: PVOID,
    pub PciDeviceCustomProperties: PVOID,
}
layout!(NDIS_MINIPORT_INIT_PARAMETERS, size = 64, align = 8, {
    Header: 0, Flags: 4, AllocatedResources: 8, IMDeviceInstanceContext: 16,
    MiniportAddDeviceContext: 24, IfIndex: 32, NetLuid: 40, DefaultPortAuthStates: 48,
    PciDeviceCustomProperties: 56,
});

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES {
    pub Header: NDIS_OBJECT_HEADER,
    /// Passed back as the first argument of every per-adapter `Miniport*` callback.
    pub MiniportAdapterContext: NDIS_HANDLE,
    pub AttributeFlags: ULONG,
    /// 0 means the 2 s default; rounded to a multiple of 2 s.
    pub CheckForHangTimeInSeconds: UINT,
    pub InterfaceType: NDIS_INTERFACE_TYPE,
}
layout!(NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES, size = 32, align = 8, {
    Header: 0, MiniportAdapterContext: 8, AttributeFlags: 16, CheckForHangTimeInSeconds: 20,
    InterfaceType: 24,
});

pub const NDIS_MAX_PHYS_ADDRESS_LENGTH: usize = 32;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES {
    pub Header: NDIS_OBJECT_HEADER,
    pub Flags: ULONG,
    pub MediaType: NDIS_MEDIUM,
    pub PhysicalMediumType: NDIS_PHYSICAL_MEDIUM,
    pub MtuSize: ULONG,
    pub MaxXmitLinkSpeed: ULONG64,
    pub XmitLinkSpeed: ULONG64,
    pub MaxRcvLinkSpeed: ULONG64,
    pub RcvLinkSpeed: ULONG64,
    pub MediaConnectState: i32,
    pub MediaDuplexState: i32,
    pub LookaheadSize: ULONG,
    pub PowerManagementCapabilities: PVOID,
    pub MacOptions: ULONG,
    pub SupportedPacketFilters: ULONG,
    pub MaxMulticastListSize: ULONG,
    pub MacAddressLength: USHORT,
    pub PermanentMacAddress: [UCHAR; NDIS_MAX_PHYS_ADDRESS_LENGTH],
    pub CurrentMacAddress: [UCHAR; NDIS_MAX_PHYS_ADDRESS_LENGTH],
    pub RecvScaleCapabilities: PVOID,
    pub AccessType: i32,
    pub DirectionType: i32,
    pub ConnectionType: i32,
    pub IfType: NET_IFTYPE,
    pub IfConnectorPresent: BOOLEAN,
    pub SupportedStatistics: ULONG,
    pub SupportedPauseFunctions: ULONG,
    pub DataBackFillSize: ULONG,
    pub ContextBackFillSize: ULONG,
    pub SupportedOidList: *mut NDIS_OID,
    pub SupportedOidListLength: ULONG,
    pub AutoNegotiationFlags: ULONG,
    /// Revision 2 (NDIS 6.20+) only.
    pub PowerManagementCapabilitiesEx: PVOID,
}
layout!(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, size = 224, align = 8, {
    Header: 0, Flags: 4, MediaType: 8, PhysicalMediumType: 12, MtuSize: 16, MaxXmitLinkSpeed: 24,
    XmitLinkSpeed: 32, MaxRcvLinkSpeed: 40, RcvLinkSpeed: 48, MediaConnectState: 56,
    MediaDuplexState: 60, LookaheadSize: 64, PowerManagementCapabilities: 72, MacOptions: 80,
    SupportedPacketFilters: 84, MaxMulticastListSize: 88, MacAddressLength: 92,
    PermanentMacAddress: 94, CurrentMacAddress: 126, RecvScaleCapabilities: 160, AccessType: 168,
    DirectionType: 172, ConnectionType: 176, IfType: 180, IfConnectorPresent: 182,
    SupportedStatistics: 184, SupportedPauseFunctions: 188, DataBackFillSize: 192,
    ContextBackFillSize: 196, SupportedOidList: 200, SupportedOidListLength: 208,
    AutoNegotiationFlags: 212, PowerManagementCapabilitiesEx: 216,
});

/// Set from `MiniportAddDevice`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_MINIPORT_ADD_DEVICE_REGISTRATION_ATTRIBUTES {
    pub Header: NDIS_OBJECT_HEADER,
    pub MiniportAddDeviceContext: NDIS_HANDLE,
    pub Flags: ULONG,
}
layout!(NDIS_MINIPORT_ADD_DEVICE_REGISTRATION_ATTRIBUTES, size = 24, align = 8, {
    Header: 0, MiniportAddDeviceContext: 8, Flags: 16,
});

/// `NDIS_MINIPORT_ADAPTER_ATTRIBUTES`: a union keyed on `Header.Type`, only ever passed by
/// pointer; NDIS reads `Header.Size` bytes. Only the members this framework sets are declared.
#[repr(C)]
#[derive(Clone, Copy)]
pub union NDIS_MINIPORT_ADAPTER_ATTRIBUTES {
    pub Header: NDIS_OBJECT_HEADER,
    pub AddDeviceRegistrationAttributes: NDIS_MINIPORT_ADD_DEVICE_REGISTRATION_ATTRIBUTES,
    pub RegistrationAttributes: NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES,
    pub GeneralAttributes: NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES,
    pub OffloadAttributes: crate::offload::NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES,
}

pub type MINIPORT_ADD_DEVICE_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        NdisMiniportHandle: NDIS_HANDLE,
        MiniportDriverContext: NDIS_HANDLE,
    ) -> NDIS_STATUS,
>;
pub type MINIPORT_REMOVE_DEVICE_HANDLER =
    Option<unsafe extern "win64-unwind" fn(MiniportAddDeviceContext: NDIS_HANDLE)>;
/// `MINIPORT_PNP_IRP`: filter-resource-requirements and start-device.
pub type MINIPORT_PNP_IRP_HANDLER = Option<
    unsafe extern "win64-unwind" fn(
        MiniportAddDeviceContext: NDIS_HANDLE,
        Irp: PIRP,
    ) -> NDIS_STATUS,
>;

/// Registered with `NdisSetOptionalHandlers` from `MiniportSetOptions`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_MINIPORT_PNP_CHARACTERISTICS {
    pub Header: NDIS_OBJECT_HEADER,
    pub MiniportAddDeviceHandler: MINIPORT_ADD_DEVICE_HANDLER,
    pub MiniportRemoveDeviceHandler: MINIPORT_REMOVE_DEVICE_HANDLER,
    pub MiniportFilterResourceRequirementsHandler: MINIPORT_PNP_IRP_HANDLER,
    pub MiniportStartDeviceHandler: MINIPORT_PNP_IRP_HANDLER,
    pub Flags: ULONG,
}
layout!(NDIS_MINIPORT_PNP_CHARACTERISTICS, size = 48, align = 8, {
    Header: 0, MiniportAddDeviceHandler: 8, MiniportRemoveDeviceHandler: 16,
    MiniportFilterResourceRequirementsHandler: 24, MiniportStartDeviceHandler: 32, Flags: 40,
});

/// `NDIS_DRIVER_OPTIONAL_HANDLERS`: a union keyed on `Header.Type`, passed by pointer.
#[repr(C)]
#[derive(Clone, Copy)]
pub union NDIS_DRIVER_OPTIONAL_HANDLERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub MiniportPnpCharacteristics: NDIS_MINIPORT_PNP_CHARACTERISTICS,
}
