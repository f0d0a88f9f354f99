//! The send path of vionet on the emulator: chains of NET_BUFFER_LISTs of any shape (1–4
//! lists of 1–3 NET_BUFFERs, each frame in MDLs of any size) with any per-list information
//! (`TcpIpChecksumNetBufferListInfo`, `TcpLargeSendNetBufferListInfo`,
//! `Ieee8021QNetBufferListInfo`), through the copy into bounce buffers, the checksum and tag
//! preparation and the large-send (segmentation) setup; the device model completes checksums
//! and segments as a Linux host does.
//!
//! Properties: every list is completed exactly once; the device gets frames only for lists that
//! succeeded, all of them, in order; a frame sent without checksum or large-send work arrives
//! byte-exact (zero-padded to 60 bytes, an 802.1Q tag inserted only from the list's
//! information); one with checksum work arrives changed in at most the checksum fields, and
//! every checksum it asked for is one `etherparse` verifies on a well-formed segment (a
//! malformed request fails instead of going out wrong); a large send arrives as well-formed TCP
//! segments with correct checksums, none carrying more than the MSS, whose payloads add up to
//! the original's; the device model sees no rule broken; nothing leaks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ndis_emu::ListInfo;
use ndis_rs_fuzz::nic::Nic;
use ndis_rs_fuzz::{Input, as_tcpip_sends, independent, rfc1071};
use ndis_sys as sys;

struct List {
    /// What the list carries.
    frames: Vec<Vec<u8>>,
    /// The frames before TCP/IP's preparation: what must arrive.
    originals: Vec<Vec<u8>>,
    info: ListInfo,
    tcpip: bool,
}

/// `seen` without an 802.1Q tag the driver inserted (one `original` did not carry).
fn untag(seen: &[u8], original: &[u8]) -> Vec<u8> {
    let tagged = |f: &[u8]| f.len() >= 16 && f[12..14] == [0x81, 0x00];
    if tagged(seen) && !tagged(original) {
        [&seen[..12], &seen[16..]].concat()
    } else {
        seen.to_vec()
    }
}

/// The TCP payload of a large send's frame: its IP length fields (which the stack may leave 0)
/// taken from the frame, then read by etherparse.
fn large_send_payload(frame: &[u8]) -> Option<Vec<u8>> {
    let mut f = frame.to_vec();
    let l3 = if f.get(12..14)? == [0x81, 0x00] {
        18
    } else {
        14
    };
    let rest = f.len().checked_sub(l3)?;
    match f.get(l3 - 2..l3)? {
        [0x08, 0x00] => f
            .get_mut(l3 + 2..l3 + 4)?
            .copy_from_slice(&(rest as u16).to_be_bytes()),
        [0x86, 0xDD] => f
            .get_mut(l3 + 4..l3 + 6)?
            .copy_from_slice(&(rest.checked_sub(40)? as u16).to_be_bytes()),
        _ => return None,
    }
    tcp_payload(&f)
}

/// The TCP payload of a frame etherparse parses as TCP.
fn tcp_payload(frame: &[u8]) -> Option<Vec<u8>> {
    let p = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    match p.transport? {
        etherparse::TransportSlice::Tcp(t) => Some(t.payload().to_vec()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let piece = match input.u8() % 4 {
        0 => usize::MAX,
        1 => 1 + usize::from(input.u8()),
        2 => 14 + usize::from(input.u8() % 64),
        _ => 1 + usize::from(input.u16()),
    };
    let nlists = 1 + usize::from(input.u8() % 4);
    let mut lists = Vec::new();
    for _ in 0..nlists {
        let mut info = ListInfo::default();
        let which = input.u8();
        if which & 1 != 0 {
            info.checksum = input.u32() as usize;
        }
        if which & 2 != 0 {
            info.large_send = input.u32() as usize;
        }
        if which & 4 != 0 {
            info.ieee8021q = usize::from(input.u16());
        }
        let nframes = 1 + usize::from(input.u8() % 3);
        let frames = (0..nframes).map(|_| input.bytes(9100).to_vec()).collect();
        lists.push(List {
            frames,
            originals: Vec::new(),
            info,
            tcpip: input.bool(),
        });
    }
    if input.bool() {
        // The rest of the input as the first frame, for large sends of any size.
        let rest = input.rest().to_vec();
        lists[0].frames[0] = rest;
    }
    // Frames as TCP/IP hands them down for the work asked (where the list says so and the
    // frame is a segment at all), or as they are: a protocol that breaks the contract.
    for l in &mut lists {
        l.originals = l.frames.clone();
        if l.tcpip && (l.info.checksum != 0 || l.info.large_send != 0) {
            for f in &mut l.frames {
                // A frame etherparse finds no segment in stays as it is: not TCP/IP's.
                l.tcpip &= as_tcpip_sends(f, l.info.large_send != 0);
            }
        } else {
            l.tcpip = false;
        }
    }

    let nic = Nic::start(&[], |_| {});
    let shaped: Vec<Vec<&[u8]>> = lists
        .iter()
        .map(|l| l.frames.iter().map(|f| f.as_slice()).collect())
        .collect();
    let chain: Vec<(&[&[u8]], ListInfo)> = shaped
        .iter()
        .zip(&lists)
        .map(|(f, l)| (f.as_slice(), l.info))
        .collect();
    nic.emu.send_lists_with_info(nic.adapter, &chain, piece);
    nic.emu.run_dpcs();
    // In the order sent: a mapped list completes when the device is done with it, possibly after
    // lists of the same call that were copied (NDIS allows any order).
    let done = nic.emu.send_completions_large_in_sent_order();
    assert_eq!(done.len(), lists.len(), "every list completed exactly once");
    let mut seen = nic.net(|n, _| n.take_transmitted(0)).into_iter();

    for (i, (list, (_, status, lso_back))) in lists.iter().zip(&done).enumerate() {
        if *status != sys::NDIS_STATUS_SUCCESS {
            continue;
        }
        for (j, (f, original)) in list.frames.iter().zip(&list.originals).enumerate() {
            if list.info.large_send != 0 {
                let mss = (list.info.large_send as u32 & sys::NDIS_LSO_MSS_MASK) as usize;
                let want = large_send_payload(original).unwrap_or_else(|| {
                    panic!(
                        "list {i}: a large send of a frame that is no TCP segment succeeded: \
                         {original:02x?}"
                    )
                });
                let mut got = Vec::new();
                loop {
                    let s = seen.next().unwrap_or_else(|| {
                        panic!(
                            "list {i} frame {j}: segments missing ({} of {} bytes)",
                            got.len(),
                            want.len()
                        )
                    });
                    let s = untag(&s, f);
                    let o = independent(&s)
                        .unwrap_or_else(|| panic!("list {i}: a segment etherparse refuses"));
                    assert!(o.well_formed, "list {i}: a malformed segment");
                    assert!(
                        o.l4_checksum_ok || !list.tcpip,
                        "list {i} ({:?}): a segment with a bad checksum: {:02x?} of {:02x?} ({} bytes)",
                        list.info,
                        &s[..s.len().min(64)],
                        &original[..original.len().min(64)],
                        original.len()
                    );
                    assert_ne!(
                        o.ipv4_header_ok,
                        Some(false),
                        "list {i}: a segment with a bad IPv4 header"
                    );
                    let p = tcp_payload(&s).unwrap();
                    assert!(
                        p.len() <= mss,
                        "list {i}: a segment of {} bytes over the MSS {mss}",
                        p.len()
                    );
                    got.extend_from_slice(&p);
                    if got.len() >= want.len() {
                        break;
                    }
                }
                assert_eq!(
                    got, want,
                    "list {i}: the segments' payloads are not the original's"
                );
                assert_eq!(
                    *lso_back as u32 >> sys::NDIS_LSO_TYPE_SHIFT & 1,
                    sys::NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE,
                    "list {i}: a large send not completed as LSOv2"
                );
                continue;
            }
            let s = seen.next().unwrap_or_else(|| {
                panic!("list {i} frame {j} succeeded but never reached the device")
            });
            // A tagged frame is padded to 60 bytes with its tag: 56 without it.
            let inserted = s.len() >= 16
                && s[12..14] == [0x81, 0x00]
                && !(f.len() >= 16 && f[12..14] == [0x81, 0x00]);
            let s = untag(&s, f);
            let v = list.info.checksum as u32;
            let asked = |bit: u32| v & bit != 0;
            let any_version =
                asked(sys::NDIS_CHECKSUM_TX_IS_IPV4) || asked(sys::NDIS_CHECKSUM_TX_IS_IPV6);
            let l4 = any_version
                && (asked(sys::NDIS_CHECKSUM_TX_TCP) || asked(sys::NDIS_CHECKSUM_TX_UDP));
            let ip = asked(sys::NDIS_CHECKSUM_TX_IS_IPV4) && asked(sys::NDIS_CHECKSUM_TX_IP_HEADER);
            // Checksum work: what arrives is compared with what TCP/IP prepared it from.
            let mut want = if l4 || ip {
                original.clone()
            } else {
                f.clone()
            };
            let min = if inserted { 56 } else { 60 };
            if want.len() < min {
                want.resize(min, 0);
            }
            assert_eq!(s.len(), want.len(), "list {i} frame {j}: length");
            let differs = (0..s.len()).filter(|&k| s[k] != want[k]).count();
            if !(l4 || ip) {
                assert_eq!(s, want, "list {i} frame {j}: not byte-exact");
                continue;
            }
            assert!(
                differs <= 4,
                "list {i} frame {j}: {differs} bytes changed by a checksum request"
            );
            let o = independent(&s);
            if l4 {
                let o = o.as_ref().unwrap_or_else(|| {
                    panic!("list {i} frame {j}: a transport checksum sent on a frame etherparse refuses: {f:02x?}")
                });
                assert!(
                    o.well_formed,
                    "list {i} frame {j}: a transport checksum sent on a malformed segment"
                );
                // Without TCP/IP's pseudo-header sum in the field (a protocol breaking the
                // contract) the value cannot be right, only the headers are checked.
                assert!(
                    o.l4_checksum_ok || !list.tcpip,
                    "list {i} frame {j} ({:?}, as TCP/IP: {}): a wrong transport checksum sent: {:02x?} for {:02x?}",
                    list.info,
                    list.tcpip,
                    &s[..s.len().min(64)],
                    &original[..original.len().min(64)]
                );
            }
            if ip && !l4 {
                // The IPv4 header checksum alone (any IPv4 packet): right over the header.
                let l3 = if s[12..14] == [0x81, 0x00] { 18 } else { 14 };
                let ihl = usize::from(s[l3] & 0x0F) * 4;
                assert_eq!(
                    rfc1071(&s[l3..l3 + ihl]),
                    0xFFFF,
                    "list {i} frame {j}: a wrong IPv4 header checksum sent"
                );
            }
            if ip && l4 {
                assert_ne!(
                    o.as_ref().and_then(|o| o.ipv4_header_ok),
                    Some(false),
                    "list {i} frame {j}: IPv4 header"
                );
            }
        }
    }
    assert!(
        seen.next().is_none(),
        "the device got frames of lists that failed"
    );
    nic.stop();
});
