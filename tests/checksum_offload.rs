//! Checksum task offload of the reference driver on the emulator: what it declares, the
//! parameter sets, checksums on the wire, and what it reports about received checksums, against
//! the virtio-net device model's CSUM/GUEST_CSUM (and a device that lies about them).
#![cfg(not(windows))]

#[macro_use]
#[path = "support/nic.rs"]
mod nic;

use ndis_emu::devices::virtio_net::regs::feature as regs_feature;
use ndis_emu::{Emulator, InterruptResources, offload_parameters};
use ndis_sys as sys;

use nic::{MAC, check_tx, config, frame, on_the_wire, start, start_with, tagged, untagged};

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

/// TCP or UDP over IPv4 or IPv6 from the adapter's MAC, with correct checksums (as it must leave
/// the wire), `payload` bytes of payload.
fn l4_frame(ipv6: bool, tcp: bool, payload: usize, seed: u8) -> Vec<u8> {
    use etherparse::PacketBuilder;
    let eth = PacketBuilder::ethernet2(MAC, [0x02, 0, 0, 0, 0, seed]);
    let ip = if ipv6 {
        let source = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let destination = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, seed];
        eth.ipv6(source, destination, 64)
    } else {
        eth.ipv4([10, 0, 0, 1], [10, 0, 0, seed], 64)
    };
    let data: Vec<u8> = (0..payload)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect();
    let mut out = Vec::new();
    if tcp {
        let b = ip.tcp(40000 + u16::from(seed), 80, 0x0102_0304, 4096);
        b.write(&mut out, &data).unwrap();
    } else {
        let b = ip.udp(5353, 53);
        b.write(&mut out, &data).unwrap();
    }
    out
}

/// Every combination of IP version and transport, payloads odd and even, small and large.
fn l4_frames() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for (i, (ipv6, tcp)) in [(false, true), (false, false), (true, true), (true, false)]
        .into_iter()
        .enumerate()
    {
        for (j, payload) in [0, 1, 17, 600, 1400].into_iter().enumerate() {
            frames.push(l4_frame(ipv6, tcp, payload, (i * 10 + j) as u8));
        }
    }
    frames
}

both_builds! {
fn checksum_offload_is_declared_from_the_device_features_and_the_keywords(build: Build) {
    use ndis_emu::ChecksumTasks;
    let all = ChecksumTasks {
        ipv4_tx_ip: true,
        ipv4_tx_tcp: true,
        ipv4_tx_udp: true,
        ipv4_rx_ip: true,
        ipv4_rx_tcp: true,
        ipv4_rx_udp: true,
        ipv6_tx_tcp: true,
        ipv6_tx_udp: true,
        ipv6_rx_tcp: true,
        ipv6_rx_udp: true,
    };
    let nic = start(build, 1, InterruptResources::msix(4));
    let o = nic.emu.offload(nic.adapter).expect("offload attributes");
    assert_eq!((o.hardware, o.current), (all, all));
    // TCP/IP bound: the encapsulation was set, and the configuration indicated after it.
    assert_eq!(o.encapsulation, Some(sys::NDIS_STATUS_SUCCESS));
    assert_eq!(o.indications, 1);
    nic.stop();

    // Keywords: TCP/IPv4 transmit only, UDP/IPv6 off, the IPv4 header value out of range
    // (ignored: the hardware's default stands).
    let emu = Emulator::new(config(2));
    emu.set_keyword("*TCPChecksumOffloadIPv4", "1");
    emu.set_keyword("*UDPChecksumOffloadIPv6", "0");
    emu.set_keyword("*IPChecksumOffloadIPv4", "7");
    let nic = start_with(build, emu, 1, InterruptResources::msix(4), |_| {}).unwrap();
    let o = nic.emu.offload(nic.adapter).unwrap();
    let want = ChecksumTasks {
        ipv4_rx_tcp: false,
        ipv6_tx_udp: false,
        ipv6_rx_udp: false,
        ..all
    };
    assert_eq!((o.hardware, o.current), (all, want));
    nic.stop();

    // A device with only CSUM: transmit tasks only; with neither: no offload attributes, and
    // the offload OIDs are not the framework's to answer.
    for (features, tx, rx) in [(regs_feature::CSUM, true, false), (0, false, false)] {
        let nic = start_with(
            build,
            Emulator::new(config(2)),
            1,
            InterruptResources::msix(4),
            |c| {
                c.features &= !(regs_feature::CSUM | regs_feature::GUEST_CSUM);
                c.features |= features;
            },
        )
        .unwrap();
        match nic.emu.offload(nic.adapter) {
            Some(o) => {
                assert!(tx && !rx);
                assert!(o.hardware.ipv4_tx_tcp && o.hardware.ipv6_tx_udp && o.hardware.ipv4_tx_ip);
                assert!(!o.hardware.ipv4_rx_tcp && !o.hardware.ipv4_rx_ip);
            }
            None => {
                assert!(!tx);
                let r = nic.emu.oid_set(
                    nic.adapter,
                    sys::OID_TCP_OFFLOAD_PARAMETERS,
                    &offload_parameters([1; 5]),
                );
                assert_eq!(r.status, sys::NDIS_STATUS_NOT_SUPPORTED);
            }
        }
        nic.stop();
    }
}
}

both_builds! {
fn offload_parameters_switch_tasks_and_each_change_is_indicated(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    let set = |values| {
        nic.emu
            .oid_set(
                nic.adapter,
                sys::OID_TCP_OFFLOAD_PARAMETERS,
                &offload_parameters(values),
            )
            .status
    };
    let current = || nic.emu.offload(nic.adapter).unwrap();
    // UDP/IPv6 off, TCP/IPv4 receive only; the rest unchanged.
    assert_eq!(set([0, 3, 0, 0, 1]), sys::NDIS_STATUS_SUCCESS);
    let o = current();
    assert_eq!(o.indications, 2);
    assert!(!o.current.ipv6_tx_udp && !o.current.ipv6_rx_udp);
    assert!(o.current.ipv4_rx_tcp && !o.current.ipv4_tx_tcp);
    assert!(o.current.ipv4_tx_ip && o.current.ipv6_tx_tcp);
    // Bad values and short buffers change nothing and indicate nothing.
    assert_eq!(set([9, 0, 0, 0, 0]), sys::NDIS_STATUS_INVALID_DATA);
    let short = nic.emu.oid_set(
        nic.adapter,
        sys::OID_TCP_OFFLOAD_PARAMETERS,
        &offload_parameters([1; 5])[..12],
    );
    assert_eq!(
        (short.status, short.bytes_needed),
        (sys::NDIS_STATUS_INVALID_LENGTH, 20)
    );
    let mut lso = offload_parameters([0; 5]);
    lso[9] = 2; // LsoV1 enabled: never offered
    assert_eq!(
        nic.emu
            .oid_set(nic.adapter, sys::OID_TCP_OFFLOAD_PARAMETERS, &lso)
            .status,
        sys::NDIS_STATUS_INVALID_PARAMETER
    );
    assert_eq!(current(), o);
    nic.stop();
}
}

both_builds! {
fn checksums_the_stack_asks_for_are_right_on_the_wire(build: Build) {
    use ndis_emu::SendChecksum;
    let nic = start(build, 1, InterruptResources::msix(4));
    let frames = l4_frames();
    let both = SendChecksum {
        ip_header: true,
        transport: true,
    };
    let v4: Vec<&[u8]> = frames[..10].iter().map(|f| f.as_slice()).collect();
    let v6: Vec<&[u8]> = frames[10..].iter().map(|f| f.as_slice()).collect();
    nic.emu.send_checksummed(nic.adapter, &v4, both);
    nic.emu.send_checksummed(
        nic.adapter,
        &v6,
        SendChecksum {
            ip_header: false,
            transport: true,
        },
    );
    // A short UDP frame padded to the Ethernet minimum: the device would sum the padding, so
    // the driver computes this one itself.
    let mut padded = l4_frame(false, false, 2, 99);
    padded.resize(60, 0x5A);
    nic.emu.send_checksummed(nic.adapter, &[&padded], both);
    let statuses = nic.emu.send_statuses();
    assert!(
        statuses.iter().all(|s| *s == sys::NDIS_STATUS_SUCCESS),
        "{statuses:?}"
    );
    let seen = nic.net(|n, _| n.take_transmitted(0));
    let mut want: Vec<Vec<u8>> = frames.iter().map(|f| on_the_wire(f)).collect();
    want.push(on_the_wire(&padded));
    assert_eq!(seen.len(), want.len());
    for (i, (got, want)) in seen.iter().zip(&want).enumerate() {
        assert!(
            got == want,
            "frame {i} left with other bytes than the stack built"
        );
    }
    let checksummed = nic.net(|n, _| n.counters().tx_checksummed);
    assert_eq!(
        checksummed, 20,
        "the device finished every TCP/UDP checksum but the padded one"
    );
    // The four frames of 1400 bytes of payload were mapped: their headers copied and given the
    // pseudo-header sum, the payload read in place; every list freed.
    assert_eq!(
        nic.emu.sg_lists(),
        (4, 4, 0),
        "frames above vionet::MAP_THRESHOLD mapped, headers copied"
    );

    // With a VLAN set, the inserted tag moves the checksum start by 4.
    let vlan = 7u32;
    assert_eq!(
        nic.emu
            .oid_set(nic.adapter, sys::OID_GEN_VLAN_ID, &vlan.to_le_bytes())
            .status,
        sys::NDIS_STATUS_SUCCESS
    );
    nic.emu.send_checksummed(nic.adapter, &v4[..3], both);
    assert!(
        nic.emu
            .send_statuses()
            .iter()
            .all(|s| *s == sys::NDIS_STATUS_SUCCESS)
    );
    let seen = nic.net(|n, _| n.take_transmitted(0));
    for (got, f) in seen.iter().zip(&frames[..3]) {
        assert!(
            *got == on_the_wire(&tagged(f, 7)),
            "tagged frame with its checksums"
        );
    }
    nic.stop();
}
}

both_builds! {
fn a_checksum_request_the_frame_does_not_match_fails_its_list(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    let udp = l4_frame(false, false, 10, 1);
    let tcp_info = sys::NDIS_CHECKSUM_TX_IS_IPV4 | sys::NDIS_CHECKSUM_TX_TCP;
    let not_ip = frame(2, 80);
    let truncated = &udp[..30];
    nic.emu.send_with_checksum_info(
        nic.adapter,
        &[
            (&udp, tcp_info),
            (&not_ip, tcp_info),
            (
                truncated,
                sys::NDIS_CHECKSUM_TX_IS_IPV4 | sys::NDIS_CHECKSUM_TX_IP_HEADER,
            ),
        ],
    );
    let statuses = nic.emu.send_statuses();
    assert_eq!(statuses, vec![sys::NDIS_STATUS_INVALID_PACKET; 3]);
    assert!(nic.net(|n, _| n.take_transmitted(0)).is_empty());
    // A list of several frames, the last one not matching the request: nothing of it goes out.
    let good = l4_frame(false, true, 10, 3);
    let list: &[&[u8]] = &[&good, &good, &udp];
    let info = tcp_info | sys::NDIS_CHECKSUM_TX_IP_HEADER;
    nic.emu
        .send_lists_with_checksum_info(nic.adapter, &[list], info);
    assert_eq!(
        nic.emu.send_statuses(),
        vec![sys::NDIS_STATUS_INVALID_PACKET]
    );
    assert!(nic.net(|n, _| n.take_transmitted(0)).is_empty());
    // The transmit buffers all came back: a full ring of good sends still goes out.
    let good: Vec<Vec<u8>> = (0..300).map(|i| frame(i as u8, 64)).collect();
    check_tx(&nic, &good);
    nic.stop();
}
}

both_builds! {
fn received_checksums_are_reported_for_the_tasks_on_and_partial_ones_completed(build: Build) {
    use ndis_emu::devices::virtio_net::RxChecksum;
    let nic = start(build, 1, InterruptResources::msix(4));
    nic.accept_all();
    let frames = l4_frames();
    let receive = |frames: &[Vec<u8>]| nic.receive(frames, Emulator::received_frames_checksum);
    let is_v6 = |f: &[u8]| f[12..14] == [0x86, 0xDD];
    let is_tcp = |f: &[u8]| f[if is_v6(f) { 20 } else { 23 }] == 6;
    // The device validated each: TCP or UDP succeeded, and the IPv4 header verified here.
    for mode in [RxChecksum::Validate, RxChecksum::Partial] {
        nic.net(|n, _| n.set_rx_checksum(mode));
        let got = receive(&frames);
        assert_eq!(got.len(), frames.len());
        for ((bytes, info), f) in got.iter().zip(&frames) {
            assert!(
                bytes == f,
                "{mode:?}: indicated byte-exact (a partial checksum completed)"
            );
            assert_eq!(info.tcp_succeeded, is_tcp(f), "{mode:?}");
            assert_eq!(info.udp_succeeded, !is_tcp(f), "{mode:?}");
            assert_eq!(info.ip_succeeded, !is_v6(f), "{mode:?}");
            assert!(!(info.tcp_failed || info.udp_failed || info.ip_failed));
        }
    }
    // A corrupted TCP checksum: not validated by the device, so the frame is left to the stack
    // whole (nothing said, the IPv4 header not checked either); a corrupted IPv4 header
    // checksum under a valid TCP one: failed.
    nic.net(|n, _| n.set_rx_checksum(RxChecksum::Validate));
    let mut bad_tcp = frames[2].clone();
    let n = bad_tcp.len();
    bad_tcp[n - 1] ^= 0xFF;
    let mut bad_ip = frames[1].clone();
    bad_ip[24] ^= 0xFF;
    let got = receive(&[bad_tcp.clone(), bad_ip.clone()]);
    assert!(got[0].1.is_unchecked(), "{:?}", got[0].1);
    assert!(got[1].1.ip_failed && !got[1].1.ip_succeeded);

    // Receive offload switched off for TCP/IPv4: nothing reported for it, but a partial
    // checksum is still completed (the stack would drop the frame otherwise).
    let status = nic
        .emu
        .oid_set(
            nic.adapter,
            sys::OID_TCP_OFFLOAD_PARAMETERS,
            &offload_parameters([1, 2, 0, 0, 0]),
        )
        .status;
    assert_eq!(status, sys::NDIS_STATUS_SUCCESS);
    nic.net(|n, _| n.set_rx_checksum(RxChecksum::Partial));
    let got = receive(&frames[..5]);
    for ((bytes, info), f) in got.iter().zip(&frames[..5]) {
        assert!(bytes == f, "partial checksum completed with its task off");
        assert!(info.is_unchecked(), "{info:?}");
    }
    nic.stop();

    // A tag stripped off a partially checksummed frame: the start the device gave moves.
    let emu = Emulator::new(config(2));
    let nic = start_with(build, emu, 1, InterruptResources::msix(4), |_| {}).unwrap();
    nic.accept_all();
    nic.net(|n, _| n.set_rx_checksum(RxChecksum::Partial));
    let f = &frames[3];
    nic.net(|n, bus| n.inject_frame(bus, 0, &tagged(f, 3 << 13)));
    nic.emu.run_dpcs();
    let got = nic.emu.received_frames_checksum(nic.adapter);
    assert_eq!(got.len(), 1);
    assert!(got[0].0 == *f, "untagged, checksum completed");
    assert!(got[0].1.tcp_succeeded);
    nic.stop();
}
}

both_builds! {
fn a_device_that_forges_its_checksum_verdicts_cannot_make_the_driver_misbehave(build: Build) {
    use ndis_emu::devices::virtio_net::RxChecksum;
    let nic = start(build, 1, InterruptResources::msix(4));
    nic.accept_all();
    let frames = l4_frames();
    let mut inputs = vec![frames[0].clone(), frames[13].clone(), frame(9, 60)];
    inputs.push(tagged(&frames[2], 5 << 13));
    let mut short = frames[5].clone();
    short.truncate(40); // IPv4 lengths past the frame's end
    inputs.push(short);
    let l4 = [34u16, 38, 54, 0, 13, 59, 60, 1513, 1514, 4000, u16::MAX];
    let offsets = [0u16, 6, 16, 17, 1500, u16::MAX];
    for flags in [1u8, 2, 3, 0xFF] {
        for &csum_start in &l4 {
            for &csum_offset in &offsets {
                nic.net(|n, bus| {
                    n.set_rx_checksum(RxChecksum::Forged {
                        flags,
                        csum_start,
                        csum_offset,
                    });
                    for f in &inputs {
                        n.inject_frame(bus, 0, f);
                    }
                });
                nic.emu.run_dpcs();
                let got = nic.emu.received_frames_checksum(nic.adapter);
                nic.emu.return_receives(nic.adapter);
                assert_eq!(got.len(), inputs.len(), "every frame indicated");
                // Where a truthful device would start each input's partial checksum (None: it
                // has none): only that description is acted on.
                let honest = [Some(34), Some(54), None, Some(38), None];
                for (((bytes, info), f), start) in got.iter().zip(&inputs).zip(honest) {
                    let expected = if f[12..14] == [0x81, 0x00] {
                        untagged(f)
                    } else {
                        f.clone()
                    };
                    let matches = flags & 1 != 0 && start == Some(csum_start) && csum_offset == 16;
                    // A partial description inside the frame is completed from the device's
                    // own start and offset, whatever the frame (as Linux does): only those two
                    // bytes may change. The device's start counts the stripped tag.
                    let shift = if f[12..14] == [0x81, 0x00] { 4 } else { 0 };
                    let field = usize::from(csum_start)
                        .checked_sub(shift)
                        .map(|s| s + usize::from(csum_offset))
                        .filter(|&at| flags & 1 != 0 && at + 2 <= expected.len());
                    let mut expected = expected.clone();
                    if let Some(at) = field {
                        expected[at..at + 2].copy_from_slice(&bytes[at..at + 2]);
                    }
                    assert!(
                        *bytes == expected,
                        "{flags} {csum_start} {csum_offset}: other bytes changed"
                    );
                    if matches {
                        assert!(info.tcp_succeeded, "{flags} {csum_start} {csum_offset}");
                    } else {
                        // A partial description that does not match: no verdict on TCP/UDP
                        // (the IPv4 header is still verified here, from the frame itself).
                        if flags & 1 != 0 {
                            let claimed = info.tcp_succeeded || info.udp_succeeded;
                            assert!(!claimed, "{flags} {csum_start} {csum_offset}");
                        }
                    }
                    assert!(!(info.tcp_failed || info.udp_failed));
                }
            }
        }
    }
    nic.stop();
}
}

both_builds! {
fn an_ipv4_header_checksum_alone_is_done_for_any_ipv4_packet(build: Build) {
    use etherparse::{Ipv4Header, PacketBuilder};
    use ndis_emu::SendChecksum;
    let nic = start(build, 1, InterruptResources::msix(4));
    // What TCP/IP asks for on every IPv4 packet with the IPv4 task on: ICMP, and fragments of a
    // datagram too large for one frame.
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(MAC, [2, 0, 0, 0, 0, 1])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut icmp, b"ping payload")
        .unwrap();
    let mut fragment = l4_frame(false, false, 300, 4);
    let (mut ip, _) = Ipv4Header::from_slice(&fragment[14..]).unwrap();
    ip.more_fragments = true;
    ip.header_checksum = ip.calc_header_checksum();
    fragment[14..34].copy_from_slice(&ip.to_bytes());
    let frames = [icmp, fragment];
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    let header_only = SendChecksum {
        ip_header: true,
        transport: false,
    };
    nic.emu.send_checksummed(nic.adapter, &refs, header_only);
    assert_eq!(nic.emu.send_statuses(), vec![sys::NDIS_STATUS_SUCCESS; 2]);
    let seen = nic.net(|n, _| n.take_transmitted(0));
    let want: Vec<Vec<u8>> = frames.iter().map(|f| on_the_wire(f)).collect();
    assert!(seen == want, "IPv4 header checksums restored on the wire");
    nic.stop();
}
}

/// TCP/IPv4 with 8 bytes of IPv4 options (NOP, NOP, NOP, end, padding), correct checksums.
fn tcp4_with_options(payload: &[u8]) -> Vec<u8> {
    use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv4Options, TcpHeader};
    let mut tcp = TcpHeader::new(4321, 80, 9, 8192);
    let mut ip = Ipv4Header::new(0, 64, IpNumber::TCP, [10, 0, 0, 1], [10, 0, 0, 3]).unwrap();
    ip.options = Ipv4Options::try_from(&[1u8, 1, 1, 0, 0, 0, 0, 0][..]).unwrap();
    ip.set_payload_len(tcp.header_len() + payload.len())
        .unwrap();
    ip.header_checksum = ip.calc_header_checksum();
    tcp.checksum = tcp.calc_checksum_ipv4(&ip, payload).unwrap();
    let eth = Ethernet2Header {
        source: MAC,
        destination: [2, 0, 0, 0, 0, 7],
        ether_type: EtherType::IPV4,
    };
    let mut out = Vec::new();
    eth.write(&mut out).unwrap();
    ip.write(&mut out).unwrap();
    tcp.write(&mut out).unwrap();
    out.extend_from_slice(payload);
    out
}

both_builds! {
fn ipv4_options_are_walked_on_both_paths(build: Build) {
    use ndis_emu::SendChecksum;
    use ndis_emu::devices::virtio_net::RxChecksum;
    let nic = start(build, 1, InterruptResources::msix(4));
    nic.accept_all();
    let frames = [
        tcp4_with_options(b"with options"),
        tcp4_with_options(&[7; 501]),
    ];
    assert_eq!(frames[0][14], 0x47, "IHL 7");
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    let both = SendChecksum {
        ip_header: true,
        transport: true,
    };
    nic.emu.send_checksummed(nic.adapter, &refs, both);
    assert_eq!(nic.emu.send_statuses(), vec![sys::NDIS_STATUS_SUCCESS; 2]);
    assert!(nic.net(|n, _| n.take_transmitted(0)) == frames);
    for mode in [RxChecksum::Validate, RxChecksum::Partial] {
        nic.net(|n, bus| {
            n.set_rx_checksum(mode);
            for f in &frames {
                n.inject_frame(bus, 0, f);
            }
        });
        nic.emu.run_dpcs();
        let got = nic.emu.received_frames_checksum(nic.adapter);
        nic.emu.return_receives(nic.adapter);
        assert_eq!(got.len(), 2);
        for ((bytes, info), f) in got.iter().zip(&frames) {
            assert!(bytes == f, "{mode:?}");
            assert!(
                info.tcp_succeeded && info.ip_succeeded,
                "{mode:?}: {info:?}"
            );
        }
    }
    let counters = nic.net(|n, _| n.counters().clone());
    assert_eq!((counters.rx_data_valid, counters.rx_partial), (2, 2));
    nic.stop();
}
}

/// `frame` (TCP or UDP over IPv4, from `l4_frame`) with its TCP data offset or UDP length field
/// replaced and both checksums recomputed over the bytes as they are, so that only the length
/// field is wrong.
fn with_transport_length(mut f: Vec<u8>, tcp: bool, value: u16) -> Vec<u8> {
    let l4 = 34;
    if tcp {
        f[l4 + 12] = (value as u8) << 4 | (f[l4 + 12] & 0x0F);
    } else {
        f[l4 + 4..l4 + 6].copy_from_slice(&value.to_be_bytes());
    }
    let field = l4 + if tcp { 16 } else { 6 };
    f[field..field + 2].fill(0);
    let mut acc: u32 = 0;
    let mut add = |b: &[u8]| {
        for w in b.chunks(2) {
            acc += u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
        }
    };
    add(&f[26..34]);
    add(&[0, if tcp { 6 } else { 17 }]);
    add(&((f.len() - l4) as u16).to_be_bytes());
    add(&f[l4..]);
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    let c = !(acc as u16);
    f[field..field + 2].copy_from_slice(&c.to_be_bytes());
    f
}

both_builds! {
/// Issue 17: a device that sets DATA_VALID on frames it never checked made vionet report
/// TCP_SUCCEEDED for a TCP data offset of 1 (4 bytes) and UDP_SUCCEEDED for a UDP length (1408)
/// larger than the IP payload (1404). Neither, nor a data offset past the segment or a UDP
/// length below 8 or short of the payload, is reported checksum-valid; the frames still arrive,
/// for the stack to judge.
fn malformed_transport_lengths_are_never_reported_checksum_valid(build: Build) {
    use ndis_emu::devices::virtio_net::RxChecksum;
    let nic = start(build, 1, InterruptResources::msix(4));
    nic.accept_all();
    let tcp = l4_frame(false, true, 1400, 1);
    let udp = l4_frame(false, false, 1396, 2);
    assert_eq!(udp.len() - 34, 1404);
    let bad = vec![
        with_transport_length(tcp.clone(), true, 1),
        with_transport_length(tcp.clone(), true, 4),
        with_transport_length(l4_frame(false, true, 20, 3), true, 15), // 60 > 40 bytes
        with_transport_length(udp.clone(), false, 1408),
        with_transport_length(udp.clone(), false, 4),
        with_transport_length(udp.clone(), false, 1000),
    ];
    nic.net(|n, _| {
        n.set_rx_checksum(RxChecksum::Forged {
            flags: 2, // DATA_VALID
            csum_start: 0,
            csum_offset: 0,
        })
    });
    let got = nic.receive(&bad, |e, a| e.received_frames_checksum(a));
    assert_eq!(got.len(), bad.len(), "every frame indicated");
    for ((bytes, info), f) in got.iter().zip(&bad) {
        assert_eq!(bytes, f);
        assert!(
            !info.tcp_succeeded && !info.udp_succeeded,
            "{info:?} for {:02x?}",
            &f[34..54]
        );
    }
    // The same frames well formed are reported right, as before.
    let good = vec![tcp, udp];
    let got = nic.receive(&good, |e, a| e.received_frames_checksum(a));
    assert!(got[0].1.tcp_succeeded && got[1].1.udp_succeeded, "{got:?}");

    // Asked to checksum them on send, the driver fails the lists instead of sending a checksum
    // over a segment the headers do not describe.
    let info = sys::NDIS_CHECKSUM_TX_IS_IPV4 | sys::NDIS_CHECKSUM_TX_TCP;
    let udp_info = sys::NDIS_CHECKSUM_TX_IS_IPV4 | sys::NDIS_CHECKSUM_TX_UDP;
    let sends: Vec<(&[u8], u32)> = bad
        .iter()
        .enumerate()
        .map(|(i, f)| (f.as_slice(), if i < 3 { info } else { udp_info }))
        .collect();
    nic.emu.send_with_checksum_info(nic.adapter, &sends);
    assert_eq!(
        nic.emu.send_statuses(),
        vec![sys::NDIS_STATUS_INVALID_PACKET; bad.len()]
    );
    assert!(nic.net(|n, _| n.take_transmitted(0)).is_empty());
    nic.stop();
}
}
