//! Miniport driver registration: `DriverEntry`, `NdisMRegisterMiniportDriver`, unload.
//!
//! A driver declares itself with [`miniport_driver!`](crate::miniport_driver), which emits the
//! image's `DriverEntry` and a matching unload routine. The characteristics table is filled here,
//! with one monomorphized trampoline per handler.

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

use ndis_sys as sys;

use crate::miniport::{self, AdapterInfo, Init, Miniport};
use crate::pnp::{InterruptRequest, MessageAffinity, ResourceFilter};
use crate::{NdisVersion, NdisVersions, Status};

/// The part of a miniport driver that exists before any adapter.
///
/// `initialize` decides whether a device is one the driver drives. Here it refuses any device
/// whose PCI vendor is not 8086 (the emulator's default device is 1B36:0005), and the emulator
/// shows NDIS getting that status back:
///
/// ```
/// use ndis::driver::MiniportDriver;
/// use ndis::hw::ConfigSpace;
/// use ndis::irql::{DispatchOrBelow, Passive};
/// use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
/// use ndis::nbl::{Returned, SendLists};
/// use ndis::{NdisVersion, NdisVersions, Status};
/// use ndis_emu::{Config, Emulator, InterruptResources};
/// use ndis_sys as sys;
///
/// #[global_allocator]
/// static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;
///
/// struct Picky;
/// struct Adapter;
///
/// impl Miniport for Adapter {
///     fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, _: &mut DispatchOrBelow<'_>) {
///         lists.each(|_| Status::SUCCESS);
///     }
///     fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &mut DispatchOrBelow<'_>) {}
///     fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
///         Quiesced::device_stopped()
///     }
/// }
///
/// impl MiniportDriver for Picky {
///     const NDIS_VERSIONS: NdisVersions = NdisVersions::new(NdisVersion::V6_20, NdisVersion::V6_89);
///     const DRIVER_VERSION: (u8, u8) = (1, 0);
///     type Adapter = Adapter;
///     fn initialize(&'static self, init: &mut Init<'_>) -> Result<(Adapter, AdapterInfo), Status> {
///         if init.pci_config().config_u16(0) != Some(0x8086) {
///             return Err(Status::ADAPTER_NOT_FOUND);
///         }
///         Ok((Adapter, AdapterInfo::ethernet([2, 0, 0, 0, 0, 2], 1500, 1_000_000_000, true)))
///     }
/// }
///
/// ndis::miniport_driver!(Picky = Picky);
///
/// fn main() {
///     let emu = Emulator::new(Config::default());
///     assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
///     assert_eq!(
///         emu.add_adapter(InterruptResources::None),
///         Err(Status::ADAPTER_NOT_FOUND.0)
///     );
///     emu.unload();
/// }
/// ```
pub trait MiniportDriver: Sync + 'static {
    /// The NDIS versions the driver supports. `DriverEntry` registers the newest one the running
    /// NDIS also knows (with the characteristics revision it implies), and fails with
    /// `NDIS_STATUS_BAD_VERSION` on an NDIS older than `min`, rather than register for a
    /// version whose rules it does not follow. The version chosen is
    /// [`Init::ndis_version`](crate::miniport::Init::ndis_version) in initialize and
    /// `AdapterInfo::ndis_version` after it.
    const NDIS_VERSIONS: NdisVersions;
    /// Reported to NDIS as `MajorDriverVersion.MinorDriverVersion`.
    const DRIVER_VERSION: (u8, u8);

    /// One started adapter.
    type Adapter: Miniport;

    /// `MiniportInitializeEx`, at PASSIVE_LEVEL, once per adapter NDIS starts: find and start
    /// the device, and describe it. On error the framework releases every NDIS object made so
    /// far (interrupts, shared memory, DMA, mappings: see [`crate::resources`]) once the
    /// driver's partial state is dropped, and NDIS sees the status.
    fn initialize(
        &'static self,
        init: &mut Init<'_>,
    ) -> Result<(Self::Adapter, AdapterInfo), Status>;

    /// Registers the PnP handlers (`MiniportSetOptions`, then `MiniportAddDevice`,
    /// `MiniportFilterResourceRequirements`, `MiniportStartDevice`, `MiniportRemoveDevice`;
    /// see [`crate::pnp`]) so that [`interrupt_request`](Self::interrupt_request) decides the
    /// message interrupts PnP is asked for. False, the default, registers none of them and
    /// leaves the interrupt resources to the bus and the INF.
    const FILTER_RESOURCES: bool = false;

    /// How many message interrupts to ask for, and where each runs, before the adapter starts
    /// (PASSIVE_LEVEL, device not yet mapped). Called only with `FILTER_RESOURCES`; possibly
    /// more than once, and again while an adapter runs (the new requirements apply from the
    /// next start). The default asks for what the bus offered, where the platform puts it.
    fn interrupt_request(&'static self, filter: &ResourceFilter<'_>) -> InterruptRequest {
        match filter.offered_messages() {
            0 => InterruptRequest::line(),
            n => InterruptRequest::messages(n, MessageAffinity::Platform),
        }
    }
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

/// Builds the characteristics for `T` registering as `version`: header revision/size from the
/// version, every required handler set to a trampoline, the optional ones registered as `T`
/// declares (`SetOptions` with `FILTER_RESOURCES`, hang check and reset with
/// `CHECK_FOR_HANG_SECONDS`), direct and synchronous OIDs left empty.
pub fn characteristics<T: MiniportDriver>(
    unload: unsafe extern "win64-unwind" fn(sys::PDRIVER_OBJECT),
    version: NdisVersion,
) -> sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS {
    let (revision, size) = version.driver_characteristics_revision();
    sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_DRIVER_CHARACTERISTICS,
            Revision: revision,
            Size: size,
        },
        MajorNdisVersion: version.major,
        MinorNdisVersion: version.minor,
        MajorDriverVersion: T::DRIVER_VERSION.0,
        MinorDriverVersion: T::DRIVER_VERSION.1,
        Flags: 0,
        SetOptionsHandler: if T::FILTER_RESOURCES {
            Some(crate::pnp::set_options::<T>)
        } else {
            None
        },
        InitializeHandlerEx: Some(miniport::initialize::<T>),
        HaltHandlerEx: Some(miniport::halt::<T::Adapter>),
        UnloadHandler: Some(unload),
        PauseHandler: Some(miniport::pause::<T::Adapter>),
        RestartHandler: Some(miniport::restart::<T::Adapter>),
        OidRequestHandler: Some(miniport::oid_request::<T::Adapter>),
        SendNetBufferListsHandler: Some(miniport::send::<T::Adapter>),
        ReturnNetBufferListsHandler: Some(miniport::return_nbls::<T::Adapter>),
        CancelSendHandler: Some(miniport::cancel_send),
        // Registered together or not at all (NDIS requires a reset handler with CheckForHang).
        CheckForHangHandlerEx: if T::Adapter::CHECK_FOR_HANG_SECONDS.is_some() {
            Some(miniport::check_for_hang::<T::Adapter>)
        } else {
            None
        },
        ResetHandlerEx: if T::Adapter::CHECK_FOR_HANG_SECONDS.is_some() {
            Some(miniport::reset::<T::Adapter>)
        } else {
            None
        },
        DevicePnPEventNotifyHandler: Some(miniport::pnp_event::<T::Adapter>),
        ShutdownHandlerEx: Some(miniport::shutdown::<T::Adapter>),
        CancelOidRequestHandler: Some(miniport::cancel_oid::<T::Adapter>),
        DirectOidRequestHandler: None,
        CancelDirectOidRequestHandler: None,
        SynchronousOidRequestHandler: None,
    }
}

/// The body of the `DriverEntry` that [`miniport_driver!`](crate::miniport_driver) emits: picks
/// the NDIS version ([`NdisVersions::negotiate`] on `NdisGetVersion`), and registers; an NDIS
/// older than the driver's minimum fails it with `NDIS_STATUS_BAD_VERSION`, before anything is
/// registered.
///
/// # Safety
/// Called once, at PASSIVE_LEVEL, with the driver object and registry path the I/O manager passed
/// to `DriverEntry`; `unload` must be the routine emitted for the same `slot`.
pub unsafe fn driver_entry<T: MiniportDriver>(
    driver: &'static T,
    slot: &DriverSlot,
    driver_object: sys::PDRIVER_OBJECT,
    registry_path: *const sys::UNICODE_STRING,
    unload: unsafe extern "win64-unwind" fn(sys::PDRIVER_OBJECT),
) -> sys::NTSTATUS {
    let Some(version) = crate::version::registered(T::NDIS_VERSIONS) else {
        return sys::NDIS_STATUS_BAD_VERSION;
    };
    let chars = characteristics::<T>(unload, version);
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
pub unsafe fn driver_unload(slot: &DriverSlot) {
    let handle = slot.0.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !handle.is_null() {
        // SAFETY: `handle` came from a successful NdisMRegisterMiniportDriver and is deregistered
        // once (the swap above takes it out of the slot).
        unsafe { sys::NdisMDeregisterMiniportDriver(handle) }
    }
}

/// The type of `DriverEntry`.
pub type DriverEntryFn = unsafe extern "win64-unwind" fn(
    sys::PDRIVER_OBJECT,
    *const sys::UNICODE_STRING,
) -> sys::NTSTATUS;

/// Declares the image's miniport driver: emits `DriverEntry` (registering `$driver` with NDIS),
/// the unload routine, and `pub const DRIVER_ENTRY` naming the entry point (host tests hand it to
/// the emulator). The only place a driver names the entry point; it writes no `unsafe`.
///
/// ```
/// use ndis::driver::MiniportDriver;
/// use ndis::irql::{DispatchOrBelow, Passive};
/// use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
/// use ndis::nbl::{Returned, SendLists};
/// use ndis::{NdisVersion, NdisVersions, Status};
///
/// struct MyNic;
/// struct MyAdapter;
///
/// impl Miniport for MyAdapter {
///     fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, _: &mut DispatchOrBelow<'_>) {
///         lists.each(|_| Status::SUCCESS);
///     }
///     fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &mut DispatchOrBelow<'_>) {}
///     fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
///         Quiesced::device_stopped() // no device
///     }
/// }
///
/// impl MiniportDriver for MyNic {
///     const NDIS_VERSIONS: NdisVersions = NdisVersions::new(NdisVersion::V6_20, NdisVersion::V6_89);
///     const DRIVER_VERSION: (u8, u8) = (1, 0);
///     type Adapter = MyAdapter;
///     fn initialize(&'static self, _: &mut Init<'_>) -> Result<(MyAdapter, AdapterInfo), Status> {
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
        // A kernel image needs its link configured by the crate's build script
        // (`km_build::configure_driver_link`, which sets this variable for a Windows target).
        // Without one, rust-lld would fail on `msvcrt.lib`; this says what to add instead.
        #[cfg(windows)]
        const _: () = ::core::assert!(
            ::core::option_env!("NDIS_DRIVER_LINK_CONFIGURED").is_some(),
            "ndis: this driver crate does not configure the kernel link, so rust-lld would fail \
             on `msvcrt.lib`. Add build.rs next to Cargo.toml containing \
             `fn main() {{ km_build::configure_driver_link(); }}`, and to Cargo.toml: \
             [build-dependencies] km-build = \"0.1\" (or km-build.workspace = true). \
             See docs/build.md."
        );

        #[doc(hidden)]
        mod __ndis_miniport_driver {
            #[allow(unused_imports)]
            use super::*;

            // km-rt (panic handler, `_fltused`): linked whenever the crate depends on it, which
            // km-build checks and reports with `cfg(ndis_km_rt)`; the driver's own
            // `use km_rt as _;` is then not what decides whether the image has a panic handler.
            #[cfg(all(windows, ndis_km_rt))]
            use ::km_rt as _;

            static DRIVER: $driver = $value;

            /// The driver handle between DriverEntry and unload. One per image on Windows; one
            /// per thread on a host, where each test thread runs its own emulated machine.
            fn with_slot<R>(f: impl FnOnce(&$crate::driver::DriverSlot) -> R) -> R {
                #[cfg(windows)]
                {
                    static SLOT: $crate::driver::DriverSlot = $crate::driver::DriverSlot::new();
                    f(&SLOT)
                }
                #[cfg(not(windows))]
                {
                    ::std::thread_local! {
                        static SLOT: $crate::driver::DriverSlot =
                            const { $crate::driver::DriverSlot::new() };
                    }
                    SLOT.with(f)
                }
            }

            unsafe extern "win64-unwind" fn unload(_driver_object: $crate::sys::PDRIVER_OBJECT) {
                // SAFETY: NDIS calls the unload handler once, at PASSIVE_LEVEL, after halting
                // every adapter; the slot is the one driver_entry filled.
                with_slot(|slot| unsafe { $crate::driver::driver_unload(slot) })
            }

            /// The image entry point (`/ENTRY:DriverEntry`). Exported only from the Windows
            /// image: host tests reach it through `DRIVER_ENTRY`, and a test binary may hold
            /// several drivers.
            #[cfg_attr(windows, unsafe(export_name = "DriverEntry"))]
            pub unsafe extern "win64-unwind" fn driver_entry(
                driver_object: $crate::sys::PDRIVER_OBJECT,
                registry_path: *const $crate::sys::UNICODE_STRING,
            ) -> $crate::sys::NTSTATUS {
                // SAFETY: the I/O manager calls DriverEntry once at PASSIVE_LEVEL with valid
                // pointers; `unload` pairs with the slot.
                with_slot(|slot| unsafe {
                    $crate::driver::driver_entry(
                        &DRIVER,
                        slot,
                        driver_object,
                        registry_path,
                        unload,
                    )
                })
            }
        }

        /// This driver's `DriverEntry`.
        pub const DRIVER_ENTRY: $crate::driver::DriverEntryFn =
            __ndis_miniport_driver::driver_entry;
    };
}
