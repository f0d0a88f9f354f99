//! Checksum offload (virtio spec 5.1.6.2 and 5.1.6.4: `VIRTIO_NET_F_CSUM`,
//! `VIRTIO_NET_F_GUEST_CSUM`).
//!
//! TX: a driver that negotiated CSUM may hand over a frame whose TCP/UDP checksum field holds
//! only the pseudo-header sum (`NEEDS_CSUM`); the device completes it, as a host NIC would, before
//! the frame goes on the wire. That sum is written here by hand, a few lines that tests check
//! against frames `etherparse` built. A header asking for segmentation (`gso_type`) goes to
//! [`super::gso`] instead, which completes every segment's checksum with the same sum.
//!
//! RX: with GUEST_CSUM the device may tell the driver that a frame's checksum is good
//! (`DATA_VALID`) or deliver it with a partial checksum, as a host does with locally generated
//! packets. Frames are parsed and verified by `etherparse`, so the model vouches for a checksum
//! with code that shares nothing with the driver's own.

use etherparse::{LinkExtSlice, NetSlice, SlicedPacket, TransportSlice};

use super::RxChecksum;
use super::regs::{self, net_hdr};

pub(super) const IP_PROTO_TCP: u8 = 6;
const IP_PROTO_UDP: u8 = 17;
/// Where the checksum field sits in a TCP and a UDP header (`csum_offset`).
pub(super) const TCP_CSUM_OFFSET: u16 = 16;
const UDP_CSUM_OFFSET: u16 = 6;
/// The 802.1Q TPID: the one tag the RX path and TSO look through.
pub(super) const TPID_8021Q: [u8; 2] = [0x81, 0x00];
/// Where the Ethernet type (or TPID) sits in a frame.
pub(super) const ETHER_TYPE_AT: usize = 12;

// ---- TX ----

/// A TX chain's `virtio_net_hdr`, read field by field only when needed: most frames ask for
/// nothing, and the model runs on every benchmark's datapath.
#[derive(Debug, Clone, Copy)]
pub(super) struct TxHeader<'a>(pub &'a [u8; regs::NET_HDR_LEN]);

impl TxHeader<'_> {
    pub fn flags(&self) -> u8 {
        self.0[net_hdr::FLAGS]
    }

    pub fn gso_type(&self) -> u8 {
        self.0[net_hdr::GSO_TYPE]
    }

    pub fn le16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }

    /// Whether the header asks for nothing (no flags, no segmentation): the frame goes on the
    /// wire as it is. Checked inline for every frame; everything else is out of line.
    pub fn asks_nothing(&self) -> bool {
        self.flags() == 0 && self.gso_type() == regs::NET_HDR_GSO_NONE
    }

    /// Whether the driver asks for segmentation (`gso_type` not NONE): such a packet goes to
    /// [`Segmentation`](super::gso::Segmentation), which checks the rest of the header.
    pub fn wants_segmentation(&self) -> bool {
        self.gso_type() != regs::NET_HDR_GSO_NONE
    }

    /// For a header without segmentation: where the device must complete a checksum in a frame
    /// of `frame_len` bytes, `(csum_start, offset of the checksum field)`, or None when the
    /// driver did not ask. Errors are the driver's protocol violations: NEEDS_CSUM without CSUM
    /// negotiated (the spec forbids it), a checksum field outside the frame.
    pub fn checksum_request(
        &self,
        head: u16,
        csum_negotiated: bool,
        frame_len: usize,
    ) -> Result<Option<(usize, usize)>, String> {
        if self.flags() & regs::NET_HDR_F_NEEDS_CSUM == 0 {
            return Ok(None);
        }
        if !csum_negotiated {
            return Err(format!(
                "TX chain {head}: NEEDS_CSUM set but VIRTIO_NET_F_CSUM was not negotiated"
            ));
        }
        let (csum_start, csum_offset) = (
            self.le16(net_hdr::CSUM_START),
            self.le16(net_hdr::CSUM_OFFSET),
        );
        let start = csum_start as usize;
        let field = start + csum_offset as usize;
        if field + 2 > frame_len {
            return Err(format!(
                "TX chain {head}: checksum field at csum_start {csum_start} + csum_offset \
                 {csum_offset} (2 bytes) lies past the end of the {frame_len}-byte frame"
            ));
        }
        Ok(Some((start, field)))
    }
}

/// Completes a partial checksum in place: the ones'-complement sum of `frame[start..]` (the
/// field at `field` holds the pseudo-header sum the driver put there and is part of it),
/// complemented and stored big-endian at `field`. A result of 0 is stored as 0xFFFF, as Linux's
/// `skb_checksum_help` does: for UDP 0 would mean "no checksum", for TCP both are the same value.
/// Out of line: only frames that ask for it pay for it.
#[inline(never)]
pub(super) fn insert_checksum(frame: &mut [u8], start: usize, field: usize) {
    let checksum = match !fold(sum_words(0, &frame[start..])) {
        0 => 0xFFFF,
        c => c,
    };
    frame[field..field + 2].copy_from_slice(&checksum.to_be_bytes());
}

/// Adds `bytes` as big-endian 16-bit words (an odd trailing byte padded with zero) to `acc`,
/// without folding. Four bytes at a time: the sum of 32-bit big-endian words folds to the same
/// 16-bit sum (RFC 1071), and a u64 cannot overflow for any frame.
pub(super) fn sum_words(mut acc: u64, bytes: &[u8]) -> u64 {
    let mut quads = bytes.chunks_exact(4);
    for q in &mut quads {
        acc += u32::from_be_bytes([q[0], q[1], q[2], q[3]]) as u64;
    }
    let rest = quads.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u16::from_be_bytes([p[0], p[1]]) as u64;
    }
    if let [odd] = pairs.remainder() {
        acc += (*odd as u64) << 8;
    }
    acc
}

/// Folds the carries of a ones'-complement sum into 16 bits (not complemented).
pub(super) fn fold(mut acc: u64) -> u16 {
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    acc as u16
}

// ---- RX ----

/// What the RX header tells the driver about a frame's checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RxVerdict {
    /// flags 0: the driver checks for itself.
    Unchecked,
    /// DATA_VALID: the device verified the TCP/UDP checksum.
    DataValid,
    /// NEEDS_CSUM: the frame is delivered with the checksum field replaced by `pseudo_sum` (the
    /// folded, not complemented, pseudo-header sum, big-endian), to be completed from
    /// `csum_start` to the end of the frame and stored at `csum_start + csum_offset`.
    Partial {
        csum_start: u16,
        csum_offset: u16,
        pseudo_sum: [u8; 2],
    },
}

impl RxVerdict {
    /// Where the rewritten checksum field sits in the frame, for a partial checksum.
    pub fn partial_field(&self) -> Option<(usize, [u8; 2])> {
        match *self {
            RxVerdict::Partial {
                csum_start,
                csum_offset,
                pseudo_sum,
            } => Some((csum_start as usize + csum_offset as usize, pseudo_sum)),
            _ => None,
        }
    }

    /// The `virtio_net_hdr_v1` written in front of the frame (one buffer: `num_buffers` = 1).
    pub fn header(&self) -> [u8; regs::NET_HDR_LEN] {
        let mut h = [0u8; regs::NET_HDR_LEN];
        let mut put16 = |at: usize, v: u16| h[at..at + 2].copy_from_slice(&v.to_le_bytes());
        put16(net_hdr::NUM_BUFFERS, 1);
        match *self {
            RxVerdict::Unchecked => {}
            RxVerdict::DataValid => h[net_hdr::FLAGS] = regs::NET_HDR_F_DATA_VALID,
            RxVerdict::Partial {
                csum_start,
                csum_offset,
                ..
            } => {
                put16(net_hdr::CSUM_START, csum_start);
                put16(net_hdr::CSUM_OFFSET, csum_offset);
                h[net_hdr::FLAGS] = regs::NET_HDR_F_NEEDS_CSUM;
            }
        }
        h
    }
}

/// How a received frame is delivered in `mode`, GUEST_CSUM being negotiated (the frame is
/// parsed only in the modes that need it).
/// The RX header of [`RxChecksum::Forged`]: whatever the misbehaving device claims.
pub(super) fn forged_header(
    flags: u8,
    csum_start: u16,
    csum_offset: u16,
) -> [u8; regs::NET_HDR_LEN] {
    let mut h = [0u8; regs::NET_HDR_LEN];
    h[net_hdr::FLAGS] = flags;
    h[net_hdr::CSUM_START..net_hdr::CSUM_START + 2].copy_from_slice(&csum_start.to_le_bytes());
    h[net_hdr::CSUM_OFFSET..net_hdr::CSUM_OFFSET + 2].copy_from_slice(&csum_offset.to_le_bytes());
    h[net_hdr::NUM_BUFFERS..net_hdr::NUM_BUFFERS + 2].copy_from_slice(&1u16.to_le_bytes());
    h
}

pub(super) fn classify(frame: &[u8], mode: RxChecksum) -> RxVerdict {
    if matches!(mode, RxChecksum::Off | RxChecksum::Forged { .. }) {
        return RxVerdict::Unchecked;
    }
    let Some(segment) = verified_segment(frame) else {
        return RxVerdict::Unchecked;
    };
    if mode == RxChecksum::Partial
        && let Some(partial) = segment.as_partial(frame)
    {
        return partial;
    }
    RxVerdict::DataValid
}

#[derive(Debug, Clone, Copy)]
enum Addresses {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

/// A TCP or UDP segment of a received frame whose checksum verified.
struct VerifiedSegment<'a> {
    /// Offset of the L4 header from the start of the frame.
    start: usize,
    /// L4 header and payload, as long as the IP (or UDP) length says: the pseudo-header's length.
    bytes: &'a [u8],
    protocol: u8,
    csum_offset: u16,
    addresses: Addresses,
}

impl VerifiedSegment<'_> {
    /// The partial-checksum delivery of this segment, if the driver's completion (a sum from
    /// `csum_start` to the end of the frame) will give the original checksum back: bytes after
    /// the segment (Ethernet padding) must add nothing, so they must be zero.
    fn as_partial(&self, frame: &[u8]) -> Option<RxVerdict> {
        let end = self.start + self.bytes.len();
        if frame[end..].iter().any(|&b| b != 0) {
            return None;
        }
        Some(RxVerdict::Partial {
            csum_start: u16::try_from(self.start).ok()?,
            csum_offset: self.csum_offset,
            pseudo_sum: self.pseudo_header_sum().to_be_bytes(),
        })
    }

    /// The folded (not complemented) sum of the pseudo-header: source, destination, zero and
    /// protocol, L4 length (RFC 793/768; RFC 8200 8.1 for IPv6, where the length is 32 bits —
    /// ones'-complement addition does not care how the words are grouped).
    fn pseudo_header_sum(&self) -> u16 {
        let acc = match &self.addresses {
            Addresses::V4(s, d) => sum_words(sum_words(0, s), d),
            Addresses::V6(s, d) => sum_words(sum_words(0, s), d),
        };
        fold(acc + self.protocol as u64 + self.bytes.len() as u64)
    }
}

/// The TCP or UDP segment of an Ethernet frame (at most one 802.1Q tag) over IPv4 (not a
/// fragment) or IPv6 (no extension headers), if its checksum verifies. UDP over IPv4 without a
/// checksum (0) is not verified: there is nothing to vouch for.
fn verified_segment(frame: &[u8]) -> Option<VerifiedSegment<'_>> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let tagged_once = frame.get(ETHER_TYPE_AT..ETHER_TYPE_AT + 2) == Some(&TPID_8021Q[..]);
    match packet.link_exts.as_slice() {
        [] => {}
        [LinkExtSlice::Vlan(_)] if tagged_once => {}
        _ => return None,
    }
    let addresses = match packet.net.as_ref()? {
        NetSlice::Ipv4(ip) if !ip.is_payload_fragmented() => {
            Addresses::V4(ip.header().source(), ip.header().destination())
        }
        NetSlice::Ipv6(ip) if ip.extensions().is_empty() => {
            Addresses::V6(ip.header().source(), ip.header().destination())
        }
        _ => return None,
    };
    let (bytes, protocol, csum_offset, verified) = match packet.transport.as_ref()? {
        TransportSlice::Tcp(tcp) => {
            let expected = match addresses {
                Addresses::V4(s, d) => tcp.calc_checksum_ipv4(s, d),
                Addresses::V6(s, d) => tcp.calc_checksum_ipv6(s, d),
            }
            .ok()?;
            let verified = same_tcp_checksum(tcp.checksum(), expected);
            (tcp.slice(), IP_PROTO_TCP, TCP_CSUM_OFFSET, verified)
        }
        TransportSlice::Udp(udp) => {
            let header = udp.to_header();
            let expected = match addresses {
                Addresses::V4(s, d) => header.calc_checksum_ipv4_raw(s, d, udp.payload()),
                Addresses::V6(s, d) => header.calc_checksum_ipv6_raw(s, d, udp.payload()),
            }
            .ok()?;
            // etherparse computes UDP checksums with 0 sent as 0xFFFF: a 0 never matches.
            let verified = udp.checksum() == expected;
            (udp.slice(), IP_PROTO_UDP, UDP_CSUM_OFFSET, verified)
        }
        _ => return None,
    };
    if !verified {
        return None;
    }
    Some(VerifiedSegment {
        start: frame.element_offset(bytes.first()?)?,
        bytes,
        protocol,
        csum_offset,
        addresses,
    })
}

/// TCP has no "no checksum" value, so a computed 0 may be sent as 0x0000 or as 0xFFFF (the
/// same number in ones' complement; Linux's `skb_checksum_help` sends 0xFFFF).
fn same_tcp_checksum(stored: u16, expected: u16) -> bool {
    stored == expected || matches!((stored, expected), (0, 0xFFFF) | (0xFFFF, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_pads_an_odd_byte_and_folds_every_carry() {
        // RFC 1071's example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let rfc = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(0, &rfc)), 0xddf2);
        // Every split of the same bytes (4-, 2- and 1-byte tails) gives the same sum.
        for n in 0..rfc.len() {
            let padded = fold(sum_words(0, &rfc[..n]));
            let by_pairs: u64 = rfc[..n]
                .chunks(2)
                .map(|w| u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u64)
                .sum();
            assert_eq!(padded, fold(by_pairs), "{n} bytes");
        }
        assert_eq!(
            fold(sum_words(0, &[0xAB])),
            0xAB00,
            "odd byte is the high half"
        );
        assert_eq!(fold(0x1_FFFE), 0xFFFF, "a carry that carries again");
        assert_eq!(fold(sum_words(0, &[0xFF; 4096])), 0xFFFF);
    }

    #[test]
    fn a_checksum_of_zero_is_sent_as_all_ones() {
        // The field holds 0x0000 and the rest sums to 0xFFFF: the complement is 0.
        let mut frame = [0xFF, 0xFF, 0x00, 0x00];
        insert_checksum(&mut frame, 0, 2);
        assert_eq!(frame, [0xFF, 0xFF, 0xFF, 0xFF]);
        let mut frame = [0x12, 0x34, 0x00, 0x00, 0x56];
        insert_checksum(&mut frame, 0, 2);
        assert_eq!(
            u16::from_be_bytes([frame[2], frame[3]]),
            !(0x1234u16 + 0x5600)
        );
    }

    #[test]
    fn the_tx_header_is_little_endian_and_requests_are_checked() {
        let mut h = [0u8; regs::NET_HDR_LEN];
        h[net_hdr::FLAGS] = regs::NET_HDR_F_NEEDS_CSUM;
        h[net_hdr::CSUM_START..net_hdr::CSUM_START + 2].copy_from_slice(&34u16.to_le_bytes());
        h[net_hdr::CSUM_OFFSET..net_hdr::CSUM_OFFSET + 2].copy_from_slice(&16u16.to_le_bytes());
        let tx = TxHeader(&h);
        assert_eq!(tx.checksum_request(0, true, 52), Ok(Some((34, 50))));
        assert!(tx.checksum_request(0, true, 51).is_err(), "one byte short");
        assert!(tx.checksum_request(0, false, 52).is_err());
        assert!(!tx.asks_nothing() && !tx.wants_segmentation());
        // DATA_VALID is not a request, though the frame takes the slow path.
        h[net_hdr::FLAGS] = regs::NET_HDR_F_DATA_VALID;
        assert_eq!(TxHeader(&h).checksum_request(0, false, 0), Ok(None));
        assert!(!TxHeader(&h).asks_nothing());
        h[net_hdr::FLAGS] = 0;
        assert_eq!(TxHeader(&h).checksum_request(0, false, 0), Ok(None));
        assert!(TxHeader(&h).asks_nothing());
        h[net_hdr::GSO_TYPE] = regs::NET_HDR_GSO_TCPV4;
        assert!(!TxHeader(&h).asks_nothing() && TxHeader(&h).wants_segmentation());
    }
}
