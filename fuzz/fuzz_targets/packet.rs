//! `ndis::packet` on arbitrary frames: header parsing (whole frames, the first 128 bytes of one,
//! a large send's template, the IPv4 header alone), checksum verification and the software
//! completion a driver does for a device that cannot.
//!
//! Properties: every offset the parser returns lies inside the frame; a frame it parses is one
//! `etherparse` parses to the same headers; a checksum is never reported right unless
//! etherparse agrees (so a TCP data offset below 5 or past the segment, or a UDP length beyond
//! the payload or below 8, is never right); a checksum completed in software is one etherparse
//! verifies, and completing it changes only the checksum field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ndis::packet::{self, IpVersion};
use ndis_rs_fuzz::{independent, rfc1071};

/// Bytes of a receive's headers the framework reads (`ReceivePool::checksum`).
const HEAD: usize = 128;

fuzz_target!(|frame: &[u8]| {
    // The IPv4 header alone (what a header-checksum-only send needs).
    if let Some((l3, len)) = packet::ipv4_header(frame) {
        assert!(l3 + len <= frame.len() && (20..=60).contains(&len));
        let c = packet::ipv4_header_checksum(&frame[l3..l3 + len]);
        let mut fixed = frame.to_vec();
        fixed[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        if let Ok(h) = etherparse::Ipv4HeaderSlice::from_slice(&fixed[l3..]) {
            assert_eq!(h.slice().len(), len, "IPv4 header length");
        }
        assert_eq!(
            rfc1071(&fixed[l3..l3 + len]),
            0xFFFF,
            "IPv4 header checksum"
        );
    }

    // A large send's template: lengths from the frame.
    if let Some(l) = packet::parse_large_send(frame) {
        assert!(l.l3 < l.l4 && l.l4 < l.end && l.end == frame.len());
    }

    let parsed = packet::parse(frame);
    // The first bytes of the frame parse the same whenever they hold the headers.
    let head = &frame[..frame.len().min(HEAD)];
    if let Some(h) = packet::parse_headers(head, frame.len()) {
        assert_eq!(Some(h), parsed, "parse_headers and parse disagree");
    }
    let ours = independent(frame);
    let Some(l) = parsed else {
        return;
    };
    let header = if l.protocol == packet::PROTO_TCP {
        20
    } else {
        8
    };
    assert!(
        l.l3 >= 14 && l.l3 + l.l3_len <= l.l4 && l.l4 + header <= l.end && l.end <= frame.len(),
        "{l:?} outside a frame of {}",
        frame.len()
    );
    let l4_ok = packet::l4_checksum_ok(frame, &l);
    let ip_ok = (l.ip == IpVersion::V4).then(|| packet::ipv4_header_ok(frame, &l));
    match &ours {
        Some(o) => {
            assert_eq!(
                (o.ipv6, o.l3, o.l4, o.protocol, o.end),
                (l.ip == IpVersion::V6, l.l3, l.l4, l.protocol, l.end),
                "etherparse finds other headers than {l:?}"
            );
            if l4_ok {
                assert!(
                    o.well_formed,
                    "a malformed transport header reported right: {l:?}"
                );
                assert!(
                    o.l4_checksum_ok,
                    "a checksum etherparse rejects reported right: {l:?}"
                );
            }
            if let Some(ip_ok) = ip_ok {
                assert_eq!(
                    Some(ip_ok),
                    o.ipv4_header_ok,
                    "IPv4 header checksum verdict"
                );
            }
        }
        None => {
            assert!(
                !l4_ok,
                "a frame etherparse rejects reported checksum-right: {l:?}"
            );
            // Only a malformed transport header may make etherparse refuse what we parse.
            panic!("parsed a frame etherparse refuses: {l:?}");
        }
    }

    // Software completion, as the send path does it: the pseudo-header sum in the field, the
    // sum over the segment stored (and the IPv4 header checksum).
    let mut done = frame.to_vec();
    let field = l.checksum_field();
    let p = packet::pseudo_header_sum(&done, &l);
    done[field..field + 2].copy_from_slice(&p.to_be_bytes());
    let value = packet::finish(packet::sum(&done[l.l4..l.end], 0), l.protocol);
    done[field..field + 2].copy_from_slice(&value.to_be_bytes());
    if l.ip == IpVersion::V4 {
        let c = packet::ipv4_header_checksum(&done[l.l3..l.l3 + l.l3_len]);
        done[l.l3 + 10..l.l3 + 12].copy_from_slice(&c.to_be_bytes());
        assert!(packet::ipv4_header_ok(&done, &l));
    }
    let changed: Vec<usize> = (0..frame.len()).filter(|&i| frame[i] != done[i]).collect();
    assert!(
        changed
            .iter()
            .all(|&i| (field..field + 2).contains(&i) || (l.l3 + 10..l.l3 + 12).contains(&i)),
        "completion changed bytes outside the checksum fields: {changed:?}"
    );
    let o = independent(&done).expect("a completed frame parses");
    if l.routed {
        assert!(!packet::l4_checksum_ok(&done, &l));
    } else {
        assert!(
            packet::l4_checksum_ok(&done, &l),
            "a completed checksum does not verify: {l:?}"
        );
        assert!(
            o.l4_checksum_ok,
            "etherparse rejects a completed checksum: {l:?}"
        );
    }
    assert_ne!(o.ipv4_header_ok, Some(false));
});
