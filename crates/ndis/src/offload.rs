//! Checksum task offload: what a driver declares at initialize, what the stack switches on and off
//! (`OID_TCP_OFFLOAD_PARAMETERS`, `OID_OFFLOAD_ENCAPSULATION`, both answered by the framework),
//! and the per-list requests and results on the datapath.
//!
//! The driver says which checksums its device can compute or validate ([`OffloadInfo`] in
//! [`AdapterInfo`](crate::miniport::AdapterInfo)) and which are on at start, usually
//! [`ChecksumOffload::from_keywords`]. From then on the framework owns the configuration: it
//! reports it in the offload attributes, applies the stack's parameter sets, indicates every
//! change with `NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG`, and gives the driver the configuration
//! in force lock-free through [`NdisAdapter::checksum_offload`](crate::miniport::NdisAdapter).
//! Receive validation stays off until NDIS sets the encapsulation (as the OID's documentation
//! requires).

use bitflags::bitflags;
use ndis_sys as sys;

use crate::Status;
use crate::config::Configuration;
use crate::irql::Passive;

bitflags! {
    /// Checksum tasks, per IP version and direction. Transmit: the device computes; receive:
    /// the device (or driver) validates and says so in the list's checksum information.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ChecksumOffload: u32 {
        const IPV4_TX_IP = 1 << 0;
        const IPV4_TX_TCP = 1 << 1;
        const IPV4_TX_UDP = 1 << 2;
        const IPV4_RX_IP = 1 << 3;
        const IPV4_RX_TCP = 1 << 4;
        const IPV4_RX_UDP = 1 << 5;
        const IPV6_TX_TCP = 1 << 6;
        const IPV6_TX_UDP = 1 << 7;
        const IPV6_RX_TCP = 1 << 8;
        const IPV6_RX_UDP = 1 << 9;
        const TX = Self::IPV4_TX_IP.bits() | Self::IPV4_TX_TCP.bits() | Self::IPV4_TX_UDP.bits()
            | Self::IPV6_TX_TCP.bits() | Self::IPV6_TX_UDP.bits();
        const RX = Self::IPV4_RX_IP.bits() | Self::IPV4_RX_TCP.bits() | Self::IPV4_RX_UDP.bits()
            | Self::IPV6_RX_TCP.bits() | Self::IPV6_RX_UDP.bits();
        const IPV4 = Self::IPV4_TX_IP.bits() | Self::IPV4_TX_TCP.bits() | Self::IPV4_TX_UDP.bits()
            | Self::IPV4_RX_IP.bits() | Self::IPV4_RX_TCP.bits() | Self::IPV4_RX_UDP.bits();
        const IPV6 = Self::IPV6_TX_TCP.bits() | Self::IPV6_TX_UDP.bits()
            | Self::IPV6_RX_TCP.bits() | Self::IPV6_RX_UDP.bits();
    }
}

/// One switchable task: its standardized keyword, its transmit and receive bits.
struct Task {
    keyword: &'static str,
    tx: ChecksumOffload,
    rx: ChecksumOffload,
}

/// In the order of the `NDIS_OFFLOAD_PARAMETERS` members (`IPv4Checksum` first).
const TASKS: [Task; 5] = [
    Task {
        keyword: "*IPChecksumOffloadIPv4",
        tx: ChecksumOffload::IPV4_TX_IP,
        rx: ChecksumOffload::IPV4_RX_IP,
    },
    Task {
        keyword: "*TCPChecksumOffloadIPv4",
        tx: ChecksumOffload::IPV4_TX_TCP,
        rx: ChecksumOffload::IPV4_RX_TCP,
    },
    Task {
        keyword: "*UDPChecksumOffloadIPv4",
        tx: ChecksumOffload::IPV4_TX_UDP,
        rx: ChecksumOffload::IPV4_RX_UDP,
    },
    Task {
        keyword: "*TCPChecksumOffloadIPv6",
        tx: ChecksumOffload::IPV6_TX_TCP,
        rx: ChecksumOffload::IPV6_RX_TCP,
    },
    Task {
        keyword: "*UDPChecksumOffloadIPv6",
        tx: ChecksumOffload::IPV6_TX_UDP,
        rx: ChecksumOffload::IPV6_RX_UDP,
    },
];

/// The standardized keywords [`ChecksumOffload::from_keywords`] reads (each an enum of 0
/// disabled, 1 Tx, 2 Rx, 3 Rx and Tx), for the driver's INF.
pub const CHECKSUM_KEYWORDS: [&str; 5] = [
    TASKS[0].keyword,
    TASKS[1].keyword,
    TASKS[2].keyword,
    TASKS[3].keyword,
    TASKS[4].keyword,
];

impl ChecksumOffload {
    /// What the standardized keywords switch on, within `hardware`. An absent keyword leaves
    /// its task as `hardware` has it (the INF default is "Rx and Tx enabled"); a value outside
    /// 0..=3 likewise, as the advanced property page may hold anything.
    pub fn from_keywords(
        config: &Configuration<'_>,
        hardware: Self,
        passive: &Passive<'_>,
    ) -> Self {
        let mut on = Self::empty();
        for t in &TASKS {
            let both = t.tx | t.rx;
            on |= match config.read_u32(t.keyword, passive) {
                Some(0) => Self::empty(),
                Some(1) => t.tx,
                Some(2) => t.rx,
                _ => both,
            } & hardware;
        }
        on
    }

    /// The `NDIS_OFFLOAD` describing these tasks, of the revision an NDIS `version` driver uses.
    /// Options (IPv4 options, TCP options, IPv6 extension headers) are reported supported
    /// wherever a checksum is: the framework's header parsing walks them ([`crate::packet`]).
    pub fn to_ndis(self, version: (u8, u8)) -> sys::NDIS_OFFLOAD {
        let (revision, size) = match version {
            (6, 0) => (
                sys::NDIS_OFFLOAD_REVISION_1,
                sys::NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_1,
            ),
            (6, minor) if minor < 30 => (
                sys::NDIS_OFFLOAD_REVISION_2,
                sys::NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_2,
            ),
            _ => (
                sys::NDIS_OFFLOAD_REVISION_3,
                sys::NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_3,
            ),
        };
        let bit = |f: Self, shift: u32| (self.contains(f) as u32) << shift;
        let v4 = |tcp: Self, udp: Self, ip: Self| {
            let any = self.intersects(tcp | udp | ip);
            sys::NDIS_TCP_IP_CHECKSUM_OFFLOAD_IPV4 {
                Encapsulation: encapsulation(any),
                Flags: ((any as u32) << sys::NDIS_CHECKSUM_IPV4_IP_OPTIONS_SHIFT)
                    | ((self.intersects(tcp) as u32) << sys::NDIS_CHECKSUM_IPV4_TCP_OPTIONS_SHIFT)
                    | bit(tcp, sys::NDIS_CHECKSUM_IPV4_TCP_SHIFT)
                    | bit(udp, sys::NDIS_CHECKSUM_IPV4_UDP_SHIFT)
                    | bit(ip, sys::NDIS_CHECKSUM_IPV4_IP_SHIFT),
            }
        };
        let v6 = |tcp: Self, udp: Self| {
            let any = self.intersects(tcp | udp);
            sys::NDIS_TCP_IP_CHECKSUM_OFFLOAD_IPV6 {
                Encapsulation: encapsulation(any),
                Flags: ((any as u32) << sys::NDIS_CHECKSUM_IPV6_EXTENSION_HEADERS_SHIFT)
                    | ((self.intersects(tcp) as u32) << sys::NDIS_CHECKSUM_IPV6_TCP_OPTIONS_SHIFT)
                    | bit(tcp, sys::NDIS_CHECKSUM_IPV6_TCP_SHIFT)
                    | bit(udp, sys::NDIS_CHECKSUM_IPV6_UDP_SHIFT),
            }
        };
        sys::NDIS_OFFLOAD {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_OFFLOAD,
                Revision: revision,
                Size: size,
            },
            Checksum: sys::NDIS_TCP_IP_CHECKSUM_OFFLOAD {
                IPv4Transmit: v4(Self::IPV4_TX_TCP, Self::IPV4_TX_UDP, Self::IPV4_TX_IP),
                IPv4Receive: v4(Self::IPV4_RX_TCP, Self::IPV4_RX_UDP, Self::IPV4_RX_IP),
                IPv6Transmit: v6(Self::IPV6_TX_TCP, Self::IPV6_TX_UDP),
                IPv6Receive: v6(Self::IPV6_RX_TCP, Self::IPV6_RX_UDP),
            },
            ..Default::default()
        }
    }

    /// These tasks after an `OID_TCP_OFFLOAD_PARAMETERS` set carrying `data`, for a device that
    /// can do `hardware`. `INVALID_LENGTH` (with `needed`) for a buffer shorter than revision
    /// 1; `INVALID_DATA` for a bad header or value; `INVALID_PARAMETER` when the set would
    /// switch on a task the hardware lacks (nothing changes then). Members other than the
    /// checksums (LSO, IPsec, RSC, ...) name offloads this framework never reports, so only
    /// "leave it" and "off" are accepted for them.
    pub(crate) fn apply(
        self,
        data: &[u8],
        hardware: Self,
        needed: &mut usize,
    ) -> Result<Self, Status> {
        let min = usize::from(sys::NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1);
        let Some(p) = data.get(..min) else {
            *needed = min;
            return Err(Status::INVALID_LENGTH);
        };
        let size = usize::from(u16::from_le_bytes([p[2], p[3]]));
        if p[0] != sys::NDIS_OBJECT_TYPE_DEFAULT || p[1] == 0 || size < min {
            return Err(Status::INVALID_DATA);
        }
        if size > data.len() {
            *needed = size;
            return Err(Status::INVALID_LENGTH);
        }
        let mut next = self;
        for (t, &value) in TASKS.iter().zip(&p[4..9]) {
            let (tx, rx) = match value {
                sys::NDIS_OFFLOAD_PARAMETERS_NO_CHANGE => continue,
                sys::NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED => (false, false),
                sys::NDIS_OFFLOAD_PARAMETERS_TX_ENABLED_RX_DISABLED => (true, false),
                sys::NDIS_OFFLOAD_PARAMETERS_RX_ENABLED_TX_DISABLED => (false, true),
                sys::NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED => (true, true),
                _ => return Err(Status::INVALID_DATA),
            };
            next.set(t.tx, tx);
            next.set(t.rx, rx);
        }
        // Offloads never reported may only be left or switched off: LsoV1, IPsecV1 and the
        // TCP connection members (revision 1), IPsecV2 and IPsecV2IPv4 (2), RscIPv4 and RscIPv6 (3: bytes 22, 23), all
        // "0 no change, 1 disabled"; EncapsulatedPacketTaskOffload (byte 24) is
        // NDIS_OFFLOAD_SET_*, where 1 is on. Members of later revisions are not read.
        let data = &data[..size];
        let disabled_at_most = |range: core::ops::Range<usize>| {
            data.get(range).is_none_or(|b| b.iter().all(|&v| v <= 1))
        };
        let encapsulated_on = data.get(24) == Some(&(sys::NDIS_OFFLOAD_SET_ON as u8));
        // LsoV2IPv4 and LsoV2IPv6 (bytes 11, 12) are `LargeSendOffload::apply`'s.
        if !disabled_at_most(9..11)
            || !disabled_at_most(13..15)
            || !disabled_at_most(20..22)
            || !disabled_at_most(22..24)
            || encapsulated_on
        {
            return Err(Status::INVALID_PARAMETER);
        }
        if !hardware.contains(next) {
            return Err(Status::INVALID_PARAMETER);
        }
        Ok(next)
    }
}

fn encapsulation(any: bool) -> u32 {
    if any {
        sys::NDIS_ENCAPSULATION_IEEE_802_3
    } else {
        sys::NDIS_ENCAPSULATION_NOT_SUPPORTED
    }
}

/// What an `OID_OFFLOAD_ENCAPSULATION` set says for IPv4 and IPv6: `Some(true)` on, `Some(false)`
/// off, `None` unchanged. An encapsulation switched on must include Ethernet (IEEE 802.3).
pub(crate) fn parse_encapsulation(
    data: &[u8],
    needed: &mut usize,
) -> Result<[Option<bool>; 2], Status> {
    let min = usize::from(sys::NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1);
    let Some(p) = data.get(..min) else {
        *needed = min;
        return Err(Status::INVALID_LENGTH);
    };
    let u32_at = |at: usize| u32::from_le_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
    if p[0] != sys::NDIS_OBJECT_TYPE_OFFLOAD_ENCAPSULATION || p[1] == 0 {
        return Err(Status::INVALID_DATA);
    }
    let mut out = [None; 2];
    for (slot, at) in out.iter_mut().zip([4, 16]) {
        *slot = match u32_at(at) {
            sys::NDIS_OFFLOAD_SET_NO_CHANGE => None,
            sys::NDIS_OFFLOAD_SET_OFF => Some(false),
            sys::NDIS_OFFLOAD_SET_ON => {
                // A set of framings; Ethernet must be among them. `HeaderSize` is not needed:
                // the framework finds the IP header itself (a tag included).
                if u32_at(at + 4) & sys::NDIS_ENCAPSULATION_IEEE_802_3 == 0 {
                    return Err(Status::INVALID_PARAMETER);
                }
                Some(true)
            }
            _ => return Err(Status::INVALID_DATA),
        };
    }
    Ok(out)
}

/// What the driver declares about task offload in its
/// [`AdapterInfo`](crate::miniport::AdapterInfo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OffloadInfo {
    /// The checksums the device (with the driver's help) can do.
    pub hardware: ChecksumOffload,
    /// The checksums on at start (within `hardware`).
    pub enabled: ChecksumOffload,
    /// Large send offload (LSOv2), if the device segments TCP.
    pub lso: Option<LsoCapabilities>,
    /// The IP versions LSO is on for at start (within `lso`).
    pub lso_enabled: LargeSendOffload,
}

bitflags! {
    /// The IP versions large send offload (LSOv2) covers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct LargeSendOffload: u32 {
        const IPV4 = 1 << 0;
        const IPV6 = 1 << 1;
    }
}

/// What a device's large send offload can do (`NDIS_TCP_LARGE_SEND_OFFLOAD_V2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LsoCapabilities {
    pub versions: LargeSendOffload,
    /// Largest TCP payload (with headers) one send may carry.
    pub max_offload_size: u32,
    /// Fewest segments a large send must split into (NDIS sends fewer as ordinary frames).
    pub min_segment_count: u32,
}

/// The standardized LSOv2 keywords [`LargeSendOffload::from_keywords`] reads (each an enum of 0
/// disabled, 1 enabled), for the driver's INF.
pub const LSO_KEYWORDS: [&str; 2] = ["*LsoV2IPv4", "*LsoV2IPv6"];

impl LargeSendOffload {
    /// What `*LsoV2IPv4` / `*LsoV2IPv6` switch on, within `hardware`; an absent or out-of-range
    /// value leaves the version as `hardware` has it (the INF default is "enabled").
    pub fn from_keywords(
        config: &Configuration<'_>,
        hardware: Self,
        passive: &Passive<'_>,
    ) -> Self {
        let mut on = Self::empty();
        for (keyword, version) in LSO_KEYWORDS.iter().zip([Self::IPV4, Self::IPV6]) {
            if config.read_u32(keyword, passive) != Some(0) {
                on |= version;
            }
        }
        on & hardware
    }

    /// These versions after an `OID_TCP_OFFLOAD_PARAMETERS` set whose header
    /// [`ChecksumOffload::apply`] accepted: `LsoV2IPv4` and `LsoV2IPv6` (1 disabled, 2
    /// enabled). `INVALID_PARAMETER` for a version the hardware lacks, `INVALID_DATA` for
    /// another value.
    pub(crate) fn apply(self, data: &[u8], hardware: Self) -> Result<Self, Status> {
        let mut next = self;
        for (at, version) in [(11, Self::IPV4), (12, Self::IPV6)] {
            match data.get(at).copied().unwrap_or(0) {
                0 => {}
                1 => next.remove(version),
                2 => next.insert(version),
                _ => return Err(Status::INVALID_DATA),
            }
        }
        if hardware.contains(next) {
            Ok(next)
        } else {
            Err(Status::INVALID_PARAMETER)
        }
    }

    /// Fills the `LsoV2` member of `o` for these versions of a device that can do `caps`.
    pub(crate) fn describe(self, caps: &LsoCapabilities, o: &mut sys::NDIS_OFFLOAD) {
        let on = self & caps.versions;
        if on.contains(Self::IPV4) {
            o.LsoV2.IPv4 = sys::NDIS_TCP_LARGE_SEND_OFFLOAD_V2_IPV4 {
                Encapsulation: sys::NDIS_ENCAPSULATION_IEEE_802_3,
                MaxOffLoadSize: caps.max_offload_size,
                MinSegmentCount: caps.min_segment_count,
            };
        }
        if on.contains(Self::IPV6) {
            o.LsoV2.IPv6 = sys::NDIS_TCP_LARGE_SEND_OFFLOAD_V2_IPV6 {
                Encapsulation: sys::NDIS_ENCAPSULATION_IEEE_802_3,
                MaxOffLoadSize: caps.max_offload_size,
                MinSegmentCount: caps.min_segment_count,
                // IPv6 extension headers are not claimed: no device model here segments them,
                // so the combination is untested.
                Flags: 1 << sys::NDIS_LSOV2_IPV6_TCP_OPTIONS_SHIFT,
            };
        }
    }
}

/// A large send the stack asks for on a list (`LsoV2Transmit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LargeSend {
    /// Segment payload size.
    pub mss: u32,
    /// Where the TCP header starts.
    pub tcp_header_offset: u16,
    pub ipv6: bool,
}

impl LargeSend {
    /// From the list's `TcpLargeSendNetBufferListInfo` entry: None when it is zero; Err for an
    /// LSOv1 request, which this framework never advertises, and for anything non-zero without
    /// an MSS (NDIS says a list with LSO data the miniport cannot honour must be dropped).
    pub(crate) fn from_info(value: usize) -> Result<Option<Self>, Status> {
        let v = value as u32;
        if v == 0 {
            return Ok(None);
        }
        let mss = v & sys::NDIS_LSO_MSS_MASK;
        if mss == 0 {
            return Err(Status::INVALID_PACKET);
        }
        if (v >> sys::NDIS_LSO_TYPE_SHIFT) & 1 != sys::NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE {
            return Err(Status::INVALID_PACKET);
        }
        Ok(Some(LargeSend {
            mss,
            tcp_header_offset: ((v >> sys::NDIS_LSO_TCP_HEADER_OFFSET_SHIFT)
                & sys::NDIS_LSO_TCP_HEADER_OFFSET_MASK) as u16,
            ipv6: (v >> sys::NDIS_LSO_V2_IP_VERSION_SHIFT) & 1
                == sys::NDIS_TCP_LARGE_SEND_OFFLOAD_IPv6,
        }))
    }
}

/// The checksums the stack asks for on one send list
/// (`NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO.Transmit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChecksumRequest {
    pub ipv4: bool,
    pub ipv6: bool,
    pub tcp: bool,
    pub udp: bool,
    pub ip_header: bool,
    /// Where the TCP header starts (TCP requests only; 0 otherwise).
    pub tcp_header_offset: u16,
}

impl ChecksumRequest {
    pub(crate) fn from_info(value: usize) -> Self {
        let v = value as u32;
        ChecksumRequest {
            ipv4: v & sys::NDIS_CHECKSUM_TX_IS_IPV4 != 0,
            ipv6: v & sys::NDIS_CHECKSUM_TX_IS_IPV6 != 0,
            tcp: v & sys::NDIS_CHECKSUM_TX_TCP != 0,
            udp: v & sys::NDIS_CHECKSUM_TX_UDP != 0,
            ip_header: v & sys::NDIS_CHECKSUM_TX_IP_HEADER != 0,
            tcp_header_offset: ((v >> sys::NDIS_CHECKSUM_TX_TCP_HEADER_OFFSET_SHIFT)
                & sys::NDIS_CHECKSUM_TX_TCP_HEADER_OFFSET_MASK)
                as u16,
        }
    }

    /// Whether anything is to be computed: neither IP version flag means no checksum work, as
    /// the structure's documentation says.
    pub fn is_empty(&self) -> bool {
        !(self.ipv4 || self.ipv6) || !(self.tcp || self.udp || self.ip_header)
    }
}

bitflags! {
    /// What the driver found about a received frame's checksums
    /// (`NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO.Receive`); empty: not checked, the stack
    /// verifies.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct RxChecksum: u32 {
        const TCP_FAILED = sys::NDIS_CHECKSUM_RX_TCP_FAILED;
        const UDP_FAILED = sys::NDIS_CHECKSUM_RX_UDP_FAILED;
        const IP_FAILED = sys::NDIS_CHECKSUM_RX_IP_FAILED;
        const TCP_SUCCEEDED = sys::NDIS_CHECKSUM_RX_TCP_SUCCEEDED;
        const UDP_SUCCEEDED = sys::NDIS_CHECKSUM_RX_UDP_SUCCEEDED;
        const IP_SUCCEEDED = sys::NDIS_CHECKSUM_RX_IP_SUCCEEDED;
    }
}

/// What a device says about a received frame's TCP/UDP checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRxChecksum {
    /// Nothing: not checked.
    #[default]
    Unchecked,
    /// The device validated it.
    Valid,
    /// Not computed yet (traffic from the host itself): the checksum field holds the
    /// pseudo-header sum, and the sum from `start` to the end completes it at `start + offset`.
    Partial { start: u16, offset: u16 },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(values: [u8; 5]) -> [u8; 20] {
        let mut p = [0u8; 20];
        p[0] = sys::NDIS_OBJECT_TYPE_DEFAULT;
        p[1] = 1;
        p[2..4].copy_from_slice(&20u16.to_le_bytes());
        p[4..9].copy_from_slice(&values);
        p
    }

    #[test]
    fn parameters_switch_each_task_and_leave_the_others() {
        let all = ChecksumOffload::all();
        let mut needed = 0;
        let off_v6_udp = all
            .apply(&params([0, 0, 0, 0, 1]), all, &mut needed)
            .unwrap();
        assert_eq!(
            off_v6_udp,
            all - ChecksumOffload::IPV6_TX_UDP - ChecksumOffload::IPV6_RX_UDP
        );
        let tx_only_tcp4 = off_v6_udp
            .apply(&params([0, 2, 0, 0, 0]), all, &mut needed)
            .unwrap();
        assert!(!tx_only_tcp4.contains(ChecksumOffload::IPV4_RX_TCP));
        assert!(tx_only_tcp4.contains(ChecksumOffload::IPV4_TX_TCP));
        let rx_only_ip = tx_only_tcp4
            .apply(&params([3, 0, 0, 0, 0]), all, &mut needed)
            .unwrap();
        assert!(rx_only_ip.contains(ChecksumOffload::IPV4_RX_IP));
        assert!(!rx_only_ip.contains(ChecksumOffload::IPV4_TX_IP));
    }

    #[test]
    fn bad_parameter_sets_change_nothing_and_say_why() {
        let hw = ChecksumOffload::IPV4;
        let mut needed = 0;
        assert_eq!(
            hw.apply(&params([0, 0, 0, 4, 0]), hw, &mut needed),
            Err(Status::INVALID_PARAMETER),
            "IPv6 TCP is not in the hardware"
        );
        assert_eq!(
            hw.apply(&params([5, 0, 0, 0, 0]), hw, &mut needed),
            Err(Status::INVALID_DATA)
        );
        let mut wrong_type = params([1, 0, 0, 0, 0]);
        wrong_type[0] = 0xA7;
        assert_eq!(
            hw.apply(&wrong_type, hw, &mut needed),
            Err(Status::INVALID_DATA)
        );
        let mut rev3 = alloc::vec![0u8; 26];
        rev3[..20].copy_from_slice(&params([0; 5]));
        rev3[1] = 3;
        rev3[2] = 26;
        assert_eq!(hw.apply(&rev3, hw, &mut needed), Ok(hw));
        rev3[22] = 2; // RscIPv4 enabled
        assert_eq!(
            hw.apply(&rev3, hw, &mut needed),
            Err(Status::INVALID_PARAMETER)
        );
        assert_eq!(
            hw.apply(&rev3[..24], hw, &mut needed),
            Err(Status::INVALID_LENGTH)
        );
        assert_eq!(needed, 26);
        let mut lso_v1_on = params([0; 5]);
        lso_v1_on[9] = 2; // LsoV1 enabled: never reported
        assert_eq!(
            hw.apply(&lso_v1_on, hw, &mut needed),
            Err(Status::INVALID_PARAMETER)
        );
        assert_eq!(
            hw.apply(&params([1; 5])[..19], hw, &mut needed),
            Err(Status::INVALID_LENGTH)
        );
        assert_eq!(needed, 20);
    }

    #[test]
    fn the_offload_structure_carries_each_bit_in_its_field() {
        let o = (ChecksumOffload::IPV4_TX_UDP | ChecksumOffload::IPV6_RX_TCP).to_ndis((6, 20));
        assert_eq!(
            (o.Header.Revision, o.Header.Size),
            (2, sys::NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_2)
        );
        for (version, revision, size) in [((6, 0), 1, 112), ((6, 30), 3, 156), ((6, 87), 3, 156)] {
            let h = ChecksumOffload::all().to_ndis(version).Header;
            assert_eq!(
                (h.Type, h.Revision, h.Size),
                (0xA7, revision, size),
                "{version:?}"
            );
        }
        let c = o.Checksum;
        assert_eq!(
            c.IPv4Transmit.Encapsulation,
            sys::NDIS_ENCAPSULATION_IEEE_802_3
        );
        assert_eq!(c.IPv4Transmit.Flags, 1 | (1 << 6)); // options, UDP
        assert_eq!(c.IPv4Receive, Default::default());
        assert_eq!(c.IPv6Transmit, Default::default());
        assert_eq!(c.IPv6Receive.Flags, 1 | (1 << 2) | (1 << 4)); // ext headers, TCP options, TCP
    }

    #[test]
    fn encapsulation_accepts_ethernet_only() {
        let mut e = [0u8; 28];
        e[0] = sys::NDIS_OBJECT_TYPE_OFFLOAD_ENCAPSULATION;
        e[1] = 1;
        e[4] = 1; // IPv4 on
        e[8] = 2; // IEEE 802.3
        e[12] = 14;
        let mut needed = 0;
        assert_eq!(parse_encapsulation(&e, &mut needed), Ok([Some(true), None]));
        e[12] = 18; // a tag's room: fine
        assert_eq!(parse_encapsulation(&e, &mut needed), Ok([Some(true), None]));
        e[8] = 1; // NDIS_ENCAPSULATION_NULL only
        assert_eq!(
            parse_encapsulation(&e, &mut needed),
            Err(Status::INVALID_PARAMETER)
        );
        assert_eq!(
            parse_encapsulation(&e[..27], &mut needed),
            Err(Status::INVALID_LENGTH)
        );
    }
}
