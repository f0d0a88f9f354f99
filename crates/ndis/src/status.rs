//! `NDIS_STATUS` as a type: the framework's error values.

use core::fmt;

use ndis_sys as sys;

/// An `NDIS_STATUS`. Negative values are errors, as with `NTSTATUS`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Status(pub sys::NDIS_STATUS);

impl Status {
    pub const SUCCESS: Status = Status(sys::NDIS_STATUS_SUCCESS);
    pub const PENDING: Status = Status(sys::NDIS_STATUS_PENDING);
    pub const FAILURE: Status = Status(sys::NDIS_STATUS_FAILURE);
    pub const RESOURCES: Status = Status(sys::NDIS_STATUS_RESOURCES);
    pub const NOT_SUPPORTED: Status = Status(sys::NDIS_STATUS_NOT_SUPPORTED);
    pub const INVALID_PARAMETER: Status = Status(sys::NDIS_STATUS_INVALID_PARAMETER);
    pub const INVALID_LENGTH: Status = Status(sys::NDIS_STATUS_INVALID_LENGTH);
    pub const INVALID_DATA: Status = Status(sys::NDIS_STATUS_INVALID_DATA);
    pub const INVALID_PACKET: Status = Status(sys::NDIS_STATUS_INVALID_PACKET);
    pub const INVALID_OID: Status = Status(sys::NDIS_STATUS_INVALID_OID);
    pub const BAD_VERSION: Status = Status(sys::NDIS_STATUS_BAD_VERSION);
    pub const BAD_CHARACTERISTICS: Status = Status(sys::NDIS_STATUS_BAD_CHARACTERISTICS);
    pub const ADAPTER_NOT_FOUND: Status = Status(sys::NDIS_STATUS_ADAPTER_NOT_FOUND);
    pub const DEVICE_FAILED: Status = Status(sys::NDIS_STATUS_DEVICE_FAILED);
    pub const RESOURCE_CONFLICT: Status = Status(sys::NDIS_STATUS_RESOURCE_CONFLICT);
    pub const ADAPTER_REMOVED: Status = Status(sys::NDIS_STATUS_ADAPTER_REMOVED);
    /// Sends refused while the adapter is out of D0 (`OID_PNP_SET_POWER` asks for it).
    pub const LOW_POWER_STATE: Status = Status(sys::NDIS_STATUS_LOW_POWER_STATE);
    /// Sends refused while the adapter is paused.
    pub const PAUSED: Status = Status(sys::NDIS_STATUS_PAUSED);
    /// OID requests after surprise removal.
    pub const NOT_ACCEPTED: Status = Status(sys::NDIS_STATUS_NOT_ACCEPTED);

    pub const fn is_success(self) -> bool {
        self.0 >= 0
    }

    const fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::SUCCESS => "NDIS_STATUS_SUCCESS",
            Self::PENDING => "NDIS_STATUS_PENDING",
            Self::FAILURE => "NDIS_STATUS_FAILURE",
            Self::RESOURCES => "NDIS_STATUS_RESOURCES",
            Self::NOT_SUPPORTED => "NDIS_STATUS_NOT_SUPPORTED",
            Self::INVALID_PARAMETER => "NDIS_STATUS_INVALID_PARAMETER",
            Self::INVALID_LENGTH => "NDIS_STATUS_INVALID_LENGTH",
            Self::INVALID_DATA => "NDIS_STATUS_INVALID_DATA",
            Self::INVALID_OID => "NDIS_STATUS_INVALID_OID",
            Self::BAD_VERSION => "NDIS_STATUS_BAD_VERSION",
            Self::BAD_CHARACTERISTICS => "NDIS_STATUS_BAD_CHARACTERISTICS",
            Self::ADAPTER_NOT_FOUND => "NDIS_STATUS_ADAPTER_NOT_FOUND",
            Self::DEVICE_FAILED => "NDIS_STATUS_DEVICE_FAILED",
            Self::RESOURCE_CONFLICT => "NDIS_STATUS_RESOURCE_CONFLICT",
            Self::ADAPTER_REMOVED => "NDIS_STATUS_ADAPTER_REMOVED",
            Self::LOW_POWER_STATE => "NDIS_STATUS_LOW_POWER_STATE",
            Self::PAUSED => "NDIS_STATUS_PAUSED",
            Self::NOT_ACCEPTED => "NDIS_STATUS_NOT_ACCEPTED",
            _ => return None,
        })
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
