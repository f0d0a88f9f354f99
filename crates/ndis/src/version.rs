//! The NDIS version a driver is written against, and what it implies for registration.

use ndis_sys as sys;

/// `MajorNdisVersion.MinorNdisVersion` as declared in the driver characteristics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NdisVersion {
    pub major: u8,
    pub minor: u8,
}

impl NdisVersion {
    pub const V6_0: Self = Self::new(6, 0);
    pub const V6_1: Self = Self::new(6, 1);
    /// Windows 7: `NdisMQueueDpcEx`, receive throttling and direct OIDs are mandatory from here.
    pub const V6_20: Self = Self::new(6, 20);
    pub const V6_30: Self = Self::new(6, 30);
    pub const V6_40: Self = Self::new(6, 40);
    pub const V6_50: Self = Self::new(6, 50);
    pub const V6_60: Self = Self::new(6, 60);
    pub const V6_70: Self = Self::new(6, 70);
    pub const V6_80: Self = Self::new(6, 80);
    pub const V6_82: Self = Self::new(6, 82);
    pub const V6_85: Self = Self::new(6, 85);
    pub const V6_86: Self = Self::new(6, 86);
    pub const V6_87: Self = Self::new(6, 87);
    pub const V6_89: Self = Self::new(6, 89);

    /// Every version Windows has shipped (6.0 to 6.89), oldest first: what a negotiated version
    /// can be, since NDIS refuses a `MinorNdisVersion` it does not know.
    pub const KNOWN: &'static [NdisVersion] = &[
        Self::new(6, 0),
        Self::new(6, 1),
        Self::new(6, 20),
        Self::new(6, 30),
        Self::new(6, 40),
        Self::new(6, 50),
        Self::new(6, 51),
        Self::new(6, 60),
        Self::new(6, 70),
        Self::new(6, 80),
        Self::new(6, 81),
        Self::new(6, 82),
        Self::new(6, 83),
        Self::new(6, 84),
        Self::new(6, 85),
        Self::new(6, 86),
        Self::new(6, 87),
        Self::new(6, 88),
        Self::new(6, 89),
    ];

    pub const fn new(major: u8, minor: u8) -> Self {
        Self { major, minor }
    }

    /// `NdisGetVersion()` encoding: `(major << 16) | minor`. A component that does not fit a
    /// byte saturates, so a future 6.300 compares above every version known today.
    pub const fn from_runtime(value: u32) -> Self {
        let major = value >> 16;
        let minor = value & 0xFFFF;
        Self::new(
            if major > 0xFF { 0xFF } else { major as u8 },
            if minor > 0xFF { 0xFF } else { minor as u8 },
        )
    }

    /// The `NdisGetVersion()` value of this version.
    pub const fn to_runtime(self) -> u32 {
        ((self.major as u32) << 16) | self.minor as u32
    }

    const fn at_least(self, other: NdisVersion) -> bool {
        self.major > other.major || (self.major == other.major && self.minor >= other.minor)
    }

    /// Whether Windows has shipped this version ([`KNOWN`](Self::KNOWN)).
    pub const fn is_known(self) -> bool {
        let mut i = 0;
        while i < Self::KNOWN.len() {
            let k = Self::KNOWN[i];
            if k.major == self.major && k.minor == self.minor {
                return true;
            }
            i += 1;
        }
        false
    }

    /// The registration attributes' revision (size 28 for both): 2 from 6.30, which adds only
    /// attribute flags (`NO_PAUSE_ON_SUSPEND` among them), 1 before.
    pub const fn registration_attributes_revision(self) -> u8 {
        if self.at_least(Self::V6_30) {
            sys::NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_2
        } else {
            sys::NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_1
        }
    }

    /// The general attributes' revision and size: 2 (224 bytes, with
    /// `PowerManagementCapabilitiesEx`) from 6.20, 1 (216) before.
    pub const fn general_attributes_revision(self) -> (u8, u16) {
        if self.at_least(Self::V6_20) {
            (
                sys::NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2,
                sys::NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2,
            )
        } else {
            (
                sys::NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_1,
                sys::NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_1,
            )
        }
    }

    /// Whether `NDIS_MINIPORT_ATTRIBUTES_NO_PAUSE_ON_SUSPEND` means anything (6.30 and later).
    pub const fn has_no_pause_on_suspend(self) -> bool {
        self.at_least(Self::V6_30)
    }

    /// The driver-characteristics revision and `Header.Size` this version registers with:
    /// revision 1 for 6.0, 2 for 6.1–6.7x (direct OIDs), 3 from 6.80 (synchronous OIDs).
    pub const fn driver_characteristics_revision(self) -> (u8, u16) {
        if self.minor >= 80 {
            (
                sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3,
                sys::NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3,
            )
        } else if self.minor >= 1 {
            (
                sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2,
                sys::NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2,
            )
        } else {
            (
                sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_1,
                sys::NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_1,
            )
        }
    }
}

/// The NDIS versions a driver supports, oldest and newest. At `DriverEntry` the framework
/// registers the newest version both the driver and the running NDIS (`NdisGetVersion`) know
/// ([`negotiate`](Self::negotiate)), so one image runs on every Windows in the range and uses
/// what each offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdisVersions {
    pub min: NdisVersion,
    pub max: NdisVersion,
}

impl NdisVersions {
    /// `min..=max`; both must be versions Windows shipped and `min <= max` (checked at compile
    /// time when used in a constant).
    pub const fn new(min: NdisVersion, max: NdisVersion) -> Self {
        assert!(
            min.is_known() && max.is_known(),
            "not an NDIS version Windows shipped"
        );
        assert!(max.at_least(min), "min above max");
        Self { min, max }
    }

    /// One version only.
    pub const fn exactly(version: NdisVersion) -> Self {
        Self::new(version, version)
    }

    /// The version to register on an NDIS that reports `runtime` (`NdisGetVersion()`): the
    /// newest known version at or below both `runtime` and `max`. `None` when that is below
    /// `min`: the driver cannot run there, and `DriverEntry` fails with
    /// `NDIS_STATUS_BAD_VERSION`.
    pub const fn negotiate(self, runtime: NdisVersion) -> Option<NdisVersion> {
        let ceiling = if runtime.at_least(self.max) {
            self.max
        } else {
            runtime
        };
        let mut i = NdisVersion::KNOWN.len();
        while i > 0 {
            i -= 1;
            let v = NdisVersion::KNOWN[i];
            if ceiling.at_least(v) {
                return if v.at_least(self.min) { Some(v) } else { None };
            }
        }
        None
    }
}

/// The version the framework registered (or would register) driver `versions` with on this
/// NDIS: reads `NdisGetVersion` each time, which is cheap and cannot change while the image is
/// loaded, so nothing needs to be remembered between `DriverEntry` and later callbacks.
pub fn registered(versions: NdisVersions) -> Option<NdisVersion> {
    // SAFETY: NdisGetVersion takes no arguments and may be called at any IRQL.
    let runtime = unsafe { sys::NdisGetVersion() };
    versions.negotiate(NdisVersion::from_runtime(runtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characteristics_revision_follows_the_ndis_version() {
        assert_eq!(
            NdisVersion::V6_0.driver_characteristics_revision(),
            (1, 136)
        );
        assert_eq!(
            NdisVersion::V6_1.driver_characteristics_revision(),
            (2, 152)
        );
        assert_eq!(
            NdisVersion::V6_20.driver_characteristics_revision(),
            (2, 152)
        );
        assert_eq!(
            NdisVersion::V6_70.driver_characteristics_revision(),
            (2, 152)
        );
        assert_eq!(
            NdisVersion::V6_80.driver_characteristics_revision(),
            (3, 160)
        );
    }

    #[test]
    fn negotiation_takes_the_newest_version_both_know() {
        let vionet = NdisVersions::new(NdisVersion::V6_20, NdisVersion::V6_89);
        let os = |minor| NdisVersion::new(6, minor);
        assert_eq!(vionet.negotiate(os(20)), Some(NdisVersion::V6_20));
        assert_eq!(vionet.negotiate(os(30)), Some(NdisVersion::V6_30));
        assert_eq!(vionet.negotiate(os(86)), Some(NdisVersion::V6_86));
        assert_eq!(vionet.negotiate(os(89)), Some(NdisVersion::V6_89));
        // A newer NDIS than the driver knows: the driver's newest.
        assert_eq!(vionet.negotiate(os(95)), Some(NdisVersion::V6_89));
        assert_eq!(
            vionet.negotiate(NdisVersion::from_runtime(0x0007_0000)),
            Some(NdisVersion::V6_89)
        );
        // A version Windows never shipped rounds down to one it did.
        assert_eq!(vionet.negotiate(os(35)), Some(NdisVersion::V6_30));
        // Older than the driver's minimum: no version.
        assert_eq!(vionet.negotiate(os(1)), None);
        assert_eq!(vionet.negotiate(os(0)), None);
        let only = NdisVersions::exactly(NdisVersion::V6_30);
        assert_eq!(only.negotiate(os(89)), Some(NdisVersion::V6_30));
        assert_eq!(only.negotiate(os(20)), None);
    }

    #[test]
    fn attribute_revisions_follow_the_version() {
        assert_eq!(NdisVersion::V6_20.registration_attributes_revision(), 1);
        assert_eq!(NdisVersion::V6_30.registration_attributes_revision(), 2);
        assert_eq!(NdisVersion::V6_89.registration_attributes_revision(), 2);
        assert_eq!(NdisVersion::V6_1.general_attributes_revision(), (1, 216));
        assert_eq!(NdisVersion::V6_20.general_attributes_revision(), (2, 224));
        assert!(!NdisVersion::V6_20.has_no_pause_on_suspend());
        assert!(NdisVersion::V6_30.has_no_pause_on_suspend());
        assert!(NdisVersion::new(6, 51).is_known());
        assert!(!NdisVersion::new(6, 25).is_known());
    }

    #[test]
    fn runtime_encoding_round_trips() {
        assert_eq!(NdisVersion::V6_89.to_runtime(), 0x0006_0059);
        assert_eq!(NdisVersion::from_runtime(0x0006_0059), NdisVersion::V6_89);
        assert_eq!(
            NdisVersion::from_runtime(sys::NDIS_RUNTIME_VERSION_620),
            NdisVersion::V6_20
        );
    }
}
