//! TCP segmentation offload in the virtio-net model (`VIRTIO_NET_F_HOST_TSO4`/`HOST_TSO6`,
//! virtio 1.2 5.1.6.2), at register level with hand-built rings: `virtio-drivers` negotiates no
//! offload and vionet no TSO yet.
//!
//! The device must cut a packet as QEMU with a Linux tap backend does (`tcp_gso_segment`,
//! `inet_gso_segment`, `ipv6_gso_segment`). Both the packet the driver hands over and every
//! segment expected on the wire are written here by `etherparse` from header structs, lengths and
//! checksums computed by `etherparse` (`Ipv4Header::calc_header_checksum`,
//! `TcpHeader::calc_checksum_ipv4/ipv6`); the pseudo-header sum the driver puts in the packet's
//! checksum field is computed by hand below. None of it is the model's code.

use etherparse::{
    EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6Header, PacketBuilder, SingleVlanHeader,
    SlicedPacket, TcpHeader, TcpOptionElement, TransportSlice, VlanId, VlanPcp,
};
use ndis_emu::devices::virtio_net::regs::{self, common, feature, net_hdr, status};
use ndis_emu::devices::virtio_net::{DEFAULT_FEATURES, VirtioNetConfig};
use ndis_emu::{DeviceId, Emulator, InterruptResources};

#[path = "support/virtio_rings.rs"]
mod virtio_rings;
use virtio_rings::{Regs, Ring, SharedBuf, bring_up_pair, device_only, needs_reset, pcap_records};

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

const MAC_A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
const V4_A: [u8; 4] = [10, 0, 2, 15];
const V4_B: [u8; 4] = [93, 184, 216, 34];
const V6_A: [u8; 16] = [
    0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
];
const V6_B: [u8; 16] = [
    0x20, 0x01, 0x0D, 0xB8, 0xFF, 0, 0x42, 0, 0, 0, 0, 0, 0, 0, 0x83, 0x29,
];
/// Linux's MSS for a 1500-byte MTU with TCP timestamps.
const MSS: usize = 1448;
const TCP_CHECKSUM_AT: usize = 16;

// ---- packets ----

fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37) ^ (i >> 8) as u8 ^ 0xA5)
        .collect()
}

#[derive(Debug, Clone)]
enum Ip {
    V4(Ipv4Header),
    V6(Ipv6Header),
}

/// The headers of a TCP flow: Ethernet, an optional 802.1Q tag, IPv4 or IPv6, TCP (with
/// timestamps, so that options are in every packet).
#[derive(Debug, Clone)]
struct Flow {
    vlan: Option<u16>,
    ip: Ip,
    tcp: TcpHeader,
}

impl Flow {
    fn tcp() -> TcpHeader {
        let mut tcp = TcpHeader::new(40000, 443, 0x1234_5678, 502);
        tcp.ack = true;
        tcp.acknowledgment_number = 0x0BAD_F00D;
        tcp.set_options(&[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(0x0102_0304, 0x0A0B_0C0D),
        ])
        .unwrap();
        tcp
    }

    fn v4() -> Flow {
        let mut ip = Ipv4Header::new(0, 64, IpNumber::TCP, V4_A, V4_B).unwrap();
        ip.identification = 0x4242;
        ip.dont_fragment = true;
        Flow {
            vlan: None,
            ip: Ip::V4(ip),
            tcp: Self::tcp(),
        }
    }

    fn v6() -> Flow {
        let ip = Ipv6Header {
            traffic_class: 0,
            flow_label: Default::default(),
            payload_length: 0,
            next_header: IpNumber::TCP,
            hop_limit: 64,
            source: V6_A,
            destination: V6_B,
        };
        Flow {
            vlan: None,
            ip: Ip::V6(ip),
            tcp: Self::tcp(),
        }
    }

    fn ipv4(&mut self) -> &mut Ipv4Header {
        match &mut self.ip {
            Ip::V4(ip) => ip,
            Ip::V6(_) => panic!("not IPv4"),
        }
    }

    fn gso_type(&self) -> u8 {
        match self.ip {
            Ip::V4(_) => regs::NET_HDR_GSO_TCPV4,
            Ip::V6(_) => regs::NET_HDR_GSO_TCPV6,
        }
    }

    /// Where the TCP header starts: `csum_start`.
    fn tcp_offset(&self) -> usize {
        let ip = match &self.ip {
            Ip::V4(ip) => ip.header_len(),
            Ip::V6(_) => Ipv6Header::LEN,
        };
        Ethernet2Header::LEN + self.vlan.map_or(0, |_| SingleVlanHeader::LEN) + ip
    }

    /// The frame with these headers and `payload`, every length and checksum right.
    fn frame(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let ip_type = match self.ip {
            Ip::V4(_) => EtherType::IPV4,
            Ip::V6(_) => EtherType::IPV6,
        };
        let mut ethernet = Ethernet2Header {
            source: MAC_A,
            destination: MAC_B,
            ether_type: ip_type,
        };
        if let Some(id) = self.vlan {
            ethernet.ether_type = EtherType::VLAN_TAGGED_FRAME;
            ethernet.write(&mut out).unwrap();
            SingleVlanHeader {
                pcp: VlanPcp::ZERO,
                drop_eligible_indicator: false,
                vlan_id: VlanId::try_new(id).unwrap(),
                ether_type: ip_type,
            }
            .write(&mut out)
            .unwrap();
        } else {
            ethernet.write(&mut out).unwrap();
        }
        let mut tcp = self.tcp.clone();
        let tcp_len = tcp.header_len() + payload.len();
        match &self.ip {
            Ip::V4(ip) => {
                let mut ip = ip.clone();
                ip.set_payload_len(tcp_len).unwrap();
                ip.header_checksum = ip.calc_header_checksum();
                tcp.checksum = tcp.calc_checksum_ipv4(&ip, payload).unwrap();
                ip.write(&mut out).unwrap();
            }
            Ip::V6(ip) => {
                let mut ip = ip.clone();
                ip.set_payload_length(tcp_len).unwrap();
                tcp.checksum = tcp.calc_checksum_ipv6(&ip, payload).unwrap();
                ip.write(&mut out).unwrap();
            }
        }
        tcp.write(&mut out).unwrap();
        out.extend_from_slice(payload);
        out
    }

    /// What a driver hands over for `payload`: the whole packet with, in the TCP checksum field,
    /// the pseudo-header sum for a TCP length of `tcp_len` (the right one is the whole TCP
    /// header and payload).
    fn packet_with_sum_for(&self, payload: &[u8], tcp_len: usize) -> Vec<u8> {
        let mut packet = self.frame(payload);
        let at = self.tcp_offset() + TCP_CHECKSUM_AT;
        packet[at..at + 2].copy_from_slice(&self.pseudo_header_sum(tcp_len).to_be_bytes());
        packet
    }

    fn packet(&self, payload: &[u8]) -> Vec<u8> {
        self.packet_with_sum_for(payload, self.tcp.header_len() + payload.len())
    }

    /// The folded, not complemented, pseudo-header sum for a TCP length of `tcp_len` (RFC 793;
    /// RFC 8200 8.1, whose 32-bit length adds the same 16-bit words), by hand.
    fn pseudo_header_sum(&self, tcp_len: usize) -> u16 {
        let (source, destination): (&[u8], &[u8]) = match &self.ip {
            Ip::V4(ip) => (&ip.source, &ip.destination),
            Ip::V6(ip) => (&ip.source, &ip.destination),
        };
        let words = source
            .chunks(2)
            .chain(destination.chunks(2))
            .map(|w| u16::from_be_bytes([w[0], w[1]]) as u32);
        let mut sum = words.sum::<u32>() + 6 + (tcp_len as u32 >> 16) + (tcp_len as u32 & 0xFFFF);
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        sum as u16
    }

    /// The segments Linux puts on the wire for `payload` cut at `mss`: the same headers with
    /// the IPv4 identification + i, the sequence number + i × MSS, FIN and PSH on the last
    /// segment only, CWR on the first only, and every length and checksum right.
    fn segments(&self, payload: &[u8], mss: usize) -> Vec<Vec<u8>> {
        let chunks: Vec<&[u8]> = if payload.is_empty() {
            vec![&[]]
        } else {
            payload.chunks(mss).collect()
        };
        let last = chunks.len() - 1;
        chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut s = self.clone();
                if let Ip::V4(ip) = &mut s.ip {
                    ip.identification = ip.identification.wrapping_add(i as u16);
                }
                s.tcp.sequence_number = s.tcp.sequence_number.wrapping_add((i * mss) as u32);
                if i != last {
                    s.tcp.fin = false;
                    s.tcp.psh = false;
                }
                if i != 0 {
                    s.tcp.cwr = false;
                }
                s.frame(chunk)
            })
            .collect()
    }

    /// The header a driver sends this flow's packets with: NEEDS_CSUM at the TCP checksum,
    /// `gso_size` `mss`, `hdr_len` the headers' length.
    fn gso_header(&self, mss: usize) -> [u8; regs::NET_HDR_LEN] {
        let start = self.tcp_offset() as u16;
        let hdr_len = start + self.tcp.header_len() as u16;
        gso_header(
            regs::NET_HDR_F_NEEDS_CSUM,
            self.gso_type(),
            hdr_len,
            mss as u16,
            start,
            TCP_CHECKSUM_AT as u16,
        )
    }
}

fn gso_header(
    flags: u8,
    gso_type: u8,
    hdr_len: u16,
    gso_size: u16,
    csum_start: u16,
    csum_offset: u16,
) -> [u8; regs::NET_HDR_LEN] {
    let mut h = [0u8; regs::NET_HDR_LEN];
    h[net_hdr::FLAGS] = flags;
    h[net_hdr::GSO_TYPE] = gso_type;
    for (at, v) in [
        (net_hdr::HDR_LEN, hdr_len),
        (net_hdr::GSO_SIZE, gso_size),
        (net_hdr::CSUM_START, csum_start),
        (net_hdr::CSUM_OFFSET, csum_offset),
    ] {
        h[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    h
}

// ---- the device ----

const TSO: u64 = feature::VERSION_1 | feature::CSUM | feature::HOST_TSO4 | feature::HOST_TSO6;

/// A device with one pair and the default features (CSUM, HOST_TSO4 and HOST_TSO6 among them).
fn device() -> (Emulator, DeviceId) {
    device_only(InterruptResources::line(), VirtioNetConfig::new(1))
}

/// Sends `packet` behind `header` and returns the frames it became on the wire.
fn send(r: &Regs<'_>, tx: &mut Ring, slot: u16, header: &[u8; 12], packet: &[u8]) -> Vec<Vec<u8>> {
    tx.transmit_large(r, slot, header, packet);
    assert!(
        !needs_reset(r),
        "{:?}",
        r.model(|m| m.device_error().map(String::from))
    );
    r.model(|m| m.take_transmitted(0))
}

/// Brings up a fresh device with `features`, sends `packet` behind `header`, and returns why the
/// device refused it (it must have: DEVICE_NEEDS_RESET, nothing on the wire).
fn refused(features: u64, header: &[u8; 12], packet: &[u8]) -> String {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let (_rx, mut tx) = bring_up_pair(&emu, dev, features);
    tx.transmit_large(&r, 0, header, packet);
    assert!(needs_reset(&r), "accepted {header:?}");
    assert!(r.model(|m| m.transmitted_frames(0).is_empty()));
    assert_eq!(r.model(|m| m.counters().tx_gso_packets), 0);
    r.model(|m| m.device_error().unwrap().to_string())
}

/// Sends `flow`'s packet of `payload` cut at `mss` on a fresh device and checks every segment
/// byte for byte; returns the segments.
fn segments_match(flow: &Flow, payload: &[u8], mss: usize) -> Vec<Vec<u8>> {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let (_rx, mut tx) = bring_up_pair(&emu, dev, TSO);
    let expected = flow.segments(payload, mss);
    let got = send(&r, &mut tx, 0, &flow.gso_header(mss), &flow.packet(payload));
    assert_eq!(got.len(), expected.len(), "segments");
    for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got, expected, "segment {i} of {}", expected.len());
    }
    let c = r.model(|m| m.counters().clone());
    assert_eq!(
        (c.tx_gso_packets, c.tx_gso_segments, c.tx_checksummed),
        (1, expected.len() as u64, 0)
    );
    got
}

fn tcp_of(frame: &[u8]) -> TcpHeader {
    match SlicedPacket::from_ethernet(frame).unwrap().transport {
        Some(TransportSlice::Tcp(t)) => t.to_header(),
        other => panic!("not TCP: {other:?}"),
    }
}

fn payload_len_of(frame: &[u8]) -> usize {
    match SlicedPacket::from_ethernet(frame).unwrap().transport {
        Some(TransportSlice::Tcp(t)) => t.payload().len(),
        other => panic!("not TCP: {other:?}"),
    }
}

// ---- segmentation ----

#[test]
fn tso4_cuts_3000_bytes_at_mss_1448_into_three_segments_the_last_short() {
    let got = segments_match(&Flow::v4(), &payload(3000), MSS);
    let lens: Vec<usize> = got.iter().map(|f| payload_len_of(f)).collect();
    assert_eq!(lens, [1448, 1448, 104]);
    // 14 + 20 + 32 header bytes: a 1514-byte frame, the largest for a 1500-byte MTU.
    assert_eq!(got[0].len(), 1514);
}

#[test]
fn a_payload_that_is_a_multiple_of_the_mss_gives_full_segments_only() {
    let got = segments_match(&Flow::v4(), &payload(4 * MSS), MSS);
    assert!(got.iter().all(|f| payload_len_of(f) == MSS));
    assert_eq!(got.len(), 4);
}

#[test]
fn a_payload_smaller_than_the_mss_goes_out_as_one_segment() {
    let got = segments_match(&Flow::v4(), &payload(700), MSS);
    assert_eq!(got.len(), 1);
    // One byte short of a second segment too.
    assert_eq!(segments_match(&Flow::v4(), &payload(MSS + 1), MSS).len(), 2);
    assert_eq!(segments_match(&Flow::v4(), &payload(MSS), MSS).len(), 1);
}

#[test]
fn an_empty_payload_with_fin_goes_out_as_one_segment_with_its_fin() {
    let mut flow = Flow::v4();
    flow.tcp.fin = true;
    let got = segments_match(&flow, &[], MSS);
    assert_eq!(got.len(), 1);
    assert!(tcp_of(&got[0]).fin);
    assert_eq!(payload_len_of(&got[0]), 0);
}

#[test]
fn ipv4_options_are_copied_into_every_segment() {
    let mut flow = Flow::v4();
    // Record route with room for one address, NOP, end of list: 12 bytes, IHL 8.
    let options: &[u8] = &[7, 7, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    flow.ipv4().options = options.try_into().unwrap();
    assert_eq!(flow.tcp_offset(), 14 + 32);
    let got = segments_match(&flow, &payload(2500), 1000);
    assert_eq!(got.len(), 3);
    for f in &got {
        assert_eq!(f[14] & 0x0F, 8, "IHL");
    }
}

#[test]
fn a_vlan_tagged_packet_is_segmented_under_its_tag() {
    let mut flow = Flow::v4();
    flow.vlan = Some(42);
    let got = segments_match(&flow, &payload(3000), MSS);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|f| f[12..14] == [0x81, 0x00]));
}

#[test]
fn tso6_segments_a_tcp_ipv6_packet() {
    // 1500-byte MTU minus 40 and 32 header bytes.
    let got = segments_match(&Flow::v6(), &payload(5000), 1428);
    let lens: Vec<usize> = got.iter().map(|f| payload_len_of(f)).collect();
    assert_eq!(lens, [1428, 1428, 1428, 716]);
    // And tagged.
    let mut tagged = Flow::v6();
    tagged.vlan = Some(7);
    assert_eq!(segments_match(&tagged, &payload(3000), 1428).len(), 3);
}

#[test]
fn fin_and_psh_go_on_the_last_segment_and_cwr_on_the_first() {
    for mut flow in [Flow::v4(), Flow::v6()] {
        flow.tcp.fin = true;
        flow.tcp.psh = true;
        flow.tcp.cwr = true;
        flow.tcp.ece = true;
        let got = segments_match(&flow, &payload(3000), MSS);
        let flags: Vec<_> = got
            .iter()
            .map(|f| {
                let t = tcp_of(f);
                (t.fin, t.psh, t.cwr, t.ece, t.ack)
            })
            .collect();
        assert_eq!(
            flags,
            [
                (false, false, true, true, true),
                (false, false, false, true, true),
                (true, true, false, true, true),
            ]
        );
    }
}

#[test]
fn the_ipv4_identification_wraps_from_0xffff() {
    let mut flow = Flow::v4();
    flow.ipv4().identification = 0xFFFF;
    let got = segments_match(&flow, &payload(3000), MSS);
    let ids: Vec<u16> = got
        .iter()
        .map(|f| Ipv4Header::from_slice(&f[14..]).unwrap().0.identification)
        .collect();
    assert_eq!(ids, [0xFFFF, 0, 1]);
}

#[test]
fn the_sequence_number_wraps() {
    let mut flow = Flow::v4();
    flow.tcp.sequence_number = u32::MAX - 1000;
    let got = segments_match(&flow, &payload(3000), MSS);
    let seqs: Vec<u32> = got.iter().map(|f| tcp_of(f).sequence_number).collect();
    assert_eq!(seqs, [u32::MAX - 1000, 447, 447 + 1448]);
}

#[test]
fn a_64_kib_packet_is_the_largest_accepted() {
    let flow = Flow::v4();
    let headers = flow.tcp_offset() + flow.tcp.header_len();
    let data = payload(65_536 - headers);
    let got = segments_match(&flow, &data, MSS);
    assert_eq!(got.len(), data.len().div_ceil(MSS));
    // One byte more and the chain is longer than the device takes.
    let too_long = [flow.packet(&data), vec![0]].concat();
    let why = refused(TSO, &flow.gso_header(MSS), &too_long);
    assert!(why.contains("longer than 65548 bytes"), "{why}");
}

#[test]
fn every_segment_is_recorded_captured_and_looped_back() {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let (mut rx, mut tx) = bring_up_pair(&emu, dev, TSO);
    let capture = SharedBuf::default();
    let sink = capture.clone();
    r.model(|m| {
        m.set_loopback(true);
        m.capture_to_writer(Box::new(sink)).unwrap();
    });
    for slot in 0..3 {
        rx.post_receive(&r, slot);
    }
    let flow = Flow::v6();
    let data = payload(3000);
    let expected = flow.segments(&data, MSS);
    let got = send(&r, &mut tx, 0, &flow.gso_header(MSS), &flow.packet(&data));
    assert_eq!(got, expected, "recorded");
    assert_eq!(rx.used_idx(&r), 3, "looped back");
    for (n, segment) in expected.iter().enumerate() {
        let delivered = rx.received(&r, n as u16);
        assert_eq!(
            &delivered[regs::NET_HDR_LEN..],
            &segment[..],
            "looped back {n}"
        );
    }
    // The capture: each segment as sent, then each as received.
    let pcap = capture.0.borrow().clone();
    let records = pcap_records(&pcap);
    assert_eq!(records, [expected.clone(), expected].concat());
}

#[test]
fn hdr_len_is_only_a_hint() {
    let flow = Flow::v4();
    let data = payload(2000);
    let packet = flow.packet(&data);
    let expected = flow.segments(&data, MSS);
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let (_rx, mut tx) = bring_up_pair(&emu, dev, TSO);
    for (slot, hdr_len) in [(0u16, 0u16), (1, 1), (2, packet.len() as u16)] {
        let mut header = flow.gso_header(MSS);
        header[net_hdr::HDR_LEN..][..2].copy_from_slice(&hdr_len.to_le_bytes());
        assert_eq!(
            send(&r, &mut tx, slot, &header, &packet),
            expected,
            "{hdr_len}"
        );
    }
}

// ---- the checksum field ----

#[test]
fn a_pseudo_header_sum_for_the_wrong_length_gives_wrong_checksums_on_the_wire() {
    // Windows' LSO leaves the TCP length out of the pseudo-header sum; a driver that passes that
    // on unchanged (or sums the segment's length instead of the packet's) gets what Linux would
    // send: every segment's checksum off by the difference. The model does not repair it.
    for mut flow in [Flow::v4(), Flow::v6()] {
        flow.vlan = Some(3);
        let data = payload(3000);
        let expected = flow.segments(&data, MSS);
        let field = flow.tcp_offset() + TCP_CHECKSUM_AT;
        for wrong_len in [0, flow.tcp.header_len() + MSS] {
            let (emu, dev) = device();
            let r = Regs { emu: &emu, dev };
            let (_rx, mut tx) = bring_up_pair(&emu, dev, TSO);
            let packet = flow.packet_with_sum_for(&data, wrong_len);
            let got = send(&r, &mut tx, 0, &flow.gso_header(MSS), &packet);
            assert_eq!(got.len(), expected.len());
            for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(got.len(), expected.len());
                assert_eq!(got[..field], expected[..field], "segment {i}: headers");
                assert_eq!(got[field + 2..], expected[field + 2..], "segment {i}: rest");
                assert_ne!(
                    got[field..field + 2],
                    expected[field..field + 2],
                    "segment {i}: the checksum must be wrong (length {wrong_len})"
                );
            }
        }
    }
}

// ---- device errors ----

#[test]
fn tso4_not_negotiated_is_a_device_error() {
    let flow = Flow::v4();
    let packet = flow.packet(&payload(3000));
    let without_tso4 = TSO & !feature::HOST_TSO4;
    let why = refused(without_tso4, &flow.gso_header(MSS), &packet);
    assert!(
        why.contains("gso_type 1") && why.contains("VIRTIO_NET_F_HOST_TSO4 was not negotiated"),
        "{why}"
    );
    let flow = Flow::v6();
    let packet = flow.packet(&payload(3000));
    let why = refused(TSO & !feature::HOST_TSO6, &flow.gso_header(MSS), &packet);
    assert!(
        why.contains("gso_type 4") && why.contains("VIRTIO_NET_F_HOST_TSO6 was not negotiated"),
        "{why}"
    );
}

#[test]
fn tso_without_needs_csum_is_a_device_error() {
    let flow = Flow::v4();
    // The driver completed the checksum itself and asked only for segmentation.
    let packet = flow.frame(&payload(3000));
    let mut header = flow.gso_header(MSS);
    header[net_hdr::FLAGS] = 0;
    let why = refused(TSO, &header, &packet);
    assert!(why.contains("without NEEDS_CSUM"), "{why}");
}

#[test]
fn tso_with_the_checksum_not_at_the_tcp_header_is_a_device_error() {
    let flow = Flow::v4();
    let packet = flow.packet(&payload(3000));
    let tcp = flow.tcp_offset() as u16;
    // The right field through the wrong start, the wrong start with TCP's offset, UDP's offset.
    for (start, offset) in [(tcp - 20, 36u16), (tcp + 4, 16), (tcp, 6)] {
        let mut header = flow.gso_header(MSS);
        header[net_hdr::CSUM_START..][..2].copy_from_slice(&start.to_le_bytes());
        header[net_hdr::CSUM_OFFSET..][..2].copy_from_slice(&offset.to_le_bytes());
        let why = refused(TSO, &header, &packet);
        assert!(
            why.contains(&format!("csum_start {start}, csum_offset {offset}"))
                && why.contains(&format!("at csum_start {tcp}, csum_offset 16")),
            "{why}"
        );
    }
}

#[test]
fn tso_with_gso_size_0_is_a_device_error() {
    let flow = Flow::v6();
    let why = refused(TSO, &flow.gso_header(0), &flow.packet(&payload(100)));
    assert!(why.contains("gso_size 0"), "{why}");
}

#[test]
fn udp_under_tcpv4_is_a_device_error() {
    let mut udp = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(V4_A, V4_B, 64)
        .udp(5000, 53)
        .write(&mut udp, &payload(3000))
        .unwrap();
    let header = gso_header(
        regs::NET_HDR_F_NEEDS_CSUM,
        regs::NET_HDR_GSO_TCPV4,
        42,
        MSS as u16,
        34,
        6,
    );
    let why = refused(TSO, &header, &udp);
    assert!(why.contains("IPv4 protocol is 17, not TCP (6)"), "{why}");
    // Nor IPv6 under TCPV4, or IPv4 under TCPV6.
    let v6 = Flow::v6();
    let mut header = v6.gso_header(MSS);
    header[net_hdr::GSO_TYPE] = regs::NET_HDR_GSO_TCPV4;
    let why = refused(TSO, &header, &v6.packet(&payload(3000)));
    assert!(
        why.contains("EtherType 0x0800") && why.contains("0x86dd"),
        "{why}"
    );
    let v4 = Flow::v4();
    let mut header = v4.gso_header(MSS);
    header[net_hdr::GSO_TYPE] = regs::NET_HDR_GSO_TCPV6;
    let why = refused(TSO, &header, &v4.packet(&payload(3000)));
    assert!(
        why.contains("EtherType 0x86dd") && why.contains("0x0800"),
        "{why}"
    );
    // UDP segmentation types are not offered.
    for gso_type in [3, 5] {
        let mut header = v4.gso_header(MSS);
        header[net_hdr::GSO_TYPE] = gso_type;
        let why = refused(TSO, &header, &v4.packet(&payload(3000)));
        assert!(
            why.contains(&format!(
                "gso_type {gso_type}: the device segments only TCPV4"
            )),
            "{why}"
        );
    }
}

#[test]
fn the_ecn_bit_without_host_ecn_is_a_device_error() {
    let flow = Flow::v4();
    let mut header = flow.gso_header(MSS);
    header[net_hdr::GSO_TYPE] |= regs::NET_HDR_GSO_ECN;
    let why = refused(TSO, &header, &flow.packet(&payload(3000)));
    assert!(
        why.contains("gso_type 129 has the ECN bit")
            && why.contains("VIRTIO_NET_F_HOST_ECN was not negotiated"),
        "{why}"
    );
}

#[test]
fn hdr_len_past_the_frame_is_a_device_error() {
    let flow = Flow::v4();
    let packet = flow.packet(&payload(3000));
    let mut header = flow.gso_header(MSS);
    let past = packet.len() as u16 + 1;
    header[net_hdr::HDR_LEN..][..2].copy_from_slice(&past.to_le_bytes());
    let why = refused(TSO, &header, &packet);
    assert!(
        why.contains(&format!(
            "hdr_len {past} is past the end of the {}-byte frame",
            packet.len()
        )),
        "{why}"
    );
}

#[test]
fn a_truncated_tcp_header_is_a_device_error() {
    let flow = Flow::v4();
    let packet = flow.packet(&[]);
    let mut cut = packet[..packet.len() - 4].to_vec(); // inside the timestamp option
    set_ipv4_total_length(&mut cut);
    let mut header = flow.gso_header(MSS);
    header[net_hdr::HDR_LEN..][..2].copy_from_slice(&0u16.to_le_bytes());
    let why = refused(TSO, &header, &cut);
    assert!(why.contains("ends inside its TCP header"), "{why}");
}

/// Gives an untagged IPv4 frame the total length of what follows its Ethernet header, with the
/// header checksum to match.
fn set_ipv4_total_length(frame: &mut [u8]) {
    let (mut ip, _) = Ipv4Header::from_slice(&frame[14..]).unwrap();
    ip.total_len = (frame.len() - 14) as u16;
    ip.header_checksum = ip.calc_header_checksum();
    let bytes = ip.to_bytes();
    frame[14..14 + bytes.len()].copy_from_slice(&bytes);
}

#[test]
fn ip_lengths_and_the_ipv4_header_checksum_must_be_the_real_ones() {
    // What a Linux host checks when it routes the packet (a Windows stack hands the miniport
    // total length 0; the driver must fill it in).
    let flow = Flow::v4();
    let packet = flow.packet(&payload(3000));
    let header = flow.gso_header(MSS);
    let mut zero_length = packet.clone();
    zero_length[16..18].fill(0);
    let why = refused(TSO, &header, &zero_length);
    assert!(why.contains("IPv4 total length 0"), "{why}");
    let mut bad_checksum = packet.clone();
    bad_checksum[24] ^= 1;
    let why = refused(TSO, &header, &bad_checksum);
    assert!(why.contains("wrong IPv4 header checksum"), "{why}");

    let flow = Flow::v6();
    let mut packet = flow.packet(&payload(3000));
    packet[18..20].fill(0);
    let why = refused(TSO, &flow.gso_header(MSS), &packet);
    assert!(why.contains("IPv6 payload length 0"), "{why}");
}

// ---- negotiation ----

/// Offers everything, accepts `features`, asks for FEATURES_OK and says whether it stuck.
fn features_ok_sticks(features: u64) -> bool {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let s = status::ACKNOWLEDGE | status::DRIVER;
    r.set_common(common::DEVICE_STATUS, 1, s as u32);
    for half in 0..2 {
        r.set_common(common::DRIVER_FEATURE_SELECT, 4, half);
        r.set_common(common::DRIVER_FEATURE, 4, (features >> (32 * half)) as u32);
    }
    r.set_common(common::DEVICE_STATUS, 1, (s | status::FEATURES_OK) as u32);
    r.common(common::DEVICE_STATUS, 1) as u8 & status::FEATURES_OK != 0
}

#[test]
fn features_ok_is_refused_for_tso_without_csum() {
    let base = feature::VERSION_1 | feature::GUEST_CSUM;
    assert!(!features_ok_sticks(base | feature::HOST_TSO4));
    assert!(!features_ok_sticks(base | feature::HOST_TSO6));
    assert!(!features_ok_sticks(
        base | feature::HOST_TSO4 | feature::HOST_TSO6
    ));
    assert!(features_ok_sticks(
        base | feature::CSUM | feature::HOST_TSO4
    ));
    assert!(features_ok_sticks(
        base | feature::CSUM | feature::HOST_TSO6
    ));
    assert!(features_ok_sticks(DEFAULT_FEATURES));
    assert!(features_ok_sticks(base));
}

#[test]
fn tso_and_host_ecn_are_offered_by_default() {
    let offered = VirtioNetConfig::default().features;
    assert_eq!(
        (feature::HOST_TSO4, feature::HOST_TSO6, feature::HOST_ECN),
        (1 << 11, 1 << 12, 1 << 13)
    );
    assert_eq!(
        offered & (feature::HOST_TSO4 | feature::HOST_TSO6),
        feature::HOST_TSO4 | feature::HOST_TSO6
    );
    assert_eq!(offered & feature::HOST_ECN, feature::HOST_ECN);
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    r.set_common(common::DEVICE_FEATURE_SELECT, 4, 0);
    assert_eq!(
        r.common(common::DEVICE_FEATURE, 4) as u64 & (0b111 << 11),
        feature::HOST_TSO4 | feature::HOST_TSO6 | feature::HOST_ECN
    );
}
