//! `NDIS_STATUS` as a type: the framework's error values.

use core::fmt;

use ndis_sys as sys;

/// An `NDIS_STATUS`. Negative values are errors, as with `NTSTATUS`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Status(pub sys::NDIS_STATUS);

/// Declares each constant once: its doc, its name in ndis.h, and its `ndis-sys` value; `name()`
/// (the `Debug` text) is generated from the same list.
macro_rules! statuses {
    ($($(#[doc = $doc:literal])* $name:ident = $sys:ident;)*) => {
        impl Status {
            $($(#[doc = $doc])* pub const $name: Status = Status(sys::$sys);)*

            const fn name(self) -> Option<&'static str> {
                $(if self.0 == sys::$sys {
                    return Some(stringify!($sys));
                })*
                None
            }

            /// Every named constant with its ndis.h name, in declaration order.
            pub const ALL: &'static [(Status, &'static str)] = &[$((Self::$name, stringify!($sys)),)*];
        }
    };
}

statuses! {
    /// The call did what was asked.
    SUCCESS = NDIS_STATUS_SUCCESS;
    /// The call completes later (an OID the driver completes with `complete`, a pause or
    /// restart finished later).
    PENDING = NDIS_STATUS_PENDING;
    /// Generic failure, when nothing more precise applies.
    FAILURE = NDIS_STATUS_FAILURE;
    /// Out of memory or another resource (an allocation failed).
    RESOURCES = NDIS_STATUS_RESOURCES;
    /// A recognised request the driver does not support.
    NOT_SUPPORTED = NDIS_STATUS_NOT_SUPPORTED;
    /// A parameter is invalid (an NDIS 6 object header of the wrong type, revision or size).
    INVALID_PARAMETER = NDIS_STATUS_INVALID_PARAMETER;
    /// An OID's `InformationBufferLength` is wrong for the OID.
    INVALID_LENGTH = NDIS_STATUS_INVALID_LENGTH;
    /// An OID's buffer is too small for the data; `BytesNeeded` says how much is needed.
    BUFFER_TOO_SHORT = NDIS_STATUS_BUFFER_TOO_SHORT;
    /// An OID's data is invalid (a value out of range).
    INVALID_DATA = NDIS_STATUS_INVALID_DATA;
    /// A frame the driver cannot send as it is (malformed, or too large).
    INVALID_PACKET = NDIS_STATUS_INVALID_PACKET;
    /// An OID the driver does not recognise.
    INVALID_OID = NDIS_STATUS_INVALID_OID;
    /// A request the adapter's state does not allow now.
    INVALID_STATE = NDIS_STATUS_INVALID_STATE;
    /// A request the device cannot take (`STATUS_INVALID_DEVICE_REQUEST`).
    INVALID_DEVICE_REQUEST = NDIS_STATUS_INVALID_DEVICE_REQUEST;
    /// The driver's NDIS version is not one the running NDIS supports.
    BAD_VERSION = NDIS_STATUS_BAD_VERSION;
    /// The miniport characteristics are invalid (registration).
    BAD_CHARACTERISTICS = NDIS_STATUS_BAD_CHARACTERISTICS;
    /// Initialize found no device it can drive (wrong device, no usable BAR).
    ADAPTER_NOT_FOUND = NDIS_STATUS_ADAPTER_NOT_FOUND;
    /// The adapter cannot take requests yet.
    ADAPTER_NOT_READY = NDIS_STATUS_ADAPTER_NOT_READY;
    /// The device failed (stopped responding, or reported a fatal error).
    DEVICE_FAILED = NDIS_STATUS_DEVICE_FAILED;
    /// The resources PnP assigned do not fit (an interrupt that cannot be connected).
    RESOURCE_CONFLICT = NDIS_STATUS_RESOURCE_CONFLICT;
    /// The adapter is gone (surprise removal).
    ADAPTER_REMOVED = NDIS_STATUS_ADAPTER_REMOVED;
    /// A medium the driver does not support.
    UNSUPPORTED_MEDIA = NDIS_STATUS_UNSUPPORTED_MEDIA;
    /// A structure revision the driver does not support.
    UNSUPPORTED_REVISION = NDIS_STATUS_UNSUPPORTED_REVISION;
    /// Sends refused while the adapter is out of D0 (`OID_PNP_SET_POWER` asks for it).
    LOW_POWER_STATE = NDIS_STATUS_LOW_POWER_STATE;
    /// Sends refused while the adapter is paused.
    PAUSED = NDIS_STATUS_PAUSED;
    /// Sends failed while the link is down.
    MEDIA_DISCONNECTED = NDIS_STATUS_MEDIA_DISCONNECTED;
    /// A reset is in progress: sends and requests are refused until it ends.
    RESET_IN_PROGRESS = NDIS_STATUS_RESET_IN_PROGRESS;
    /// A request (or a send: ndis.h's `NDIS_STATUS_SEND_ABORTED` is this value) was aborted by a
    /// reset, a halt or a cancel.
    REQUEST_ABORTED = NDIS_STATUS_REQUEST_ABORTED;
    /// The multicast list is full (`OID_802_3_MULTICAST_LIST` with more entries than supported).
    MULTICAST_FULL = NDIS_STATUS_MULTICAST_FULL;
    /// The device is busy; try again.
    BUSY = NDIS_STATUS_BUSY;
    /// A reset could not recover the device (`MiniportResetEx`'s result), a warning.
    HARD_ERRORS = NDIS_STATUS_HARD_ERRORS;
    /// OID requests after surprise removal.
    NOT_ACCEPTED = NDIS_STATUS_NOT_ACCEPTED;
    /// The data did not fit; what fits was returned (`STATUS_BUFFER_OVERFLOW`, a warning).
    BUFFER_OVERFLOW = NDIS_STATUS_BUFFER_OVERFLOW;
}

impl Status {
    /// Whether the status is not an error: `SUCCESS`, `PENDING` and the other non-negative values
    /// (warnings such as [`BUFFER_OVERFLOW`](Self::BUFFER_OVERFLOW) are negative, as in
    /// `NT_SUCCESS`).
    pub const fn is_success(self) -> bool {
        self.0 >= 0
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#010x})", self.0 as u32),
            None => write!(f, "NDIS_STATUS({:#010x})", self.0 as u32),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    /// The values as ndis.h (WDK 10) defines them, written out here independently of ndis-sys:
    /// a wrong constant on either side fails.
    const NDIS_H: &[(&str, u32)] = &[
        ("NDIS_STATUS_SUCCESS", 0x0000_0000),
        ("NDIS_STATUS_PENDING", 0x0000_0103),
        ("NDIS_STATUS_FAILURE", 0xC000_0001),
        ("NDIS_STATUS_RESOURCES", 0xC000_009A),
        ("NDIS_STATUS_NOT_SUPPORTED", 0xC000_00BB),
        ("NDIS_STATUS_INVALID_PARAMETER", 0xC000_000D),
        ("NDIS_STATUS_INVALID_LENGTH", 0xC001_0014),
        ("NDIS_STATUS_BUFFER_TOO_SHORT", 0xC001_0016),
        ("NDIS_STATUS_INVALID_DATA", 0xC001_0015),
        ("NDIS_STATUS_INVALID_PACKET", 0xC001_000F),
        ("NDIS_STATUS_INVALID_OID", 0xC001_0017),
        ("NDIS_STATUS_INVALID_STATE", 0xC000_0184),
        ("NDIS_STATUS_INVALID_DEVICE_REQUEST", 0xC000_0010),
        ("NDIS_STATUS_BAD_VERSION", 0xC001_0004),
        ("NDIS_STATUS_BAD_CHARACTERISTICS", 0xC001_0005),
        ("NDIS_STATUS_ADAPTER_NOT_FOUND", 0xC001_0006),
        ("NDIS_STATUS_ADAPTER_NOT_READY", 0xC001_0011),
        ("NDIS_STATUS_DEVICE_FAILED", 0xC001_0008),
        ("NDIS_STATUS_RESOURCE_CONFLICT", 0xC001_001E),
        ("NDIS_STATUS_ADAPTER_REMOVED", 0xC001_0018),
        ("NDIS_STATUS_UNSUPPORTED_MEDIA", 0xC001_0019),
        ("NDIS_STATUS_UNSUPPORTED_REVISION", 0xC023_002C),
        ("NDIS_STATUS_LOW_POWER_STATE", 0xC023_002F),
        ("NDIS_STATUS_PAUSED", 0xC023_002A),
        ("NDIS_STATUS_MEDIA_DISCONNECTED", 0xC023_001F),
        ("NDIS_STATUS_RESET_IN_PROGRESS", 0xC001_000D),
        ("NDIS_STATUS_REQUEST_ABORTED", 0xC001_000C),
        ("NDIS_STATUS_MULTICAST_FULL", 0xC001_0009),
        ("NDIS_STATUS_BUSY", 0x8000_0011),
        ("NDIS_STATUS_HARD_ERRORS", 0x8001_0004),
        ("NDIS_STATUS_NOT_ACCEPTED", 0x0001_0003),
        ("NDIS_STATUS_BUFFER_OVERFLOW", 0x8000_0005),
    ];

    #[test]
    fn every_constant_has_the_ndis_h_value_and_name() {
        assert_eq!(Status::ALL.len(), NDIS_H.len());
        for (&(status, name), &(h_name, h_value)) in Status::ALL.iter().zip(NDIS_H) {
            assert_eq!(name, h_name);
            assert_eq!(status.0 as u32, h_value, "{name}");
            assert_eq!(format!("{status:?}"), format!("{name} ({h_value:#010x})"));
        }
        // No two constants share a value (the Debug name would be ambiguous).
        for (i, a) in Status::ALL.iter().enumerate() {
            for b in &Status::ALL[i + 1..] {
                assert_ne!(a.0, b.0, "{} and {}", a.1, b.1);
            }
        }
        assert_eq!(sys::NDIS_STATUS_SEND_ABORTED, Status::REQUEST_ABORTED.0);
        assert_eq!(format!("{:?}", Status(0x1234)), "NDIS_STATUS(0x00001234)");
    }

    #[test]
    fn status_is_an_ndis_status_in_memory() {
        use core::mem::{align_of, size_of};
        assert_eq!(size_of::<Status>(), size_of::<sys::NDIS_STATUS>());
        assert_eq!(align_of::<Status>(), align_of::<sys::NDIS_STATUS>());
        assert_eq!(size_of::<Status>(), 4);
        assert_eq!(size_of::<[Status; 3]>(), 12);
        assert_eq!(Status::PAUSED.0, 0xC023_002Au32 as i32);
    }

    #[test]
    fn success_is_non_negative() {
        assert!(Status::SUCCESS.is_success());
        assert!(Status::PENDING.is_success());
        assert!(Status::NOT_ACCEPTED.is_success());
        assert!(!Status::BUFFER_OVERFLOW.is_success());
        assert!(!Status::FAILURE.is_success());
        assert!(!Status::MEDIA_DISCONNECTED.is_success());
    }

    #[test]
    fn a_register_error_converts_to_its_status() {
        use crate::interrupt::RegisterError;
        fn register() -> Result<(), RegisterError<u8>> {
            Err(RegisterError {
                status: Status::RESOURCE_CONFLICT,
                handler: 7,
            })
        }
        fn initialize() -> Result<(), Status> {
            register()?; // the conversion a driver's initialize relies on
            Ok(())
        }
        assert_eq!(initialize(), Err(Status::RESOURCE_CONFLICT));
        let e = register().unwrap_err();
        assert_eq!(e.handler, 7);
        assert_eq!(Status::from(e), Status::RESOURCE_CONFLICT);
    }
}
