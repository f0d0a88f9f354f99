//! Miniport driver registration: `DriverEntry`, `NdisMRegisterMiniportDriver`, unload.
//!
//! A driver declares itself with [`miniport_driver!`](crate::miniport_driver), which emits the
//! image's `DriverEntry` and a matching unload routine. The characteristics table is filled here,
//! with one monomorphized trampoline per handler.

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

use ndis_sys as sys;

use crate::{NdisVersion, Status};

/// The part of a miniport driver that exists before any adapter.
pub trait MiniportDriver: Sync + 'static {
    /// The NDIS version the driver is written against; it selects the characteristics revision.
    const NDIS_VERSION: NdisVersion;
    /// Reported to NDIS as `MajorDriverVersion.MinorDriverVersion`.
    const DRIVER_VERSION: (u8, u8);

    /// `MiniportInitializeEx`, at PASSIVE_LEVEL, once per adapter NDIS starts.
    ///
    /// The adapter lifecycle layer (attributes, halt, pause/restart, OIDs, datapath) is not part
    /// of the framework yet, so no adapter can be started: the success type is uninhabited and
    /// the driver returns the status NDIS should see.
    fn initialize_adapter(&'static self) -> Result<core::convert::Infallible, Status>;
}

/// Holds the `NdisMiniportDriverHandle` between `DriverEntry` and unload. One per driver image,
/// emitted by [`miniport_driver!`](crate::miniport_driver).
#[derive(Debug)]
pub struct DriverSlot(AtomicPtr<c_void>);

impl DriverSlot {
    pub const fn new() -> Self {
        Self(AtomicPtr::new(core::ptr::null_mut()))
    }
}

impl Default for DriverSlot {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds the characteristics for `T`: header revision/size from `T::NDIS_VERSION`, every
/// required handler set to a trampoline, the optional ones (`SetOptions`, hang check, reset,
/// direct and synchronous OIDs) left empty.
pub fn characteristics<T: MiniportDriver>(
    unload: unsafe extern "system-unwind" fn(sys::PDRIVER_OBJECT),
) -> sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS {
    let (revision, size) = T::NDIS_VERSION.driver_characteristics_revision();
    sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_DRIVER_CHARACTERISTICS,
            Revision: revision,
            Size: size,
        },
        MajorNdisVersion: T::NDIS_VERSION.major,
        MinorNdisVersion: T::NDIS_VERSION.minor,
        MajorDriverVersion: T::DRIVER_VERSION.0,
        MinorDriverVersion: T::DRIVER_VERSION.1,
        Flags: 0,
        SetOptionsHandler: None,
        InitializeHandlerEx: Some(initialize::<T>),
        HaltHandlerEx: Some(halt),
        UnloadHandler: Some(unload),
        PauseHandler: Some(pause),
        RestartHandler: Some(restart),
        OidRequestHandler: Some(oid_request),
        SendNetBufferListsHandler: Some(send_net_buffer_lists),
        ReturnNetBufferListsHandler: Some(return_net_buffer_lists),
        CancelSendHandler: Some(cancel_send),
        CheckForHangHandlerEx: None,
        ResetHandlerEx: None,
        DevicePnPEventNotifyHandler: Some(device_pnp_event_notify),
        ShutdownHandlerEx: Some(shutdown),
        CancelOidRequestHandler: Some(cancel_oid_request),
        DirectOidRequestHandler: None,
        CancelDirectOidRequestHandler: None,
        SynchronousOidRequestHandler: None,
    }
}

/// The body of the `DriverEntry` that [`miniport_driver!`](crate::miniport_driver) emits.
///
/// # Safety
/// Called once, at PASSIVE_LEVEL, with the driver object and registry path the I/O manager passed
/// to `DriverEntry`; `unload` must be the routine emitted for the same `slot`.
pub unsafe fn driver_entry<T: MiniportDriver>(
    driver: &'static T,
    slot: &'static DriverSlot,
    driver_object: sys::PDRIVER_OBJECT,
    registry_path: *const sys::UNICODE_STRING,
    unload: unsafe extern "system-unwind" fn(sys::PDRIVER_OBJECT),
) -> sys::NTSTATUS {
    let chars = characteristics::<T>(unload);
    let mut handle: sys::NDIS_HANDLE = core::ptr::null_mut();
    // SAFETY: the pointers come from the I/O manager; `chars` lives across the call (NDIS copies
    // it); the driver context is a 'static reference, valid for the image's lifetime.
    let status = unsafe {
        sys::NdisMRegisterMiniportDriver(
            driver_object,
            registry_path,
            driver as *const T as sys::NDIS_HANDLE,
            &chars,
            &mut handle,
        )
    };
    if status == sys::NDIS_STATUS_SUCCESS {
        slot.0.store(handle, Ordering::Release);
    }
    status
}

/// The body of the unload routine that [`miniport_driver!`](crate::miniport_driver) emits.
///
/// # Safety
/// Called by NDIS at PASSIVE_LEVEL, once, after every adapter was halted.
pub unsafe fn driver_unload(slot: &'static DriverSlot) {
    let handle = slot.0.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !handle.is_null() {
        // SAFETY: `handle` came from a successful NdisMRegisterMiniportDriver and is deregistered
        // once (the swap above takes it out of the slot).
        unsafe { sys::NdisMDeregisterMiniportDriver(handle) }
    }
}

unsafe extern "system-unwind" fn initialize<T: MiniportDriver>(
    _miniport_handle: sys::NDIS_HANDLE,
    driver_context: sys::NDIS_HANDLE,
    _params: *mut sys::NDIS_MINIPORT_INIT_PARAMETERS,
) -> sys::NDIS_STATUS {
    // SAFETY: driver_entry registered `&'static T` as the driver context and NDIS hands it back
    // unchanged.
    let driver = unsafe { &*(driver_context as *const T) };
    match driver.initialize_adapter() {
        Ok(never) => match never {},
        // A failed initialize must not report success: NDIS would treat the adapter as started.
        Err(status) if status.is_success() => sys::NDIS_STATUS_FAILURE,
        Err(status) => status.0,
    }
}

/// Per-adapter callbacks: NDIS calls them only for an adapter whose initialize succeeded, and no
/// adapter can be initialized yet. Reaching one is an NDIS contract violation; stop loudly.
#[cold]
fn no_adapter(callback: &str) -> ! {
    panic!("NDIS called {callback} but this driver never initialized an adapter")
}

unsafe extern "system-unwind" fn halt(_ctx: sys::NDIS_HANDLE, _action: sys::NDIS_HALT_ACTION) {
    no_adapter("MiniportHaltEx")
}
unsafe extern "system-unwind" fn pause(
    _ctx: sys::NDIS_HANDLE,
    _params: *mut sys::NDIS_MINIPORT_PAUSE_PARAMETERS,
) -> sys::NDIS_STATUS {
    no_adapter("MiniportPause")
}
unsafe extern "system-unwind" fn restart(
    _ctx: sys::NDIS_HANDLE,
    _params: *mut sys::NDIS_MINIPORT_RESTART_PARAMETERS,
) -> sys::NDIS_STATUS {
    no_adapter("MiniportRestart")
}
unsafe extern "system-unwind" fn oid_request(
    _ctx: sys::NDIS_HANDLE,
    _request: *mut sys::NDIS_OID_REQUEST,
) -> sys::NDIS_STATUS {
    no_adapter("MiniportOidRequest")
}
unsafe extern "system-unwind" fn send_net_buffer_lists(
    _ctx: sys::NDIS_HANDLE,
    _nbls: *mut sys::NET_BUFFER_LIST,
    _port: sys::NDIS_PORT_NUMBER,
    _flags: sys::ULONG,
) {
    no_adapter("MiniportSendNetBufferLists")
}
unsafe extern "system-unwind" fn return_net_buffer_lists(
    _ctx: sys::NDIS_HANDLE,
    _nbls: *mut sys::NET_BUFFER_LIST,
    _flags: sys::ULONG,
) {
    no_adapter("MiniportReturnNetBufferLists")
}
unsafe extern "system-unwind" fn cancel_send(_ctx: sys::NDIS_HANDLE, _id: sys::PVOID) {
    no_adapter("MiniportCancelSend")
}
unsafe extern "system-unwind" fn device_pnp_event_notify(
    _ctx: sys::NDIS_HANDLE,
    _event: *mut sys::NET_DEVICE_PNP_EVENT,
) {
    no_adapter("MiniportDevicePnPEventNotify")
}
unsafe extern "system-unwind" fn shutdown(
    _ctx: sys::NDIS_HANDLE,
    _action: sys::NDIS_SHUTDOWN_ACTION,
) {
    no_adapter("MiniportShutdownEx")
}
unsafe extern "system-unwind" fn cancel_oid_request(_ctx: sys::NDIS_HANDLE, _id: sys::PVOID) {
    no_adapter("MiniportCancelOidRequest")
}

/// The type of `DriverEntry`.
pub type DriverEntryFn = unsafe extern "system-unwind" fn(
    sys::PDRIVER_OBJECT,
    *const sys::UNICODE_STRING,
) -> sys::NTSTATUS;

/// Declares the image's miniport driver: emits `DriverEntry` (registering `$driver` with NDIS),
/// the unload routine, and `pub const DRIVER_ENTRY` naming the entry point (host tests hand it to
/// the emulator). The only place a driver names the entry point; it writes no `unsafe`.
///
/// ```
/// use ndis::driver::MiniportDriver;
/// use ndis::{NdisVersion, Status};
///
/// struct MyNic;
///
/// impl MiniportDriver for MyNic {
///     const NDIS_VERSION: NdisVersion = NdisVersion::V6_20;
///     const DRIVER_VERSION: (u8, u8) = (1, 0);
///     fn initialize_adapter(&'static self) -> Result<core::convert::Infallible, Status> {
///         Err(Status::ADAPTER_NOT_FOUND)
///     }
/// }
///
/// ndis::miniport_driver!(MyNic = MyNic);
/// # fn main() { let _entry: ndis::driver::DriverEntryFn = DRIVER_ENTRY; }
/// ```
#[macro_export]
macro_rules! miniport_driver {
    ($driver:ty = $value:expr) => {
        #[doc(hidden)]
        mod __ndis_miniport_driver {
            #[allow(unused_imports)]
            use super::*;

            static DRIVER: $driver = $value;
            static SLOT: $crate::driver::DriverSlot = $crate::driver::DriverSlot::new();

            unsafe extern "system-unwind" fn unload(_driver_object: $crate::sys::PDRIVER_OBJECT) {
                // SAFETY: NDIS calls the unload handler once, at PASSIVE_LEVEL, after halting
                // every adapter; SLOT is the one driver_entry filled.
                unsafe { $crate::driver::driver_unload(&SLOT) }
            }

            /// The image entry point (`/ENTRY:DriverEntry`).
            #[unsafe(export_name = "DriverEntry")]
            pub unsafe extern "system-unwind" fn driver_entry(
                driver_object: $crate::sys::PDRIVER_OBJECT,
                registry_path: *const $crate::sys::UNICODE_STRING,
            ) -> $crate::sys::NTSTATUS {
                // SAFETY: the I/O manager calls DriverEntry once at PASSIVE_LEVEL with valid
                // pointers; `unload` pairs with SLOT.
                unsafe {
                    $crate::driver::driver_entry(
                        &DRIVER,
                        &SLOT,
                        driver_object,
                        registry_path,
                        unload,
                    )
                }
            }
        }

        /// This driver's `DriverEntry`.
        pub const DRIVER_ENTRY: $crate::driver::DriverEntryFn =
            __ndis_miniport_driver::driver_entry;
    };
}
