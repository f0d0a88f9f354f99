//! Checksum task offload as NDIS and the TCP/IP transport see it: the offload attributes a
//! miniport sets at initialize, the `NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG` indications that
//! change them, the encapsulation NDIS sets when TCP/IP binds, and what the transport does to a
//! frame before asking a miniport to checksum it (the pseudo-header sum in the TCP/UDP checksum
//! field, zero in the IPv4 header checksum). Frames are parsed with `etherparse`, independently
//! of the framework's own parsing.

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use ndis_sys as sys;

/// The checksum tasks of an `NDIS_OFFLOAD` (transmit: the miniport computes; receive: it
/// validates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChecksumTasks {
    pub ipv4_tx_ip: bool,
    pub ipv4_tx_tcp: bool,
    pub ipv4_tx_udp: bool,
    pub ipv4_rx_ip: bool,
    pub ipv4_rx_tcp: bool,
    pub ipv4_rx_udp: bool,
    pub ipv6_tx_tcp: bool,
    pub ipv6_tx_udp: bool,
    pub ipv6_rx_tcp: bool,
    pub ipv6_rx_udp: bool,
}

impl ChecksumTasks {
    /// From the bytes of an `NDIS_OFFLOAD` (its checksum member at offset 4), which the caller
    /// has checked hold at least a revision-1 structure.
    pub(crate) fn from_offload(b: &[u8]) -> Self {
        let word = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let field = |o: usize, shift: u32| (word(o) >> shift) & 3 == sys::NDIS_OFFLOAD_SUPPORTED;
        // IPv4Transmit at 4, IPv4Receive at 12, IPv6Transmit at 20, IPv6Receive at 28; each an
        // Encapsulation ULONG, then the bit-fields.
        ChecksumTasks {
            ipv4_tx_ip: field(8, sys::NDIS_CHECKSUM_IPV4_IP_SHIFT),
            ipv4_tx_tcp: field(8, sys::NDIS_CHECKSUM_IPV4_TCP_SHIFT),
            ipv4_tx_udp: field(8, sys::NDIS_CHECKSUM_IPV4_UDP_SHIFT),
            ipv4_rx_ip: field(16, sys::NDIS_CHECKSUM_IPV4_IP_SHIFT),
            ipv4_rx_tcp: field(16, sys::NDIS_CHECKSUM_IPV4_TCP_SHIFT),
            ipv4_rx_udp: field(16, sys::NDIS_CHECKSUM_IPV4_UDP_SHIFT),
            ipv6_tx_tcp: field(24, sys::NDIS_CHECKSUM_IPV6_TCP_SHIFT),
            ipv6_tx_udp: field(24, sys::NDIS_CHECKSUM_IPV6_UDP_SHIFT),
            ipv6_rx_tcp: field(32, sys::NDIS_CHECKSUM_IPV6_TCP_SHIFT),
            ipv6_rx_udp: field(32, sys::NDIS_CHECKSUM_IPV6_UDP_SHIFT),
        }
    }

    /// Whether every task of `self` is in `other`.
    pub(crate) fn within(&self, other: &Self) -> bool {
        let a = self.flags();
        let b = other.flags();
        a.iter().zip(b).all(|(x, y)| !x || y)
    }

    fn flags(&self) -> [bool; 10] {
        [
            self.ipv4_tx_ip,
            self.ipv4_tx_tcp,
            self.ipv4_tx_udp,
            self.ipv4_rx_ip,
            self.ipv4_rx_tcp,
            self.ipv4_rx_udp,
            self.ipv6_tx_tcp,
            self.ipv6_tx_udp,
            self.ipv6_rx_tcp,
            self.ipv6_rx_udp,
        ]
    }
}

/// The limits of large send offload (LSOv2) for one IP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LsoLimits {
    pub max_offload_size: u32,
    pub min_segment_count: u32,
    /// IPv6 only: `IpExtensionHeadersSupported` (the two-bit field is `NDIS_OFFLOAD_SUPPORTED`).
    pub extension_headers: bool,
}

/// The LSOv2 part of an `NDIS_OFFLOAD`: per IP version, None when not supported (or off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LargeSendTasks {
    pub ipv4: Option<LsoLimits>,
    pub ipv6: Option<LsoLimits>,
}

impl LargeSendTasks {
    /// From the bytes of an `NDIS_OFFLOAD` (`LsoV2` at offset 80: IPv4 {Encapsulation,
    /// MaxOffLoadSize, MinSegmentCount}, then IPv6 the same and its flags); a version whose
    /// encapsulation is `NOT_SUPPORTED` is None.
    pub(crate) fn from_offload(b: &[u8]) -> Self {
        let word = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let version = |at: usize, extension_headers: bool| {
            (word(at) != sys::NDIS_ENCAPSULATION_NOT_SUPPORTED).then_some(LsoLimits {
                max_offload_size: word(at + 4),
                min_segment_count: word(at + 8),
                extension_headers,
            })
        };
        let ipv6_flags = word(104);
        LargeSendTasks {
            ipv4: version(80, false),
            ipv6: version(
                92,
                (ipv6_flags >> sys::NDIS_LSOV2_IPV6_EXTENSION_HEADERS_SHIFT) & 3 == 1,
            ),
        }
    }

    /// Whether every version on in `self` is on in `other`, within its limits: no larger
    /// `MaxOffLoadSize`, no smaller `MinSegmentCount`, no extension headers it lacks.
    pub(crate) fn within(&self, other: &Self) -> bool {
        let fits = |a: Option<LsoLimits>, b: Option<LsoLimits>| match (a, b) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => {
                a.max_offload_size <= b.max_offload_size
                    && a.min_segment_count >= b.min_segment_count
                    && (!a.extension_headers || b.extension_headers)
            }
        };
        fits(self.ipv4, other.ipv4) && fits(self.ipv6, other.ipv6)
    }
}

/// A miniport's task offload as NDIS knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OffloadState {
    /// From the offload attributes.
    pub hardware: ChecksumTasks,
    /// The attributes' default configuration, then each `CURRENT_CONFIG` indication.
    pub current: ChecksumTasks,
    /// Large send offload, likewise.
    pub hardware_lso: LargeSendTasks,
    pub current_lso: LargeSendTasks,
    /// `NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG` indications received.
    pub indications: usize,
    /// The `OID_OFFLOAD_ENCAPSULATION` set NDIS made when TCP/IP bound (None: not yet).
    pub encapsulation: Option<sys::NDIS_STATUS>,
}

/// Whether `b` is an `NDIS_OFFLOAD` NDIS accepts: the object type, a revision, and at least the
/// revision-1 size (both in the header and in the bytes given).
pub(crate) fn offload_header_ok(b: &[u8]) -> bool {
    b.len() >= usize::from(sys::NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_1)
        && b[0] == sys::NDIS_OBJECT_TYPE_OFFLOAD
        && b[1] >= sys::NDIS_OFFLOAD_REVISION_1
        && usize::from(u16::from_le_bytes([b[2], b[3]])) >= 112
}

/// An `NDIS_OFFLOAD_PARAMETERS` (revision 1) for `OID_TCP_OFFLOAD_PARAMETERS` whose checksum
/// members are `checksums` (IPv4 header, TCP/IPv4, UDP/IPv4, TCP/IPv6, UDP/IPv6; each
/// `NDIS_OFFLOAD_PARAMETERS_*`: 0 no change, 1 off, 2 Tx, 3 Rx, 4 both), every other member "no
/// change".
pub fn offload_parameters(checksums: [u8; 5]) -> Vec<u8> {
    let mut p = vec![0u8; usize::from(sys::NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1)];
    p[0] = sys::NDIS_OBJECT_TYPE_DEFAULT;
    p[1] = sys::NDIS_OFFLOAD_PARAMETERS_REVISION_1;
    p[2..4].copy_from_slice(&sys::NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1.to_le_bytes());
    p[4..9].copy_from_slice(&checksums);
    p
}

/// An `NDIS_OFFLOAD_ENCAPSULATION` for `OID_OFFLOAD_ENCAPSULATION`: IPv4 and IPv6 `Enabled`
/// (`NDIS_OFFLOAD_SET_*`), both IEEE 802.3 with a `header`-byte framing header.
pub fn offload_encapsulation(ipv4: u32, ipv6: u32, header: u32) -> Vec<u8> {
    let mut e = vec![0u8; usize::from(sys::NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1)];
    e[0] = sys::NDIS_OBJECT_TYPE_OFFLOAD_ENCAPSULATION;
    e[1] = sys::NDIS_OFFLOAD_ENCAPSULATION_REVISION_1;
    e[2..4].copy_from_slice(&sys::NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1.to_le_bytes());
    for (at, enabled) in [(4, ipv4), (16, ipv6)] {
        e[at..at + 4].copy_from_slice(&enabled.to_le_bytes());
        e[at + 4..at + 8].copy_from_slice(&sys::NDIS_ENCAPSULATION_IEEE_802_3.to_le_bytes());
        e[at + 8..at + 12].copy_from_slice(&header.to_le_bytes());
    }
    e
}

/// The checksums the protocol asks a miniport for on a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendChecksum {
    /// The IPv4 header checksum.
    pub ip_header: bool,
    /// The TCP or UDP checksum (whichever the frame carries).
    pub transport: bool,
}

/// What TCP/IP does to `frame` (a correct Ethernet frame carrying TCP or UDP over IP) before
/// asking for `request` with the tasks `current` on: the IPv4 header checksum zeroed, the
/// TCP/UDP checksum field holding the pseudo-header sum; and the list's
/// `TcpIpChecksumNetBufferListInfo` value. Err says why the transport would not ask.
pub(crate) fn prepare(
    frame: &[u8],
    request: SendChecksum,
    current: &ChecksumTasks,
) -> Result<(Vec<u8>, usize), String> {
    let packet = SlicedPacket::from_ethernet(frame).map_err(|e| format!("not a frame: {e}"))?;
    let offset = |s: &[u8]| s.as_ptr() as usize - frame.as_ptr() as usize;
    let (ipv4, l3, pseudo) = match &packet.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let mut sum = words(&h.source()) + words(&h.destination());
            sum += u64::from(u8::from(h.protocol()));
            sum += u64::from(ip.payload().payload.len() as u16);
            (true, offset(h.slice()), sum)
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let mut sum = words(&h.source()) + words(&h.destination());
            sum += u64::from(u8::from(ip.payload().ip_number));
            sum += ip.payload().payload.len() as u64;
            (false, offset(h.slice()), sum)
        }
        _ => return Err("not IP".into()),
    };
    if request.ip_header && !(ipv4 && current.ipv4_tx_ip) {
        return Err(
            "the miniport has the IPv4 header checksum task off (or the frame is IPv6)".into(),
        );
    }
    // The IPv4 header checksum alone may be asked for any IPv4 packet (ICMP, a fragment); a
    // transport checksum needs a whole TCP or UDP segment.
    let transport = if request.transport {
        let (tcp, l4) = match &packet.transport {
            Some(TransportSlice::Tcp(t)) => (true, offset(t.slice())),
            Some(TransportSlice::Udp(u)) => (false, offset(u.slice())),
            _ => return Err("not a whole TCP or UDP segment".into()),
        };
        let allowed = match (ipv4, tcp) {
            (true, true) => current.ipv4_tx_tcp,
            (true, false) => current.ipv4_tx_udp,
            (false, true) => current.ipv6_tx_tcp,
            (false, false) => current.ipv6_tx_udp,
        };
        if !allowed {
            return Err("the miniport has that transport checksum task off".into());
        }
        Some((tcp, l4))
    } else {
        None
    };
    let mut out = frame.to_vec();
    let mut info = if ipv4 {
        sys::NDIS_CHECKSUM_TX_IS_IPV4
    } else {
        sys::NDIS_CHECKSUM_TX_IS_IPV6
    };
    if request.ip_header {
        out[l3 + 10..l3 + 12].fill(0);
        info |= sys::NDIS_CHECKSUM_TX_IP_HEADER;
    }
    if let Some((tcp, l4)) = transport {
        let field = l4 + if tcp { 16 } else { 6 };
        out[field..field + 2].copy_from_slice(&fold(pseudo).to_be_bytes());
        info |= if tcp {
            sys::NDIS_CHECKSUM_TX_TCP
                | ((l4 as u32) << sys::NDIS_CHECKSUM_TX_TCP_HEADER_OFFSET_SHIFT)
        } else {
            sys::NDIS_CHECKSUM_TX_UDP
        };
    }
    Ok((out, info as usize))
}

/// What TCP/IP does to a large TCP send (`frame`: a correct Ethernet frame carrying one TCP
/// segment larger than `mss`, as it would be before segmentation) before handing it to a
/// miniport with LSOv2 on (Microsoft's "Offloading the segmentation of large TCP packets"):
/// the IPv4 total length and header checksum zeroed (the IPv6 payload length too: the page does
/// not say, and zero is what a miniport must cope with), the TCP checksum field holding the
/// pseudo-header sum without the TCP length; and the list's `TcpLargeSendNetBufferListInfo`
/// (`LsoV2Transmit`: MSS, TCP header offset, type V2, IP version). Err says why TCP/IP would
/// not offload it: LSO off for its IP version, more payload than `MaxOffLoadSize`, fewer
/// segments than `MinSegmentCount`.
pub(crate) fn prepare_large_send(
    frame: &[u8],
    mss: u32,
    current: &LargeSendTasks,
) -> Result<(Vec<u8>, usize), String> {
    let packet = SlicedPacket::from_ethernet(frame).map_err(|e| format!("not a frame: {e}"))?;
    let offset = |s: &[u8]| s.as_ptr() as usize - frame.as_ptr() as usize;
    let Some(TransportSlice::Tcp(tcp)) = &packet.transport else {
        return Err("not a whole TCP segment".into());
    };
    let l4 = offset(tcp.slice());
    let payload = tcp.payload().len();
    let (ipv6, l3, addresses, limits) = match &packet.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let sum = words(&h.source()) + words(&h.destination());
            (false, offset(h.slice()), sum, current.ipv4)
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let sum = words(&h.source()) + words(&h.destination());
            (true, offset(h.slice()), sum, current.ipv6)
        }
        _ => return Err("not IP".into()),
    };
    let limits = limits.ok_or("the miniport has LSO off for this IP version")?;
    if mss == 0 || payload > limits.max_offload_size as usize {
        return Err(format!(
            "{payload} bytes of payload: more than MaxOffLoadSize {}",
            limits.max_offload_size
        ));
    }
    if payload.div_ceil(mss as usize) < limits.min_segment_count as usize {
        return Err(format!(
            "{payload} bytes at MSS {mss}: fewer segments than MinSegmentCount {}",
            limits.min_segment_count
        ));
    }
    let mut out = frame.to_vec();
    if ipv6 {
        out[l3 + 4..l3 + 6].fill(0);
    } else {
        out[l3 + 2..l3 + 4].fill(0);
        out[l3 + 10..l3 + 12].fill(0);
    }
    let pseudo = fold(addresses + u64::from(6u8));
    out[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
    let info = mss
        | ((l4 as u32) << sys::NDIS_LSO_TCP_HEADER_OFFSET_SHIFT)
        | (sys::NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE << sys::NDIS_LSO_TYPE_SHIFT)
        | (u32::from(ipv6) << sys::NDIS_LSO_V2_IP_VERSION_SHIFT);
    Ok((out, info as usize))
}

/// The sum of `b` as big-endian 16-bit words (`b` of even length).
fn words(b: &[u8]) -> u64 {
    b.chunks_exact(2)
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum()
}

fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

/// What a miniport said about a received list's checksums
/// (`NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO.Receive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxChecksumInfo {
    pub tcp_succeeded: bool,
    pub udp_succeeded: bool,
    pub ip_succeeded: bool,
    pub tcp_failed: bool,
    pub udp_failed: bool,
    pub ip_failed: bool,
}

impl RxChecksumInfo {
    pub(crate) fn from_info(v: usize) -> Self {
        let v = v as u32;
        RxChecksumInfo {
            tcp_succeeded: v & sys::NDIS_CHECKSUM_RX_TCP_SUCCEEDED != 0,
            udp_succeeded: v & sys::NDIS_CHECKSUM_RX_UDP_SUCCEEDED != 0,
            ip_succeeded: v & sys::NDIS_CHECKSUM_RX_IP_SUCCEEDED != 0,
            tcp_failed: v & sys::NDIS_CHECKSUM_RX_TCP_FAILED != 0,
            udp_failed: v & sys::NDIS_CHECKSUM_RX_UDP_FAILED != 0,
            ip_failed: v & sys::NDIS_CHECKSUM_RX_IP_FAILED != 0,
        }
    }

    /// Whether the miniport said nothing (the stack checks for itself).
    pub fn is_unchecked(&self) -> bool {
        *self == Self::default()
    }
}
