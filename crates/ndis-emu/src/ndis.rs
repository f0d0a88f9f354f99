//! The emulated `ndis.sys`: miniport driver registration, adapters and their attributes, and the
//! interrupt API (register, ISR and DPC dispatch, DPC queueing, synchronize, deregister).
//!
//! Interrupt registration goes through the emulated `IoConnectInterruptEx` (message-based with a
//! line fallback), with the emulator's own service routines that call the miniport's handlers and
//! queue the DPCs its outputs ask for — what ndis.sys does on Windows.

use ndis_sys as sys;

use crate::bugcheck::{self, rule};
use crate::io;
use crate::machine::{self, Callback, DpcRef, DpcSlot, Machine, State, on_cpu};
use crate::trace::Event;

const DRIVER_HANDLE: usize = 0x4E44_4400_0001;
const ADAPTER_TAG: usize = 0x4E44_4100_0000;
const INTERRUPT_TAG: usize = 0x4E44_4900_0000;
const TAG_MASK: usize = !0xFF_FFFF;

#[derive(Default)]
pub(crate) struct NdisState {
    pub driver: Option<DriverRegistration>,
    pub driver_object: Option<Box<[u64; 42]>>,
    pub adapters: Vec<Adapter>,
    pub interrupts: Vec<Interrupt>,
}

pub(crate) struct DriverRegistration {
    pub chars: sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
    pub context: usize,
    pub live: bool,
    pub pnp: Option<sys::NDIS_MINIPORT_PNP_CHARACTERISTICS>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterState {
    Initializing,
    Paused,
    /// `MiniportRestart` returned NDIS_STATUS_PENDING; NdisMRestartComplete ends it.
    Restarting,
    Running,
    /// `MiniportPause` returned NDIS_STATUS_PENDING; NdisMPauseComplete ends it.
    Pausing,
    Halted,
    /// Initialize failed; NDIS forgot the adapter.
    Failed,
}

pub(crate) struct Adapter {
    pub device: usize,
    pub state: AdapterState,
    /// MiniportAdapterContext from the registration attributes.
    pub context: Option<usize>,
    /// AttributeFlags from the registration attributes.
    pub attribute_flags: u32,
    /// The scatter/gather DMA registration, if any.
    pub dma: Option<usize>,
    pub general_set: bool,
    /// Checksum offload, once the offload attributes are set.
    pub offload: Option<crate::offload::OffloadState>,
    pub interrupt: Option<usize>,
    pub hang: HangCheck,
    /// The general attributes carried power-management capabilities.
    pub pm_capabilities: bool,
    /// `NDIS_DEVICE_POWER_STATE` NDIS last set (D0 from initialize).
    pub device_state: u32,
    pub asleep: crate::power::Asleep,
    /// The protocols bound (at the first successful restart): TCP/IP's packet filter is set.
    pub bound: bool,
    /// What the driver answered TCP/IP's packet filter at bind.
    pub bind_filter: Option<sys::NDIS_STATUS>,
    pub init_params: Box<sys::NDIS_MINIPORT_INIT_PARAMETERS>,
    /// Backing store of the CM_PARTIAL_RESOURCE_LIST in `init_params`.
    pub resources: Box<[u32]>,
    /// The PnP side, when the driver registered PnP handlers.
    pub pnp: Option<crate::pnp::AdapterPnp>,
    /// The driver's PnP and lifecycle handlers NDIS called for this adapter, in order.
    pub lifecycle: Vec<&'static str>,
}

/// `MiniportCheckForHangEx` on the virtual clock, and the resets it asks for.
#[derive(Default)]
pub(crate) struct HangCheck {
    /// Period in 100 ns units (0: the driver registered no CheckForHang handler).
    pub period: u64,
    /// Virtual time of the next check.
    pub due: u64,
    pub checks: u64,
    pub reset: ResetState,
    /// Finished resets: (status, AddressingReset).
    pub resets: Vec<(sys::NDIS_STATUS, bool)>,
}

/// Where a reset stands.
#[derive(Default, Clone, Copy, PartialEq)]
pub(crate) enum ResetState {
    #[default]
    Idle,
    /// `MiniportResetEx` runs; the driver may already have called `NdisMResetComplete`
    /// (from a DPC on another processor) before it returns PENDING.
    Calling {
        completed: Option<(sys::NDIS_STATUS, bool)>,
    },
    /// It returned PENDING; `NdisMResetComplete` has not come yet.
    Pending,
}

/// NDIS calls CheckForHang every CheckForHangTimeInSeconds, 0 meaning its 2 s default; the period
/// is a multiple of 2 s (rounded up here).
pub(crate) fn hang_period_seconds(requested: u32) -> u64 {
    (requested.max(1) as u64).div_ceil(2) * 2
}

pub(crate) struct Interrupt {
    pub adapter: usize,
    pub chars: sys::NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS,
    pub context: usize,
    pub connection: usize,
    /// 0 for a line-based grant.
    pub messages: u32,
    /// Slot (message, cpu) at message * ncpus + cpu.
    pub slots: Vec<DpcSlot>,
    pub live: bool,
}

pub(crate) fn adapter_handle(a: usize) -> sys::NDIS_HANDLE {
    (ADAPTER_TAG | (a + 1)) as sys::NDIS_HANDLE
}

fn interrupt_handle(i: usize) -> sys::NDIS_HANDLE {
    (INTERRUPT_TAG | (i + 1)) as sys::NDIS_HANDLE
}

fn invalid_handle(function: &str, handle: usize, what: &str) -> ! {
    bugcheck::raise(
        bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
        [rule::INVALID_HANDLE, handle, 0, 0],
        format!("{function}: {handle:#x} is not {what} that NDIS gave this driver"),
    )
}

pub(crate) fn adapter_of_handle(st: &State, handle: sys::NDIS_HANDLE, function: &str) -> usize {
    adapter_of(st, handle, function)
}

/// Resolves a live adapter handle. Every export taking a MiniportAdapterHandle resolves it here
/// (directly or through [`check_ndis_handle`]), so the handle of an adapter NDIS forgot — halted,
/// or whose initialize failed — is caught for all of them.
fn adapter_of(st: &State, handle: sys::NDIS_HANDLE, function: &str) -> usize {
    let h = handle as usize;
    if h & TAG_MASK == ADAPTER_TAG {
        let i = (h & !TAG_MASK).wrapping_sub(1);
        if let Some(adapter) = st.ndis.adapters.get(i) {
            let (code, when) = match adapter.state {
                AdapterState::Halted => (1, "after its MiniportHaltEx returned"),
                AdapterState::Failed => (2, "after its MiniportInitializeEx failed"),
                _ => return i,
            };
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::ADAPTER_USED_AFTER_HALT, h, code, 0],
                format!(
                    "{function} called with the MiniportAdapterHandle {h:#x} of adapter {i} {when}: \
                     NDIS has forgotten the adapter and the handle is dead. Stop every timer, DPC and \
                     work item that can reach the adapter, and release its resources, before halt \
                     (or the failed initialize) returns."
                ),
            );
        }
    }
    invalid_handle(function, h, "a miniport adapter handle")
}

/// Resolves a live interrupt handle; a released one violates the NdisMDeregisterInterruptEx rule.
fn interrupt_of(st: &State, handle: sys::NDIS_HANDLE, function: &str) -> usize {
    let h = handle as usize;
    if h & TAG_MASK == INTERRUPT_TAG {
        let i = (h & !TAG_MASK).wrapping_sub(1);
        if let Some(int) = st.ndis.interrupts.get(i) {
            if !int.live {
                bugcheck::raise(
                    bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [rule::INTERRUPT_USED_AFTER_DEREGISTER, h, 0, 0],
                    format!(
                        "{function} called with interrupt handle {h:#x} after NdisMDeregisterInterruptEx \
                         returned for it. After deregistration the handle is dead: stop DPC queueing \
                         and synchronization before deregistering."
                    ),
                );
            }
            return i;
        }
    }
    invalid_handle(function, h, "an interrupt handle")
}

pub(crate) fn header_bugcheck(
    function: &str,
    what: &str,
    header: sys::NDIS_OBJECT_HEADER,
    expected: &str,
) -> ! {
    bugcheck::raise(
        bugcheck::BUGCODE_NDIS_DRIVER,
        [
            bugcheck::NDIS_BUGCHECK_INVALID_OBJECT_HEADER,
            header.Type as usize,
            header.Revision as usize,
            header.Size as usize,
        ],
        format!(
            "{function}: invalid NDIS_OBJECT_HEADER on {what}: Type {:#x}, Revision {}, Size {}; expected {expected}",
            header.Type, header.Revision, header.Size
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Driver registration

pub(crate) unsafe fn ndis_m_register_miniport_driver(
    driver_object: sys::PDRIVER_OBJECT,
    _registry_path: *const sys::UNICODE_STRING,
    driver_context: sys::NDIS_HANDLE,
    chars: *const sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
    out_handle: *mut sys::NDIS_HANDLE,
) -> sys::NDIS_STATUS {
    let m = machine::current();
    let set_options = {
        let mut st = m.st();
        st.require_irql(sys::PASSIVE_LEVEL, "NdisMRegisterMiniportDriver");
        if !st.in_callback(|c| c == Callback::DriverEntry) {
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::CALL_CONTEXT, 0, 0, 0],
                "NdisMRegisterMiniportDriver called outside DriverEntry",
            );
        }
        let known_object = st
            .ndis
            .driver_object
            .as_ref()
            .is_some_and(|o| std::ptr::eq(o.as_ptr().cast(), driver_object));
        if !known_object {
            return sys::NDIS_STATUS_INVALID_PARAMETER;
        }
        if st.ndis.driver.as_ref().is_some_and(|d| d.live) {
            return sys::NDIS_STATUS_FAILURE;
        }
        // SAFETY: the caller passes a readable characteristics block (at least its header).
        let header = unsafe { (*chars).Header };
        if header.Type != sys::NDIS_OBJECT_TYPE_MINIPORT_DRIVER_CHARACTERISTICS {
            return sys::NDIS_STATUS_BAD_CHARACTERISTICS;
        }
        // SAFETY: the version bytes follow the header.
        let (major, minor) = unsafe { ((*chars).MajorNdisVersion, (*chars).MinorNdisVersion) };
        if let Err(status) =
            validate_driver_version(major, minor, header, st.config.ndis_runtime_version)
        {
            return status;
        }
        // Copy what the revision covers; later fields stay empty.
        let mut copy: sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS =
            // SAFETY: all-zero is a valid value (null handlers, zero integers).
            unsafe { core::mem::zeroed() };
        // SAFETY: `header.Size` bytes are readable (the caller's promise for this revision) and
        // no more than size_of::<..>() (checked by validate_driver_version).
        unsafe {
            core::ptr::copy_nonoverlapping(
                chars.cast::<u8>(),
                (&raw mut copy).cast::<u8>(),
                header.Size as usize,
            )
        };
        let c = &copy;
        let required = [
            ("InitializeHandlerEx", c.InitializeHandlerEx.is_some()),
            ("HaltHandlerEx", c.HaltHandlerEx.is_some()),
            ("UnloadHandler", c.UnloadHandler.is_some()),
            ("PauseHandler", c.PauseHandler.is_some()),
            ("RestartHandler", c.RestartHandler.is_some()),
            ("OidRequestHandler", c.OidRequestHandler.is_some()),
            (
                "SendNetBufferListsHandler",
                c.SendNetBufferListsHandler.is_some(),
            ),
            (
                "ReturnNetBufferListsHandler",
                c.ReturnNetBufferListsHandler.is_some(),
            ),
            ("CancelSendHandler", c.CancelSendHandler.is_some()),
            (
                "DevicePnPEventNotifyHandler",
                c.DevicePnPEventNotifyHandler.is_some(),
            ),
            ("ShutdownHandlerEx", c.ShutdownHandlerEx.is_some()),
            (
                "CancelOidRequestHandler",
                c.CancelOidRequestHandler.is_some(),
            ),
        ];
        if required.iter().any(|(_, present)| !present)
            || (c.CheckForHangHandlerEx.is_some() && c.ResetHandlerEx.is_none())
            || (c.DirectOidRequestHandler.is_some() != c.CancelDirectOidRequestHandler.is_some())
        {
            return sys::NDIS_STATUS_BAD_CHARACTERISTICS;
        }
        if st.fallible("NdisMRegisterMiniportDriver") {
            return sys::NDIS_STATUS_RESOURCES;
        }
        st.ndis.driver = Some(DriverRegistration {
            chars: copy,
            context: driver_context as usize,
            live: true,
            pnp: None,
        });
        st.event(|| Event::DriverRegistered {
            major,
            minor,
            revision: header.Revision,
        });
        // SAFETY: the caller's out-pointer.
        unsafe { out_handle.write(DRIVER_HANDLE as sys::NDIS_HANDLE) };
        copy.SetOptionsHandler
    };
    if let Some(set_options) = set_options {
        // Read first: the state must not stay borrowed while the driver runs.
        let cpu = m.st().cpu;
        let status = on_cpu(&m, cpu, sys::PASSIVE_LEVEL, Callback::SetOptions, || {
            // SAFETY: the driver's handler, called as NDIS does, inside registration.
            unsafe { set_options(DRIVER_HANDLE as sys::NDIS_HANDLE, driver_context) }
        });
        if status != sys::NDIS_STATUS_SUCCESS {
            let mut st = m.st();
            if let Some(d) = &mut st.ndis.driver {
                d.live = false;
            }
            return status;
        }
    }
    sys::NDIS_STATUS_SUCCESS
}

/// The minor NDIS version the driver registered with (0 before registration).
fn registered_minor(st: &State) -> u8 {
    st.ndis
        .driver
        .as_ref()
        .map_or(0, |d| d.chars.MinorNdisVersion)
}

/// The revision and size a declared NDIS version may register with, on an NDIS of version
/// `runtime` (`NdisGetVersion`): a version it does not know, or newer than itself, is
/// NDIS_STATUS_BAD_VERSION; a revision the version does not have (revision 3 before 6.80) is
/// NDIS_STATUS_BAD_CHARACTERISTICS (see docs/emulator.md).
fn validate_driver_version(
    major: u8,
    minor: u8,
    header: sys::NDIS_OBJECT_HEADER,
    runtime: u32,
) -> Result<(), sys::NDIS_STATUS> {
    const MINORS: &[u8] = &[
        0, 1, 20, 30, 40, 50, 51, 60, 70, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89,
    ];
    if major != 6 || !MINORS.contains(&minor) {
        return Err(sys::NDIS_STATUS_BAD_VERSION);
    }
    if ((major as u32) << 16 | minor as u32) > runtime {
        return Err(sys::NDIS_STATUS_BAD_VERSION);
    }
    let (min_revision, size) = match header.Revision {
        sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_1 => (
            0,
            sys::NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_1,
        ),
        sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2 => (
            1,
            sys::NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2,
        ),
        sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3 => (
            80,
            sys::NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3,
        ),
        _ => return Err(sys::NDIS_STATUS_BAD_CHARACTERISTICS),
    };
    if minor < min_revision || header.Size != size {
        return Err(sys::NDIS_STATUS_BAD_CHARACTERISTICS);
    }
    Ok(())
}

pub(crate) unsafe fn ndis_m_deregister_miniport_driver(handle: sys::NDIS_HANDLE) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisMDeregisterMiniportDriver");
    match &mut st.ndis.driver {
        Some(d) if d.live && handle as usize == DRIVER_HANDLE => d.live = false,
        _ => invalid_handle(
            "NdisMDeregisterMiniportDriver",
            handle as usize,
            "the registered driver handle",
        ),
    }
    st.event(|| Event::DriverDeregistered);
}

pub(crate) unsafe fn ndis_set_optional_handlers(
    handle: sys::NDIS_HANDLE,
    handlers: *mut sys::NDIS_DRIVER_OPTIONAL_HANDLERS,
) -> sys::NDIS_STATUS {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisSetOptionalHandlers");
    if handle as usize != DRIVER_HANDLE || !st.in_callback(|c| c == Callback::SetOptions) {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::CALL_CONTEXT, handle as usize, 0, 0],
            "NdisSetOptionalHandlers must be called from MiniportSetOptions with the driver handle it received",
        );
    }
    // SAFETY: the caller passes a readable union; the header selects the member.
    let header = unsafe { (*handlers).Header };
    if header.Type == sys::NDIS_OBJECT_TYPE_MINIPORT_PNP_CHARACTERISTICS {
        if header.Revision != sys::NDIS_MINIPORT_PNP_CHARACTERISTICS_REVISION_1
            || header.Size < sys::NDIS_SIZEOF_MINIPORT_PNP_CHARACTERISTICS_REVISION_1
        {
            header_bugcheck(
                "NdisSetOptionalHandlers",
                "PnP characteristics",
                header,
                "0x92 / 1 / 44",
            );
        }
        // SAFETY: the header says this is the PnP characteristics member.
        let pnp = unsafe { (*handlers).MiniportPnpCharacteristics };
        if let Some(d) = &mut st.ndis.driver {
            d.pnp = Some(pnp);
        }
        return sys::NDIS_STATUS_SUCCESS;
    }
    sys::NDIS_STATUS_NOT_SUPPORTED
}

// ---------------------------------------------------------------------------------------------
// Adapter attributes

pub(crate) unsafe fn ndis_m_set_miniport_attributes(
    handle: sys::NDIS_HANDLE,
    attributes: *mut sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES,
) -> sys::NDIS_STATUS {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisMSetMiniportAttributes");
    let a = adapter_of(&st, handle, "NdisMSetMiniportAttributes");
    if st.in_callback(|c| c == Callback::AddDevice(a)) {
        // SAFETY: the caller passes a readable attribute union; the header selects the member.
        let header = unsafe { (*attributes).Header };
        if header.Type != sys::NDIS_OBJECT_TYPE_MINIPORT_ADD_DEVICE_REGISTRATION_ATTRIBUTES {
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::CALL_CONTEXT, handle as usize, header.Type as usize, 0],
                format!(
                    "NdisMSetMiniportAttributes from MiniportAddDevice of adapter {a} with attributes                      of type {:#x}: only the add-device registration attributes (0xA4) belong there",
                    header.Type
                ),
            );
        }
        if st.fallible("NdisMSetMiniportAttributes") {
            return sys::NDIS_STATUS_RESOURCES;
        }
        return crate::pnp::add_device_attributes(&mut st, a, attributes);
    }
    if !st.in_callback(|c| c == Callback::Initialize(a)) {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::CALL_CONTEXT, handle as usize, 0, 0],
            format!(
                "NdisMSetMiniportAttributes for adapter {a} called outside its MiniportInitializeEx"
            ),
        );
    }
    // SAFETY: the caller passes a readable attribute union; the header selects the member.
    let header = unsafe { (*attributes).Header };
    let order = |st: &State, what: &str| -> ! {
        let _ = st;
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::ATTRIBUTE_ORDER, header.Type as usize, 0, 0],
            format!("NdisMSetMiniportAttributes: {what}"),
        )
    };
    if st.fallible("NdisMSetMiniportAttributes") {
        return sys::NDIS_STATUS_RESOURCES;
    }
    match header.Type {
        sys::NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES => {
            // Revision 2 exists from NDIS 6.30: a driver registered for less, or an older NDIS,
            // does not know it.
            let newest = if registered_minor(&st) >= 30 { 2 } else { 1 };
            if !(1..=newest).contains(&header.Revision) {
                return sys::NDIS_STATUS_BAD_VERSION;
            }
            if header.Size < sys::NDIS_SIZEOF_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_1 {
                header_bugcheck(
                    "NdisMSetMiniportAttributes",
                    "registration attributes",
                    header,
                    "0x9E / 1-2 / 28",
                );
            }
            if st.ndis.adapters[a].context.is_some() {
                order(&st, "registration attributes set twice");
            }
            // SAFETY: the header says this is the registration member.
            let reg = unsafe { (*attributes).RegistrationAttributes };
            st.ndis.adapters[a].context = Some(reg.MiniportAdapterContext as usize);
            st.ndis.adapters[a].attribute_flags = reg.AttributeFlags;
            let registered = st
                .ndis
                .driver
                .as_ref()
                .is_some_and(|d| d.chars.CheckForHangHandlerEx.is_some());
            if registered {
                let period = hang_period_seconds(reg.CheckForHangTimeInSeconds) * 10_000_000;
                let now = st.sync.now();
                st.ndis.adapters[a].hang.period = period;
                st.ndis.adapters[a].hang.due = now + period;
            }
        }
        sys::NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES => {
            let min = match header.Revision {
                1 => sys::NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_1,
                // Revision 2 is NDIS 6.20's.
                2 if registered_minor(&st) >= 20 => {
                    sys::NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2
                }
                _ => return sys::NDIS_STATUS_BAD_VERSION,
            };
            if header.Size < min {
                header_bugcheck(
                    "NdisMSetMiniportAttributes",
                    "general attributes",
                    header,
                    "0x9F / 1 / 216 or 0x9F / 2 / 224",
                );
            }
            if st.ndis.adapters[a].context.is_none() {
                order(
                    &st,
                    "general attributes set before the registration attributes (those come first)",
                );
            }
            st.ndis.adapters[a].general_set = true;
            // SAFETY: the header says this is the general member.
            let g = unsafe { (*attributes).GeneralAttributes };
            st.ndis.adapters[a].pm_capabilities = pm_capabilities(&st, &g);
            let minor = st
                .ndis
                .driver
                .as_ref()
                .map_or(0, |d| d.chars.MinorNdisVersion);
            // SAFETY: null or the driver's capabilities, live across the call.
            match unsafe { crate::rss::parse_capabilities(g.RecvScaleCapabilities.cast(), minor) } {
                Ok(caps) => st.rss.adapters.entry(a).or_default().caps = caps,
                Err(why) => {
                    drop(st);
                    bugcheck::raise(
                        bugcheck::BUGCODE_NDIS_DRIVER,
                        [bugcheck::NDIS_BUGCHECK_INVALID_OBJECT_HEADER, 0, 0, 0],
                        format!("NdisMSetMiniportAttributes: {why}"),
                    );
                }
            }
        }
        _ => {
            if !st.ndis.adapters[a].general_set {
                order(
                    &st,
                    "other attributes set before the general attributes (order: registration, general, others)",
                );
            }
            if header.Type == sys::NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES {
                drop(st);
                // SAFETY: the header says this is the offload member.
                let o = unsafe { (*attributes).OffloadAttributes };
                let state = offload_attributes(header, &o);
                machine::current().st().ndis.adapters[a].offload = Some(state);
            }
        }
    }
    sys::NDIS_STATUS_SUCCESS
}

/// Whether the general attributes report power management: `NDIS_PM_CAPABILITIES` from NDIS
/// 6.20 (its header checked as NDIS checks it), `NDIS_PNP_CAPABILITIES` before.
fn pm_capabilities(st: &State, g: &sys::NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES) -> bool {
    let registered = st
        .ndis
        .driver
        .as_ref()
        .map_or(0, |d| d.chars.MinorNdisVersion);
    if registered < 20 {
        return !g.PowerManagementCapabilities.is_null();
    }
    let p = g
        .PowerManagementCapabilitiesEx
        .cast::<sys::NDIS_PM_CAPABILITIES>();
    if p.is_null() {
        return false;
    }
    // SAFETY: the caller's capabilities, read up to the header first.
    let h = unsafe { (*p).Header };
    let ok = h.Type == sys::NDIS_OBJECT_TYPE_DEFAULT
        && match h.Revision {
            sys::NDIS_PM_CAPABILITIES_REVISION_1 => {
                h.Size >= sys::NDIS_SIZEOF_NDIS_PM_CAPABILITIES_REVISION_1
            }
            sys::NDIS_PM_CAPABILITIES_REVISION_2 => {
                h.Size >= sys::NDIS_SIZEOF_NDIS_PM_CAPABILITIES_REVISION_2 && registered >= 30
            }
            _ => false,
        };
    if !ok {
        header_bugcheck(
            "NdisMSetMiniportAttributes",
            "power-management capabilities",
            h,
            "0x80 (default) / 1 / 52, or 2 / 60 from NDIS 6.30",
        );
    }
    true
}

/// The checksum offload the attributes describe; a bad header of the attributes or of either
/// `NDIS_OFFLOAD` they point to is the bug check NDIS raises for a bad object header.
fn offload_attributes(
    header: sys::NDIS_OBJECT_HEADER,
    o: &sys::NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES,
) -> crate::offload::OffloadState {
    if header.Revision < sys::NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1
        || header.Size < sys::NDIS_SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1
    {
        header_bugcheck(
            "NdisMSetMiniportAttributes",
            "offload attributes",
            header,
            "0xA0 / 1 / 40",
        );
    }
    let read = |p: *mut sys::NDIS_OFFLOAD, what: &str| {
        if p.is_null() {
            bugcheck::raise(
                bugcheck::BUGCODE_NDIS_DRIVER,
                [bugcheck::NDIS_BUGCHECK_INVALID_OBJECT_HEADER, 0, 0, 0],
                format!("NdisMSetMiniportAttributes: offload attributes without {what}"),
            );
        }
        // SAFETY: a non-null NDIS_OFFLOAD of the caller's; its header's Size is checked before
        // more than the header is read.
        let size =
            usize::from(unsafe { (*p).Header.Size }).min(core::mem::size_of::<sys::NDIS_OFFLOAD>());
        // SAFETY: as above, `size` bytes at most the structure's.
        let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), size) };
        if !crate::offload::offload_header_ok(bytes) {
            // SAFETY: as above.
            let h = unsafe { (*p).Header };
            header_bugcheck("NdisMSetMiniportAttributes", what, h, "0xA7 / 1+ / 112+");
        }
        (
            crate::offload::ChecksumTasks::from_offload(bytes),
            crate::offload::LargeSendTasks::from_offload(bytes),
        )
    };
    let (hardware, hardware_lso) =
        read(o.HardwareOffloadCapabilities, "HardwareOffloadCapabilities");
    let (current, current_lso) = read(o.DefaultOffloadConfiguration, "DefaultOffloadConfiguration");
    if !current.within(&hardware) || !current_lso.within(&hardware_lso) {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::OFFLOAD, 0, 0, 0],
            "NdisMSetMiniportAttributes: the default offload configuration enables a task the hardware capabilities do not have",
        );
    }
    crate::offload::OffloadState {
        hardware,
        current,
        hardware_lso,
        current_lso,
        indications: 0,
        encapsulation: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Interrupts

pub(crate) unsafe fn ndis_m_register_interrupt_ex(
    adapter_handle: sys::NDIS_HANDLE,
    interrupt_context: sys::NDIS_HANDLE,
    chars: *mut sys::NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS,
    out_handle: *mut sys::NDIS_HANDLE,
) -> sys::NDIS_STATUS {
    let m = machine::current();
    machine::preempt(&m);
    let status = {
        let mut st = m.st();
        st.require_irql(sys::PASSIVE_LEVEL, "NdisMRegisterInterruptEx");
        let a = adapter_of(&st, adapter_handle, "NdisMRegisterInterruptEx");
        if !st.in_callback(|c| c == Callback::Initialize(a)) {
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::CALL_CONTEXT, adapter_handle as usize, 0, 0],
                format!(
                    "NdisMRegisterInterruptEx for adapter {a} called outside its MiniportInitializeEx"
                ),
            );
        }
        if st.ndis.adapters[a].context.is_none() {
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::ATTRIBUTE_ORDER, adapter_handle as usize, 0, 0],
                "NdisMRegisterInterruptEx called before the registration attributes were set \
                 (NdisMSetMiniportAttributes with the registration attributes comes first)",
            );
        }
        // SAFETY: the caller passes a writable characteristics block.
        let c = unsafe { &mut *chars };
        if c.Header.Type != sys::NDIS_OBJECT_TYPE_MINIPORT_INTERRUPT
            || c.Header.Revision != sys::NDIS_MINIPORT_INTERRUPT_REVISION_1
            || c.Header.Size < sys::NDIS_SIZEOF_MINIPORT_INTERRUPT_CHARACTERISTICS_REVISION_1
        {
            header_bugcheck(
                "NdisMRegisterInterruptEx",
                "interrupt characteristics",
                c.Header,
                "0x84 / 1 / 96",
            );
        }
        register_interrupt(&mut st, a, interrupt_context as usize, c, out_handle)
    };
    // The ISR may run before registration returns.
    machine::preempt(&m);
    status
}

fn register_interrupt(
    st: &mut State,
    a: usize,
    context: usize,
    c: &mut sys::NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS,
    out_handle: *mut sys::NDIS_HANDLE,
) -> sys::NDIS_STATUS {
    let line_handlers = c.InterruptHandler.is_some()
        && c.InterruptDpcHandler.is_some()
        && c.DisableInterruptHandler.is_some()
        && c.EnableInterruptHandler.is_some();
    let msi = c.MsiSupported != 0;
    let msi_handlers = c.MessageInterruptHandler.is_some()
        && c.MessageInterruptDpcHandler.is_some()
        && c.DisableMessageInterruptHandler.is_some()
        && c.EnableMessageInterruptHandler.is_some();
    if !line_handlers || (msi && !msi_handlers) {
        return sys::NDIS_STATUS_INVALID_PARAMETER;
    }
    if st.ndis.adapters[a].interrupt.is_some() {
        return sys::NDIS_STATUS_FAILURE;
    }
    if st.fallible("NdisMRegisterInterruptEx") {
        return sys::NDIS_STATUS_RESOURCES;
    }
    let device = st.ndis.adapters[a].device;
    let messages_assigned = st.devices[device].message_count() > 0;
    let has_line = st.devices[device].line_vector().is_some();
    if messages_assigned && !msi {
        // Message resources must be removed in MiniportFilterResourceRequirements by a driver
        // that registers line-based.
        return sys::NDIS_STATUS_RESOURCE_CONFLICT;
    }
    if !messages_assigned && !has_line {
        return sys::NDIS_STATUS_RESOURCE_CONFLICT;
    }
    let id = st.ndis.interrupts.len();
    let request = if messages_assigned {
        io::Request::Message {
            routine: ndis_message_isr,
            fallback: Some(ndis_line_isr),
        }
    } else {
        io::Request::Line {
            routine: ndis_line_isr,
            vector: None,
        }
    };
    let shared_lock = (msi && c.MsiSyncWithAllMessages != 0).then(|| st.new_lock());
    let connected = match io::connect(st, device, request, id, shared_lock) {
        Ok(c) => c,
        Err(_) => return sys::NDIS_STATUS_RESOURCES,
    };
    let messages = if connected.version == sys::CONNECT_MESSAGE_BASED {
        st.devices[device].message_count()
    } else {
        0
    };
    let ncpus = st.cpus.len();
    st.ndis.interrupts.push(Interrupt {
        adapter: a,
        chars: *c,
        context,
        connection: connected.connection,
        messages,
        slots: vec![
            DpcSlot {
                queued: false,
                context: 0,
                requeues: 0
            };
            messages.max(1) as usize * ncpus
        ],
        live: true,
    });
    st.ndis.adapters[a].interrupt = Some(id);
    if messages > 0 {
        c.InterruptType = sys::NDIS_CONNECT_MESSAGE_BASED;
        c.MessageInfoTable = connected.table;
    } else {
        c.InterruptType = sys::NDIS_CONNECT_LINE_BASED;
        c.MessageInfoTable = core::ptr::null_mut();
    }
    // SAFETY: the caller's out-pointer.
    unsafe { out_handle.write(interrupt_handle(id)) };
    let grant = if messages > 0 {
        format!(
            "message-based, {messages} message(s){}",
            if shared_lock.is_some() {
                ", synchronized with all messages"
            } else {
                ""
            }
        )
    } else {
        "line-based".to_string()
    };
    st.event(|| Event::InterruptRegistered { adapter: a, grant });
    sys::NDIS_STATUS_SUCCESS
}

pub(crate) unsafe fn ndis_m_deregister_interrupt_ex(handle: sys::NDIS_HANDLE) {
    let m = machine::current();
    let (i, a) = {
        let st = m.st();
        st.require_irql(sys::PASSIVE_LEVEL, "NdisMDeregisterInterruptEx");
        let i = interrupt_of(&st, handle, "NdisMDeregisterInterruptEx");
        let a = st.ndis.interrupts[i].adapter;
        if !st.in_callback(|c| c == Callback::Initialize(a) || c == Callback::Halt(a)) {
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::CALL_CONTEXT, handle as usize, 0, 0],
                format!(
                    "NdisMDeregisterInterruptEx for adapter {a} called outside its MiniportInitializeEx \
                     (failure path) and MiniportHaltEx"
                ),
            );
        }
        (i, a)
    };
    // Deliver anything in flight, then drain every DPC of this interrupt (running them on their
    // processors, requeues included) before the handle dies.
    machine::deliver_pending(&m);
    loop {
        let next = {
            let mut st = m.st();
            let found = (0..st.cpus.len()).find_map(|cpu| {
                st.cpus[cpu]
                    .queue
                    .iter()
                    .position(|d| d.interrupt == i)
                    .map(|p| (cpu, p))
            });
            found.map(|(cpu, p)| (cpu, st.cpus[cpu].queue.remove(p).unwrap()))
        };
        let Some((cpu, dpc)) = next else { break };
        run_interrupt_dpc(&m, cpu, dpc);
    }
    let mut st = m.st();
    let dev = st.ndis.adapters[a].device;
    st.pending.retain(|&(device, _, _)| device != dev);
    let connection = st.ndis.interrupts[i].connection;
    io::disconnect(&mut st, connection);
    st.ndis.interrupts[i].live = false;
    st.ndis.adapters[a].interrupt = None;
    st.event(|| Event::InterruptDeregistered { adapter: a });
}

/// NDIS's line service routine: calls MiniportInterrupt and queues what its outputs ask for.
unsafe extern "win64-unwind" fn ndis_line_isr(
    _k: sys::PKINTERRUPT,
    context: sys::PVOID,
) -> sys::BOOLEAN {
    isr(context as usize, None)
}

/// NDIS's message service routine: calls MiniportMessageInterrupt for `message`.
unsafe extern "win64-unwind" fn ndis_message_isr(
    _k: sys::PKINTERRUPT,
    context: sys::PVOID,
    message: u32,
) -> sys::BOOLEAN {
    isr(context as usize, Some(message))
}

fn isr(i: usize, message: Option<u32>) -> sys::BOOLEAN {
    // NDIS's own service routine is emulator code; only the miniport's handler is driver code.
    let _emulator = crate::heap::EmulatorCode::enter();
    let m = machine::current();
    let (chars, context, cpu, irql, runtime_620) = {
        let mut st = m.st();
        let cpu = st.cpu;
        let irql = st.irql();
        let top = st.callbacks.pop();
        st.callbacks.push(Callback::Isr(i));
        debug_assert_eq!(top, Some(Callback::WdmIsr));
        let int = &st.ndis.interrupts[i];
        let v = st
            .ndis
            .driver
            .as_ref()
            .map_or(0, |d| d.chars.MinorNdisVersion);
        (int.chars, int.context, cpu, irql, v >= 20)
    };
    let mut queue_default: sys::BOOLEAN = sys::FALSE;
    let mut targets: sys::ULONG = 0;
    let ctx = context as sys::NDIS_HANDLE;
    // The miniport's handler is driver code again (its heap use is accounted and IRQL-checked).
    let claimed = crate::heap::as_driver(irql, || match message {
        // SAFETY: registration checked the handler is present; the outputs are valid locals.
        None => unsafe { (chars.InterruptHandler.unwrap())(ctx, &mut queue_default, &mut targets) },
        // SAFETY: as above; message handlers are present for a message-based grant.
        Some(msg) => unsafe {
            (chars.MessageInterruptHandler.unwrap())(ctx, msg, &mut queue_default, &mut targets)
        },
    });
    let mut st = m.st();
    st.callbacks.pop();
    st.callbacks.push(Callback::WdmIsr);
    if queue_default == sys::FALSE && targets != 0 && runtime_620 {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::OBSOLETE_INTERFACE, targets as usize, 0, 0],
            format!(
                "the ISR of an NDIS 6.20+ driver wrote TargetProcessors = {targets:#x}; since NDIS 6.20 \
                 it must be 0 (queue DPCs with NdisMQueueDpcEx instead)"
            ),
        );
    }
    // NDIS queues what the outputs describe whatever the ISR returned.
    let msg = message.unwrap_or(0);
    let mut on = Vec::new();
    if queue_default != sys::FALSE {
        queue_dpc(&mut st, i, msg, cpu, 0);
        on.push(cpu);
    } else {
        for b in 0..32.min(st.cpus.len()) {
            if targets & (1 << b) != 0 {
                queue_dpc(&mut st, i, msg, b, 0);
                on.push(b);
            }
        }
    }
    st.event(|| Event::Isr {
        cpu,
        irql,
        message,
        claimed: claimed != 0,
        dpcs: on
            .iter()
            .map(|c| format!("cpu{c}"))
            .collect::<Vec<_>>()
            .join(","),
    });
    claimed
}

/// Queues slot (interrupt, message, cpu); false when it was already queued (the new context is
/// dropped, as KeInsertQueueDpc does).
fn queue_dpc(st: &mut State, i: usize, message: u32, cpu: usize, context: usize) -> bool {
    let ncpus = st.cpus.len();
    let slot = &mut st.ndis.interrupts[i].slots[message as usize * ncpus + cpu];
    if slot.queued {
        return false;
    }
    slot.queued = true;
    slot.context = context;
    st.cpus[cpu].queue.push_back(DpcRef {
        interrupt: i,
        message,
    });
    true
}

/// Runs one queued interrupt DPC on `cpu` at DISPATCH_LEVEL, with receive throttling.
pub(crate) fn run_interrupt_dpc(m: &Machine, cpu: usize, dpc: DpcRef) {
    let (chars, context, dpc_context, messages, max, minor) = {
        let mut st = m.st();
        let minor = st
            .ndis
            .driver
            .as_ref()
            .map_or(20, |d| d.chars.MinorNdisVersion);
        let ncpus = st.cpus.len();
        let max = st.config.max_nbls_per_dpc;
        let int = &mut st.ndis.interrupts[dpc.interrupt];
        let slot = &mut int.slots[dpc.message as usize * ncpus + cpu];
        // Cleared before the call, so the DPC can queue itself again.
        slot.queued = false;
        (
            int.chars,
            int.context,
            slot.context,
            int.messages,
            max,
            minor,
        )
    };
    // Before NDIS 6.20 the argument is `NdisReserved1`: a block the driver must not touch.
    const RESERVED: u32 = 0x5EE5_5EE5;
    let reserved = minor < 20;
    let mut throttle = sys::NDIS_RECEIVE_THROTTLE_PARAMETERS {
        MaxNblsToIndicate: if reserved { RESERVED } else { max },
        Flags: if reserved { RESERVED } else { 0 },
    };
    let message = (messages > 0).then_some(dpc.message);
    on_cpu(
        m,
        cpu,
        sys::DISPATCH_LEVEL,
        Callback::Dpc(dpc.interrupt),
        || {
            let ctx = context as sys::NDIS_HANDLE;
            let tp = (&raw mut throttle).cast::<core::ffi::c_void>();
            match message {
                // SAFETY: registration checked the handler; `throttle` outlives the call.
                None => unsafe {
                    (chars.InterruptDpcHandler.unwrap())(
                        ctx,
                        dpc_context as sys::PVOID,
                        tp,
                        core::ptr::null_mut(),
                    )
                },
                // SAFETY: as above, message-based grant.
                Some(msg) => unsafe {
                    (chars.MessageInterruptDpcHandler.unwrap())(
                        ctx,
                        msg,
                        dpc_context as sys::PVOID,
                        tp,
                        core::ptr::null_mut(),
                    )
                },
            }
        },
    );
    if reserved && (throttle.MaxNblsToIndicate != RESERVED || throttle.Flags != RESERVED) {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [
                rule::RESERVED_DPC_ARGUMENT,
                dpc.message as usize,
                minor as usize,
                0,
            ],
            format!(
                "an NDIS 6.{minor} driver's interrupt DPC wrote through NdisReserved1 (receive \
                 throttle parameters exist from NDIS 6.20)"
            ),
        );
    }
    let more = !reserved && throttle.Flags & sys::NDIS_RECEIVE_THROTTLE_MORE_NBLS_PENDING != 0;
    let mut st = m.st();
    st.event(|| Event::Dpc {
        cpu,
        irql: sys::DISPATCH_LEVEL,
        message,
        context: dpc_context != 0,
        more_pending: more,
    });
    let ncpus = st.cpus.len();
    let limit = st.config.dpc_requeue_limit;
    let slot_index = dpc.message as usize * ncpus + cpu;
    if more {
        let requeues = {
            let slot = &mut st.ndis.interrupts[dpc.interrupt].slots[slot_index];
            slot.requeues += 1;
            slot.requeues
        };
        if requeues > limit {
            bugcheck::raise(
                bugcheck::DPC_WATCHDOG_VIOLATION,
                [1, 0, 0, 0],
                format!(
                    "the interrupt DPC ({}) on cpu{cpu} set MoreNblsPending {requeues} times in a row: \
                     the receive work never drains (cumulative DPC time exceeded the watchdog)",
                    message.map_or("line".into(), |m| format!("message {m}"))
                ),
            );
        }
        // NDIS calls the DPC again; the emulator requeues it behind other work, same context.
        queue_dpc(&mut st, dpc.interrupt, dpc.message, cpu, dpc_context);
    } else {
        st.ndis.interrupts[dpc.interrupt].slots[slot_index].requeues = 0;
    }
}

pub(crate) unsafe fn ndis_m_queue_dpc_ex(
    handle: sys::NDIS_HANDLE,
    message: u32,
    targets: *mut sys::GROUP_AFFINITY,
    context: sys::PVOID,
) -> sys::KAFFINITY {
    let m = machine::current();
    let newly = {
        let mut st = m.st();
        let i = interrupt_of(&st, handle, "NdisMQueueDpcEx");
        // SAFETY: the caller passes a readable GROUP_AFFINITY.
        let affinity = unsafe { *targets };
        check_message(&st, i, message, "NdisMQueueDpcEx");
        if affinity.Group != 0 {
            return 0; // only group 0 exists on the emulated machine
        }
        let mut newly: sys::KAFFINITY = 0;
        for cpu in 0..st.cpus.len() {
            if affinity.Mask & (1 << cpu) != 0
                && queue_dpc(&mut st, i, message, cpu, context as usize)
            {
                newly |= 1 << cpu;
            }
        }
        newly
    };
    machine::preempt(&m);
    newly
}

fn check_message(st: &State, i: usize, message: u32, function: &str) {
    let messages = st.ndis.interrupts[i].messages;
    let valid = if messages == 0 {
        message == 0
    } else {
        message < messages
    };
    if !valid {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [
                rule::MESSAGE_ID,
                message as usize,
                messages as usize,
                interrupt_handle(i) as usize,
            ],
            format!(
                "{function}: MessageId {message} out of range (the grant has {} message(s){})",
                messages,
                if messages == 0 {
                    "; line-based grants use MessageId 0"
                } else {
                    ""
                }
            ),
        );
    }
}

pub(crate) unsafe fn ndis_m_queue_dpc(
    handle: sys::NDIS_HANDLE,
    message: u32,
    targets: u32,
    context: sys::PVOID,
) -> u32 {
    let obsolete = {
        let m = machine::current();
        let st = m.st();
        st.ndis
            .driver
            .as_ref()
            .is_some_and(|d| d.chars.MinorNdisVersion >= 20)
    };
    if obsolete {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::OBSOLETE_INTERFACE, 0, 0, 0],
            "NdisMQueueDpc called by an NDIS 6.20+ driver; use NdisMQueueDpcEx",
        );
    }
    let mut affinity = sys::GROUP_AFFINITY {
        Mask: targets as usize,
        Group: 0,
        Reserved: [0; 3],
    };
    // SAFETY: forwards to the Ex form with a local GROUP_AFFINITY.
    unsafe { ndis_m_queue_dpc_ex(handle, message, &mut affinity, context) as u32 }
}

pub(crate) unsafe fn ndis_m_synchronize_with_interrupt_ex(
    handle: sys::NDIS_HANDLE,
    message: u32,
    function: sys::MINIPORT_SYNCHRONIZE_INTERRUPT_HANDLER,
    context: sys::PVOID,
) -> sys::BOOLEAN {
    let m = machine::current();
    let (cpu, irql, lock, i) = {
        let mut st = m.st();
        let i = interrupt_of(&st, handle, "NdisMSynchronizeWithInterruptEx");
        let int = &st.ndis.interrupts[i];
        let messages = int.messages;
        let kints = st.connections[int.connection].kints.clone();
        // "If NDIS did not grant message signaled interrupts for the driver, NDIS ignores this
        // parameter" (the function's documentation): a line-based grant takes any MessageId. A
        // message-based grant must name one of its messages.
        let k = if messages == 0 {
            kints[0]
        } else {
            check_message(&st, i, message, "NdisMSynchronizeWithInterruptEx");
            kints[message as usize]
        };
        let (irql, lock) = (st.kints[k].sync_irql, st.kints[k].lock);
        st.require_irql(irql, "NdisMSynchronizeWithInterruptEx");
        let cpu = st.cpu;
        if st.locks[lock] == Some(cpu) {
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::CALL_CONTEXT, handle as usize, 0, 0],
                "NdisMSynchronizeWithInterruptEx called while this processor already holds the \
                 interrupt lock (from the ISR or a synchronize function): it would deadlock",
            );
        }
        st.locks[lock] = Some(cpu);
        st.event(|| Event::Synchronize { cpu, irql, message });
        (cpu, irql, lock, i)
    };
    let Some(f) = function else {
        m.st().locks[lock] = None;
        return sys::FALSE;
    };
    let r = on_cpu(&m, cpu, irql, Callback::Synchronize(i), || {
        // SAFETY: the driver's synchronize function and context, called at DIRQL under the lock.
        unsafe { f(context) }
    });
    m.st().locks[lock] = None;
    machine::preempt(&m);
    r
}

/// What the emulator checks once a driver callback returned: the Init/Halt interrupt rules.
pub(crate) fn after_initialize(st: &mut State, a: usize, status: sys::NDIS_STATUS) {
    let adapter = &st.ndis.adapters[a];
    if status == sys::NDIS_STATUS_SUCCESS {
        if adapter.context.is_none() || !adapter.general_set {
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::ATTRIBUTE_ORDER, adapter_handle(a) as usize, 0, 0],
                format!(
                    "MiniportInitializeEx of adapter {a} returned NDIS_STATUS_SUCCESS without setting the \
                     {} attributes; both registration and general attributes are mandatory",
                    if adapter.context.is_none() {
                        "registration"
                    } else {
                        "general"
                    }
                ),
            );
        }
        st.ndis.adapters[a].state = AdapterState::Paused;
    } else {
        if adapter.interrupt.is_some() {
            bugcheck::raise(
                bugcheck::BUGCODE_NDIS_DRIVER,
                [
                    bugcheck::NDIS_BUGCHECK_INIT_FAILED_WITHOUT_INTERRUPT_DEREGISTER,
                    adapter_handle(a) as usize,
                    0,
                    0,
                ],
                format!(
                    "MiniportInitializeEx of adapter {a} failed ({:#010x}) with its interrupt still registered: \
                     the failure path must call NdisMDeregisterInterruptEx (rule Init_DeRegisterInterrupt)",
                    status as u32
                ),
            );
        }
        st.ndis.adapters[a].state = AdapterState::Failed;
    }
    st.event(|| Event::AdapterInitialized { adapter: a, status });
}

pub(crate) fn after_halt(st: &mut State, a: usize) {
    crate::datapath::check_no_sends(st, a, "MiniportHaltEx returned");
    crate::sync::check_timers_at_halt(st, a);
    crate::dma::check_dma_at_halt(st, a);
    crate::pci::check_mappings_at_halt(st, a);
    if st.ndis.adapters[a].interrupt.is_some() {
        bugcheck::raise(
            bugcheck::BUGCODE_NDIS_DRIVER,
            [
                bugcheck::NDIS_BUGCHECK_HALT_WITHOUT_INTERRUPT_DEREGISTER,
                adapter_handle(a) as usize,
                0,
                0,
            ],
            format!(
                "MiniportHaltEx of adapter {a} returned with its interrupt still registered: halt must call \
                 NdisMDeregisterInterruptEx (rule Init_RegisterInterrupt)"
            ),
        );
    }
    st.ndis.adapters[a].state = AdapterState::Halted;
    st.event(|| Event::AdapterHalted { adapter: a });
}

pub(crate) unsafe fn ndis_m_pause_complete(handle: sys::NDIS_HANDLE) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisMPauseComplete");
    let a = adapter_of(&st, handle, "NdisMPauseComplete");
    if st.ndis.adapters[a].state != AdapterState::Pausing {
        let state = st.ndis.adapters[a].state;
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::CALL_CONTEXT, a, 0, 0],
            format!("NdisMPauseComplete on adapter {a}, which is {state:?}, not pausing"),
        );
    }
    crate::datapath::check_no_sends(&st, a, "NdisMPauseComplete was called");
    st.ndis.adapters[a].state = AdapterState::Paused;
}

pub(crate) unsafe fn ndis_m_restart_complete(handle: sys::NDIS_HANDLE, status: sys::NDIS_STATUS) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisMRestartComplete");
    let a = adapter_of(&st, handle, "NdisMRestartComplete");
    if st.ndis.adapters[a].state != AdapterState::Restarting || status == sys::NDIS_STATUS_PENDING {
        let state = st.ndis.adapters[a].state;
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::CALL_CONTEXT, a, status as u32 as usize, 0],
            format!(
                "NdisMRestartComplete({status:#010x}) on adapter {a}, which is {state:?}, not restarting"
            ),
        );
    }
    st.ndis.adapters[a].state = if status == sys::NDIS_STATUS_SUCCESS {
        AdapterState::Running
    } else {
        AdapterState::Paused
    };
}

/// One due `MiniportCheckForHangEx` of adapter `a` (at PASSIVE_LEVEL), and the
/// `MiniportResetEx` (at DISPATCH_LEVEL) a TRUE asks for. Only a running adapter without a reset
/// in progress is checked, as NDIS checks only started adapters and never during a reset.
pub(crate) fn check_for_hang(m: &Machine, a: usize) {
    let (check, reset, context, cpu) = {
        let mut st = m.st();
        let adapter = &st.ndis.adapters[a];
        if adapter.state != AdapterState::Running || adapter.hang.reset != ResetState::Idle {
            return;
        }
        let context = adapter.context.unwrap_or(0);
        let chars = &st.ndis.driver.as_ref().expect("a driver").chars;
        let (check, reset) = (chars.CheckForHangHandlerEx, chars.ResetHandlerEx);
        st.ndis.adapters[a].hang.checks += 1;
        (check, reset, context, st.cpu)
    };
    let (Some(check), Some(reset)) = (check, reset) else {
        return; // registration refuses CheckForHang without Reset
    };
    let hung = on_cpu(
        m,
        cpu,
        sys::PASSIVE_LEVEL,
        Callback::CheckForHang(a),
        || {
            // SAFETY: the driver's handler with its adapter context, at PASSIVE_LEVEL.
            unsafe { check(context as sys::NDIS_HANDLE) }
        },
    );
    if hung == 0 {
        return;
    }
    m.st().ndis.adapters[a].hang.reset = ResetState::Calling { completed: None };
    let mut addressing: sys::BOOLEAN = 0;
    let status = on_cpu(m, cpu, sys::DISPATCH_LEVEL, Callback::Reset(a), || {
        // SAFETY: the driver's handler with its adapter context and an out-flag, at
        // DISPATCH_LEVEL.
        unsafe { reset(context as sys::NDIS_HANDLE, &mut addressing) }
    });
    let mut st = m.st();
    let hang = &mut st.ndis.adapters[a].hang;
    let ResetState::Calling { completed } = hang.reset else {
        unreachable!("only this function leaves Calling");
    };
    match (status == sys::NDIS_STATUS_PENDING, completed) {
        (true, Some(done)) => {
            hang.reset = ResetState::Idle;
            hang.resets.push(done);
        }
        (true, None) => hang.reset = ResetState::Pending,
        (false, None) => {
            hang.reset = ResetState::Idle;
            hang.resets.push((status, addressing != 0));
        }
        (false, Some(_)) => {
            drop(st);
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::CALL_CONTEXT, a, status as u32 as usize, 0],
                format!(
                    "MiniportResetEx on adapter {a} returned {status:#010x} after calling \
                     NdisMResetComplete: complete only a reset you return NDIS_STATUS_PENDING for"
                ),
            );
        }
    }
}

pub(crate) unsafe fn ndis_m_reset_complete(
    handle: sys::NDIS_HANDLE,
    status: sys::NDIS_STATUS,
    addressing_reset: sys::BOOLEAN,
) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisMResetComplete");
    let a = adapter_of(&st, handle, "NdisMResetComplete");
    let state = st.ndis.adapters[a].hang.reset;
    let expected = matches!(
        state,
        ResetState::Pending | ResetState::Calling { completed: None }
    );
    if !expected || status == sys::NDIS_STATUS_PENDING {
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::CALL_CONTEXT, a, status as u32 as usize, 0],
            format!(
                "NdisMResetComplete({status:#010x}) on adapter {a}, which has no reset pending \
                 (complete only a reset MiniportResetEx returned NDIS_STATUS_PENDING for, once, \
                 with its final status)"
            ),
        );
    }
    let hang = &mut st.ndis.adapters[a].hang;
    let done = (status, addressing_reset != 0);
    if state == ResetState::Pending {
        hang.reset = ResetState::Idle;
        hang.resets.push(done);
    } else {
        // Before MiniportResetEx returned: it must now return PENDING.
        hang.reset = ResetState::Calling {
            completed: Some(done),
        };
    }
}

/// The adapter a handle names, if it is an adapter handle (None for the driver handle).
pub(crate) fn adapter_index(st: &State, handle: sys::NDIS_HANDLE) -> Option<usize> {
    let h = handle as usize;
    (h & TAG_MASK == ADAPTER_TAG)
        .then(|| (h & !TAG_MASK).wrapping_sub(1))
        .filter(|&i| i < st.ndis.adapters.len())
}

/// Memory calls take the driver or an adapter handle.
pub(crate) fn check_ndis_handle(st: &State, handle: sys::NDIS_HANDLE, function: &str) {
    if handle as usize == DRIVER_HANDLE && st.ndis.driver.as_ref().is_some_and(|d| d.live) {
        return;
    }
    adapter_of(st, handle, function);
}
