//! `NDIS_OID_REQUEST` (ndis/oidrequest.h): the query/set/method requests NDIS sends a miniport.

use crate::base::*;
use crate::layout::layout;
use crate::object::NDIS_OBJECT_HEADER;

/// `NDIS_REQUEST_TYPE`.
pub type NDIS_REQUEST_TYPE = i32;
pub const NdisRequestQueryInformation: NDIS_REQUEST_TYPE = 0;
pub const NdisRequestSetInformation: NDIS_REQUEST_TYPE = 1;
pub const NdisRequestQueryStatistics: NDIS_REQUEST_TYPE = 2;
pub const NdisRequestMethod: NDIS_REQUEST_TYPE = 12;

pub const NDIS_OBJECT_TYPE_OID_REQUEST: UCHAR = 0x96;
pub const NDIS_OID_REQUEST_REVISION_1: UCHAR = 1;
pub const NDIS_OID_REQUEST_REVISION_2: UCHAR = 2;
pub const NDIS_SIZEOF_OID_REQUEST_REVISION_1: USHORT = 0xEC;
pub const NDIS_SIZEOF_OID_REQUEST_REVISION_2: USHORT = 0xF8;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_OID_REQUEST_QUERY {
    pub Oid: NDIS_OID,
    pub InformationBuffer: PVOID,
    pub InformationBufferLength: UINT,
    pub BytesWritten: UINT,
    pub BytesNeeded: UINT,
}
layout!(NDIS_OID_REQUEST_QUERY, size = 32, align = 8, {
    Oid: 0, InformationBuffer: 8, InformationBufferLength: 16, BytesWritten: 20, BytesNeeded: 24,
});

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_OID_REQUEST_SET {
    pub Oid: NDIS_OID,
    pub InformationBuffer: PVOID,
    pub InformationBufferLength: UINT,
    pub BytesRead: UINT,
    pub BytesNeeded: UINT,
}
layout!(NDIS_OID_REQUEST_SET, size = 32, align = 8, {
    Oid: 0, InformationBuffer: 8, InformationBufferLength: 16, BytesRead: 20, BytesNeeded: 24,
});

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_OID_REQUEST_METHOD {
    pub Oid: NDIS_OID,
    pub InformationBuffer: PVOID,
    pub InputBufferLength: ULONG,
    pub OutputBufferLength: ULONG,
    pub MethodId: ULONG,
    pub BytesWritten: UINT,
    pub BytesRead: UINT,
    pub BytesNeeded: UINT,
}
layout!(NDIS_OID_REQUEST_METHOD, size = 40, align = 8, {
    Oid: 0, InformationBuffer: 8, InputBufferLength: 16, OutputBufferLength: 20, MethodId: 24,
    BytesWritten: 28, BytesRead: 32, BytesNeeded: 36,
});

/// The `DATA` union, keyed on `RequestType`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union NDIS_OID_REQUEST_DATA {
    pub QUERY_INFORMATION: NDIS_OID_REQUEST_QUERY,
    pub SET_INFORMATION: NDIS_OID_REQUEST_SET,
    pub METHOD_INFORMATION: NDIS_OID_REQUEST_METHOD,
}
layout!(NDIS_OID_REQUEST_DATA, size = 40, align = 8, {});

/// `NDIS_OID_REQUEST` at revision 2 (NDIS 6.50+); revision 1 is the prefix through `Reserved2`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NDIS_OID_REQUEST {
    pub Header: NDIS_OBJECT_HEADER,
    pub RequestType: NDIS_REQUEST_TYPE,
    pub PortNumber: NDIS_PORT_NUMBER,
    pub Timeout: UINT,
    pub RequestId: PVOID,
    pub RequestHandle: NDIS_HANDLE,
    pub DATA: NDIS_OID_REQUEST_DATA,
    pub NdisReserved: [UCHAR; 16 * 8],
    pub MiniportReserved: [UCHAR; 2 * 8],
    pub SourceReserved: [UCHAR; 2 * 8],
    pub SupportedRevision: UCHAR,
    pub Reserved1: UCHAR,
    pub Reserved2: USHORT,
    pub SwitchId: ULONG,
    pub VPortId: ULONG,
    pub Flags: ULONG,
}
layout!(NDIS_OID_REQUEST, size = 0xF8, align = 8, {
    Header: 0, RequestType: 4, PortNumber: 8, Timeout: 0xC, RequestId: 0x10, RequestHandle: 0x18,
    DATA: 0x20, NdisReserved: 0x48, MiniportReserved: 0xC8, SourceReserved: 0xD8,
    SupportedRevision: 0xE8, Reserved1: 0xE9, Reserved2: 0xEA, SwitchId: 0xEC, VPortId: 0xF0,
    Flags: 0xF4,
});
