//! Task offload (ntddndis.h, ndis/nblchecksum.h): the checksum offload a miniport reports at
//! initialize, the parameters the stack sets, and the per-list checksum information.
//!
//! Field order and bit positions: the WDK headers as published in Microsoft's documentation
//! (`NDIS_OFFLOAD`, `NDIS_TCP_IP_CHECKSUM_OFFLOAD`, `NDIS_OFFLOAD_PARAMETERS`,
//! `NDIS_OFFLOAD_ENCAPSULATION`, `NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO`), cross-read with
//! ReactOS' NDIS 6 headers. MSVC allocates `ULONG` bit-fields from the least significant bit, so
//! each C bit-field group is one `ULONG` here with shift constants beside it.

use crate::base::{NDIS_OID, NDIS_STATUS, PVOID, UCHAR, ULONG, USHORT};
use crate::layout::layout;
use crate::object::NDIS_OBJECT_HEADER;

pub const NDIS_OBJECT_TYPE_OFFLOAD: UCHAR = 0xA7;
pub const NDIS_OBJECT_TYPE_OFFLOAD_ENCAPSULATION: UCHAR = 0xA8;

pub const NDIS_OFFLOAD_REVISION_1: UCHAR = 1;
pub const NDIS_OFFLOAD_REVISION_2: UCHAR = 2;
pub const NDIS_OFFLOAD_REVISION_3: UCHAR = 3;
/// `RTL_SIZEOF_THROUGH_FIELD(NDIS_OFFLOAD, Flags)` (NDIS 6.0).
pub const NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_1: USHORT = 112;
/// Through `IPsecV2` (NDIS 6.1, 6.20).
pub const NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_2: USHORT = 144;
/// Through `EncapsulatedPacketTaskOffloadGre` (NDIS 6.30).
pub const NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_3: USHORT = 156;
pub const NDIS_OFFLOAD_PARAMETERS_REVISION_1: UCHAR = 1;
pub const NDIS_OFFLOAD_PARAMETERS_REVISION_2: UCHAR = 2;
/// Through `Flags`.
pub const NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1: USHORT = 20;
/// Through `IPsecV2IPv4`.
pub const NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_2: USHORT = 22;
pub const NDIS_OFFLOAD_ENCAPSULATION_REVISION_1: UCHAR = 1;
pub const NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1: USHORT = 28;
pub const NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1: UCHAR = 1;
pub const NDIS_SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1: USHORT = 40;

pub const OID_TCP_OFFLOAD_CURRENT_CONFIG: NDIS_OID = 0xFC01_020B;
pub const OID_TCP_OFFLOAD_PARAMETERS: NDIS_OID = 0xFC01_020C;
pub const OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES: NDIS_OID = 0xFC01_020D;
pub const OID_OFFLOAD_ENCAPSULATION: NDIS_OID = 0x0101_010A;

/// Status indication whose buffer is the new current `NDIS_OFFLOAD`.
pub const NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG: NDIS_STATUS = 0x4002_0006;
pub const NDIS_STATUS_TASK_OFFLOAD_HARDWARE_CAPABILITIES: NDIS_STATUS = 0x4002_0007;

// `Encapsulation` members: which framings an offload description applies to.
pub const NDIS_ENCAPSULATION_NOT_SUPPORTED: ULONG = 0x0000_0000;
pub const NDIS_ENCAPSULATION_NULL: ULONG = 0x0000_0001;
pub const NDIS_ENCAPSULATION_IEEE_802_3: ULONG = 0x0000_0002;
pub const NDIS_ENCAPSULATION_IEEE_802_3_P_AND_Q: ULONG = 0x0000_0004;
pub const NDIS_ENCAPSULATION_IEEE_802_3_P_AND_Q_IN_OOB: ULONG = 0x0000_0008;
pub const NDIS_ENCAPSULATION_IEEE_LLC_SNAP_ROUTED: ULONG = 0x0000_0010;

// Values of the two-bit capability fields.
pub const NDIS_OFFLOAD_NOT_SUPPORTED: ULONG = 0;
pub const NDIS_OFFLOAD_SUPPORTED: ULONG = 1;

// `NDIS_OFFLOAD_ENCAPSULATION` `Enabled`.
pub const NDIS_OFFLOAD_SET_NO_CHANGE: ULONG = 0;
pub const NDIS_OFFLOAD_SET_ON: ULONG = 1;
pub const NDIS_OFFLOAD_SET_OFF: ULONG = 2;

// `NDIS_OFFLOAD_PARAMETERS` checksum members.
pub const NDIS_OFFLOAD_PARAMETERS_NO_CHANGE: UCHAR = 0;
pub const NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED: UCHAR = 1;
pub const NDIS_OFFLOAD_PARAMETERS_TX_ENABLED_RX_DISABLED: UCHAR = 2;
pub const NDIS_OFFLOAD_PARAMETERS_RX_ENABLED_TX_DISABLED: UCHAR = 3;
pub const NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED: UCHAR = 4;

/// One IPv4 direction of `NDIS_TCP_IP_CHECKSUM_OFFLOAD` (`IPv4Transmit`, `IPv4Receive`).
/// `Flags`: two-bit fields at the `NDIS_CHECKSUM_IPV4_*_SHIFT` positions.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_TCP_IP_CHECKSUM_OFFLOAD_IPV4 {
    pub Encapsulation: ULONG,
    pub Flags: ULONG,
}
layout!(NDIS_TCP_IP_CHECKSUM_OFFLOAD_IPV4, size = 8, align = 4, { Encapsulation: 0, Flags: 4 });
pub const NDIS_CHECKSUM_IPV4_IP_OPTIONS_SHIFT: u32 = 0;
pub const NDIS_CHECKSUM_IPV4_TCP_OPTIONS_SHIFT: u32 = 2;
pub const NDIS_CHECKSUM_IPV4_TCP_SHIFT: u32 = 4;
pub const NDIS_CHECKSUM_IPV4_UDP_SHIFT: u32 = 6;
pub const NDIS_CHECKSUM_IPV4_IP_SHIFT: u32 = 8;

/// One IPv6 direction (`IPv6Transmit`, `IPv6Receive`); `Flags` at `NDIS_CHECKSUM_IPV6_*_SHIFT`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_TCP_IP_CHECKSUM_OFFLOAD_IPV6 {
    pub Encapsulation: ULONG,
    pub Flags: ULONG,
}
layout!(NDIS_TCP_IP_CHECKSUM_OFFLOAD_IPV6, size = 8, align = 4, { Encapsulation: 0, Flags: 4 });
pub const NDIS_CHECKSUM_IPV6_EXTENSION_HEADERS_SHIFT: u32 = 0;
pub const NDIS_CHECKSUM_IPV6_TCP_OPTIONS_SHIFT: u32 = 2;
pub const NDIS_CHECKSUM_IPV6_TCP_SHIFT: u32 = 4;
pub const NDIS_CHECKSUM_IPV6_UDP_SHIFT: u32 = 6;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_TCP_IP_CHECKSUM_OFFLOAD {
    pub IPv4Transmit: NDIS_TCP_IP_CHECKSUM_OFFLOAD_IPV4,
    pub IPv4Receive: NDIS_TCP_IP_CHECKSUM_OFFLOAD_IPV4,
    pub IPv6Transmit: NDIS_TCP_IP_CHECKSUM_OFFLOAD_IPV6,
    pub IPv6Receive: NDIS_TCP_IP_CHECKSUM_OFFLOAD_IPV6,
}
layout!(NDIS_TCP_IP_CHECKSUM_OFFLOAD, size = 32, align = 4, {
    IPv4Transmit: 0, IPv4Receive: 8, IPv6Transmit: 16, IPv6Receive: 24,
});

/// `NDIS_TCP_LARGE_SEND_OFFLOAD_V1.IPv4`; `Flags`: TcpOptions (bits 0-1), IpOptions (2-3).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_TCP_LARGE_SEND_OFFLOAD_V1 {
    pub Encapsulation: ULONG,
    pub MaxOffLoadSize: ULONG,
    pub MinSegmentCount: ULONG,
    pub Flags: ULONG,
}
layout!(NDIS_TCP_LARGE_SEND_OFFLOAD_V1, size = 16, align = 4, {
    Encapsulation: 0, MaxOffLoadSize: 4, MinSegmentCount: 8, Flags: 12,
});

/// `NDIS_IPSEC_OFFLOAD_V1`: `Supported` (five ULONGs), then the AH and ESP bit-field groups.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_IPSEC_OFFLOAD_V1 {
    pub Supported: [ULONG; 5],
    pub IPv4AH: ULONG,
    pub IPv4ESP: ULONG,
}
layout!(NDIS_IPSEC_OFFLOAD_V1, size = 28, align = 4, { Supported: 0, IPv4AH: 20, IPv4ESP: 24 });

/// `NDIS_TCP_LARGE_SEND_OFFLOAD_V2.IPv4`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_TCP_LARGE_SEND_OFFLOAD_V2_IPV4 {
    pub Encapsulation: ULONG,
    pub MaxOffLoadSize: ULONG,
    pub MinSegmentCount: ULONG,
}
layout!(NDIS_TCP_LARGE_SEND_OFFLOAD_V2_IPV4, size = 12, align = 4, {
    Encapsulation: 0, MaxOffLoadSize: 4, MinSegmentCount: 8,
});

/// `NDIS_TCP_LARGE_SEND_OFFLOAD_V2.IPv6`; `Flags`: IpExtensionHeadersSupported (bits 0-1),
/// TcpOptionsSupported (bits 2-3).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_TCP_LARGE_SEND_OFFLOAD_V2_IPV6 {
    pub Encapsulation: ULONG,
    pub MaxOffLoadSize: ULONG,
    pub MinSegmentCount: ULONG,
    pub Flags: ULONG,
}
layout!(NDIS_TCP_LARGE_SEND_OFFLOAD_V2_IPV6, size = 16, align = 4, {
    Encapsulation: 0, MaxOffLoadSize: 4, MinSegmentCount: 8, Flags: 12,
});
pub const NDIS_LSOV2_IPV6_EXTENSION_HEADERS_SHIFT: u32 = 0;
pub const NDIS_LSOV2_IPV6_TCP_OPTIONS_SHIFT: u32 = 2;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_TCP_LARGE_SEND_OFFLOAD_V2 {
    pub IPv4: NDIS_TCP_LARGE_SEND_OFFLOAD_V2_IPV4,
    pub IPv6: NDIS_TCP_LARGE_SEND_OFFLOAD_V2_IPV6,
}
layout!(NDIS_TCP_LARGE_SEND_OFFLOAD_V2, size = 28, align = 4, { IPv4: 0, IPv6: 12 });

/// `NDIS_IPSEC_OFFLOAD_V2`: `Encapsulation`, eleven BOOLEAN capabilities, then four ULONGs.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_IPSEC_OFFLOAD_V2 {
    pub Encapsulation: ULONG,
    pub Flags: [UCHAR; 11],
    pub UdpEsp: ULONG,
    pub AuthenticationAlgorithms: ULONG,
    pub EncryptionAlgorithms: ULONG,
    pub SaOffloadCapacity: ULONG,
}
layout!(NDIS_IPSEC_OFFLOAD_V2, size = 32, align = 4, {
    Encapsulation: 0, Flags: 4, UdpEsp: 16, AuthenticationAlgorithms: 20,
    EncryptionAlgorithms: 24, SaOffloadCapacity: 28,
});

/// `NDIS_ENCAPSULATED_PACKET_TASK_OFFLOAD`: a bit-field ULONG, then `MaxHeaderSizeSupported`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_ENCAPSULATED_PACKET_TASK_OFFLOAD {
    pub Flags: ULONG,
    pub MaxHeaderSizeSupported: ULONG,
}
layout!(NDIS_ENCAPSULATED_PACKET_TASK_OFFLOAD, size = 8, align = 4, {
    Flags: 0, MaxHeaderSizeSupported: 4,
});

/// `NDIS_OFFLOAD` through revision 3 (NDIS 6.30): what a miniport reports as hardware
/// capabilities and current configuration. NDIS reads `Header.Size` bytes, so a driver of an
/// older NDIS version sends the prefix its revision defines; later revisions (VXLAN, 464XLAT,
/// USO) append members this crate does not declare.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_OFFLOAD {
    pub Header: NDIS_OBJECT_HEADER,
    pub Checksum: NDIS_TCP_IP_CHECKSUM_OFFLOAD,
    pub LsoV1: NDIS_TCP_LARGE_SEND_OFFLOAD_V1,
    pub IPsecV1: NDIS_IPSEC_OFFLOAD_V1,
    pub LsoV2: NDIS_TCP_LARGE_SEND_OFFLOAD_V2,
    pub Flags: ULONG,
    pub IPsecV2: NDIS_IPSEC_OFFLOAD_V2,
    /// `NDIS_TCP_RECV_SEG_COALESCE_OFFLOAD`: IPv4.Enabled, IPv6.Enabled (BOOLEANs).
    pub Rsc: [UCHAR; 2],
    pub EncapsulatedPacketTaskOffloadGre: NDIS_ENCAPSULATED_PACKET_TASK_OFFLOAD,
}
layout!(NDIS_OFFLOAD, size = 156, align = 4, {
    Header: 0, Checksum: 4, LsoV1: 36, IPsecV1: 52, LsoV2: 80, Flags: 108, IPsecV2: 112,
    Rsc: 144, EncapsulatedPacketTaskOffloadGre: 148,
});

/// `NDIS_OFFLOAD_PARAMETERS` through revision 2 (`OID_TCP_OFFLOAD_PARAMETERS`). Later revisions
/// append RSC, encapsulation and USO members; a set may carry them (`Header.Size` says how many).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_OFFLOAD_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub IPv4Checksum: UCHAR,
    pub TCPIPv4Checksum: UCHAR,
    pub UDPIPv4Checksum: UCHAR,
    pub TCPIPv6Checksum: UCHAR,
    pub UDPIPv6Checksum: UCHAR,
    pub LsoV1: UCHAR,
    pub IPsecV1: UCHAR,
    pub LsoV2IPv4: UCHAR,
    pub LsoV2IPv6: UCHAR,
    pub TcpConnectionIPv4: UCHAR,
    pub TcpConnectionIPv6: UCHAR,
    pub Flags: ULONG,
    pub IPsecV2: UCHAR,
    pub IPsecV2IPv4: UCHAR,
}
layout!(NDIS_OFFLOAD_PARAMETERS, size = 24, align = 4, {
    Header: 0, IPv4Checksum: 4, TCPIPv4Checksum: 5, UDPIPv4Checksum: 6, TCPIPv6Checksum: 7,
    UDPIPv6Checksum: 8, LsoV1: 9, IPsecV1: 10, LsoV2IPv4: 11, LsoV2IPv6: 12,
    TcpConnectionIPv4: 13, TcpConnectionIPv6: 14, Flags: 16, IPsecV2: 20, IPsecV2IPv4: 21,
});

/// One IP version of `NDIS_OFFLOAD_ENCAPSULATION`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_OFFLOAD_ENCAPSULATION_IP {
    /// `NDIS_OFFLOAD_SET_*`.
    pub Enabled: ULONG,
    /// `NDIS_ENCAPSULATION_*`.
    pub EncapsulationType: ULONG,
    /// Bytes of the framing header (Ethernet: 14).
    pub HeaderSize: ULONG,
}
layout!(NDIS_OFFLOAD_ENCAPSULATION_IP, size = 12, align = 4, {
    Enabled: 0, EncapsulationType: 4, HeaderSize: 8,
});

/// `NDIS_OFFLOAD_ENCAPSULATION` (`OID_OFFLOAD_ENCAPSULATION`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NDIS_OFFLOAD_ENCAPSULATION {
    pub Header: NDIS_OBJECT_HEADER,
    pub IPv4: NDIS_OFFLOAD_ENCAPSULATION_IP,
    pub IPv6: NDIS_OFFLOAD_ENCAPSULATION_IP,
}
layout!(NDIS_OFFLOAD_ENCAPSULATION, size = 28, align = 4, { Header: 0, IPv4: 4, IPv6: 16 });

/// `NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES`: set from MiniportInitializeEx after the general
/// attributes. The TCP chimney members are left NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES {
    pub Header: NDIS_OBJECT_HEADER,
    pub DefaultOffloadConfiguration: *mut NDIS_OFFLOAD,
    pub HardwareOffloadCapabilities: *mut NDIS_OFFLOAD,
    pub DefaultTcpConnectionOffloadConfiguration: PVOID,
    pub TcpConnectionOffloadHardwareCapabilities: PVOID,
}
layout!(NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES, size = 40, align = 8, {
    Header: 0, DefaultOffloadConfiguration: 8, HardwareOffloadCapabilities: 16,
    DefaultTcpConnectionOffloadConfiguration: 24, TcpConnectionOffloadHardwareCapabilities: 32,
});

// `NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO` (the low 32 bits of
// `NetBufferListInfo[TcpIpChecksumNetBufferListInfo]`).
// Transmit: what the stack asks the miniport to compute.
pub const NDIS_CHECKSUM_TX_IS_IPV4: ULONG = 1 << 0;
pub const NDIS_CHECKSUM_TX_IS_IPV6: ULONG = 1 << 1;
pub const NDIS_CHECKSUM_TX_TCP: ULONG = 1 << 2;
pub const NDIS_CHECKSUM_TX_UDP: ULONG = 1 << 3;
pub const NDIS_CHECKSUM_TX_IP_HEADER: ULONG = 1 << 4;
/// `TcpHeaderOffset`: 10 bits from bit 16.
pub const NDIS_CHECKSUM_TX_TCP_HEADER_OFFSET_SHIFT: u32 = 16;
pub const NDIS_CHECKSUM_TX_TCP_HEADER_OFFSET_MASK: ULONG = 0x3FF;
// Receive: what the miniport found.
pub const NDIS_CHECKSUM_RX_TCP_FAILED: ULONG = 1 << 0;
pub const NDIS_CHECKSUM_RX_UDP_FAILED: ULONG = 1 << 1;
pub const NDIS_CHECKSUM_RX_IP_FAILED: ULONG = 1 << 2;
pub const NDIS_CHECKSUM_RX_TCP_SUCCEEDED: ULONG = 1 << 3;
pub const NDIS_CHECKSUM_RX_UDP_SUCCEEDED: ULONG = 1 << 4;
pub const NDIS_CHECKSUM_RX_IP_SUCCEEDED: ULONG = 1 << 5;
pub const NDIS_CHECKSUM_RX_LOOPBACK: ULONG = 1 << 6;

// `NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO` (the low 32 bits of
// `NetBufferListInfo[TcpLargeSendNetBufferListInfo]`). Transmit (v1 and v2): MSS in bits 0-19,
// TcpHeaderOffset in bits 20-29, Type in bit 30; v2: IPVersion in bit 31. Completion: v1
// TcpPayload in bits 0-29, Type in bit 30 (v2: bits 0-29 reserved, zero).
pub const NDIS_LSO_MSS_MASK: ULONG = 0x000F_FFFF;
pub const NDIS_LSO_TCP_HEADER_OFFSET_SHIFT: u32 = 20;
pub const NDIS_LSO_TCP_HEADER_OFFSET_MASK: ULONG = 0x3FF;
pub const NDIS_LSO_TYPE_SHIFT: u32 = 30;
pub const NDIS_LSO_V2_IP_VERSION_SHIFT: u32 = 31;
pub const NDIS_TCP_LARGE_SEND_OFFLOAD_V1_TYPE: ULONG = 0;
pub const NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE: ULONG = 1;
pub const NDIS_TCP_LARGE_SEND_OFFLOAD_IPv4: ULONG = 0;
pub const NDIS_TCP_LARGE_SEND_OFFLOAD_IPv6: ULONG = 1;
