//! Power management: the device power states NDIS moves an adapter through when the machine
//! sleeps or hibernates, and what a driver declares about them.
//!
//! A driver that declares [`PowerCapabilities`] ([`Miniport::POWER`]) is kept across a system
//! sleep: NDIS pauses it (unless it asked not to be, NDIS 6.30+), sends `OID_PNP_SET_POWER` with
//! a low-power state, and after wake-up `OID_PNP_SET_POWER` with D0, then restarts it. The
//! framework answers both power OIDs, validates the state, and calls
//! [`Miniport::power_down`] and [`Miniport::power_up`]. While the adapter is out of D0 the
//! framework refuses sends (`NDIS_STATUS_LOW_POWER_STATE`), indicates nothing, declines every
//! interrupt without calling the driver's ISR (a line shared with a powered device keeps
//! firing; the sleeping device's registers read all ones), and runs none of the driver's
//! interrupt DPCs. A driver that declares nothing is halted before the sleep and initialized
//! again after it, as NDIS does for adapters without power management.
//!
//! [`Miniport::POWER`]: crate::miniport::Miniport::POWER
//! [`Miniport::power_down`]: crate::miniport::Miniport::power_down
//! [`Miniport::power_up`]: crate::miniport::Miniport::power_up

use ndis_sys as sys;

/// `NDIS_DEVICE_POWER_STATE`, without the values that name no state a device can be put in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DevicePowerState {
    D0,
    D1,
    D2,
    D3,
}

impl DevicePowerState {
    /// The state an OID carries; None for `Unspecified` (0), `Maximum` (5) and anything else.
    pub const fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            sys::NdisDeviceStateD0 => DevicePowerState::D0,
            sys::NdisDeviceStateD1 => DevicePowerState::D1,
            sys::NdisDeviceStateD2 => DevicePowerState::D2,
            sys::NdisDeviceStateD3 => DevicePowerState::D3,
            _ => return None,
        })
    }

    pub const fn to_raw(self) -> u32 {
        match self {
            DevicePowerState::D0 => sys::NdisDeviceStateD0,
            DevicePowerState::D1 => sys::NdisDeviceStateD1,
            DevicePowerState::D2 => sys::NdisDeviceStateD2,
            DevicePowerState::D3 => sys::NdisDeviceStateD3,
        }
    }
}

/// What a driver says about power (no wake-up sources: wake-on-LAN is not supported yet).
///
/// The device states a PCI device offers come from its bus (its PCI power-management
/// capability), not from the miniport; `d1` and `d2` say which of the light states the driver
/// can keep the device's context in. A request for a light state the driver did not declare is
/// handed to [`Miniport::power_down`](crate::miniport::Miniport::power_down) as D3, the state in
/// which the device's context is assumed lost, so a driver only ever sees states it handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerCapabilities {
    pub d1: bool,
    pub d2: bool,
    /// `NDIS_MINIPORT_ATTRIBUTES_NO_PAUSE_ON_SUSPEND` (registered with NDIS 6.30 and later
    /// only): NDIS may then send `OID_PNP_SET_POWER` while the adapter runs, without pausing it
    /// first. The framework still stops sends and indications before calling
    /// [`Miniport::power_down`](crate::miniport::Miniport::power_down); receives the protocols
    /// hold stay theirs, and come back while the adapter is in low power.
    pub no_pause_on_suspend: bool,
}

impl PowerCapabilities {
    /// D3 only, paused before each transition: what a device that loses its state in any
    /// low-power state needs.
    pub const D3: PowerCapabilities = PowerCapabilities {
        d1: false,
        d2: false,
        no_pause_on_suspend: false,
    };

    /// The state the driver is told of for a request of `requested` (D1..D3).
    pub const fn effective(self, requested: DevicePowerState) -> DevicePowerState {
        match requested {
            DevicePowerState::D1 if self.d1 => DevicePowerState::D1,
            DevicePowerState::D2 if self.d2 => DevicePowerState::D2,
            DevicePowerState::D0 => DevicePowerState::D0,
            _ => DevicePowerState::D3,
        }
    }

    /// The capabilities as NDIS 6.20 and later take them (`PowerManagementCapabilitiesEx`):
    /// no wake-up source, revision 2 from NDIS 6.30.
    pub(crate) fn to_ndis(self, version: crate::NdisVersion) -> sys::NDIS_PM_CAPABILITIES {
        let (revision, size) = if version >= crate::NdisVersion::V6_30 {
            (
                sys::NDIS_PM_CAPABILITIES_REVISION_2,
                sys::NDIS_SIZEOF_NDIS_PM_CAPABILITIES_REVISION_2,
            )
        } else {
            (
                sys::NDIS_PM_CAPABILITIES_REVISION_1,
                sys::NDIS_SIZEOF_NDIS_PM_CAPABILITIES_REVISION_1,
            )
        };
        sys::NDIS_PM_CAPABILITIES {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_DEFAULT,
                Revision: revision,
                Size: size,
            },
            MinMagicPacketWakeUp: sys::NdisDeviceStateUnspecified,
            MinPatternWakeUp: sys::NdisDeviceStateUnspecified,
            MinLinkChangeWakeUp: sys::NdisDeviceStateUnspecified,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_d0_to_d3_are_states() {
        for v in [0u32, 5, 6, 0xFFFF_FFFF] {
            assert_eq!(DevicePowerState::from_raw(v), None, "{v}");
        }
        for s in [
            DevicePowerState::D0,
            DevicePowerState::D1,
            DevicePowerState::D2,
            DevicePowerState::D3,
        ] {
            assert_eq!(DevicePowerState::from_raw(s.to_raw()), Some(s));
        }
    }

    #[test]
    fn undeclared_light_states_are_handled_as_d3() {
        let d3 = PowerCapabilities::D3;
        assert_eq!(d3.effective(DevicePowerState::D1), DevicePowerState::D3);
        assert_eq!(d3.effective(DevicePowerState::D2), DevicePowerState::D3);
        let light = PowerCapabilities { d2: true, ..d3 };
        assert_eq!(light.effective(DevicePowerState::D2), DevicePowerState::D2);
        assert_eq!(light.effective(DevicePowerState::D1), DevicePowerState::D3);
    }

    #[test]
    fn pm_capabilities_revision_follows_the_version() {
        let caps = PowerCapabilities::D3;
        let old = caps.to_ndis(crate::NdisVersion::V6_20);
        assert_eq!((old.Header.Revision, old.Header.Size), (1, 52));
        let new = caps.to_ndis(crate::NdisVersion::V6_30);
        assert_eq!((new.Header.Revision, new.Header.Size), (2, 60));
        assert_eq!(new.MinMagicPacketWakeUp, sys::NdisDeviceStateUnspecified);
    }
}
