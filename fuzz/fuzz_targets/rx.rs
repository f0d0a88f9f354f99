//! The receive path of vionet on the emulator, frames and virtio-net headers from a hostile
//! device: the device model's honest modes (it validates, or hands over partial checksums) and
//! forged headers with any flags, `csum_start` and `csum_offset` (`DATA_VALID` on anything,
//! `NEEDS_CSUM` anywhere), with 802.1p/802.1Q stripping in any `*PriorityVLANTag` mode and a
//! VLAN filter. (virtio-net as vionet negotiates it has no RSS hash report.)
//!
//! Properties: every indicated frame is the injected frame, byte for byte, less a stripped tag
//! (whose TCI is then in the list information) and with at most the two bytes a `NEEDS_CSUM`
//! description names changed; frames are indicated in order, none twice; no TCP/UDP checksum
//! is reported right for a frame `etherparse` does not parse to a well-formed TCP/UDP segment,
//! nor (unless the device vouched for it with `DATA_VALID`) for a checksum etherparse rejects;
//! an IPv4 header checksum is reported right or wrong only as etherparse finds it; nothing is
//! read or written outside the driver's buffers (the emulator's memory checks), nothing leaks
//! (unload's accounting), and the device model sees no rule broken.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ndis_emu::devices::virtio_net::RxChecksum;
use ndis_rs_fuzz::nic::Nic;
use ndis_rs_fuzz::{Input, independent, rfc1071};
use ndis_sys as sys;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let tagging = input.u8() % 4;
    // 0 (none) or a VLAN ID 1..=4094 (4095 is reserved, and refused).
    let vlan_filter = input.u16() % 4095;
    let mode = match input.u8() % 4 {
        0 => RxChecksum::Validate,
        1 => RxChecksum::Partial,
        2 => RxChecksum::Off,
        _ => RxChecksum::Forged {
            flags: input.u8(),
            csum_start: input.u16() % 1600,
            csum_offset: input.u16() % 64,
        },
    };
    let mut frames = Vec::new();
    while !input.is_empty() && frames.len() < 8 {
        frames.push(input.bytes(1600).to_vec());
    }
    if frames.is_empty() {
        return;
    }
    let tagging_value = tagging.to_string();
    let nic = Nic::start(&[("*PriorityVLANTag", &tagging_value)], |_| {});
    nic.accept_all();
    // A VLAN filter exists only with VLAN tagging on (the OID is refused otherwise).
    let vlan_filter = if tagging & 2 != 0 { vlan_filter } else { 0 };
    if vlan_filter != 0 {
        let r = nic.set(sys::OID_GEN_VLAN_ID, &u32::from(vlan_filter).to_le_bytes());
        assert_eq!(
            r.status,
            sys::NDIS_STATUS_SUCCESS,
            "OID_GEN_VLAN_ID {vlan_filter}"
        );
    }
    nic.net(|n, bus| {
        n.set_rx_checksum(mode);
        for f in &frames {
            n.inject_frame(bus, 0, f);
        }
    });
    nic.emu.run_dpcs();
    let got = nic.emu.received_frames_checksum(nic.adapter);
    nic.emu.return_receives(nic.adapter);
    // The 802.1Q information of the same receives: a second run of the same frames (the
    // emulator hands out one view per call).
    nic.net(|n, bus| {
        for f in &frames {
            n.inject_frame(bus, 0, f);
        }
    });
    nic.emu.run_dpcs();
    let tags = nic.emu.received_frames_8021q(nic.adapter);
    nic.emu.return_receives(nic.adapter);
    assert_eq!(
        got.len(),
        tags.len(),
        "the same frames indicated twice over"
    );

    let (forged_flags, start, offset) = match mode {
        RxChecksum::Forged {
            flags,
            csum_start,
            csum_offset,
        } => (
            Some(flags),
            usize::from(csum_start),
            usize::from(csum_offset),
        ),
        _ => (None, 0, 0),
    };
    let mut next = 0;
    for (i, ((bytes, info), (tag_bytes, tag))) in got.iter().zip(&tags).enumerate() {
        // The injected frame this is: the next one that matches, in order.
        let (k, stripped) = (next..frames.len())
            .find_map(|k| {
                let f = &frames[k];
                let strip =
                    f.len() >= 18 && f[12..14] == [0x81, 0x00] && f.len() - 4 == bytes.len();
                // A stripped frame's tag is in the list information: a candidate whose tag
                // is not what the driver reported is another frame that looks alike (a frame
                // and the same frame with a tag inserted are both valid inputs).
                if strip {
                    let tci = u16::from_be_bytes([f[14], f[15]]);
                    let (priority, vlan) = ((tci >> 13) as u8, tci & 0x0FFF);
                    let want_priority = if tagging & 1 != 0 { priority } else { 0 };
                    let want = (want_priority != 0 || vlan != 0).then_some((want_priority, vlan));
                    if *tag != want {
                        return None;
                    }
                }
                let shift = if strip { 4 } else { 0 };
                let expected: Vec<u8> = if strip {
                    [&f[..12], &f[16..]].concat()
                } else {
                    f.clone()
                };
                if expected.len() != bytes.len() {
                    return None;
                }
                // Bytes that may differ: a completed partial checksum's field (the forged
                // description's, or the transport checksum field an honest device handed over;
                // a completion may store 0xFFFF where the sender had the other zero, 0x0000).
                let field = match mode {
                    RxChecksum::Partial => {
                        independent(&expected).map(|o| o.l4 + if o.protocol == 6 { 16 } else { 6 })
                    }
                    _ => start
                        .checked_sub(shift)
                        .map(|s| s + offset)
                        .filter(|_| forged_flags.is_some_and(|fl| fl & 1 != 0)),
                };
                let ok = (0..bytes.len())
                    .filter(|&j| expected[j] != bytes[j])
                    .all(|j| field.is_some_and(|at| (at..at + 2).contains(&j)));
                ok.then_some((k, strip))
            })
            .unwrap_or_else(|| panic!("indicated frame {i} is no injected frame: {bytes:02x?}"));
        next = k + 1;
        let f = &frames[k];
        // The tag, when stripped, is in the list information.
        if stripped {
            let tci = u16::from_be_bytes([f[14], f[15]]);
            let (priority, vlan) = ((tci >> 13) as u8, tci & 0x0FFF);
            assert!(tagging != 0, "a tag stripped with tagging off");
            if vlan_filter != 0 && vlan != 0 {
                assert_eq!(vlan, vlan_filter, "a frame of another VLAN indicated");
            }
            let want_priority = if tagging & 1 != 0 { priority } else { 0 };
            let want = (want_priority != 0 || vlan != 0).then_some((want_priority, vlan));
            assert_eq!(*tag, want, "802.1Q information of frame {i}");
        } else {
            assert_eq!(*tag, None, "802.1Q information on an untagged receive {i}");
        }
        let _ = tag_bytes;

        let o = independent(bytes);
        // A forged DATA_VALID or NEEDS_CSUM is the device's word, which the driver takes (as
        // Linux takes CHECKSUM_UNNECESSARY and CHECKSUM_PARTIAL): the checksum value is not
        // checked then, the headers are, and so is the completion's arithmetic.
        let trusted = forged_flags.is_some_and(|fl| fl & 3 != 0);
        let shift = if stripped { 4 } else { 0 };
        if let (Some(fl), Some(s)) = (forged_flags, start.checked_sub(shift)) {
            let field = s + offset;
            if fl & 1 != 0 && s < bytes.len() && field + 2 <= bytes.len() {
                let expected: Vec<u8> = if stripped {
                    [&f[..12], &f[16..]].concat()
                } else {
                    f.clone()
                };
                let value = match !rfc1071(&expected[s..]) {
                    0 => 0xFFFF,
                    v => v,
                };
                assert_eq!(
                    bytes[field..field + 2],
                    value.to_be_bytes(),
                    "a partial checksum completed wrong (start {s}, field {field})"
                );
            }
        }
        if info.tcp_succeeded || info.udp_succeeded {
            let o = o.as_ref().unwrap_or_else(|| {
                panic!(
                    "checksum reported right on a frame etherparse refuses: {info:?} {bytes:02x?}"
                )
            });
            assert_eq!(o.protocol, if info.tcp_succeeded { 6 } else { 17 });
            assert!(
                o.well_formed,
                "malformed transport header reported right: {bytes:02x?}"
            );
            if !trusted {
                assert!(
                    o.l4_checksum_ok,
                    "a wrong checksum reported right ({mode:?}): {info:?} {bytes:02x?}"
                );
            }
        }
        if info.ip_succeeded || info.ip_failed {
            let o = o
                .as_ref()
                .expect("an IPv4 verdict on a frame etherparse refuses");
            assert_eq!(
                o.ipv4_header_ok,
                Some(info.ip_succeeded),
                "IPv4 header verdict"
            );
        }
        let both =
            (info.tcp_succeeded && info.tcp_failed) || (info.udp_succeeded && info.udp_failed);
        assert!(!both, "a checksum reported both right and wrong: {info:?}");
    }
    nic.stop();
});
