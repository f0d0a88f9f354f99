//! The loopback sample on the emulator: frames sent come back byte for byte, the framework
//! answers the general OIDs (with correct short-buffer behaviour), and initialize survives every
//! failing NDIS call without leaking.
//!
//! Every scenario runs twice, through one parameter ([`Build`]): on the driver compiled for the
//! host, and on the release kernel image (`loopback_miniport.dll`, cross-built for
//! `x86_64-pc-windows-msvc` once per test process) loaded into the emulator by its PE loader. An
//! image scenario runs in a child process (`ndis_emu::image::isolated`), so a bug check inside
//! the image stops the child and reaches this test as the structured bug check.
#![cfg(not(windows))]

use std::path::{Path, PathBuf};

use loopback_miniport::{DRIVER_ENTRY, MAC};
use ndis_emu::{
    AdapterId, Config, Emulator, InterruptResources, SystemSleep, sweep_fallible_calls,
};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

/// Which program of the sample runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    /// The driver compiled for the host, linked into this test binary.
    Host,
    /// The release kernel image, loaded by the emulator's PE loader.
    Image,
}

/// The release image of the sample with `features`, built once per test process.
fn image_with(features: &[&str]) -> PathBuf {
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| package.join("../../target"))
        .join("driver-image-tests");
    ndis_emu::image::cross_build(package, &target, "release", "loopback_miniport", features)
}

/// The image users install: default features.
fn image() -> PathBuf {
    image_with(&[])
}

/// DriverEntry of `build`.
fn load(emu: &Emulator, build: Build) -> sys::NTSTATUS {
    match build {
        Build::Host => emu.load_driver(DRIVER_ENTRY),
        Build::Image => {
            let image = emu.load_image(image()).expect("load the image");
            emu.load_driver(image.entry())
        }
    }
}

fn start(emu: &Emulator, build: Build) -> AdapterId {
    assert_eq!(load(emu, build), sys::STATUS_SUCCESS);
    let a = emu
        .add_adapter(InterruptResources::None)
        .expect("initialize");
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    a
}

/// `fn name(build: Build) { .. }` becomes the tests `name::host` and `name::image`; the image
/// variant builds the image here, in the test process, then runs the scenario in a child.
macro_rules! both_builds {
    ($(#[doc = $doc:literal])* fn $name:ident($build:ident: Build) $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            use super::*;

            fn scenario($build: Build) $body

            #[test]
            fn host() {
                scenario(Build::Host)
            }

            #[test]
            fn image() {
                super::image();
                ndis_emu::image::isolated(concat!(module_path!(), "::image"), || {
                    scenario(Build::Image)
                })
            }
        }
    };
}

fn stop(emu: &Emulator, a: AdapterId) {
    emu.return_receives(a);
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
    // In the kernel an infallible allocation bug-checks an exhausted pool; the host build's
    // are counted (the image's are pool calls, which the sweep fails).
    assert_eq!(
        emu.infallible_heap_allocations(),
        (0, 0),
        "infallible driver heap allocations (count, bytes)"
    );
}

fn frame(dst: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend((0..len - 14).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    f
}

both_builds! {
fn every_frame_sent_is_received_back_byte_for_byte(build: Build) {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, build);
    let frames: Vec<Vec<u8>> = (0..40).map(|i| frame(MAC, 60 + i * 37, i as u8)).collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    emu.send(a, &refs);
    let completions = emu.send_completions();
    assert_eq!(completions.len(), 40);
    assert!(
        completions
            .iter()
            .all(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS)
    );
    assert_eq!(emu.received_frames(a), frames);
    // Receives held by the protocol are returned, and the buffers serve again.
    emu.return_receives(a);
    emu.send(a, &[&frames[3]]);
    assert_eq!(emu.received_frames(a), vec![frames[3].clone()]);
    stop(&emu, a);
}
}

both_builds! {
fn with_receives_returned_during_the_indication_two_buffers_carry_every_frame(build: Build) {
    let emu = Emulator::new(Config::default());
    emu.set_keyword("*ReceiveBuffers", "2");
    emu.set_returns_during_indication(true);
    let a = start(&emu, build);
    let frames: Vec<Vec<u8>> = (0..30).map(|i| frame(MAC, 64 + i, i as u8)).collect();
    for f in &frames {
        emu.send(a, &[f]);
    }
    // Each buffer came back before the send returned, so none was ever missing.
    assert_eq!(emu.received_frames(a), frames);
    assert_eq!(emu.held_receives(a), 0);
    stop(&emu, a);
}
}

both_builds! {
fn with_every_buffer_held_by_the_protocol_frames_are_dropped_not_corrupted(build: Build) {
    let emu = Emulator::new(Config::default());
    emu.set_keyword("*ReceiveBuffers", "2");
    let a = start(&emu, build);
    let frames: Vec<Vec<u8>> = (0..3).map(|i| frame(MAC, 64, i)).collect();
    for f in &frames {
        emu.send(a, &[f]);
    }
    // Two buffers: the third frame found none free (the first two are still held).
    assert_eq!(emu.received_frames(a), frames[..2].to_vec());
    let stats = emu.oid_query(a, sys::OID_GEN_STATISTICS, 152);
    assert_eq!(stats.status, sys::NDIS_STATUS_SUCCESS);
    let discards = u64::from_le_bytes(stats.data[8..16].try_into().unwrap());
    assert_eq!(discards, 1, "ifInDiscards counts the dropped frame");
    assert!(emu.keywords_read().contains(&"*ReceiveBuffers".to_string()));
    stop(&emu, a);
}
}

fn u32_of(data: &[u8]) -> u32 {
    u32::from_le_bytes(data[..4].try_into().unwrap())
}

both_builds! {
fn the_framework_answers_the_general_oids(build: Build) {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, build);
    let q = |oid, len| emu.oid_query(a, oid, len);

    let r = q(sys::OID_802_3_PERMANENT_ADDRESS, 6);
    assert_eq!(
        (r.status, r.data.as_slice()),
        (sys::NDIS_STATUS_SUCCESS, &MAC[..])
    );
    assert_eq!(q(sys::OID_802_3_CURRENT_ADDRESS, 6).data, MAC);
    assert_eq!(u32_of(&q(sys::OID_GEN_MAXIMUM_FRAME_SIZE, 4).data), 1500);
    assert_eq!(u32_of(&q(sys::OID_GEN_MAXIMUM_TOTAL_SIZE, 4).data), 1514);
    assert_eq!(
        u32_of(&q(sys::OID_GEN_LINK_SPEED, 4).data),
        100_000_000,
        "10 Gb/s in 100 bps units"
    );
    assert_eq!(
        u32_of(&q(sys::OID_GEN_MEDIA_CONNECT_STATUS, 4).data),
        0,
        "connected"
    );
    let list = q(sys::OID_GEN_SUPPORTED_LIST, 1024);
    assert_eq!(list.status, sys::NDIS_STATUS_SUCCESS);
    let oids: Vec<u32> = list.data.chunks_exact(4).map(u32_of).collect();
    assert!(
        oids.contains(&sys::OID_GEN_STATISTICS) && oids.contains(&sys::OID_802_3_MULTICAST_LIST)
    );
    let d = q(sys::OID_GEN_VENDOR_DESCRIPTION, 64);
    assert_eq!(d.data, b"ndis-rs loopback\0");

    // Statistics count what went through (every multicast frame passes the filter).
    let all = sys::NDIS_PACKET_TYPE_DIRECTED
        | sys::NDIS_PACKET_TYPE_ALL_MULTICAST
        | sys::NDIS_PACKET_TYPE_BROADCAST;
    let r = emu.oid_set(a, sys::OID_GEN_CURRENT_PACKET_FILTER, &all.to_le_bytes());
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    emu.send(
        a,
        &[
            &frame([0xFF; 6], 100, 1),
            &frame([0x01, 0, 0x5E, 0, 0, 1], 80, 2),
        ],
    );
    emu.send_completions();
    let s = q(sys::OID_GEN_STATISTICS, 152);
    let field = |i: usize| u64::from_le_bytes(s.data[8 + 8 * i..16 + 8 * i].try_into().unwrap());
    assert_eq!(&s.data[..4], &[0x80, 1, 152, 0], "header");
    assert_eq!(field(5), 1, "ifHCInBroadcastPkts");
    assert_eq!(field(4), 1, "ifHCInMulticastPkts");
    assert_eq!(field(6), 180, "ifHCOutOctets");
    assert_eq!(field(9), 1, "ifHCOutBroadcastPkts");
    assert_eq!(
        u64::from_le_bytes(q(sys::OID_GEN_XMIT_OK, 8).data.try_into().unwrap()),
        2
    );
    assert_eq!(
        u32_of(&q(sys::OID_GEN_RCV_OK, 4).data),
        2,
        "a 4-byte buffer gets the low half"
    );
    stop(&emu, a);
}
}

both_builds! {
fn short_buffers_and_bad_sets_get_the_statuses_ndis_expects(build: Build) {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, build);
    let r = emu.oid_query(a, sys::OID_802_3_PERMANENT_ADDRESS, 5);
    assert_eq!(
        (r.status, r.bytes_needed, r.data.len()),
        (sys::NDIS_STATUS_INVALID_LENGTH, 6, 0)
    );
    let r = emu.oid_query(a, sys::OID_GEN_STATISTICS, 100);
    assert_eq!(
        (r.status, r.bytes_needed),
        (sys::NDIS_STATUS_BUFFER_TOO_SHORT, 152)
    );
    let r = emu.oid_query(a, sys::OID_GEN_SUPPORTED_LIST, 8);
    assert_eq!(r.status, sys::NDIS_STATUS_INVALID_LENGTH);
    assert!(r.bytes_needed > 8);
    assert_eq!(
        emu.oid_query(a, 0x0F0F_0F0F, 64).status,
        sys::NDIS_STATUS_NOT_SUPPORTED
    );

    // Packet filter: set, read back; a filter bit the adapter does not support is refused.
    let r = emu.oid_set(
        a,
        sys::OID_GEN_CURRENT_PACKET_FILTER,
        &0x0Bu32.to_le_bytes(),
    );
    assert_eq!((r.status, r.bytes_read), (sys::NDIS_STATUS_SUCCESS, 4));
    assert_eq!(
        u32_of(&emu.oid_query(a, sys::OID_GEN_CURRENT_PACKET_FILTER, 4).data),
        0x0B
    );
    let r = emu.oid_set(
        a,
        sys::OID_GEN_CURRENT_PACKET_FILTER,
        &0x1000u32.to_le_bytes(),
    );
    assert_eq!(r.status, sys::NDIS_STATUS_NOT_SUPPORTED);
    let r = emu.oid_set(a, sys::OID_GEN_CURRENT_PACKET_FILTER, &[1, 0]);
    assert_eq!(
        (r.status, r.bytes_needed),
        (sys::NDIS_STATUS_INVALID_LENGTH, 4)
    );

    // Multicast list: whole addresses only, at most 32; read back as set.
    let r = emu.oid_set(
        a,
        sys::OID_802_3_MULTICAST_LIST,
        &[1, 0, 0x5E, 0, 0, 1, 1, 0, 0x5E],
    );
    assert_eq!(r.status, sys::NDIS_STATUS_INVALID_LENGTH);
    let list = [[1u8, 0, 0x5E, 0, 0, 1], [1, 0, 0x5E, 0, 0, 2]].concat();
    assert_eq!(
        emu.oid_set(a, sys::OID_802_3_MULTICAST_LIST, &list).status,
        sys::NDIS_STATUS_SUCCESS
    );
    assert_eq!(
        emu.oid_query(a, sys::OID_802_3_MULTICAST_LIST, 64).data,
        list
    );
    let too_many = vec![1u8; 6 * 33];
    assert_eq!(
        emu.oid_set(a, sys::OID_802_3_MULTICAST_LIST, &too_many)
            .status,
        sys::NDIS_STATUS_MULTICAST_FULL
    );
    stop(&emu, a);
}
}

both_builds! {
fn initialize_survives_every_failing_ndis_call_without_a_leak(build: Build) {
    let report = sweep_fallible_calls(Config::default, |emu| {
        if load(emu, build) != sys::STATUS_SUCCESS {
            return; // DriverEntry failed: Windows never calls unload.
        }
        if let Ok(a) = emu.add_adapter(InterruptResources::None) {
            // The datapath too: a list of frames looped back (a failed allocation fails the
            // list, and nothing is lost).
            if emu.restart(a) == sys::NDIS_STATUS_SUCCESS {
                let frames: Vec<Vec<u8>> = (0..3).map(|i| frame(MAC, 64, i)).collect();
                let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
                emu.send_lists(a, &[&refs]);
                assert_eq!(emu.send_statuses().len(), 1, "the list completed");
                emu.received_frames(a);
                emu.return_receives(a);
                assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
            }
            emu.halt(a, sys::NdisHaltDeviceDisabled);
        }
        emu.unload();
        assert_eq!(emu.infallible_heap_allocations(), (0, 0));
    });
    assert!(
        report.sites.len() >= 4,
        "configuration, DMA, shared memory, pool, MDLs, lists: {:?}",
        report.sites
    );
    // The framework's own heap allocations (adapter state, resource records, the pool's
    // entries) are failed one at a time too: on the host through the accounting allocator, in
    // the image as the pool calls of km-alloc, its global allocator (ExAllocatePool2 on the
    // emulated Windows 11).
    let heap = match build {
        Build::Host => report.heap_sites(),
        Build::Image => report
            .sites
            .iter()
            .filter(|s| **s == "ExAllocatePool2")
            .count(),
    };
    eprintln!(
        "swept {} fallible calls, {heap} of them heap allocations",
        report.sites.len()
    );
    assert!(heap >= 4, "heap sites swept: {heap} of {:?}", report.sites);
}
}

both_builds! {
fn pause_waits_for_the_receives_the_protocols_still_hold(build: Build) {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, build);
    emu.send(a, &[&frame(MAC, 64, 1), &frame(MAC, 64, 2)]);
    emu.send_completions();
    assert_eq!(emu.held_receives(a), 2);
    // Pause while two receives are out: the framework pends it ...
    assert_eq!(emu.pause_holding_receives(a), sys::NDIS_STATUS_PENDING);
    assert_eq!(emu.adapter_state(a), ndis_emu::AdapterState::Pausing);
    // ... and completes it when the last one comes back.
    emu.return_receives(a);
    assert_eq!(emu.adapter_state(a), ndis_emu::AdapterState::Paused);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}
}

both_builds! {
/// Item 8 of the lifecycle issue: the framework applies the packet filter to what a device
/// delivers. TCP/IP's filter at bind (directed, multicast, broadcast) passes frames to the
/// adapter's address, broadcasts and the multicast list; filter 0 passes nothing; promiscuous
/// everything.
fn item8_the_packet_filter_decides_what_is_indicated(build: Build) {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, build);
    let other = frame([0x02, 0, 0, 0, 0, 9], 64, 1);
    let mine = frame(MAC, 64, 2);
    let broadcast = frame([0xFF; 6], 64, 3);
    let listed = frame([0x01, 0, 0x5E, 0, 0, 7], 64, 4);
    let unlisted = frame([0x01, 0, 0x5E, 0, 0, 8], 64, 5);
    let all = [&other[..], &mine, &broadcast, &listed, &unlisted];
    let received = |emu: &Emulator| {
        emu.send(a, &all);
        assert!(
            emu.send_completions()
                .iter()
                .all(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS)
        );
        let got = emu.received_frames(a);
        emu.return_receives(a);
        got
    };
    let r = emu.oid_set(a, sys::OID_802_3_MULTICAST_LIST, &[0x01, 0, 0x5E, 0, 0, 7]);
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    // As bound: directed | multicast | broadcast.
    assert_eq!(
        u32_of(&emu.oid_query(a, sys::OID_GEN_CURRENT_PACKET_FILTER, 4).data),
        sys::NDIS_PACKET_TYPE_DIRECTED
            | sys::NDIS_PACKET_TYPE_MULTICAST
            | sys::NDIS_PACKET_TYPE_BROADCAST
    );
    assert_eq!(
        received(&emu),
        [mine.clone(), broadcast.clone(), listed.clone()]
    );
    let set = |f: u32| {
        let r = emu.oid_set(a, sys::OID_GEN_CURRENT_PACKET_FILTER, &f.to_le_bytes());
        assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    };
    set(0);
    assert!(received(&emu).is_empty(), "filter 0 indicates nothing");
    set(sys::NDIS_PACKET_TYPE_ALL_MULTICAST);
    assert_eq!(received(&emu), [listed.clone(), unlisted.clone()]);
    set(sys::NDIS_PACKET_TYPE_BROADCAST);
    assert_eq!(received(&emu), std::slice::from_ref(&broadcast));
    set(sys::NDIS_PACKET_TYPE_PROMISCUOUS);
    assert_eq!(received(&emu).len(), all.len());
    // Filtered frames are not errors or discards.
    let s = emu.oid_query(a, sys::OID_GEN_STATISTICS, 152);
    let field = |i: usize| u64::from_le_bytes(s.data[8 + 8 * i..16 + 8 * i].try_into().unwrap());
    assert_eq!((field(0), field(1)), (0, 0), "ifInDiscards, ifInErrors");
    emu.return_receives(a);
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}
}

both_builds! {
/// Lifecycle issue, item 1: a driver that declares no power management (this one) is halted
/// before each sleep and initialized again after it, and works as before every time.
fn without_power_management_each_sleep_halts_and_wake_up_initializes_again(build: Build) {
    let emu = Emulator::new(Config::default());
    let a = start(&emu, build);
    let round = |seed: u8| {
        let frames: Vec<Vec<u8>> = (0..10)
            .map(|i| frame(MAC, 64 + i, seed + i as u8))
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        emu.send(a, &refs);
        assert!(
            emu.send_completions()
                .iter()
                .all(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS)
        );
        assert_eq!(emu.received_frames(a), frames);
        emu.return_receives(a);
    };
    for (i, how) in [SystemSleep::SLEEP, SystemSleep::HIBERNATE]
        .into_iter()
        .cycle()
        .take(20)
        .enumerate()
    {
        round(i as u8 * 10);
        emu.sleep(a, how);
        assert_eq!(emu.adapter_state(a), ndis_emu::AdapterState::Halted);
        emu.wake(a).expect("initialized again");
        assert_eq!(emu.adapter_state(a), ndis_emu::AdapterState::Running);
        round(i as u8 * 10 + 5);
    }
    stop(&emu, a);
}
}

/// Issue 14, item 5: a panic in the kernel image ends as km-rt's bug check 0x52504E43 ("RPNC")
/// with the file and line of the panic, reported from the child process to this test as the
/// structured bug check. The image is the release image built with the test-only feature
/// `test-panic` (the shipped image never reads `TestPanic`); the host build has no kernel panic
/// handler (a host panic is a Rust panic), so this scenario exists for the image only.
#[test]
fn a_panic_in_the_image_is_bug_check_rpnc_with_its_file_and_line() {
    let image = image_with(&["test-panic"]);
    let b = ndis_emu::expect_bugcheck(|| {
        ndis_emu::image::isolated(
            concat!(
                module_path!(),
                "::a_panic_in_the_image_is_bug_check_rpnc_with_its_file_and_line"
            ),
            || {
                let emu = Emulator::new(Config::default());
                emu.set_keyword("TestPanic", "1");
                let loaded = emu.load_image(&image).expect("load the image");
                assert_eq!(emu.load_driver(loaded.entry()), sys::STATUS_SUCCESS);
                let result = emu.add_adapter(InterruptResources::None);
                panic!("initialize returned ({result:?}) instead of panicking");
            },
        )
    });
    let source = include_str!("../src/lib.rs");
    let line = source
        .lines()
        .position(|l| l.contains("panic!(\"TestPanic is 1"))
        .expect("the panic in src/lib.rs")
        + 1;
    let file = "samples/loopback/src/lib.rs";
    assert_eq!(b.code, ndis_emu::RUST_PANIC_BUGCHECK, "{b}");
    assert_eq!(
        b.params[1],
        file.len(),
        "parameter 2: the file name's length"
    );
    assert_eq!(b.params[2], line, "parameter 3: the line");
    assert_eq!(b.params[3] >> 32 & 1, 0, "not an allocation failure");
    assert!(
        b.message.contains(&format!("{file}:{line}:")),
        "the message names file and line: {b}"
    );
}
