//! Power management (ntddndis.h): device power states and the capabilities a miniport reports in
//! its general attributes.

use crate::base::*;
use crate::layout::layout;
use crate::object::NDIS_OBJECT_HEADER;

/// `NDIS_DEVICE_POWER_STATE`: the value `OID_PNP_QUERY_POWER` and `OID_PNP_SET_POWER` carry.
pub type NDIS_DEVICE_POWER_STATE = u32;
pub const NdisDeviceStateUnspecified: NDIS_DEVICE_POWER_STATE = 0;
pub const NdisDeviceStateD0: NDIS_DEVICE_POWER_STATE = 1;
pub const NdisDeviceStateD1: NDIS_DEVICE_POWER_STATE = 2;
pub const NdisDeviceStateD2: NDIS_DEVICE_POWER_STATE = 3;
pub const NdisDeviceStateD3: NDIS_DEVICE_POWER_STATE = 4;
pub const NdisDeviceStateMaximum: NDIS_DEVICE_POWER_STATE = 5;

// ---- NDIS_PM_CAPABILITIES (NDIS 6.20 and later: PowerManagementCapabilitiesEx) ----
/// NDIS 6.20.
pub const NDIS_PM_CAPABILITIES_REVISION_1: UCHAR = 1;
/// NDIS 6.30: adds `SupportedWakeUpEvents` and `MediaSpecificWakeUpEvents`.
pub const NDIS_PM_CAPABILITIES_REVISION_2: UCHAR = 2;
/// Through `MinLinkChangeWakeUp`.
pub const NDIS_SIZEOF_NDIS_PM_CAPABILITIES_REVISION_1: USHORT = 52;
/// Through `MediaSpecificWakeUpEvents`.
pub const NDIS_SIZEOF_NDIS_PM_CAPABILITIES_REVISION_2: USHORT = 60;

/// `NDIS_PM_CAPABILITIES`: what the adapter can do in low power (wake patterns, protocol
/// offloads, the lowest state each wake source works from). All zero and every `Min*WakeUp`
/// `NdisDeviceStateUnspecified`: power management without wake.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NDIS_PM_CAPABILITIES {
    pub Header: NDIS_OBJECT_HEADER,
    pub Flags: ULONG,
    pub SupportedWoLPacketPatterns: ULONG,
    pub NumTotalWoLPatterns: ULONG,
    pub MaxWoLPatternSize: ULONG,
    pub MaxWoLPatternOffset: ULONG,
    pub MaxWoLPacketSaveBuffer: ULONG,
    pub SupportedProtocolOffloads: ULONG,
    pub NumArpOffloadIPv4Addresses: ULONG,
    pub NumNSOffloadIPv6Addresses: ULONG,
    pub MinMagicPacketWakeUp: NDIS_DEVICE_POWER_STATE,
    pub MinPatternWakeUp: NDIS_DEVICE_POWER_STATE,
    pub MinLinkChangeWakeUp: NDIS_DEVICE_POWER_STATE,
    pub SupportedWakeUpEvents: ULONG,
    pub MediaSpecificWakeUpEvents: ULONG,
}
layout!(NDIS_PM_CAPABILITIES, size = 60, align = 4, {
    Header: 0, Flags: 4, SupportedWoLPacketPatterns: 8, NumTotalWoLPatterns: 12,
    MaxWoLPatternSize: 16, MaxWoLPatternOffset: 20, MaxWoLPacketSaveBuffer: 24,
    SupportedProtocolOffloads: 28, NumArpOffloadIPv4Addresses: 32, NumNSOffloadIPv6Addresses: 36,
    MinMagicPacketWakeUp: 40, MinPatternWakeUp: 44, MinLinkChangeWakeUp: 48,
    SupportedWakeUpEvents: 52, MediaSpecificWakeUpEvents: 56,
});

// ---- NDIS_PNP_CAPABILITIES (NDIS 6.0 and 6.1: PowerManagementCapabilities) ----
/// `NDIS_PM_WAKE_UP_CAPABILITIES`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NDIS_PM_WAKE_UP_CAPABILITIES {
    pub MinMagicPacketWakeUp: NDIS_DEVICE_POWER_STATE,
    pub MinPatternWakeUp: NDIS_DEVICE_POWER_STATE,
    pub MinLinkChangeWakeUp: NDIS_DEVICE_POWER_STATE,
}
layout!(NDIS_PM_WAKE_UP_CAPABILITIES, size = 12, align = 4, {
    MinMagicPacketWakeUp: 0, MinPatternWakeUp: 4, MinLinkChangeWakeUp: 8,
});

/// `NDIS_PNP_CAPABILITIES`, the pre-6.20 form of the same report.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NDIS_PNP_CAPABILITIES {
    pub Flags: ULONG,
    pub WakeUpCapabilities: NDIS_PM_WAKE_UP_CAPABILITIES,
}
layout!(NDIS_PNP_CAPABILITIES, size = 16, align = 4, { Flags: 0, WakeUpCapabilities: 4 });
