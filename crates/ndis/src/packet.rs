//! Just enough Ethernet/IP parsing and Internet checksum arithmetic (RFC 1071) for checksum
//! offload: where the IP and TCP/UDP headers of a frame are, and the sums a driver completes in
//! software when its device does not. Pure functions over byte slices, so every bound is checked
//! and nothing here trusts a length field it has not compared with the frame.

/// IP protocol numbers this module understands.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_8021Q: u16 = 0x8100;

/// IPv6 extension headers walked over (hop-by-hop, routing, destination options); a fragment
/// header (44) or anything else ends the walk.
const IPV6_EXTENSIONS: [u8; 3] = [0, 43, 60];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
}

/// Where the headers of an Ethernet frame carrying TCP or UDP over IP are. Offsets are from the
/// start of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    pub ip: IpVersion,
    /// Start of the IP header.
    pub l3: usize,
    /// IPv4 header length (IHL * 4); 40 for IPv6.
    pub l3_len: usize,
    /// Start of the TCP or UDP header.
    pub l4: usize,
    /// [`PROTO_TCP`] or [`PROTO_UDP`].
    pub protocol: u8,
    /// End of the IP packet (the frame may carry padding after it).
    pub end: usize,
    /// An IPv6 routing header was walked: the pseudo-header's destination is then the final
    /// one named in it, which [`pseudo_header_sum`] does not look for.
    pub routed: bool,
}

impl Layers {
    /// Offset of the TCP/UDP checksum field from the start of the frame.
    pub fn checksum_field(&self) -> usize {
        self.l4 + checksum_offset(self.protocol)
    }

    /// Bytes of the TCP/UDP segment (header and payload).
    pub fn l4_len(&self) -> usize {
        self.end - self.l4
    }
}

/// Offset of the checksum field in a TCP (16) or UDP (6) header.
pub fn checksum_offset(protocol: u8) -> usize {
    if protocol == PROTO_TCP { 16 } else { 6 }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let b = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Where the IPv4 header of `frame` (Ethernet II, at most one 802.1Q tag) is, and its length,
/// if the frame carries IPv4 and holds the whole header: all a header checksum needs (the
/// packet may be a fragment, or carry any protocol).
pub fn ipv4_header(frame: &[u8]) -> Option<(usize, usize)> {
    let (l3, ethertype) = match be16(frame, 12)? {
        ETHERTYPE_8021Q => (18, be16(frame, 16)?),
        other => (14, other),
    };
    let v = *frame.get(l3)?;
    let ihl = usize::from(v & 0x0F) * 4;
    let ok = ethertype == ETHERTYPE_IPV4 && v >> 4 == 4 && ihl >= 20 && l3 + ihl <= frame.len();
    ok.then_some((l3, ihl))
}

/// The layers of `frame` (Ethernet II, at most one 802.1Q tag), or None unless it is a whole,
/// unfragmented TCP or UDP segment over IPv4 or IPv6 whose IP lengths fit the frame.
pub fn parse(frame: &[u8]) -> Option<Layers> {
    parse_headers(frame, frame.len())
}

/// As [`parse`], from the first bytes of a frame of `frame_len` bytes (`head` must hold every
/// header through the TCP/UDP one, or None).
pub fn parse_headers(frame: &[u8], frame_len: usize) -> Option<Layers> {
    parse_with(frame, frame_len, false)
}

/// As [`parse`], for the template of a large send (LSOv2), whose IP length fields the stack
/// leaves 0: the IP packet is taken to run to the end of the frame.
pub fn parse_large_send(frame: &[u8]) -> Option<Layers> {
    parse_with(frame, frame.len(), true)
}

/// `lengths_from_frame`: ignore the IP length fields and take the packet to end with the frame.
fn parse_with(frame: &[u8], frame_len: usize, lengths_from_frame: bool) -> Option<Layers> {
    let mut l3 = 14;
    let mut ethertype = be16(frame, 12)?;
    if ethertype == ETHERTYPE_8021Q {
        l3 = 18;
        ethertype = be16(frame, 16)?;
    }
    let (ip, l3_len, mut protocol, end) = match ethertype {
        ETHERTYPE_IPV4 => {
            let v = *frame.get(l3)?;
            let ihl = usize::from(v & 0x0F) * 4;
            if v >> 4 != 4 || ihl < 20 {
                return None;
            }
            let total = if lengths_from_frame {
                frame_len.checked_sub(l3)?
            } else {
                usize::from(be16(frame, l3 + 2)?)
            };
            let fragment = be16(frame, l3 + 6)?;
            // More fragments, or an offset: not a whole segment.
            if fragment & 0x3FFF != 0 || total < ihl {
                return None;
            }
            (IpVersion::V4, ihl, *frame.get(l3 + 9)?, l3 + total)
        }
        ETHERTYPE_IPV6 => {
            if *frame.get(l3)? >> 4 != 6 {
                return None;
            }
            let payload = if lengths_from_frame {
                frame_len.checked_sub(l3 + 40)?
            } else {
                usize::from(be16(frame, l3 + 4)?)
            };
            (IpVersion::V6, 40, *frame.get(l3 + 6)?, l3 + 40 + payload)
        }
        _ => return None,
    };
    if end > frame_len {
        return None;
    }
    let mut l4 = l3 + l3_len;
    let mut routed = false;
    if ip == IpVersion::V6 {
        while IPV6_EXTENSIONS.contains(&protocol) {
            // Hop-by-hop options only right after the IPv6 header (RFC 8200, 4.1): a later
            // one makes the packet one the stack discards.
            if protocol == 0 && l4 != l3 + 40 {
                return None;
            }
            routed |= protocol == 43;
            let next = *frame.get(l4)?;
            let len = (usize::from(*frame.get(l4 + 1)?) + 1) * 8;
            l4 += len;
            protocol = next;
        }
    }
    let header = match protocol {
        PROTO_TCP => 20,
        PROTO_UDP => 8,
        _ => return None,
    };
    if l4 + header > end || l4 + header > frame.len() {
        return None;
    }
    // The transport header's own length fields must agree with the segment, or its checksum
    // is not the one computed over `l4..end`: a TCP data offset of 5..=15 words ending inside
    // the segment (RFC 9293), a UDP length equal to the segment's (RFC 768; a shorter one
    // would leave padding that the checksum does not cover, a longer one is truncated).
    let fits = match protocol {
        PROTO_TCP => {
            let data_offset = usize::from(frame[l4 + 12] >> 4) * 4;
            data_offset >= 20 && l4 + data_offset <= end
        }
        _ => usize::from(u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]])) == end - l4,
    };
    if !fits {
        return None;
    }
    Some(Layers {
        ip,
        l3,
        l3_len,
        l4,
        protocol,
        end,
        routed,
    })
}

/// Adds `data` to a one's complement running sum (big-endian 16-bit words; an odd last byte is
/// padded with zero). The sum is kept unfolded in 64 bits, so any frame fits.
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a running sum to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    acc as u16
}

/// The one's complement sum of the TCP/UDP pseudo-header of `frame` (RFC 793, RFC 768, RFC
/// 8200 section 8.1), folded: what a stack stores in the checksum field for a device to finish.
/// The destination is the IP header's: for an IPv6 packet with a routing header
/// ([`Layers::routed`]) RFC 8200 wants the final destination instead, which this does not find.
pub fn pseudo_header_sum(frame: &[u8], l: &Layers) -> u16 {
    let addresses = match l.ip {
        IpVersion::V4 => &frame[l.l3 + 12..l.l3 + 20],
        IpVersion::V6 => &frame[l.l3 + 8..l.l3 + 40],
    };
    let len = l.l4_len() as u64;
    fold(sum(addresses, 0) + u64::from(l.protocol) + (len >> 16) + (len & 0xFFFF))
}

/// The IPv4 header checksum of `header` (its checksum field counted as zero).
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let acc = sum(header, 0) - u64::from(be16(header, 10).unwrap_or(0));
    !fold(acc)
}

/// The TCP/UDP checksum to store, from the sum over the segment with the pseudo-header sum in
/// its checksum field. A UDP result of zero is sent as 0xFFFF (zero means "no checksum").
pub fn finish(acc: u64, protocol: u8) -> u16 {
    match !fold(acc) {
        0 if protocol == PROTO_UDP => 0xFFFF,
        c => c,
    }
}

/// Whether the TCP/UDP checksum of `frame` is known right: a UDP checksum of zero ("none
/// sent" over IPv4, invalid over IPv6) and a routed IPv6 packet (see [`pseudo_header_sum`]) are
/// not.
pub fn l4_checksum_ok(frame: &[u8], l: &Layers) -> bool {
    let field = l.checksum_field();
    if (l.protocol == PROTO_UDP && frame[field..field + 2] == [0, 0]) || l.routed {
        return false;
    }
    let acc = sum(&frame[l.l4..l.end], u64::from(pseudo_header_sum(frame, l)));
    fold(acc) == 0xFFFF
}

/// Whether the IPv4 header checksum of `frame` is right.
pub fn ipv4_header_ok(frame: &[u8], l: &Layers) -> bool {
    fold(sum(&frame[l.l3..l.l3 + l.l3_len], 0)) == 0xFFFF
}

/// A TCP/IPv4 frame with correct checksums: 14 + 20 (+ options) + 20 + payload.
/// The Toeplitz hash of RSS ("RSS Hashing Functions"): for each bit of `input`, left to right,
/// the leftmost 32 bits of `key` are XORed into the result where the bit is 1, and the key
/// window slides left by one bit. `key` is the 40-byte secret NDIS sets; bits past its end count
/// as 0 (an input of at most 36 bytes, the longest RSS hashes, never reaches them).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let key_byte = |i: usize| u64::from(key.get(i).copied().unwrap_or(0));
    // Bits n*8.. n*8+63 of the key: the 32-bit window of bit b of input byte n is its top 32
    // bits shifted left by b.
    let mut window = (0..8).fold(0u64, |w, i| (w << 8) | key_byte(i));
    let mut result = 0u32;
    for (n, &byte) in input.iter().enumerate() {
        for bit in 0..8 {
            // All ones when the bit is set: branch-free.
            let take = 0u32.wrapping_sub(u32::from(byte >> (7 - bit)) & 1);
            result ^= ((window << bit) >> 32) as u32 & take;
        }
        window = (window << 8) | key_byte(n + 8);
    }
    result
}

/// Input bytes RSS hashes at most (an IPv6 4-tuple), and so the bytes [`toeplitz_nibbles`]
/// covers.
pub const TOEPLITZ_INPUT_MAX: usize = 36;

/// Nibble positions of [`TOEPLITZ_INPUT_MAX`] bytes: the rows of a nibble table.
pub const TOEPLITZ_NIBBLES: usize = 2 * TOEPLITZ_INPUT_MAX;

/// Precomputes [`toeplitz`] for `key` per input nibble: row `p` (nibble `p` of the input, high
/// nibble first) holds, for each value of the nibble, the XOR of the key windows of its set
/// bits. The hash of an input is then the XOR of one entry per nibble
/// ([`toeplitz_by_nibbles`]): two lookups a byte instead of eight shifts and masks, for the
/// price of 72 x 16 words computed when the key changes. `out` has [`TOEPLITZ_NIBBLES`] rows
/// (fewer cover shorter inputs only).
pub fn toeplitz_nibbles(key: &[u8], out: &mut [[u32; 16]]) {
    let key_byte = |i: usize| u64::from(key.get(i).copied().unwrap_or(0));
    for (p, row) in out.iter_mut().enumerate() {
        // Bits 4p.. of the key, the window of the nibble's first bit in the top 32.
        let first = 4 * p;
        let bytes = (0..9).fold(0u128, |w, i| (w << 8) | u128::from(key_byte(first / 8 + i)));
        let window = |bit: usize| (bytes >> (72 - 32 - (first % 8) - bit)) as u32;
        for (v, entry) in row.iter_mut().enumerate() {
            *entry = (0..4)
                .filter(|b| v & (8 >> b) != 0)
                .fold(0, |acc, b| acc ^ window(b));
        }
    }
}

/// [`toeplitz`] from a key's nibble table ([`toeplitz_nibbles`]); input bytes past the table's
/// rows count as 0, as key bits past its end do for [`toeplitz`].
pub fn toeplitz_by_nibbles(nibbles: &[[u32; 16]], input: &[u8]) -> u32 {
    input
        .iter()
        .zip(nibbles.chunks_exact(2))
        .fold(0, |acc, (&byte, rows)| {
            acc ^ rows[0][usize::from(byte >> 4)] ^ rows[1][usize::from(byte & 15)]
        })
}

/// [`toeplitz_by_nibbles`] of `N` input bytes that start at input byte `first / 2` (`first`:
/// their first nibble row), for a full table: unrolled, with no bounds checks left.
#[inline(always)]
fn nibble_fold<const N: usize>(
    rows: &[[u32; 16]; TOEPLITZ_NIBBLES],
    first: usize,
    bytes: &[u8; N],
) -> u32 {
    let mut acc = 0;
    for (i, &b) in bytes.iter().enumerate() {
        acc ^=
            rows[first + 2 * i][usize::from(b >> 4)] ^ rows[first + 2 * i + 1][usize::from(b & 15)];
    }
    acc
}

/// [`toeplitz_by_nibbles`] of the RSS input `fields` names in `frame` (the addresses, then the
/// ports if any), hashed in place.
// Out of line: the receive loop that calls it keeps its registers for the frames that are no
// IP (one call site).
#[inline(never)]
pub(crate) fn toeplitz_fields(nibbles: &[[u32; 16]], frame: &[u8], fields: &RssFields) -> u32 {
    let n = fields.address_len();
    let addresses = frame.get(fields.addresses..).unwrap_or(&[]);
    let ports = fields
        .ports
        .and_then(|(at, _)| frame.get(at..)?.first_chunk::<4>());
    if let Ok(rows) = <&[[u32; 16]; TOEPLITZ_NIBBLES]>::try_from(nibbles) {
        // The table covers every input: unrolled per IP version.
        let hashed = match fields.ip {
            IpVersion::V4 => addresses
                .first_chunk::<8>()
                .map(|a| nibble_fold(rows, 0, a) ^ ports.map_or(0, |p| nibble_fold(rows, 16, p))),
            IpVersion::V6 => addresses
                .first_chunk::<32>()
                .map(|a| nibble_fold(rows, 0, a) ^ ports.map_or(0, |p| nibble_fold(rows, 64, p))),
        };
        if let Some(value) = hashed {
            return value;
        }
    }
    toeplitz_gathered(nibbles, addresses, n, ports)
}

/// [`toeplitz_fields`] for a partial table: the general fold over the input gathered (`n`
/// address bytes, then the ports).
#[cold]
#[inline(never)]
fn toeplitz_gathered(
    nibbles: &[[u32; 16]],
    addresses: &[u8],
    n: usize,
    ports: Option<&[u8; 4]>,
) -> u32 {
    let mut input = [0u8; TOEPLITZ_INPUT_MAX];
    let n = n.min(addresses.len());
    input[..n].copy_from_slice(&addresses[..n]);
    let len = ports.map_or(n, |p| {
        input[n..n + 4].copy_from_slice(p);
        n + 4
    });
    toeplitz_by_nibbles(nibbles, &input[..len])
}

/// What RSS hashes a frame over: source then destination address, and for a TCP or UDP hash
/// the source then destination port, in network order ("RSS Hashing Types"); at most 36 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssInput {
    bytes: [u8; 36],
    len: usize,
}

/// Where a frame's RSS input lies ([`rss_fields`]): offsets into the frame, checked to lie
/// inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RssFields {
    pub ip: IpVersion,
    /// Where the source then destination address start: 8 bytes (IPv4) or 32 (IPv6).
    pub addresses: usize,
    /// Where the source then destination port start (4 bytes), and the protocol (TCP or UDP),
    /// when the 4-tuple was asked for and the frame has one.
    pub ports: Option<(usize, u8)>,
}

impl RssFields {
    /// The addresses' length.
    pub fn address_len(&self) -> usize {
        match self.ip {
            IpVersion::V4 => 8,
            IpVersion::V6 => 32,
        }
    }
}

/// The fields [`RssInput::of_frame`] copies, found in place: the receive path hashes them where
/// they are.
#[inline]
pub(crate) fn rss_fields(frame: &[u8], ports: bool) -> Option<RssFields> {
    let mut l3 = 14;
    let mut ethertype = be16(frame, 12)?;
    if ethertype == ETHERTYPE_8021Q {
        l3 = 18;
        ethertype = be16(frame, 16)?;
    }
    let (ip, addresses, l4, protocol, whole) = match ethertype {
        ETHERTYPE_IPV4 => {
            let v = *frame.get(l3)?;
            // Version 4, and a header length of at least 5 words.
            if v & 0xF0 != 0x40 || v & 0x0F < 5 {
                return None;
            }
            if frame.len() < l3 + 20 {
                return None;
            }
            let ihl = usize::from(v & 0x0F) * 4;
            let whole = be16(frame, l3 + 6)? & 0x3FFF == 0;
            (IpVersion::V4, l3 + 12, l3 + ihl, frame[l3 + 9], whole)
        }
        ETHERTYPE_IPV6 => {
            if *frame.get(l3)? >> 4 != 6 || frame.len() < l3 + 40 {
                return None;
            }
            // Extension headers are not walked (the "_EX" hash types are not offered).
            (IpVersion::V6, l3 + 8, l3 + 40, frame[l3 + 6], true)
        }
        _ => return None,
    };
    if ports && whole && matches!(protocol, PROTO_TCP | PROTO_UDP) {
        if l4.checked_add(4).is_none_or(|end| end > frame.len()) {
            return None;
        }
        return Some(RssFields {
            ip,
            addresses,
            ports: Some((l4, protocol)),
        });
    }
    Some(RssFields {
        ip,
        addresses,
        ports: None,
    })
}

impl RssInput {
    /// The 2-tuple (addresses) or 4-tuple (addresses and ports) of a frame's IPv4 or IPv6
    /// header: `ports` asks for the 4-tuple of a TCP or UDP segment that is no fragment. None for
    /// a frame too short to hold what it claims, or no IP at all.
    pub fn of_frame(frame: &[u8], ports: bool) -> Option<(RssInput, IpVersion, Option<u8>)> {
        let f = rss_fields(frame, ports)?;
        let n = f.address_len();
        let mut bytes = [0u8; 36];
        bytes[..n].copy_from_slice(&frame[f.addresses..f.addresses + n]);
        let (len, protocol) = match f.ports {
            Some((at, protocol)) => {
                bytes[n..n + 4].copy_from_slice(&frame[at..at + 4]);
                (n + 4, Some(protocol))
            }
            None => (n, None),
        };
        Some((RssInput { bytes, len }, f.ip, protocol))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
pub(crate) fn tcp4(options: &[u8], payload: &[u8]) -> alloc::vec::Vec<u8> {
    tests::tcp4(options, payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    pub(super) fn tcp4(options: &[u8], payload: &[u8]) -> alloc::vec::Vec<u8> {
        let ihl = 20 + options.len();
        let total = ihl + 20 + payload.len();
        let mut f = alloc::vec![0u8; 14 + total];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x40 | (ihl / 4) as u8;
        f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
        f[22] = 64;
        f[23] = PROTO_TCP;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..34 + options.len()].copy_from_slice(options);
        let l4 = 14 + ihl;
        f[l4..l4 + 4].copy_from_slice(&[0x30, 0x39, 0x00, 0x50]);
        f[l4 + 12] = 0x50;
        f[l4 + 20..].copy_from_slice(payload);
        let c = ipv4_header_checksum(&f[14..14 + ihl]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let l = parse(&f).unwrap();
        let p = pseudo_header_sum(&f, &l);
        f[l.checksum_field()..l.checksum_field() + 2].copy_from_slice(&p.to_be_bytes());
        let c = finish(sum(&f[l.l4..l.end], 0), PROTO_TCP);
        f[l.checksum_field()..l.checksum_field() + 2].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn a_built_frame_verifies_and_a_flipped_bit_does_not() {
        let mut f = tcp4(&[1, 1, 1, 0], b"hello, odd");
        let l = parse(&f).unwrap();
        assert_eq!((l.l3, l.l3_len, l.l4, l.end), (14, 24, 38, f.len()));
        assert!(ipv4_header_ok(&f, &l) && l4_checksum_ok(&f, &l));
        let last = f.len() - 1;
        f[last] ^= 1;
        assert!(!l4_checksum_ok(&f, &l));
        f[22] ^= 1; // TTL
        assert!(!ipv4_header_ok(&f, &l));
    }

    #[test]
    fn the_rfc1071_example_sums_to_its_published_value() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums (folded) to 0xddf2.
        assert_eq!(
            fold(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7], 0)),
            0xddf2
        );
    }

    #[test]
    fn fragments_truncations_and_other_protocols_are_not_parsed() {
        let f = tcp4(&[], b"x");
        assert!(parse(&f).is_some());
        let mut frag = f.clone();
        frag[20] = 0x20; // more fragments
        assert!(parse(&frag).is_none());
        let mut icmp = f.clone();
        icmp[23] = 1;
        assert!(parse(&icmp).is_none());
        let mut long = f.clone();
        long[16..18].copy_from_slice(&1000u16.to_be_bytes());
        assert!(parse(&long).is_none());
        for n in 0..f.len() {
            assert!(parse(&f[..n]).is_none(), "a frame cut to {n} bytes parsed");
        }
    }

    #[test]
    fn ipv6_extension_headers_are_walked_and_a_fragment_header_stops() {
        let mut f = alloc::vec![0u8; 14 + 40 + 8 + 8];
        f[12..14].copy_from_slice(&[0x86, 0xDD]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&16u16.to_be_bytes());
        f[20] = 0; // hop-by-hop
        f[54] = PROTO_UDP; // its next header; length 0 = 8 bytes
        f[66..68].copy_from_slice(&8u16.to_be_bytes()); // the UDP length
        let l = parse(&f).unwrap();
        assert_eq!((l.l4, l.protocol, l.end), (62, PROTO_UDP, 70));
        f[20] = 44;
        assert!(parse(&f).is_none());
    }

    #[test]
    fn random_frames_never_panic_and_what_parses_fits_the_frame() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut parsed = 0;
        for _ in 0..20_000 {
            let len = (next() % 200) as usize;
            let mut f: alloc::vec::Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Bias towards frames that get past the first checks.
            let ethertypes = [[0x08, 0x00], [0x86, 0xDD], [0x81, 0x00]];
            if len >= 14 {
                f[12..14].copy_from_slice(&ethertypes[(next() % 3) as usize]);
            }
            // Half the time, lengths and fields that agree with the frame (the other fields
            // stay random), so that the walk gets to the transport header.
            if len >= 54 && next() % 2 == 0 {
                let protocols = [PROTO_TCP, PROTO_UDP, 0, 43, 60, 44];
                let protocol = protocols[(next() % 6) as usize];
                let l3 = if f[12] == 0x81 { 18 } else { 14 };
                if l3 == 18 {
                    f[16..18].copy_from_slice(&[0x08, 0x00]);
                }
                let room = (len - l3) as u16;
                if f[12] == 0x86 {
                    f[l3] = 0x60;
                    f[l3 + 4..l3 + 6].copy_from_slice(&room.saturating_sub(40).to_be_bytes());
                    f[l3 + 6] = protocol;
                } else {
                    f[l3] = 0x45;
                    f[l3 + 2..l3 + 4].copy_from_slice(&room.to_be_bytes());
                    f[l3 + 6..l3 + 8].fill(0);
                    f[l3 + 9] = protocol;
                }
            }
            if let Some(l) = parse(&f) {
                parsed += 1;
                let header = if l.protocol == PROTO_TCP { 20 } else { 8 };
                assert!(
                    l.l3 < l.l4 && l.l4 + header <= l.end && l.end <= f.len(),
                    "{l:?}"
                );
                let _ = (l4_checksum_ok(&f, &l), pseudo_header_sum(&f, &l));
                if l.ip == IpVersion::V4 {
                    let _ = ipv4_header_ok(&f, &l);
                }
            }
        }
        assert!(parsed > 0, "the generator reaches the parsed case");
    }

    /// A UDP/IPv4 frame with correct checksums whose UDP length field says `udp_len`.
    fn udp4(payload: &[u8], udp_len: u16) -> alloc::vec::Vec<u8> {
        let mut f = tcp4(&[], payload);
        f[23] = PROTO_UDP;
        let total = f.len() - 14;
        let l4 = 34;
        // A UDP header where the TCP one was, the payload after it.
        let mut udp = alloc::vec![0u8; 8];
        udp[..4].copy_from_slice(&[0x14, 0xE9, 0x00, 0x35]);
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        f.splice(l4..l4 + 20, udp);
        let total = total - 12;
        f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
        f[24..26].fill(0);
        let c = ipv4_header_checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        // The checksum over the segment as it is, its length counted from the IP header.
        let mut pseudo = alloc::vec::Vec::from(&f[26..34]);
        pseudo.extend_from_slice(&[0, PROTO_UDP]);
        pseudo.extend_from_slice(&((f.len() - l4) as u16).to_be_bytes());
        let c = finish(sum(&f[l4..], sum(&pseudo, 0)), PROTO_UDP);
        f[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// Issue 17 (and the `packet` fuzz target): a TCP data offset below 5 words or past the
    /// segment, and a UDP length other than the segment's, were parsed, and a checksum over
    /// `l4..end` then reported right for them.
    #[test]
    fn transport_lengths_that_disagree_with_the_segment_are_not_parsed() {
        let good = tcp4(&[], &[0x11; 1400]);
        assert!(parse(&good).is_some_and(|l| l4_checksum_ok(&good, &l)));
        for (doff, what) in [(0u8, "0"), (1, "1 (4 bytes)"), (4, "4")] {
            let mut f = good.clone();
            f[34 + 12] = doff << 4;
            assert_eq!(parse(&f), None, "TCP data offset {what}");
        }
        // 15 words (60 bytes) fits this segment; past a short one it does not.
        let mut f = good.clone();
        f[34 + 12] = 0xF0;
        assert!(parse(&f).is_some());
        let short = tcp4(&[], &[0x22; 30]);
        let mut f = short.clone();
        f[34 + 12] = 0xF0; // 60 > 50 bytes of segment
        assert_eq!(parse(&f), None, "TCP header past the segment");
        assert_eq!(parse_headers(&f[..64], f.len()), None);

        let payload = [0x33u8; 1396];
        let right = udp4(&payload, 1404);
        let l = parse(&right).expect("a UDP length equal to the segment's");
        assert!(l4_checksum_ok(&right, &l));
        // The frame: 1408 > the 1404 the IP header leaves; and the lengths below 8 and
        // short of the segment.
        for len in [1408u16, 0, 4, 7, 8, 1000, 1403] {
            assert_eq!(parse(&udp4(&payload, len)), None, "UDP length {len}");
        }
    }

    /// Found by the `packet` fuzz target: a hop-by-hop header after another extension header
    /// was walked over (RFC 8200 allows it only first; the stack discards such packets).
    #[test]
    fn a_hop_by_hop_header_that_is_not_first_stops_the_walk() {
        let mut f = alloc::vec![0u8; 14 + 40 + 8 + 8 + 8];
        f[12..14].copy_from_slice(&[0x86, 0xDD]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&24u16.to_be_bytes());
        f[20] = 60; // destination options
        f[54] = 0; // then hop-by-hop
        f[62] = PROTO_UDP;
        f[74..76].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(parse(&f), None);
        f[54] = 60; // destination options twice is allowed
        assert!(parse(&f).is_some_and(|l| l.l4 == 70));
    }

    #[test]
    fn a_udp_sum_of_zero_is_sent_as_all_ones() {
        assert_eq!(finish(0xFFFF, PROTO_UDP), 0xFFFF);
        assert_eq!(finish(0xFFFF, PROTO_TCP), 0);
    }

    /// The secret key and the results of Microsoft's "Verifying the RSS Hash Calculation".
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    /// (destination, destination port, source, source port, IPv4-only hash, with-TCP hash).
    type Ipv4Case = ([u8; 4], u16, [u8; 4], u16, u32, u32);
    const MS_IPV4: [Ipv4Case; 5] = [
        (
            [161, 142, 100, 80],
            1766,
            [66, 9, 149, 187],
            2794,
            0x323e_8fc2,
            0x51cc_c178,
        ),
        (
            [65, 69, 140, 83],
            4739,
            [199, 92, 111, 2],
            14230,
            0xd718_262a,
            0xc626_b0ea,
        ),
        (
            [12, 22, 207, 184],
            38024,
            [24, 19, 198, 95],
            12898,
            0xd2d0_a5de,
            0x5c2b_394a,
        ),
        (
            [209, 142, 163, 6],
            2217,
            [38, 27, 205, 30],
            48228,
            0x8298_9176,
            0xafc7_327f,
        ),
        (
            [202, 188, 127, 2],
            1303,
            [153, 39, 163, 191],
            44251,
            0x5d18_09c5,
            0x10e8_28a2,
        ),
    ];

    fn ipv6(s: &str) -> [u8; 16] {
        let a: std::net::Ipv6Addr = s.parse().unwrap();
        a.octets()
    }

    fn tcp_frame(src: &[u8], dst: &[u8], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if src.len() == 4 {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        } else {
            f.extend_from_slice(&[0x86, 0xDD, 0x60, 0, 0, 0, 0, 20, 6, 64]);
        }
        f.extend_from_slice(src);
        f.extend_from_slice(dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0; 16]);
        f
    }

    #[test]
    fn toeplitz_matches_microsofts_ipv4_verification_values() {
        for (dst, dport, src, sport, ip_only, with_tcp) in MS_IPV4 {
            let frame = tcp_frame(&src, &dst, sport, dport);
            let (two, v, p) = RssInput::of_frame(&frame, false).unwrap();
            assert_eq!((v, p), (IpVersion::V4, None));
            assert_eq!(toeplitz(&MS_KEY, two.bytes()), ip_only, "{dst:?}");
            let (four, _, p) = RssInput::of_frame(&frame, true).unwrap();
            assert_eq!(p, Some(PROTO_TCP));
            assert_eq!(toeplitz(&MS_KEY, four.bytes()), with_tcp, "{dst:?}");
        }
    }

    #[test]
    fn toeplitz_by_nibbles_equals_the_bitwise_hash() {
        let mut nibbles = [[0u32; 16]; TOEPLITZ_NIBBLES];
        toeplitz_nibbles(&MS_KEY, &mut nibbles);
        // Every length up to the longest input, bytes from a simple generator (all values of
        // every position are reached over the lengths).
        let mut x = 0x2545_F491u32;
        for len in 0..=TOEPLITZ_INPUT_MAX {
            for _ in 0..64 {
                let input: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                assert_eq!(
                    toeplitz_by_nibbles(&nibbles, &input),
                    toeplitz(&MS_KEY, &input),
                    "{input:02x?}"
                );
            }
        }
        // And another key: all ones, where every window is all ones.
        toeplitz_nibbles(&[0xFF; 40], &mut nibbles);
        assert_eq!(toeplitz_by_nibbles(&nibbles, &[0x80]), u32::MAX);
        assert_eq!(toeplitz_by_nibbles(&nibbles, &[0xC0]), 0);
    }

    /// The receive path's in-place hash of a frame's fields (unrolled over a full table, or the
    /// general fold over a partial one) is the bitwise hash of the input `of_frame` copies.
    #[test]
    fn toeplitz_of_fields_in_place_equals_the_hash_of_the_copied_input() {
        let mut full = [[0u32; 16]; TOEPLITZ_NIBBLES];
        toeplitz_nibbles(&MS_KEY, &mut full);
        let mut frames = Vec::new();
        for (dst, dport, src, sport, _, _) in MS_IPV4 {
            frames.push(tcp_frame(&src, &dst, sport, dport));
        }
        frames.push(tcp_frame(
            &ipv6("3ffe:2501:200:1fff::7"),
            &ipv6("3ffe:2501:200:3::1"),
            2794,
            1766,
        ));
        let mut tagged = frames[0].clone();
        tagged.splice(12..12, [0x81, 0x00, 0x20, 0x05]);
        frames.push(tagged);
        for frame in &frames {
            for ports in [false, true] {
                let fields = rss_fields(frame, ports).unwrap();
                let (input, _, _) = RssInput::of_frame(frame, ports).unwrap();
                let want = toeplitz(&MS_KEY, input.bytes());
                assert_eq!(toeplitz_fields(&full, frame, &fields), want, "{frame:02x?}");
                // Rows for 36 bytes are all there are; fewer take the general fold, whose missing
                // rows count as zero key bits.
                let partial = &full[..input.bytes().len() * 2];
                assert_eq!(toeplitz_fields(partial, frame, &fields), want);
            }
        }
    }

    #[test]
    fn toeplitz_matches_microsofts_ipv6_verification_values() {
        let cases = [
            (
                "3ffe:2501:200:3::1",
                1766,
                "3ffe:2501:200:1fff::7",
                2794,
                0x2cc1_8cd5,
                0x4020_7d3d,
            ),
            (
                "ff02::1",
                4739,
                "3ffe:501:8::260:97ff:fe40:efab",
                14230,
                0x0f0c_461c,
                0xdde5_1bbf,
            ),
            (
                "fe80::200:f8ff:fe21:67cf",
                38024,
                "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
                44251,
                0x4b61_e985,
                0x02d1_feef,
            ),
        ];
        for (dst, dport, src, sport, ip_only, with_tcp) in cases {
            let frame = tcp_frame(&ipv6(src), &ipv6(dst), sport, dport);
            let (two, v, _) = RssInput::of_frame(&frame, false).unwrap();
            assert_eq!(v, IpVersion::V6);
            assert_eq!(toeplitz(&MS_KEY, two.bytes()), ip_only, "{dst}");
            let (four, _, _) = RssInput::of_frame(&frame, true).unwrap();
            assert_eq!(toeplitz(&MS_KEY, four.bytes()), with_tcp, "{dst}");
        }
    }

    #[test]
    fn rss_input_refuses_what_it_cannot_read_and_skips_ports_of_fragments() {
        let frame = tcp_frame(&[10, 0, 0, 1], &[10, 0, 0, 2], 1, 2);
        for cut in 0..frame.len() {
            let r = RssInput::of_frame(&frame[..cut], true);
            // Addresses need the whole IP header's address fields; ports need 4 more bytes.
            if cut < 34 {
                assert!(r.is_none(), "{cut}");
            }
        }
        let mut fragment = frame.clone();
        fragment[20] = 0x20; // more fragments
        let (input, _, p) = RssInput::of_frame(&fragment, true).unwrap();
        assert_eq!((input.bytes().len(), p), (8, None));
    }
}
