//! What the fuzz targets share: an independent view of a frame (`etherparse`), and the
//! emulator setup of the targets that run the reference driver.

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

pub mod nic;

/// What `etherparse`, written independently of `ndis::packet`, finds in an Ethernet frame
/// carrying TCP or UDP over IP (at most one 802.1Q tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Independent {
    pub ipv6: bool,
    /// Offset of the IP header and of the TCP/UDP header from the start of the frame.
    pub l3: usize,
    pub l4: usize,
    pub protocol: u8,
    /// Offset of the end of the IP packet.
    pub end: usize,
    /// The TCP/UDP checksum in the frame is right. For UDP: also not zero ("none"), and its
    /// length field equal to the IP payload's; for IPv6, no routing header (the pseudo-header
    /// would name another destination).
    pub l4_checksum_ok: bool,
    /// The IPv4 header checksum is right (None for IPv6).
    pub ipv4_header_ok: Option<bool>,
    /// The transport header is well formed: TCP data offset 5..=15 within the segment, UDP
    /// length field from 8 to the segment's length.
    pub well_formed: bool,
}

/// The folded one's complement sum of `data` (RFC 1071), written here rather than taken from
/// `ndis::packet`.
pub fn rfc1071(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        s += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}

/// Whether a checksum field holding `field` verifies where `computed` is the sender's value:
/// equal, or the other one's complement zero (0x0000 and 0xFFFF; a receiver's RFC 1071 check
/// accepts either, and an incrementally updated checksum, RFC 1624, may carry 0xFFFF).
pub fn same_sum(computed: u16, field: u16) -> bool {
    computed == field || (computed | field == 0xFFFF && (computed == 0 || field == 0))
}

fn offset_in(frame: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - frame.as_ptr() as usize
}

/// `etherparse`'s reading of `frame`; None unless it is a whole (unfragmented) TCP or UDP
/// segment over IPv4 or IPv6 that etherparse parses without error.
pub fn independent(frame: &[u8]) -> Option<Independent> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    if p.link_exts.len() > 1 {
        return None;
    }
    let net = p.net.as_ref()?;
    let transport = p.transport.as_ref()?;
    let (ipv6, l3, end, fragmented, routed, src, dst) = match net {
        NetSlice::Ipv4(v4) => {
            let h = v4.header();
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s[..4].copy_from_slice(&h.source());
            d[..4].copy_from_slice(&h.destination());
            let l3 = offset_in(frame, h.slice());
            (
                false,
                l3,
                l3 + usize::from(h.total_len()),
                v4.is_payload_fragmented(),
                false,
                s,
                d,
            )
        }
        NetSlice::Ipv6(v6) => {
            let h = v6.header();
            let l3 = offset_in(frame, h.slice());
            let routed = v6.extensions().first_header().is_some()
                && v6
                    .extensions()
                    .clone()
                    .into_iter()
                    .any(|e| matches!(e, etherparse::Ipv6ExtensionSlice::Routing(_)));
            (
                true,
                l3,
                l3 + 40 + usize::from(h.payload_length()),
                v6.is_payload_fragmented(),
                routed,
                h.source(),
                h.destination(),
            )
        }
        _ => return None,
    };
    if fragmented {
        return None;
    }
    let ipv4_header_ok = match net {
        NetSlice::Ipv4(v4) => {
            let h = v4.header();
            // Over the header's own bytes: etherparse's `Ipv4Header` drops the reserved flag
            // bit, so its `calc_header_checksum` is not the checksum of the bytes on the wire.
            Some(rfc1071(h.slice()) == 0xFFFF)
        }
        _ => None,
    };
    let (l4, protocol, segment, well_formed, l4_checksum_ok) = match transport {
        TransportSlice::Tcp(tcp) => {
            let seg = tcp.slice();
            let calc = if ipv6 {
                tcp.calc_checksum_ipv6(src, dst).ok()
            } else {
                tcp.calc_checksum_ipv4(src[..4].try_into().unwrap(), dst[..4].try_into().unwrap())
                    .ok()
            };
            let doff = usize::from(tcp.data_offset()) * 4;
            let well = doff >= 20 && doff <= seg.len();
            (
                offset_in(frame, seg),
                6u8,
                seg,
                well,
                calc.is_some_and(|c| same_sum(c, tcp.checksum())),
            )
        }
        TransportSlice::Udp(udp) => {
            let seg = udp.slice();
            let header = udp.to_header();
            let calc = if ipv6 {
                header.calc_checksum_ipv6_raw(src, dst, udp.payload()).ok()
            } else {
                header
                    .calc_checksum_ipv4_raw(
                        src[..4].try_into().unwrap(),
                        dst[..4].try_into().unwrap(),
                        udp.payload(),
                    )
                    .ok()
            };
            let len = usize::from(udp.length());
            let l4 = offset_in(frame, seg);
            let well = len >= 8 && l4 + len == end;
            let ok =
                well && udp.checksum() != 0 && calc.is_some_and(|c| same_sum(c, udp.checksum()));
            (l4, 17u8, seg, well, ok)
        }
        _ => return None,
    };
    let _ = segment;
    Some(Independent {
        ipv6,
        l3,
        l4,
        protocol,
        end,
        l4_checksum_ok: l4_checksum_ok && well_formed && !routed,
        ipv4_header_ok,
        well_formed,
    })
}

/// A little-endian reader over fuzz input that yields zeros once it runs out.
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }
    /// Up to `max` bytes, the count read first (u16).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = (usize::from(self.u16()) % (max + 1)).min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.0)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What TCP/IP leaves in a frame it asks a miniport to checksum (the emulator's TCP/IP does
/// the same): the pseudo-header sum in the TCP/UDP checksum field, computed here from
/// etherparse's offsets. False (the frame unchanged) unless etherparse finds a well-formed
/// segment. `large_send`: the LSOv2 template instead, IP length fields and IPv4 header checksum
/// zero and a pseudo-header sum without the TCP length.
pub fn as_tcpip_sends(frame: &mut [u8], large_send: bool) -> bool {
    let Some(o) = independent(frame) else {
        return false;
    };
    if !o.well_formed || (large_send && o.protocol != 6) {
        return false;
    }
    let (addresses, len) = if o.ipv6 {
        (o.l3 + 8..o.l3 + 40, o.end - o.l4)
    } else {
        (o.l3 + 12..o.l3 + 20, o.end - o.l4)
    };
    let mut acc: u64 = 0;
    for w in frame[addresses].chunks(2) {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    acc += u64::from(o.protocol);
    if !large_send {
        acc += (len as u64 >> 16) + (len as u64 & 0xFFFF);
    }
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    let field = o.l4 + if o.protocol == 6 { 16 } else { 6 };
    frame[field..field + 2].copy_from_slice(&(acc as u16).to_be_bytes());
    if large_send {
        if o.ipv6 {
            frame[o.l3 + 4..o.l3 + 6].fill(0);
        } else {
            frame[o.l3 + 2..o.l3 + 4].fill(0);
            frame[o.l3 + 10..o.l3 + 12].fill(0);
        }
    }
    true
}
