//! General OIDs and their data (ntddndis.h), and registry configuration (ndis.h).

use crate::base::*;
use crate::layout::layout;
use crate::object::NDIS_OBJECT_HEADER;

// ---- OIDs a miniport answers (ntddndis.h) ----
pub const OID_GEN_SUPPORTED_LIST: NDIS_OID = 0x0001_0101;
pub const OID_GEN_HARDWARE_STATUS: NDIS_OID = 0x0001_0102;
pub const OID_GEN_MEDIA_SUPPORTED: NDIS_OID = 0x0001_0103;
pub const OID_GEN_MEDIA_IN_USE: NDIS_OID = 0x0001_0104;
pub const OID_GEN_MAXIMUM_LOOKAHEAD: NDIS_OID = 0x0001_0105;
pub const OID_GEN_MAXIMUM_FRAME_SIZE: NDIS_OID = 0x0001_0106;
pub const OID_GEN_LINK_SPEED: NDIS_OID = 0x0001_0107;
pub const OID_GEN_TRANSMIT_BUFFER_SPACE: NDIS_OID = 0x0001_0108;
pub const OID_GEN_RECEIVE_BUFFER_SPACE: NDIS_OID = 0x0001_0109;
pub const OID_GEN_TRANSMIT_BLOCK_SIZE: NDIS_OID = 0x0001_010A;
pub const OID_GEN_RECEIVE_BLOCK_SIZE: NDIS_OID = 0x0001_010B;
pub const OID_GEN_VENDOR_ID: NDIS_OID = 0x0001_010C;
pub const OID_GEN_VENDOR_DESCRIPTION: NDIS_OID = 0x0001_010D;
pub const OID_GEN_CURRENT_PACKET_FILTER: NDIS_OID = 0x0001_010E;
pub const OID_GEN_CURRENT_LOOKAHEAD: NDIS_OID = 0x0001_010F;
pub const OID_GEN_DRIVER_VERSION: NDIS_OID = 0x0001_0110;
pub const OID_GEN_MAXIMUM_TOTAL_SIZE: NDIS_OID = 0x0001_0111;
pub const OID_GEN_MAC_OPTIONS: NDIS_OID = 0x0001_0113;
pub const OID_GEN_MEDIA_CONNECT_STATUS: NDIS_OID = 0x0001_0114;
pub const OID_GEN_MAXIMUM_SEND_PACKETS: NDIS_OID = 0x0001_0115;
pub const OID_GEN_VENDOR_DRIVER_VERSION: NDIS_OID = 0x0001_0116;
pub const OID_GEN_LINK_PARAMETERS: NDIS_OID = 0x0001_0208;
pub const OID_GEN_INTERRUPT_MODERATION: NDIS_OID = 0x0001_0209;
/// The VLAN identifier assigned to the adapter (ULONG, 0..=4095; 0: none).
pub const OID_GEN_VLAN_ID: NDIS_OID = 0x0001_021C;
pub const OID_GEN_XMIT_OK: NDIS_OID = 0x0002_0101;
pub const OID_GEN_RCV_OK: NDIS_OID = 0x0002_0102;
pub const OID_GEN_XMIT_ERROR: NDIS_OID = 0x0002_0103;
pub const OID_GEN_RCV_ERROR: NDIS_OID = 0x0002_0104;
pub const OID_GEN_RCV_NO_BUFFER: NDIS_OID = 0x0002_0105;
pub const OID_GEN_STATISTICS: NDIS_OID = 0x0002_0106;
pub const OID_802_3_PERMANENT_ADDRESS: NDIS_OID = 0x0101_0101;
pub const OID_802_3_CURRENT_ADDRESS: NDIS_OID = 0x0101_0102;
pub const OID_802_3_MULTICAST_LIST: NDIS_OID = 0x0101_0103;
pub const OID_802_3_MAXIMUM_LIST_SIZE: NDIS_OID = 0x0101_0104;
pub const OID_PNP_SET_POWER: NDIS_OID = 0xFD01_0101;
pub const OID_PNP_QUERY_POWER: NDIS_OID = 0xFD01_0102;

/// `NDIS_HARDWARE_STATUS`.
pub const NdisHardwareStatusReady: ULONG = 0;

// ---- packet filter (NDIS_PACKET_TYPE_*) ----
pub const NDIS_PACKET_TYPE_DIRECTED: ULONG = 0x0000_0001;
pub const NDIS_PACKET_TYPE_MULTICAST: ULONG = 0x0000_0002;
pub const NDIS_PACKET_TYPE_ALL_MULTICAST: ULONG = 0x0000_0004;
pub const NDIS_PACKET_TYPE_BROADCAST: ULONG = 0x0000_0008;
pub const NDIS_PACKET_TYPE_PROMISCUOUS: ULONG = 0x0000_0020;

// ---- MAC options ----
pub const NDIS_MAC_OPTION_COPY_LOOKAHEAD_DATA: ULONG = 0x0000_0001;
pub const NDIS_MAC_OPTION_TRANSFERS_NOT_PEND: ULONG = 0x0000_0004;
pub const NDIS_MAC_OPTION_NO_LOOPBACK: ULONG = 0x0000_0008;
pub const NDIS_MAC_OPTION_8021P_PRIORITY: ULONG = 0x0000_0040;
pub const NDIS_MAC_OPTION_8021Q_VLAN: ULONG = 0x0000_0200;

// ---- media connect state / duplex (NET_IF_MEDIA_*) ----
// (MediaConnectState*/MediaDuplexState* are in `sync`, with NDIS_LINK_STATE.)
/// `NET_IF_ACCESS_BROADCAST`, `NET_IF_DIRECTION_SENDRECEIVE`, `NET_IF_CONNECTION_DEDICATED`.
pub const NET_IF_ACCESS_BROADCAST: i32 = 2;
pub const NET_IF_DIRECTION_SENDRECEIVE: i32 = 0;
pub const NET_IF_CONNECTION_DEDICATED: i32 = 1;
/// `IF_TYPE_ETHERNET_CSMACD`.
pub const IF_TYPE_ETHERNET_CSMACD: NET_IFTYPE = 6;

// ---- NDIS_STATISTICS_INFO ----
pub const NDIS_STATISTICS_INFO_REVISION_1: UCHAR = 1;
pub const NDIS_SIZEOF_STATISTICS_INFO_REVISION_1: USHORT = 152;
pub const NDIS_STATISTICS_FLAGS_VALID_DIRECTED_FRAMES_RCV: ULONG = 0x0000_0001;
pub const NDIS_STATISTICS_FLAGS_VALID_MULTICAST_FRAMES_RCV: ULONG = 0x0000_0002;
pub const NDIS_STATISTICS_FLAGS_VALID_BROADCAST_FRAMES_RCV: ULONG = 0x0000_0004;
pub const NDIS_STATISTICS_FLAGS_VALID_BYTES_RCV: ULONG = 0x0000_0008;
pub const NDIS_STATISTICS_FLAGS_VALID_RCV_DISCARDS: ULONG = 0x0000_0010;
pub const NDIS_STATISTICS_FLAGS_VALID_RCV_ERROR: ULONG = 0x0000_0020;
pub const NDIS_STATISTICS_FLAGS_VALID_DIRECTED_FRAMES_XMIT: ULONG = 0x0000_0040;
pub const NDIS_STATISTICS_FLAGS_VALID_MULTICAST_FRAMES_XMIT: ULONG = 0x0000_0080;
pub const NDIS_STATISTICS_FLAGS_VALID_BROADCAST_FRAMES_XMIT: ULONG = 0x0000_0100;
pub const NDIS_STATISTICS_FLAGS_VALID_BYTES_XMIT: ULONG = 0x0000_0200;
pub const NDIS_STATISTICS_FLAGS_VALID_XMIT_ERROR: ULONG = 0x0000_0400;
pub const NDIS_STATISTICS_FLAGS_VALID_XMIT_DISCARDS: ULONG = 0x0000_8000;

/// `NDIS_STATISTICS_INFO` (`OID_GEN_STATISTICS`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NDIS_STATISTICS_INFO {
    pub Header: NDIS_OBJECT_HEADER,
    pub SupportedStatistics: ULONG,
    pub ifInDiscards: ULONG64,
    pub ifInErrors: ULONG64,
    pub ifHCInOctets: ULONG64,
    pub ifHCInUcastPkts: ULONG64,
    pub ifHCInMulticastPkts: ULONG64,
    pub ifHCInBroadcastPkts: ULONG64,
    pub ifHCOutOctets: ULONG64,
    pub ifHCOutUcastPkts: ULONG64,
    pub ifHCOutMulticastPkts: ULONG64,
    pub ifHCOutBroadcastPkts: ULONG64,
    pub ifOutErrors: ULONG64,
    pub ifOutDiscards: ULONG64,
    pub ifHCInUcastOctets: ULONG64,
    pub ifHCInMulticastOctets: ULONG64,
    pub ifHCInBroadcastOctets: ULONG64,
    pub ifHCOutUcastOctets: ULONG64,
    pub ifHCOutMulticastOctets: ULONG64,
    pub ifHCOutBroadcastOctets: ULONG64,
}
layout!(NDIS_STATISTICS_INFO, size = 152, align = 8, {
    Header: 0, SupportedStatistics: 4, ifInDiscards: 8, ifInErrors: 16, ifHCInOctets: 24,
    ifHCOutOctets: 56, ifOutErrors: 88, ifOutDiscards: 96, ifHCOutBroadcastOctets: 144,
});

// ---- NDIS_INTERRUPT_MODERATION_PARAMETERS ----
pub const NDIS_INTERRUPT_MODERATION_PARAMETERS_REVISION_1: UCHAR = 1;
pub const NDIS_SIZEOF_INTERRUPT_MODERATION_PARAMETERS_REVISION_1: USHORT = 12;
pub const NdisInterruptModerationUnknown: i32 = 0;
pub const NdisInterruptModerationNotSupported: i32 = 1;
pub const NdisInterruptModerationEnabled: i32 = 2;
pub const NdisInterruptModerationDisabled: i32 = 3;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_INTERRUPT_MODERATION_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub Flags: ULONG,
    pub InterruptModeration: i32,
}
layout!(NDIS_INTERRUPT_MODERATION_PARAMETERS, size = 12, align = 4, {
    Header: 0, Flags: 4, InterruptModeration: 8,
});

// ---- registry configuration ----
pub const NDIS_CONFIGURATION_OBJECT_REVISION_1: UCHAR = 1;
pub const NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1: USHORT = 20;

/// `NDIS_CONFIGURATION_OBJECT`: which key `NdisOpenConfigurationEx` opens (`NdisHandle` = the
/// adapter handle: the adapter's driver key, where INF `Ndi\params` values live).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_CONFIGURATION_OBJECT {
    pub Header: NDIS_OBJECT_HEADER,
    pub NdisHandle: NDIS_HANDLE,
    pub Flags: ULONG,
}
layout!(NDIS_CONFIGURATION_OBJECT, size = 24, align = 8, { Header: 0, NdisHandle: 8, Flags: 16 });

/// `NDIS_PARAMETER_TYPE`.
pub type NDIS_PARAMETER_TYPE = i32;
pub const NdisParameterInteger: NDIS_PARAMETER_TYPE = 0;
pub const NdisParameterHexInteger: NDIS_PARAMETER_TYPE = 1;
pub const NdisParameterString: NDIS_PARAMETER_TYPE = 2;
pub const NdisParameterMultiString: NDIS_PARAMETER_TYPE = 3;
pub const NdisParameterBinary: NDIS_PARAMETER_TYPE = 4;

/// `NDIS_CONFIGURATION_PARAMETER.ParameterData`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union NDIS_CONFIGURATION_PARAMETER_DATA {
    pub IntegerData: ULONG,
    pub StringData: UNICODE_STRING,
    pub BinaryData: BINARY_DATA,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BINARY_DATA {
    pub Length: USHORT,
    pub Buffer: PVOID,
}

/// `NDIS_CONFIGURATION_PARAMETER`: owned by NDIS until `NdisCloseConfiguration`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NDIS_CONFIGURATION_PARAMETER {
    pub ParameterType: NDIS_PARAMETER_TYPE,
    pub ParameterData: NDIS_CONFIGURATION_PARAMETER_DATA,
}
layout!(NDIS_CONFIGURATION_PARAMETER, size = 24, align = 8, { ParameterType: 0, ParameterData: 8 });
