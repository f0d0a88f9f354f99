//! The platform's lifecycle around a running adapter: system sleep (S3) and hibernation (S4)
//! in the order the power manager and NDIS drive them, and surprise removal.
//!
//! Sleep, for an adapter whose driver reported power-management capabilities and
//! `NDIS_MINIPORT_ATTRIBUTES_NO_HALT_ON_SUSPEND`:
//! 1. `MiniportPause` (skipped when the driver registered `NO_PAUSE_ON_SUSPEND` and both it and
//!    the OS run NDIS 6.30 or later: receives the protocols hold then stay held);
//! 2. `OID_PNP_QUERY_POWER` and `OID_PNP_SET_POWER` with the device state (both must succeed);
//! 3. the bus puts the device in that state: from here any register access or receive
//!    indication is a bug check ([`rule::LOW_POWER_ACCESS`]); in D3 the device loses power
//!    ([`PciFunction::power_lost`](crate::pci::PciFunction::power_lost)), S4 always ending there.
//!
//! Wake-up: the device is back in D0 (reset when it lost power), `OID_PNP_SET_POWER` with D0,
//! then `MiniportRestart` if step 1 paused. An adapter without power management is paused and
//! halted (`NdisHaltDevicePoweredDown`) before the sleep, and initialized and restarted again
//! after it, on the same device and under the same [`AdapterId`].

use ndis_sys as sys;

use crate::bugcheck::{self, rule};
use crate::ndis::AdapterState;
use crate::pci::Presence;
use crate::{AdapterId, Emulator};

/// The system sleep states the emulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemSleep {
    /// Sleep: the device goes to `device_state` (D3 as most platforms map S3; D1 or D2 keep the
    /// device's state, D3 loses it).
    S3 { device_state: u32 },
    /// Hibernation: D3, and the device loses power.
    S4,
}

impl SystemSleep {
    /// S3 with the device in D3.
    pub const SLEEP: SystemSleep = SystemSleep::S3 {
        device_state: sys::NdisDeviceStateD3,
    };
    pub const HIBERNATE: SystemSleep = SystemSleep::S4;

    fn device_state(self) -> u32 {
        match self {
            SystemSleep::S3 { device_state } => device_state,
            SystemSleep::S4 => sys::NdisDeviceStateD3,
        }
    }
}

/// What the emulator did with an adapter for a sleep, to undo on wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Asleep {
    #[default]
    Awake,
    /// Kept across the sleep in a low-power state; `paused`: MiniportPause ran first.
    LowPower { paused: bool },
    /// Halted before the sleep (no power management): initialized again on wake-up.
    Halted,
}

/// Why a wake-up failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeError {
    /// `OID_PNP_SET_POWER` to D0 failed with this status: the device is unrecoverable (Windows
    /// marks it failed); the adapter stays out of D0 and can only be halted.
    SetPowerD0(sys::NDIS_STATUS),
    /// Re-initialization of an adapter without power management failed with this status.
    Initialize(sys::NDIS_STATUS),
    /// `MiniportRestart` after wake-up failed with this status.
    Restart(sys::NDIS_STATUS),
}

impl Emulator {
    /// Takes running adapter `a` into system sleep state `how`, as NDIS does (see the module
    /// docs): kept in low power if its driver manages power, halted otherwise.
    pub fn sleep(&self, a: AdapterId, how: SystemSleep) {
        let (state, managed, npos, device) = {
            let st = self.st();
            let adapter = &st.ndis.adapters[a.0];
            assert_eq!(
                adapter.state,
                AdapterState::Running,
                "sleep takes a running adapter"
            );
            let flags = adapter.attribute_flags;
            let managed = adapter.pm_capabilities
                && flags & sys::NDIS_MINIPORT_ATTRIBUTES_NO_HALT_ON_SUSPEND != 0
                && !st.devices[adapter.device].power_management_disabled;
            let registered = st
                .ndis
                .driver
                .as_ref()
                .map_or(0, |d| d.chars.MinorNdisVersion);
            let npos = flags & sys::NDIS_MINIPORT_ATTRIBUTES_NO_PAUSE_ON_SUSPEND != 0
                && registered >= 30
                && st.config.ndis_runtime_version >= 0x0006_001E;
            (
                how.device_state(),
                managed,
                npos,
                crate::DeviceId(adapter.device),
            )
        };
        if !managed {
            assert_eq!(
                self.pause(a),
                sys::NDIS_STATUS_SUCCESS,
                "pause before sleep"
            );
            self.halt(a, sys::NdisHaltDevicePoweredDown);
            self.power_lost(device);
            self.st().ndis.adapters[a.0].asleep = Asleep::Halted;
            return;
        }
        if !npos {
            let s = self.pause(a);
            if s == sys::NDIS_STATUS_PENDING {
                self.run_dpcs();
            }
            assert_eq!(
                self.adapter_state(a),
                AdapterState::Paused,
                "the pause before sleep did not complete"
            );
        }
        let bytes = state.to_le_bytes();
        let query = self.oid_query_with(a, sys::OID_PNP_QUERY_POWER, &bytes, 4);
        power_oid_must_succeed(a, "OID_PNP_QUERY_POWER", state, query.status);
        let set = self.power_oid(a, state);
        power_oid_must_succeed(a, "OID_PNP_SET_POWER", state, set);
        {
            let mut st = self.st();
            st.devices[device.0].pci.presence = Presence::LowPower(state);
            // Out of D0 a function signals nothing: its line is released.
            crate::machine::set_line(&mut st, device.0, false);
            st.ndis.adapters[a.0].device_state = state;
            st.ndis.adapters[a.0].asleep = Asleep::LowPower { paused: !npos };
        }
        if state == sys::NdisDeviceStateD3 {
            self.power_lost(device);
        }
    }

    /// Wakes adapter `a` from [`sleep`](Self::sleep): D0 and restart, or initialize and restart.
    pub fn wake(&self, a: AdapterId) -> Result<(), WakeError> {
        let (asleep, device) = {
            let st = self.st();
            let adapter = &st.ndis.adapters[a.0];
            (adapter.asleep, crate::DeviceId(adapter.device))
        };
        match asleep {
            Asleep::Awake => panic!("adapter {} is not asleep", a.0),
            Asleep::Halted => {
                self.st().ndis.adapters[a.0].asleep = Asleep::Awake;
                let status = self.reinitialize(a);
                if status != sys::NDIS_STATUS_SUCCESS {
                    return Err(WakeError::Initialize(status));
                }
                match self.restart(a) {
                    sys::NDIS_STATUS_SUCCESS => Ok(()),
                    s => Err(WakeError::Restart(s)),
                }
            }
            Asleep::LowPower { paused } => {
                {
                    let mut st = self.st();
                    st.devices[device.0].pci.presence = Presence::Working;
                    st.ndis.adapters[a.0].asleep = Asleep::Awake;
                }
                let status = self.power_oid(a, sys::NdisDeviceStateD0);
                if status != sys::NDIS_STATUS_SUCCESS {
                    return Err(WakeError::SetPowerD0(status));
                }
                self.st().ndis.adapters[a.0].device_state = sys::NdisDeviceStateD0;
                if paused {
                    match self.restart(a) {
                        sys::NDIS_STATUS_SUCCESS => {}
                        s => return Err(WakeError::Restart(s)),
                    }
                }
                Ok(())
            }
        }
    }

    /// One sleep and wake-up.
    pub fn sleep_cycle(&self, a: AdapterId, how: SystemSleep) -> Result<(), WakeError> {
        self.sleep(a, how);
        self.wake(a)
    }

    /// What the user sets with "Allow the computer to turn off this device to save power" on
    /// the adapter's Power Management tab (`PnPCapabilities`): cleared, NDIS treats the adapter
    /// as not power-managed, whatever its driver declares, and halts it before each sleep.
    pub fn set_power_management_allowed(&self, a: AdapterId, allowed: bool) {
        let mut st = self.st();
        let device = st.ndis.adapters[a.0].device;
        st.devices[device].power_management_disabled = !allowed;
    }

    /// The device state NDIS last set for adapter `a` (`NDIS_DEVICE_POWER_STATE`).
    pub fn device_power_state(&self, a: AdapterId) -> u32 {
        self.st().ndis.adapters[a.0].device_state
    }

    /// The device behind adapter `a` leaves the bus without warning (a hot-unplug): its
    /// registers and configuration space read all ones and writes are lost, and the driver is
    /// not told yet. Then call [`notify_surprise_removal`](Self::notify_surprise_removal).
    pub fn remove_device(&self, a: AdapterId) {
        let mut st = self.st();
        let device = st.ndis.adapters[a.0].device;
        st.devices[device].pci.presence = Presence::Removed { told: false };
        crate::machine::set_line(&mut st, device, false);
    }

    /// `MiniportDevicePnPEventNotify(NdisDevicePnPEventSurpriseRemoved)` at PASSIVE_LEVEL, after
    /// [`remove_device`](Self::remove_device); from its return any register access of the
    /// device is a bug check ([`rule::REMOVED_DEVICE_ACCESS`]). NDIS then pauses and halts the
    /// adapter (`NdisHaltDeviceSurpriseRemoved`): the test calls [`pause`](Self::pause) and
    /// [`halt`](Self::halt).
    pub fn notify_surprise_removal(&self, a: AdapterId) {
        let device = {
            let st = self.st();
            let device = st.ndis.adapters[a.0].device;
            assert!(
                matches!(st.devices[device].pci.presence, Presence::Removed { .. }),
                "remove_device first"
            );
            device
        };
        // NET_DEVICE_PNP_EVENT: header, port, event code at offset 8, then an empty buffer.
        let mut event = [0u64; 8];
        let header = sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_DEFAULT,
            Revision: 1,
            Size: 64,
        };
        let first =
            u32::from(header.Type) | u32::from(header.Revision) << 8 | u32::from(header.Size) << 16;
        event[0] = u64::from(first);
        event[1] = u64::from(sys::NdisDevicePnPEventSurpriseRemoved);
        let p = event.as_mut_ptr().cast::<sys::NET_DEVICE_PNP_EVENT>();
        self.adapter_callback(a, crate::machine::Callback::PnpEvent(a.0), |c, ctx| {
            let f = c
                .DevicePnPEventNotifyHandler
                .expect("checked at registration");
            Box::new(move || {
                // SAFETY: the driver's handler with its adapter context and an event that
                // outlives the call, at PASSIVE_LEVEL.
                unsafe { f(ctx, p) };
                sys::NDIS_STATUS_SUCCESS
            })
        });
        self.st().devices[device].pci.presence = Presence::Removed { told: true };
    }

    /// `OID_PNP_SET_POWER` with `state`; a pended request is waited for.
    fn power_oid(&self, a: AdapterId, state: u32) -> sys::NDIS_STATUS {
        let r = self.oid_set(a, sys::OID_PNP_SET_POWER, &state.to_le_bytes());
        if r.status != sys::NDIS_STATUS_PENDING {
            return r.status;
        }
        self.run_dpcs();
        self.oid_completion()
            .map_or(sys::NDIS_STATUS_PENDING, |c| c.status)
    }

    fn power_lost(&self, device: crate::DeviceId) {
        let mut st = self.st();
        crate::pci::drop_events(&mut st, device.0);
        if let Some(f) = st.devices[device.0].pci.function.as_mut() {
            f.power_lost();
        }
    }
}

fn power_oid_must_succeed(a: AdapterId, oid: &str, state: u32, status: sys::NDIS_STATUS) {
    if status != sys::NDIS_STATUS_SUCCESS {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::POWER_OID, a.0, state as usize, status as u32 as usize],
            format!(
                "{oid}(D{}) on adapter {} returned {status:#010x}: a miniport must succeed it \
                 (the power manager cannot stop a system sleep)",
                state.saturating_sub(1),
                a.0
            ),
        );
    }
}
