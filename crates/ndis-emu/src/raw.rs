//! Building blocks for test drivers written directly against `ndis-sys`, as C miniports are: the
//! handlers NDIS requires but a test does not care about, and the attributes every initialize
//! must set. Drivers built on the `ndis` framework do not need these.

use ndis_sys as sys;

unsafe extern "win64-unwind" fn pause(
    _c: sys::NDIS_HANDLE,
    _p: *mut sys::NDIS_MINIPORT_PAUSE_PARAMETERS,
) -> sys::NDIS_STATUS {
    sys::NDIS_STATUS_SUCCESS
}
unsafe extern "win64-unwind" fn restart(
    _c: sys::NDIS_HANDLE,
    _p: *mut sys::NDIS_MINIPORT_RESTART_PARAMETERS,
) -> sys::NDIS_STATUS {
    sys::NDIS_STATUS_SUCCESS
}
unsafe extern "win64-unwind" fn oid(
    _c: sys::NDIS_HANDLE,
    _r: *mut sys::NDIS_OID_REQUEST,
) -> sys::NDIS_STATUS {
    sys::NDIS_STATUS_NOT_SUPPORTED
}
unsafe extern "win64-unwind" fn send(
    _c: sys::NDIS_HANDLE,
    _n: *mut sys::NET_BUFFER_LIST,
    _p: u32,
    _f: u32,
) {
}
unsafe extern "win64-unwind" fn return_nbls(
    _c: sys::NDIS_HANDLE,
    _n: *mut sys::NET_BUFFER_LIST,
    _f: u32,
) {
}
unsafe extern "win64-unwind" fn cancel(_c: sys::NDIS_HANDLE, _id: sys::PVOID) {}
unsafe extern "win64-unwind" fn pnp(_c: sys::NDIS_HANDLE, _e: *mut sys::NET_DEVICE_PNP_EVENT) {}
unsafe extern "win64-unwind" fn shutdown(_c: sys::NDIS_HANDLE, _a: sys::NDIS_SHUTDOWN_ACTION) {}

/// Driver characteristics for NDIS 6.`minor` (revision 1 for 6.0, 2 from 6.1) with the given
/// initialize, halt and unload handlers; every other required handler is a no-op (pause and
/// restart succeed, OID requests are not supported).
pub fn driver_characteristics(
    minor: u8,
    initialize: unsafe extern "win64-unwind" fn(
        sys::NDIS_HANDLE,
        sys::NDIS_HANDLE,
        *mut sys::NDIS_MINIPORT_INIT_PARAMETERS,
    ) -> sys::NDIS_STATUS,
    halt: unsafe extern "win64-unwind" fn(sys::NDIS_HANDLE, sys::NDIS_HALT_ACTION),
    unload: unsafe extern "win64-unwind" fn(sys::PDRIVER_OBJECT),
) -> sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS {
    let (revision, size) = if minor >= 1 {
        (
            sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2,
            sys::NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2,
        )
    } else {
        (
            sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_1,
            sys::NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_1,
        )
    };
    sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_DRIVER_CHARACTERISTICS,
            Revision: revision,
            Size: size,
        },
        MajorNdisVersion: 6,
        MinorNdisVersion: minor,
        MajorDriverVersion: 1,
        MinorDriverVersion: 0,
        Flags: 0,
        SetOptionsHandler: None,
        InitializeHandlerEx: Some(initialize),
        HaltHandlerEx: Some(halt),
        UnloadHandler: Some(unload),
        PauseHandler: Some(pause),
        RestartHandler: Some(restart),
        OidRequestHandler: Some(oid),
        SendNetBufferListsHandler: Some(send),
        ReturnNetBufferListsHandler: Some(return_nbls),
        CancelSendHandler: Some(cancel),
        CheckForHangHandlerEx: None,
        ResetHandlerEx: None,
        DevicePnPEventNotifyHandler: Some(pnp),
        ShutdownHandlerEx: Some(shutdown),
        CancelOidRequestHandler: Some(cancel),
        DirectOidRequestHandler: None,
        CancelDirectOidRequestHandler: None,
        SynchronousOidRequestHandler: None,
    }
}

/// Sets the attributes every successful `MiniportInitializeEx` must set, in order: registration
/// (with `adapter_context`, a PCI bus-master hardware device) then general.
///
/// # Safety
/// Call from `MiniportInitializeEx` with the handle it received.
pub unsafe fn set_required_attributes(
    handle: sys::NDIS_HANDLE,
    adapter_context: sys::NDIS_HANDLE,
) -> sys::NDIS_STATUS {
    // SAFETY: all-zero is a valid attribute union (plain data).
    let mut registration: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = unsafe { core::mem::zeroed() };
    registration.RegistrationAttributes = sys::NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES,
            Revision: sys::NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_1,
            Size: sys::NDIS_SIZEOF_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_1,
        },
        MiniportAdapterContext: adapter_context,
        AttributeFlags: sys::NDIS_MINIPORT_ATTRIBUTES_HARDWARE_DEVICE
            | sys::NDIS_MINIPORT_ATTRIBUTES_BUS_MASTER,
        CheckForHangTimeInSeconds: 0,
        InterfaceType: sys::NdisInterfacePci,
    };
    // SAFETY: the caller's handle; the attributes live across the call.
    let status = unsafe { sys::NdisMSetMiniportAttributes(handle, &mut registration) };
    if status != sys::NDIS_STATUS_SUCCESS {
        return status;
    }
    // SAFETY: as above.
    let mut general: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = unsafe { core::mem::zeroed() };
    // Revision 2 is NDIS 6.20's; a driver registered for less sets revision 1.
    let minor = crate::machine::current()
        .st()
        .ndis
        .driver
        .as_ref()
        .map_or(20, |d| d.chars.MinorNdisVersion);
    general.GeneralAttributes.Header = if minor >= 20 {
        sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES,
            Revision: sys::NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2,
            Size: sys::NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2,
        }
    } else {
        sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES,
            Revision: sys::NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_1,
            Size: sys::NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_1,
        }
    };
    // SAFETY: as above.
    unsafe { sys::NdisMSetMiniportAttributes(handle, &mut general) }
}

/// A 64-bit scatter/gather DMA description (no callbacks, 64 KiB mappings), for a raw test
/// driver's `NdisMRegisterScatterGatherDma`.
pub fn sg_dma_description() -> sys::NDIS_SG_DMA_DESCRIPTION {
    sys::NDIS_SG_DMA_DESCRIPTION {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_SG_DMA_DESCRIPTION,
            Revision: sys::NDIS_SG_DMA_DESCRIPTION_REVISION_1,
            Size: sys::NDIS_SIZEOF_SG_DMA_DESCRIPTION_REVISION_1,
        },
        Flags: sys::NDIS_SG_DMA_64_BIT_ADDRESS,
        MaximumPhysicalMapping: 65536,
        ProcessSGListHandler: None,
        SharedMemAllocateCompleteHandler: None,
        ScatterGatherListSize: 0,
        PdoOverride: core::ptr::null_mut(),
    }
}

/// Registers `chars` from `DriverEntry`; returns the status and the driver handle.
///
/// # Safety
/// Call from `DriverEntry` with the pointers it received.
pub unsafe fn register_driver(
    object: sys::PDRIVER_OBJECT,
    path: *const sys::UNICODE_STRING,
    chars: &sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
) -> (sys::NDIS_STATUS, sys::NDIS_HANDLE) {
    let mut handle: sys::NDIS_HANDLE = core::ptr::null_mut();
    // SAFETY: the caller's DriverEntry arguments; `chars` and `handle` live across the call.
    let status = unsafe {
        sys::NdisMRegisterMiniportDriver(object, path, core::ptr::null_mut(), chars, &mut handle)
    };
    (status, handle)
}
