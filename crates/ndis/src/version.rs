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
    pub const V6_87: Self = Self::new(6, 87);

    pub const fn new(major: u8, minor: u8) -> Self {
        Self { major, minor }
    }

    /// `NdisGetVersion()` encoding: `(major << 16) | minor`.
    pub const fn from_runtime(value: u32) -> Self {
        Self::new((value >> 16) as u8, value as u8)
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
    fn runtime_encoding_round_trips() {
        assert_eq!(
            NdisVersion::from_runtime(sys::NDIS_RUNTIME_VERSION_620),
            NdisVersion::V6_20
        );
    }
}
