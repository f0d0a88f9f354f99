//! TCP segmentation offload on transmit (virtio 1.2, 5.1.6.2: `VIRTIO_NET_F_HOST_TSO4`,
//! `VIRTIO_NET_F_HOST_TSO6`), as QEMU with a Linux tap backend does it: the packet the driver
//! hands over is cut the way Linux's `tcp_gso_segment`, `inet_gso_segment` and
//! `ipv6_gso_segment` cut a GSO packet, and every segment leaves with its checksum completed.
//!
//! The driver hands over one TCP packet of up to 64 KiB with `gso_size` (the MSS), NEEDS_CSUM and
//! the pseudo-header sum in the checksum field. Each segment copies the Ethernet, IP and TCP
//! headers (options included) and carries the next `gso_size` bytes of payload; only the lengths,
//! the IPv4 identification and header checksum, the sequence number, FIN/PSH/CWR and the TCP
//! checksum differ. The IP length fields of the packet itself are not read (Linux rewrites them
//! for every segment; Windows' LSO leaves them 0): the payload is what the frame holds after the
//! TCP header.
//!
//! Offsets are parsed here by hand, a few lines that name the value they refuse; tests build the
//! packets and the expected segments with `etherparse`.

use super::checksum::{
    ETHER_TYPE_AT, IP_PROTO_TCP, TCP_CSUM_OFFSET, TPID_8021Q, TxHeader, fold, insert_checksum,
    sum_words,
};
use super::regs::{self, feature, net_hdr};

const ETHER_TYPE_IPV4: u16 = 0x0800;
const ETHER_TYPE_IPV6: u16 = 0x86DD;
/// An 802.1Q tag: TPID and TCI, before the real EtherType.
const VLAN_TAG_LEN: usize = 4;

const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV4_TOTAL_LEN_AT: usize = 2;
const IPV4_ID_AT: usize = 4;
const IPV4_PROTOCOL_AT: usize = 9;
const IPV4_CHECKSUM_AT: usize = 10;

/// The fixed IPv6 header; extension headers are not segmented.
const IPV6_HEADER_LEN: usize = 40;
const IPV6_PAYLOAD_LEN_AT: usize = 4;
const IPV6_NEXT_HEADER_AT: usize = 6;

const TCP_MIN_HEADER_LEN: usize = 20;
const TCP_SEQ_AT: usize = 4;
const TCP_DATA_OFFSET_AT: usize = 12;
const TCP_FLAGS_AT: usize = 13;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    fn gso_name(self) -> &'static str {
        match self {
            IpVersion::V4 => "TCPV4",
            IpVersion::V6 => "TCPV6",
        }
    }
}

/// Where a checked GSO packet's headers sit and how long its segments' payloads are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Segmentation {
    ip: IpVersion,
    /// Offset of the IP header (after Ethernet and at most one 802.1Q tag).
    ip_start: usize,
    /// Offset of the TCP header, which `csum_start` must name.
    tcp_start: usize,
    /// Offset of the payload: the end of the TCP header, options included.
    payload_start: usize,
    /// Payload bytes per segment (`gso_size`, the MSS), > 0.
    mss: usize,
}

impl Segmentation {
    /// Checks a TX header with `gso_type` != NONE against the `negotiated` features and the
    /// frame it describes. Every refusal is a device error naming the values: a `gso_type` other
    /// than TCPV4/TCPV6 or whose feature was not negotiated, the ECN bit without HOST_ECN, no
    /// NEEDS_CSUM, a checksum that is not TCP's, `gso_size` 0, `hdr_len` past the frame, a frame
    /// that is not Ethernet (one tag at most) + IPv4 (TCPV4) or IPv6 without extension headers
    /// (TCPV6) + TCP. `hdr_len` is only a hint in virtio 1.x (the device finds the headers
    /// itself), so it is not otherwise checked.
    pub fn new(
        head: u16,
        header: &TxHeader<'_>,
        negotiated: u64,
        frame: &[u8],
    ) -> Result<Self, String> {
        let gso_type = header.gso_type();
        let ip = ip_version_of(head, gso_type, negotiated)?;
        let name = ip.gso_name();
        let flags = header.flags();
        if flags & regs::NET_HDR_F_NEEDS_CSUM == 0 {
            return Err(format!(
                "TX chain {head}: gso_type {gso_type} ({name}) without NEEDS_CSUM (flags \
                 {flags:#04x}): every segment's checksum is completed from the partial one"
            ));
        }
        let mss = header.le16(net_hdr::GSO_SIZE);
        if mss == 0 {
            return Err(format!(
                "TX chain {head}: gso_type {gso_type} ({name}) with gso_size 0"
            ));
        }
        let hdr_len = header.le16(net_hdr::HDR_LEN);
        if hdr_len as usize > frame.len() {
            return Err(format!(
                "TX chain {head}: hdr_len {hdr_len} is past the end of the {}-byte frame",
                frame.len()
            ));
        }
        let (ip_start, tcp_start) = match ip {
            IpVersion::V4 => ipv4_offsets(head, frame)?,
            IpVersion::V6 => ipv6_offsets(head, frame)?,
        };
        let payload_start = tcp_payload_offset(head, frame, tcp_start)?;
        let (csum_start, csum_offset) = (
            header.le16(net_hdr::CSUM_START),
            header.le16(net_hdr::CSUM_OFFSET),
        );
        if csum_start as usize != tcp_start || csum_offset != TCP_CSUM_OFFSET {
            return Err(format!(
                "TX chain {head}: gso_type {gso_type} ({name}) with csum_start {csum_start}, \
                 csum_offset {csum_offset}: the TCP checksum is at csum_start {tcp_start}, \
                 csum_offset {TCP_CSUM_OFFSET}"
            ));
        }
        Ok(Segmentation {
            ip,
            ip_start,
            tcp_start,
            payload_start,
            mss: mss as usize,
        })
    }

    /// How many segments `frame` becomes: one per `gso_size` bytes of payload, the last one
    /// short; one for an empty payload (a bare FIN or ACK still goes out).
    pub fn count(&self, frame: &[u8]) -> usize {
        (frame.len() - self.payload_start).div_ceil(self.mss).max(1)
    }

    /// Segment `i` of the `count` that `frame` becomes, as it goes on the wire. The one
    /// allocation is the segment itself.
    pub fn segment(&self, frame: &[u8], i: usize, count: usize) -> Vec<u8> {
        let payload = &frame[self.payload_start..];
        let from = i * self.mss;
        let to = payload.len().min(from + self.mss);
        let mut segment = Vec::with_capacity(self.payload_start + to - from);
        segment.extend_from_slice(&frame[..self.payload_start]);
        segment.extend_from_slice(&payload[from..to]);
        self.rewrite_ip_header(&mut segment, i);
        self.rewrite_tcp_header(&mut segment, i, count);
        // Lengths fit in 16 bits: a TX chain is at most 64 KiB, Ethernet header included.
        let field = self.tcp_start + TCP_CSUM_OFFSET as usize;
        let partial = segment_pseudo_header_sum(
            be16(frame, field),
            (frame.len() - self.tcp_start) as u16,
            (segment.len() - self.tcp_start) as u16,
        );
        put16(&mut segment, field, partial);
        insert_checksum(&mut segment, self.tcp_start, field);
        segment
    }

    /// IPv4: total length, identification + `i` (wrapping, as Linux's `id++` on a u16) and the
    /// header checksum; IPv6: payload length. Everything else (options, DF, TTL) is copied.
    fn rewrite_ip_header(&self, segment: &mut [u8], i: usize) {
        let after_ip = segment.len() - self.ip_start;
        let ip = &mut segment[self.ip_start..self.tcp_start];
        match self.ip {
            IpVersion::V4 => {
                put16(ip, IPV4_TOTAL_LEN_AT, after_ip as u16);
                let id = be16(ip, IPV4_ID_AT).wrapping_add(i as u16);
                put16(ip, IPV4_ID_AT, id);
                put16(ip, IPV4_CHECKSUM_AT, 0);
                let checksum = !fold(sum_words(0, ip));
                put16(ip, IPV4_CHECKSUM_AT, checksum);
            }
            IpVersion::V6 => put16(ip, IPV6_PAYLOAD_LEN_AT, (after_ip - IPV6_HEADER_LEN) as u16),
        }
    }

    /// Sequence number + `i` × MSS (wrapping); FIN and PSH only on the last segment, CWR only on
    /// the first, as `tcp_gso_segment` leaves them.
    fn rewrite_tcp_header(&self, segment: &mut [u8], i: usize, count: usize) {
        let tcp = &mut segment[self.tcp_start..self.payload_start];
        let seq = be32(tcp, TCP_SEQ_AT).wrapping_add((i * self.mss) as u32);
        tcp[TCP_SEQ_AT..TCP_SEQ_AT + 4].copy_from_slice(&seq.to_be_bytes());
        let mut cleared = 0;
        if i + 1 < count {
            cleared |= TCP_FIN | TCP_PSH;
        }
        if i > 0 {
            cleared |= TCP_CWR;
        }
        tcp[TCP_FLAGS_AT] &= !cleared;
    }
}

/// The pseudo-header sum the driver left in the checksum field (folded, not complemented),
/// made for one segment: its TCP length `whole` (header and all the payload) replaced by the
/// segment's `part`, by ones'-complement subtraction and addition (RFC 1624). This is Linux's
/// `tcp_gso_segment`, which adds `delta = htonl(oldlen + (thlen + mss))`, `oldlen` being the
/// complemented length of the whole packet, to `th->check`. The addresses are never summed
/// again: a driver that put a wrong sum in the field gets wrong checksums on the wire, from
/// Linux and from this model alike.
fn segment_pseudo_header_sum(sum: u16, whole: u16, part: u16) -> u16 {
    fold(sum as u64 + !whole as u64 + part as u64)
}

/// The IP version `gso_type` segments, if the driver may ask for it.
fn ip_version_of(head: u16, gso_type: u8, negotiated: u64) -> Result<IpVersion, String> {
    let (ip, needed, feature_name) = match gso_type & !regs::NET_HDR_GSO_ECN {
        regs::NET_HDR_GSO_TCPV4 => (IpVersion::V4, feature::HOST_TSO4, "VIRTIO_NET_F_HOST_TSO4"),
        regs::NET_HDR_GSO_TCPV6 => (IpVersion::V6, feature::HOST_TSO6, "VIRTIO_NET_F_HOST_TSO6"),
        _ => {
            return Err(format!(
                "TX chain {head}: gso_type {gso_type}: the device segments only TCPV4 ({}) and \
                 TCPV6 ({})",
                regs::NET_HDR_GSO_TCPV4,
                regs::NET_HDR_GSO_TCPV6
            ));
        }
    };
    if negotiated & needed == 0 {
        return Err(format!(
            "TX chain {head}: gso_type {gso_type} ({}) but {feature_name} was not negotiated",
            ip.gso_name()
        ));
    }
    if gso_type & regs::NET_HDR_GSO_ECN != 0 && negotiated & feature::HOST_ECN == 0 {
        return Err(format!(
            "TX chain {head}: gso_type {gso_type} has the ECN bit ({:#04x}) but \
             VIRTIO_NET_F_HOST_ECN was not negotiated",
            regs::NET_HDR_GSO_ECN
        ));
    }
    Ok(ip)
}

/// Where the IP header starts, after the Ethernet header and at most one 802.1Q tag, if the
/// EtherType is `wanted`.
fn ip_start(head: u16, frame: &[u8], wanted: u16, gso_name: &str) -> Result<usize, String> {
    let tagged = frame.get(ETHER_TYPE_AT..ETHER_TYPE_AT + 2) == Some(&TPID_8021Q[..]);
    let type_at = ETHER_TYPE_AT + if tagged { VLAN_TAG_LEN } else { 0 };
    if frame.len() < type_at + 2 {
        return Err(truncated(head, frame, "Ethernet header"));
    }
    let ether_type = be16(frame, type_at);
    if ether_type != wanted {
        return Err(format!(
            "TX chain {head}: gso_type {gso_name} needs EtherType {wanted:#06x} (one 802.1Q tag \
             at most), the frame has {ether_type:#06x}"
        ));
    }
    Ok(type_at + 2)
}

/// (IP header, TCP header) offsets of a TCP/IPv4 frame; any IHL.
fn ipv4_offsets(head: u16, frame: &[u8]) -> Result<(usize, usize), String> {
    let ip = ip_start(head, frame, ETHER_TYPE_IPV4, "TCPV4")?;
    let Some(&version_ihl) = frame.get(ip) else {
        return Err(truncated(head, frame, "IPv4 header"));
    };
    let (version, ihl) = (version_ihl >> 4, version_ihl & 0x0F);
    let header_len = ihl as usize * 4;
    if version != 4 || header_len < IPV4_MIN_HEADER_LEN {
        return Err(format!(
            "TX chain {head}: gso_type TCPV4 but the IPv4 header at {ip} has version {version}, \
             IHL {ihl} (4 and at least 5 expected)"
        ));
    }
    if frame.len() < ip + header_len {
        return Err(truncated(head, frame, "IPv4 header"));
    }
    let protocol = frame[ip + IPV4_PROTOCOL_AT];
    if protocol != IP_PROTO_TCP {
        return Err(format!(
            "TX chain {head}: gso_type TCPV4 but the IPv4 protocol is {protocol}, not TCP \
             ({IP_PROTO_TCP})"
        ));
    }
    // A Linux host checks both when it routes the packet (`ip_rcv`) and drops it otherwise;
    // the model refuses it loudly. (Windows hands a miniport total length 0: the driver must
    // fill it in.)
    let total = u16::from_be_bytes([frame[ip + 2], frame[ip + 3]]) as usize;
    if total != frame.len() - ip {
        return Err(format!(
            "TX chain {head}: gso_type TCPV4 with IPv4 total length {total}, but {} bytes follow \
             the IP header's start",
            frame.len() - ip
        ));
    }
    let words = frame[ip..ip + header_len]
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])));
    let mut sum: u32 = words.sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    if sum != 0xFFFF {
        return Err(format!(
            "TX chain {head}: gso_type TCPV4 with a wrong IPv4 header checksum"
        ));
    }
    Ok((ip, ip + header_len))
}

/// (IP header, TCP header) offsets of a TCP/IPv6 frame without extension headers.
fn ipv6_offsets(head: u16, frame: &[u8]) -> Result<(usize, usize), String> {
    let ip = ip_start(head, frame, ETHER_TYPE_IPV6, "TCPV6")?;
    if frame.len() < ip + IPV6_HEADER_LEN {
        return Err(truncated(head, frame, "IPv6 header"));
    }
    let version = frame[ip] >> 4;
    let next_header = frame[ip + IPV6_NEXT_HEADER_AT];
    if version != 6 || next_header != IP_PROTO_TCP {
        return Err(format!(
            "TX chain {head}: gso_type TCPV6 but the IPv6 header at {ip} has version {version}, \
             next header {next_header} (6 and TCP ({IP_PROTO_TCP}) expected: no extension \
             headers)"
        ));
    }
    let payload = u16::from_be_bytes([frame[ip + 4], frame[ip + 5]]) as usize;
    if payload != frame.len() - ip - IPV6_HEADER_LEN {
        return Err(format!(
            "TX chain {head}: gso_type TCPV6 with IPv6 payload length {payload}, but {} bytes \
             follow the IPv6 header",
            frame.len() - ip - IPV6_HEADER_LEN
        ));
    }
    Ok((ip, ip + IPV6_HEADER_LEN))
}

/// Where the TCP payload starts: the TCP header's data offset, checked against the frame.
fn tcp_payload_offset(head: u16, frame: &[u8], tcp: usize) -> Result<usize, String> {
    let Some(&data_offset) = frame.get(tcp + TCP_DATA_OFFSET_AT) else {
        return Err(truncated(head, frame, "TCP header"));
    };
    let header_len = (data_offset >> 4) as usize * 4;
    if header_len < TCP_MIN_HEADER_LEN {
        return Err(format!(
            "TX chain {head}: the TCP header at {tcp} has data offset {} (at least 5 expected)",
            data_offset >> 4
        ));
    }
    if frame.len() < tcp + header_len {
        return Err(truncated(head, frame, "TCP header"));
    }
    Ok(tcp + header_len)
}

fn truncated(head: u16, frame: &[u8], what: &str) -> String {
    format!(
        "TX chain {head}: GSO packet of {} bytes ends inside its {what}",
        frame.len()
    )
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn put16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_length_delta_changes_only_the_length_word_of_the_pseudo_header_sum() {
        // The sum of a pseudo-header with length L, adjusted to L', equals the sum computed with
        // L' (up to the two zeros of ones' complement).
        let addresses = sum_words(0, &[192, 168, 7, 1, 192, 168, 7, 2]) + IP_PROTO_TCP as u64;
        for (whole, part) in [(3032, 1480), (3032, 136), (20, 20), (65502, 21), (1, 65535)] {
            let adjusted = segment_pseudo_header_sum(fold(addresses + whole as u64), whole, part);
            let direct = fold(addresses + part as u64);
            assert_eq!(adjusted % 0xFFFF, direct % 0xFFFF, "{whole} -> {part}");
        }
        // Nothing changes when the length does not.
        assert_eq!(segment_pseudo_header_sum(0x1234, 40, 40), 0x1234);
    }
}
