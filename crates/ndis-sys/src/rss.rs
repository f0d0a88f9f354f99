//! Receive side scaling (ntddndis.h): the capabilities a miniport reports in its general
//! attributes, the parameters `OID_GEN_RECEIVE_SCALE_PARAMETERS` carries, the receive-hash
//! parameters of `OID_GEN_RECEIVE_HASH`, and the hash information of a received list
//! (`NET_BUFFER_LIST_SET_HASH_VALUE/TYPE/FUNCTION`, which write the `NetBufferListHashValue`
//! and `NetBufferListHashInfo` slots of `NetBufferListInfo`).

use crate::base::*;
use crate::layout::layout;
use crate::object::NDIS_OBJECT_HEADER;

pub const OID_GEN_RECEIVE_SCALE_CAPABILITIES: NDIS_OID = 0x0001_0203;
pub const OID_GEN_RECEIVE_SCALE_PARAMETERS: NDIS_OID = 0x0001_0204;
pub const OID_GEN_RECEIVE_HASH: NDIS_OID = 0x0001_021F;

pub const NDIS_OBJECT_TYPE_RSS_PARAMETERS: UCHAR = 0x89;

// ---- NDIS_RECEIVE_SCALE_CAPABILITIES ----
/// NDIS 6.0 to 6.20.
pub const NDIS_RECEIVE_SCALE_CAPABILITIES_REVISION_1: UCHAR = 1;
/// NDIS 6.30 (adds `NumberOfIndirectionTableEntries`).
pub const NDIS_RECEIVE_SCALE_CAPABILITIES_REVISION_2: UCHAR = 2;
/// NDIS 6.60 and later (UDP hash capabilities; same layout).
pub const NDIS_RECEIVE_SCALE_CAPABILITIES_REVISION_3: UCHAR = 3;
pub const NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_1: USHORT = 16;
pub const NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_2: USHORT = 18;
pub const NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_3: USHORT = 18;

pub const NDIS_RSS_CAPS_MESSAGE_SIGNALED_INTERRUPTS: ULONG = 0x0100_0000;
pub const NDIS_RSS_CAPS_CLASSIFICATION_AT_ISR: ULONG = 0x0200_0000;
pub const NDIS_RSS_CAPS_CLASSIFICATION_AT_DPC: ULONG = 0x0400_0000;
pub const NDIS_RSS_CAPS_USING_MSI_X: ULONG = 0x0800_0000;
pub const NDIS_RSS_CAPS_RSS_AVAILABLE_ON_PORTS: ULONG = 0x1000_0000;
pub const NDIS_RSS_CAPS_SUPPORTS_MSI_X: ULONG = 0x2000_0000;
pub const NDIS_RSS_CAPS_SUPPORTS_INDEPENDENT_ENTRY_MOVE: ULONG = 0x4000_0000;
pub const NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV4: ULONG = 0x0000_0100;
pub const NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV6: ULONG = 0x0000_0200;
pub const NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV6_EX: ULONG = 0x0000_0400;
pub const NDIS_RSS_CAPS_HASH_TYPE_UDP_IPV4: ULONG = 0x0000_0800;
pub const NDIS_RSS_CAPS_HASH_TYPE_UDP_IPV6: ULONG = 0x0000_1000;
pub const NDIS_RSS_CAPS_HASH_TYPE_UDP_IPV6_EX: ULONG = 0x0000_2000;

/// `NDIS_RECEIVE_SCALE_CAPABILITIES`. Revision 1 ends after `NumberOfReceiveQueues` (16
/// bytes); `size_of` is 20 (tail padding after the USHORT).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NDIS_RECEIVE_SCALE_CAPABILITIES {
    pub Header: NDIS_OBJECT_HEADER,
    pub CapabilitiesFlags: ULONG,
    pub NumberOfInterruptMessages: ULONG,
    pub NumberOfReceiveQueues: ULONG,
    pub NumberOfIndirectionTableEntries: USHORT,
}
layout!(NDIS_RECEIVE_SCALE_CAPABILITIES, size = 20, align = 4, {
    Header: 0, CapabilitiesFlags: 4, NumberOfInterruptMessages: 8, NumberOfReceiveQueues: 12,
    NumberOfIndirectionTableEntries: 16,
});

// ---- hash information (HashInformation, NetBufferListHashInfo) ----
pub const NdisHashFunctionToeplitz: ULONG = 0x0000_0001;
pub const NDIS_HASH_FUNCTION_MASK: ULONG = 0x0000_00FF;
pub const NDIS_HASH_TYPE_MASK: ULONG = 0x00FF_FF00;
pub const NDIS_HASH_IPV4: ULONG = 0x0000_0100;
pub const NDIS_HASH_TCP_IPV4: ULONG = 0x0000_0200;
pub const NDIS_HASH_IPV6: ULONG = 0x0000_0400;
pub const NDIS_HASH_IPV6_EX: ULONG = 0x0000_0800;
pub const NDIS_HASH_TCP_IPV6: ULONG = 0x0000_1000;
pub const NDIS_HASH_TCP_IPV6_EX: ULONG = 0x0000_2000;
pub const NDIS_HASH_UDP_IPV4: ULONG = 0x0000_4000;
pub const NDIS_HASH_UDP_IPV6: ULONG = 0x0000_8000;
pub const NDIS_HASH_UDP_IPV6_EX: ULONG = 0x0001_0000;

// ---- NDIS_RECEIVE_SCALE_PARAMETERS ----
pub const NDIS_RECEIVE_SCALE_PARAMETERS_REVISION_1: UCHAR = 1;
/// NDIS 6.20 to 6.5x: the processor masks.
pub const NDIS_RECEIVE_SCALE_PARAMETERS_REVISION_2: UCHAR = 2;
/// NDIS 6.60 and later: `DefaultProcessorNumber`.
pub const NDIS_RECEIVE_SCALE_PARAMETERS_REVISION_3: UCHAR = 3;
pub const NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_1: USHORT = 28;
pub const NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_2: USHORT = 40;
pub const NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_3: USHORT = 44;

pub const NDIS_RSS_PARAM_FLAG_BASE_CPU_UNCHANGED: USHORT = 0x0001;
pub const NDIS_RSS_PARAM_FLAG_HASH_INFO_UNCHANGED: USHORT = 0x0002;
pub const NDIS_RSS_PARAM_FLAG_ITABLE_UNCHANGED: USHORT = 0x0004;
pub const NDIS_RSS_PARAM_FLAG_HASH_KEY_UNCHANGED: USHORT = 0x0008;
pub const NDIS_RSS_PARAM_FLAG_DISABLE_RSS: USHORT = 0x0010;
pub const NDIS_RSS_PARAM_FLAG_DEFAULT_PROCESSOR_UNCHANGED: USHORT = 0x0020;

/// `NDIS_RSS_INDIRECTION_TABLE_MAX_SIZE_REVISION_2`: 128 `PROCESSOR_NUMBER` entries.
pub const NDIS_RSS_INDIRECTION_TABLE_MAX_SIZE_REVISION_2: usize = 128 * 4;
/// `NDIS_RSS_HASH_SECRET_KEY_MAX_SIZE_REVISION_1`: the Toeplitz key is 40 bytes.
pub const NDIS_RSS_HASH_SECRET_KEY_MAX_SIZE_REVISION_1: usize = 40;

/// `NDIS_RECEIVE_SCALE_PARAMETERS`. The indirection table (from NDIS 6.20 an array of
/// `PROCESSOR_NUMBER`), the secret key and the processor masks (`GROUP_AFFINITY`) follow it in
/// the same buffer, at the offsets it names.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NDIS_RECEIVE_SCALE_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub Flags: USHORT,
    pub BaseCpuNumber: USHORT,
    pub HashInformation: ULONG,
    pub IndirectionTableSize: USHORT,
    pub IndirectionTableOffset: ULONG,
    pub HashSecretKeySize: USHORT,
    pub HashSecretKeyOffset: ULONG,
    pub ProcessorMasksOffset: ULONG,
    pub NumberOfProcessorMasks: ULONG,
    pub ProcessorMasksEntrySize: ULONG,
    pub DefaultProcessorNumber: PROCESSOR_NUMBER,
}
layout!(NDIS_RECEIVE_SCALE_PARAMETERS, size = 44, align = 4, {
    Header: 0, Flags: 4, BaseCpuNumber: 6, HashInformation: 8, IndirectionTableSize: 12,
    IndirectionTableOffset: 16, HashSecretKeySize: 20, HashSecretKeyOffset: 24,
    ProcessorMasksOffset: 28, NumberOfProcessorMasks: 32, ProcessorMasksEntrySize: 36,
    DefaultProcessorNumber: 40,
});

// ---- NDIS_RECEIVE_HASH_PARAMETERS ----
pub const NDIS_RECEIVE_HASH_PARAMETERS_REVISION_1: UCHAR = 1;
pub const NDIS_SIZEOF_RECEIVE_HASH_PARAMETERS_REVISION_1: USHORT = 20;
pub const NDIS_RECEIVE_HASH_FLAG_ENABLE_HASH: ULONG = 0x0000_0001;
pub const NDIS_RECEIVE_HASH_FLAG_HASH_INFO_UNCHANGED: ULONG = 0x0000_0002;
pub const NDIS_RECEIVE_HASH_FLAG_HASH_KEY_UNCHANGED: ULONG = 0x0000_0004;

/// `NDIS_RECEIVE_HASH_PARAMETERS` (`OID_GEN_RECEIVE_HASH`); the key follows at its offset.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NDIS_RECEIVE_HASH_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub Flags: ULONG,
    pub HashInformation: ULONG,
    pub HashSecretKeySize: USHORT,
    pub HashSecretKeyOffset: ULONG,
}
layout!(NDIS_RECEIVE_HASH_PARAMETERS, size = 20, align = 4, {
    Header: 0, Flags: 4, HashInformation: 8, HashSecretKeySize: 12, HashSecretKeyOffset: 16,
});

// The hash slots of a list are inside the NDIS 6.20 info array this crate exposes.
const _: () = assert!(crate::datapath::NetBufferListHashValue == 8);
const _: () = assert!(crate::datapath::NetBufferListHashInfo == 9);
const _: () =
    assert!(crate::datapath::NetBufferListHashInfo < crate::datapath::MAX_NET_BUFFER_LIST_INFO_620);
