//! Receive side scaling on the emulator: the capabilities vionet reports, TCP/IP's RSS
//! configuration at bind, each case of `OID_GEN_RECEIVE_SCALE_PARAMETERS` and
//! `OID_GEN_RECEIVE_HASH`, and the emulator's independent checker (hash value, type and
//! function on every list, the processor the table names, TCP flows in order) over a 4-queue,
//! 4-processor adapter with many flows, under MSI-X and the line.
#![cfg(not(windows))]

#[macro_use]
#[path = "support/nic.rs"]
mod nic;

use ndis_emu::rss::{RssReport, receive_scale_parameters};
use ndis_emu::{Emulator, InterruptResources};
use ndis_sys as sys;
use nic::{Build, MAC, Nic, config, start_with};

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

const TYPES: u32 =
    sys::NDIS_HASH_IPV4 | sys::NDIS_HASH_TCP_IPV4 | sys::NDIS_HASH_IPV6 | sys::NDIS_HASH_TCP_IPV6;

fn start(build: Build, resources: InterruptResources) -> Nic {
    start_with(build, Emulator::new(config(4)), 4, resources, |_| {}).expect("initialize")
}

/// A TCP segment of flow `flow` (its ports and addresses), sequence `seq`, over IPv4 or IPv6.
fn segment(flow: u16, seq: u32, v6: bool) -> Vec<u8> {
    let payload = [flow as u8; 16];
    let b = etherparse::PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 9], MAC);
    let b = if v6 {
        let mut src = [0u8; 16];
        src[0] = 0xfd;
        src[14..].copy_from_slice(&flow.to_be_bytes());
        let mut dst = [0u8; 16];
        dst[0] = 0xfd;
        dst[15] = 1;
        b.ipv6(src, dst, 64)
    } else {
        b.ipv4([10, 1, (flow >> 8) as u8, flow as u8], [10, 0, 0, 1], 64)
    };
    let b = b.tcp(1024 + flow, 80, seq, 4096).ack(1);
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    out
}

fn report(nic: &Nic) -> RssReport {
    nic.emu.rss_report(nic.adapter).0
}

fn set(nic: &Nic, data: &[u8]) -> sys::NDIS_STATUS {
    nic.emu
        .oid_set(nic.adapter, sys::OID_GEN_RECEIVE_SCALE_PARAMETERS, data)
        .status
}

fn query(nic: &Nic) -> Vec<u8> {
    let r = nic
        .emu
        .oid_query(nic.adapter, sys::OID_GEN_RECEIVE_SCALE_PARAMETERS, 1024);
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    r.data
}

/// Sets `table` and `key` with TCP/IP's hash types; the set must succeed.
fn set_table(nic: &Nic, table: &[u8], key: &[u8]) {
    assert_eq!(
        set(nic, &receive_scale_parameters(0, TYPES, table, key)),
        sys::NDIS_STATUS_SUCCESS
    );
}

/// Turns RSS off (`NDIS_RSS_PARAM_FLAG_DISABLE_RSS`); the set must succeed.
fn disable(nic: &Nic) {
    let off = receive_scale_parameters(sys::NDIS_RSS_PARAM_FLAG_DISABLE_RSS, 0, &[], &[]);
    assert_eq!(set(nic, &off), sys::NDIS_STATUS_SUCCESS);
}

/// Parameters that change only the table: base processor, hash information and key
/// "unchanged" (their fields hold garbage NDIS says to ignore).
fn table_only(table: &[u8]) -> Vec<u8> {
    let unchanged = sys::NDIS_RSS_PARAM_FLAG_BASE_CPU_UNCHANGED
        | sys::NDIS_RSS_PARAM_FLAG_HASH_INFO_UNCHANGED
        | sys::NDIS_RSS_PARAM_FLAG_HASH_KEY_UNCHANGED;
    let mut data = receive_scale_parameters(unchanged, TYPES, table, &[0; 40]);
    data[8..12].fill(0xEE); // ignored: "unchanged"
    data
}

/// `good` with `edit` applied: one malformed case of the parameters.
fn patched(good: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = good.to_vec();
    edit(&mut b);
    b
}

/// `flows` TCP flows, `per_flow` segments each, interleaved, each flow arriving on pair
/// `flow % pairs` (the device's own steering, not RSS; pairs the driver runs: 4 under MSI-X, 1
/// under the line), in bursts with DPCs between them.
fn traffic(nic: &Nic, flows: u16, per_flow: u32) -> usize {
    let pairs = nic.net(|n, _| n.active_queue_pairs()).max(1);
    bursts(nic, flows, per_flow, |round| {
        nic.net(|n, bus| {
            for flow in 0..flows {
                let f = segment(flow, 1000 + round * 16, flow % 3 == 0);
                n.inject_frame(bus, flow % pairs, &f);
            }
        })
    })
}

/// `per_flow` rounds of one segment per flow (`inject` hands round r's to the device), with
/// the DPCs run and the receives returned after every second round; every frame must come up
/// once. Returns how many were sent.
fn bursts(nic: &Nic, flows: u16, per_flow: u32, mut inject: impl FnMut(u32)) -> usize {
    for round in 0..per_flow {
        inject(round);
        if round % 2 == 1 {
            nic.emu.run_dpcs();
            nic.emu.return_receives(nic.adapter);
        }
    }
    nic.emu.run_dpcs();
    let got = nic.emu.received_frames(nic.adapter).len();
    nic.emu.return_receives(nic.adapter);
    let sent = usize::from(flows) * per_flow as usize;
    assert_eq!(got, sent, "every frame indicated once");
    sent
}

fn assert_clean(r: &RssReport, sent: usize) {
    assert_eq!(r.checked as usize, sent, "{r:?}");
    assert_eq!(r.hashed as usize, sent, "{r:?}");
    assert_eq!(
        (r.wrong_hash, r.wrong_cpu, r.out_of_order),
        (0, 0, 0),
        "{:?}",
        r.problems
    );
}

fn many_flows(build: Build, resources: InterruptResources, queues: u32) {
    let nic = start(build, resources);
    let caps = nic.emu.rss_capabilities(nic.adapter).expect("RSS reported");
    assert_eq!(caps.revision, 3, "NDIS 6.86: revision 3");
    assert_eq!((caps.receive_queues, caps.table_entries), (queues, 128));
    assert_eq!(
        caps.flags & sys::NDIS_HASH_FUNCTION_MASK,
        sys::NdisHashFunctionToeplitz
    );
    let config = nic
        .emu
        .rss_report(nic.adapter)
        .1
        .expect("TCP/IP set RSS at bind");
    assert_eq!((config.types, config.table.len()), (TYPES, 128));
    if queues < 4 {
        // One queue (the line): a table over all 4 processors, each reached by requeueing.
        let table: Vec<u8> = (0..128).map(|i| (i % 4) as u8).collect();
        let data = receive_scale_parameters(0, TYPES, &table, &config.key);
        assert_eq!(set(&nic, &data), sys::NDIS_STATUS_SUCCESS);
    }
    let sent = traffic(&nic, 96, 8);
    let r = report(&nic);
    assert_clean(&r, sent);
    assert_eq!(r.per_cpu.len(), 4);
    assert!(r.per_cpu.iter().all(|&n| n > 0), "{:?}", r.per_cpu);
    nic.stop();
}

both_builds! {
fn four_queues_four_processors_many_flows_under_msix(build: Build) {
    many_flows(build, InterruptResources::msix(10), 4);
}
}

both_builds! {
fn four_queues_four_processors_many_flows_under_the_line(build: Build) {
    many_flows(build, InterruptResources::line(), 1);
}
}

both_builds! {
/// A DPC NDIS holds to a few lists runs again for the rest (`MoreNblsPending`) and drains its
/// ring then, though no interrupt asked for that run; the DPCs steering queues in between take
/// only what was steered to them.
fn a_dpc_budget_below_the_burst_brings_every_steered_frame_up_in_order(build: Build) {
    let emu = Emulator::new(ndis_emu::Config {
        max_nbls_per_dpc: 8,
        ..config(4)
    });
    let nic = start_with(build, emu, 4, InterruptResources::msix(10), |_| {}).expect("initialize");
    let sent = traffic(&nic, 96, 8);
    let r = report(&nic);
    assert_clean(&r, sent);
    assert!(r.per_cpu.iter().all(|&n| n > 0), "{:?}", r.per_cpu);
    nic.stop();
}
}

both_builds! {
fn every_invalid_field_is_refused_and_the_previous_set_kept(build: Build) {
    let nic = start(build, InterruptResources::msix(10));
    let before = query(&nic);
    let key = [0x6du8; 40];
    let table: Vec<u8> = (0..128).map(|i| (i % 4) as u8).collect();
    let good = receive_scale_parameters(0, TYPES, &table, &key);
    let cases: Vec<(&str, Vec<u8>, sys::NDIS_STATUS)> = vec![
        (
            "object type",
            patched(&good, |b| b[0] = 0x80),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "revision",
            patched(&good, |b| b[1] = 9),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "header size",
            patched(&good, |b| b[2] = 20),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "short buffer",
            good[..20].to_vec(),
            sys::NDIS_STATUS_INVALID_LENGTH,
        ),
        (
            "unknown flag",
            receive_scale_parameters(0x0100, TYPES, &table, &key),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "hash function",
            patched(&good, |b| b[8] = 2),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "UDP hash type",
            receive_scale_parameters(0, TYPES | sys::NDIS_HASH_UDP_IPV4, &table, &key),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "IPv6_EX hash type",
            receive_scale_parameters(0, TYPES | sys::NDIS_HASH_IPV6_EX, &table, &key),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "table of 96",
            receive_scale_parameters(0, TYPES, &table[..96], &key),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "table of 256",
            receive_scale_parameters(0, TYPES, &[0u8; 256], &key),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "table outside the buffer",
            patched(&good, |b| b[16..20].copy_from_slice(&4000u32.to_le_bytes())),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "key of 39",
            receive_scale_parameters(0, TYPES, &table, &key[..39]),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "key outside the buffer",
            patched(&good, |b| {
                let at = b.len() as u32 - 10;
                b[24..28].copy_from_slice(&at.to_le_bytes());
            }),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "processor 7 of 4",
            receive_scale_parameters(0, TYPES, &[7u8; 128], &key),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "base processor 9",
            patched(&good, |b| b[6] = 9),
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            "processor outside the masks",
            {
                // One mask naming processors 0 and 1 only, appended after the key.
                let mut b = good.clone();
                let at = b.len() as u32;
                b.extend_from_slice(&3u64.to_le_bytes());
                b.extend_from_slice(&[0u8; 8]);
                b[28..32].copy_from_slice(&at.to_le_bytes());
                b[32..36].copy_from_slice(&1u32.to_le_bytes());
                b[36..40].copy_from_slice(&16u32.to_le_bytes());
                b
            },
            sys::NDIS_STATUS_INVALID_PARAMETER,
        ),
    ];
    for (what, data, status) in cases {
        assert_eq!(set(&nic, &data), status, "{what}");
        assert_eq!(query(&nic), before, "{what}: the previous parameters stay");
    }
    // Traffic still follows the configuration TCP/IP set.
    let sent = traffic(&nic, 16, 4);
    assert_clean(&report(&nic), sent);
    nic.stop();
}
}

both_builds! {
fn valid_disable_re_enable_and_table_only_change_under_msix_and_the_line(build: Build) {
    for resources in [InterruptResources::msix(10), InterruptResources::line()] {
        let nic = start(build, resources);
        let key: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let table: Vec<u8> = (0..64).map(|i| (3 - i % 4) as u8).collect();
        set_table(&nic, &table, &key);
        let q = query(&nic);
        assert_eq!((q[0], q[1]), (sys::NDIS_OBJECT_TYPE_RSS_PARAMETERS, 3));
        assert_eq!(u16::from_le_bytes([q[12], q[13]]), 64 * 4, "64 entries");
        assert_eq!(&q[44 + 256..44 + 256 + 40], &key[..]);
        let sent = traffic(&nic, 32, 4);
        assert_clean(&report(&nic), sent);

        // Disabled: no hash in the query; the checker has nothing to hold the driver to.
        disable(&nic);
        let q = query(&nic);
        assert_eq!(u32::from_le_bytes(q[8..12].try_into().unwrap()), 0);
        assert!(nic.emu.rss_report(nic.adapter).1.is_none());
        traffic(&nic, 8, 2);

        // Enabled again, then only the table changes (everything else "unchanged").
        set_table(&nic, &table, &key);
        let moved: Vec<u8> = (0..128).map(|i| ((i / 2) % 4) as u8).collect();
        assert_eq!(set(&nic, &table_only(&moved)), sys::NDIS_STATUS_SUCCESS);
        let q = query(&nic);
        assert_eq!(&q[44 + 512..44 + 512 + 40], &key[..], "key kept");
        let sent = traffic(&nic, 32, 4);
        assert_clean(&report(&nic), sent);
        nic.stop();
    }
}
}

both_builds! {
fn receive_hash_is_refused_while_rss_is_on_and_hashes_without_steering_otherwise(build: Build) {
    let nic = start(build, InterruptResources::msix(10));
    let mut hash = vec![0u8; 20 + 40];
    hash[0] = sys::NDIS_OBJECT_TYPE_DEFAULT;
    hash[1] = 1;
    hash[2] = 20;
    hash[4..8].copy_from_slice(&sys::NDIS_RECEIVE_HASH_FLAG_ENABLE_HASH.to_le_bytes());
    hash[8..12].copy_from_slice(&(sys::NdisHashFunctionToeplitz | TYPES).to_le_bytes());
    hash[12] = 40;
    hash[16] = 20;
    hash[20..].fill(0x42);
    let r = nic
        .emu
        .oid_set(nic.adapter, sys::OID_GEN_RECEIVE_HASH, &hash);
    assert_eq!(r.status, sys::NDIS_STATUS_NOT_SUPPORTED);
    disable(&nic);
    let r = nic
        .emu
        .oid_set(nic.adapter, sys::OID_GEN_RECEIVE_HASH, &hash);
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    let q = nic
        .emu
        .oid_query(nic.adapter, sys::OID_GEN_RECEIVE_HASH, 100);
    assert_eq!(q.status, sys::NDIS_STATUS_SUCCESS);
    assert_eq!(q.data, hash);
    traffic(&nic, 8, 2);
    nic.stop();
}
}

both_builds! {
fn rss_off_by_keyword_reports_nothing_and_refuses_the_oid(build: Build) {
    let emu = Emulator::new(config(4));
    emu.set_keyword("*RSS", "0");
    let nic =
        start_with(build, emu, 4, InterruptResources::msix(10), |_| {}).expect("initialize");
    assert!(nic.emu.rss_capabilities(nic.adapter).is_none());
    let key = [1u8; 40];
    let data = receive_scale_parameters(0, TYPES, &[0; 128], &key);
    assert_eq!(set(&nic, &data), sys::NDIS_STATUS_NOT_SUPPORTED);
    let list = nic
        .emu
        .oid_query(nic.adapter, sys::OID_GEN_SUPPORTED_LIST, 1024)
        .data;
    let oids: Vec<u32> = list
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(!oids.contains(&sys::OID_GEN_RECEIVE_SCALE_PARAMETERS));
    traffic(&nic, 8, 2);
    nic.stop();
}
}

// ---- Device RSS and hash report (VIRTIO_NET_F_RSS, VIRTIO_NET_F_HASH_REPORT) ----

use ndis_emu::devices::virtio_net::{DEFAULT_FEATURES, regs::feature};

/// An adapter on a device offering `extra` features (RSS, HASH_REPORT) on top of the defaults.
fn start_offering(
    build: Build,
    extra: u64,
    resources: InterruptResources,
    tweak: impl FnOnce(&mut ndis_emu::devices::virtio_net::VirtioNetConfig),
) -> Nic {
    start_with(build, Emulator::new(config(4)), 4, resources, |c| {
        c.features = DEFAULT_FEATURES | extra;
        tweak(c);
    })
    .expect("initialize")
}

/// An adapter on a device with RSS and hash reporting, 4 queues under MSI-X.
fn start_device_rss(build: Build) -> Nic {
    start_offering(
        build,
        feature::RSS | feature::HASH_REPORT,
        InterruptResources::msix(10),
        |_| {},
    )
}

/// As [`traffic`], but the frames come "from the wire": the device picks each one's queue.
/// Sequence numbers keep growing from call to call, so that each flow stays in order for the
/// checker across calls.
fn wire_traffic(nic: &Nic, flows: u16, per_flow: u32) -> usize {
    static NEXT_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(100_000);
    let base = NEXT_SEQ.fetch_add(per_flow * 16, std::sync::atomic::Ordering::Relaxed);
    bursts(nic, flows, per_flow, |round| {
        let frames: Vec<Vec<u8>> = (0..flows)
            .map(|flow| segment(flow, base + round * 16, flow % 3 == 0))
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        nic.net(|n, bus| n.inject_from_wire(bus, &refs));
    })
}

/// The last command of class MQ the device accepted, and its command number.
fn last_mq(nic: &Nic) -> (u8, Vec<u8>) {
    nic.net(|n, _| {
        let c = n
            .control_log()
            .iter()
            .rev()
            .find(|c| c.class == 4 && c.ack == 0)
            .expect("an MQ command");
        (c.command, c.data.clone())
    })
}

/// What the device must hold for NDIS's configuration in force: each entry's processor as
/// the queue whose DPC runs there (processor p's queue is p with 4 queues on 4 processors).
fn assert_device_holds_ndis_table(nic: &Nic) {
    let ndis = nic.emu.rss_report(nic.adapter).1.expect("RSS on");
    let device = nic
        .net(|n, _| n.rss_config().cloned())
        .expect("RSS_CONFIG in force");
    let expected: Vec<u16> = ndis.table.iter().map(|&p| u16::from(p)).collect();
    assert_eq!(device.table, expected);
    assert_eq!(device.key, ndis.key.to_vec());
    assert_eq!(device.hash_types, 0x1b, "IPv4, TCPv4, IPv6, TCPv6");
    assert_eq!(device.max_tx_vq, 4);
}

both_builds! {
fn device_rss_four_queues_four_processors_many_flows_under_msix(build: Build) {
    let nic = start_device_rss(build);
    let negotiated = nic.net(|n, _| n.negotiated_features());
    assert_ne!(negotiated & feature::RSS, 0);
    assert_ne!(negotiated & feature::HASH_REPORT, 0);
    // TCP/IP's set at bind reached the device as RSS_CONFIG.
    assert_eq!(last_mq(&nic).0, 1);
    assert_device_holds_ndis_table(&nic);
    let sent = wire_traffic(&nic, 96, 8);
    let r = report(&nic);
    assert_clean(&r, sent);
    assert!(r.per_cpu.iter().all(|&n| n > 0), "{:?}", r.per_cpu);
    let counters = nic.net(|n, _| n.counters().clone());
    assert_eq!(counters.rx_rss_steered as usize, sent, "the device steered");
    assert_eq!(counters.rx_hash_reported as usize, sent);
    // Each queue got the flows its entries name: frames landed on all four.
    assert!(counters.rx_delivered.iter().all(|&n| n > 0));
    // The device's hash is what the driver indicates: a device lying about it is believed
    // (so the driver did not compute it), and the checker sees every hash wrong.
    nic.net(|n, _| n.forge_hash_values(0x0100_0000));
    let sent = wire_traffic(&nic, 16, 2);
    let r = report(&nic);
    assert_eq!(r.wrong_hash as usize, sent, "{:?}", r.problems);
    nic.net(|n, _| n.forge_hash_values(0));
    nic.stop();
}
}

both_builds! {
fn device_rss_without_hash_report_steers_and_the_driver_hashes(build: Build) {
    let nic = start_offering(build, feature::RSS, InterruptResources::msix(10), |_| {});
    assert_eq!(last_mq(&nic).0, 1);
    assert_device_holds_ndis_table(&nic);
    let sent = wire_traffic(&nic, 64, 4);
    assert_clean(&report(&nic), sent);
    assert_eq!(nic.net(|n, _| n.counters().rx_hash_reported), 0);
    nic.stop();
}
}

both_builds! {
fn hash_report_without_rss_takes_the_hash_from_the_device(build: Build) {
    for resources in [InterruptResources::msix(10), InterruptResources::line()] {
        let nic = start_offering(build, feature::HASH_REPORT, resources, |_| {});
        // HASH_CONFIG: NDIS's types and key, no steering.
        let (command, data) = last_mq(&nic);
        assert_eq!(command, 2);
        let key = nic.emu.rss_report(nic.adapter).1.unwrap().key;
        assert_eq!(&data[..4], &0x1bu32.to_le_bytes());
        assert_eq!(&data[13..], &key[..]);
        let sent = traffic(&nic, 64, 4);
        assert_clean(&report(&nic), sent);
        assert_eq!(nic.net(|n, _| n.counters().rx_hash_reported) as usize, sent);
        nic.net(|n, _| n.forge_hash_values(1));
        let sent = traffic(&nic, 16, 2);
        assert_eq!(
            report(&nic).wrong_hash as usize,
            sent,
            "the device's hash is used"
        );
        nic.stop();
    }
}
}

both_builds! {
fn table_only_and_key_changes_reach_the_device_and_disable_goes_back_to_automatic(build: Build) {
    let nic = start_device_rss(build);
    let key: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    let table: Vec<u8> = (0..64).map(|i| (3 - i % 4) as u8).collect();
    set_table(&nic, &table, &key);
    assert_device_holds_ndis_table(&nic);
    assert_eq!(nic.net(|n, _| n.rss_config().unwrap().table.len()), 64);
    let moved: Vec<u8> = (0..128).map(|i| ((i / 2) % 4) as u8).collect();
    let commands = nic.net(|n, _| n.control_log().len());
    assert_eq!(set(&nic, &table_only(&moved)), sys::NDIS_STATUS_SUCCESS);
    assert_eq!(nic.net(|n, _| n.control_log().len()), commands + 1);
    assert_device_holds_ndis_table(&nic);
    assert_eq!(nic.net(|n, _| n.rss_config().unwrap().key.clone()), key);
    let sent = wire_traffic(&nic, 48, 4);
    assert_clean(&report(&nic), sent);
    // Disabled: VQ_PAIRS_SET, automatic steering, no hashes.
    disable(&nic);
    assert_eq!(last_mq(&nic).0, 0);
    assert!(nic.net(|n, _| n.rss_config().is_none()));
    wire_traffic(&nic, 16, 2);
    nic.stop();
}
}

both_builds! {
fn a_configuration_the_device_refuses_or_cannot_hold_leaves_software_rss_correct(build: Build) {
    // The device refuses: it keeps the old table, the driver steers the new one in software.
    let nic = start_device_rss(build);
    let before = nic.net(|n, _| n.rss_config().cloned());
    nic.net(|n, _| n.refuse_control_commands(true));
    let key = [0x3cu8; 40];
    let table: Vec<u8> = (0..128).map(|i| (i * 7 % 4) as u8).collect();
    assert_eq!(
        set(&nic, &receive_scale_parameters(0, TYPES, &table, &key)),
        sys::NDIS_STATUS_SUCCESS,
        "NDIS's set stands"
    );
    assert_eq!(nic.net(|n, _| n.rss_config().cloned()), before);
    let sent = wire_traffic(&nic, 64, 4);
    assert_clean(&report(&nic), sent);
    nic.net(|n, _| n.refuse_control_commands(false));
    nic.stop();

    // A device whose table is too short for NDIS's, and one without TCP/IPv6 hashing: no
    // RSS_CONFIG it would have to refuse; hashes without steering where it can, else software.
    for (tweak, expect) in [
        (
            (|c: &mut ndis_emu::devices::virtio_net::VirtioNetConfig| {
                c.rss_max_indirection_table_length = 64
            }) as fn(&mut _),
            Some(2u8),
        ),
        (
            |c: &mut ndis_emu::devices::virtio_net::VirtioNetConfig| c.supported_hash_types = 0x0f,
            None,
        ),
    ] {
        let nic = start_offering(
            build,
            feature::RSS | feature::HASH_REPORT,
            InterruptResources::msix(10),
            tweak,
        );
        let last = nic.net(|n, _| {
            n.control_log()
                .iter()
                .rev()
                .find(|c| c.class == 4)
                .map(|c| c.command)
        });
        match expect {
            Some(c) => assert_eq!(last, Some(c)),
            None => assert_eq!(last, Some(0), "automatic steering (VQ_PAIRS_SET)"),
        }
        let refused = nic.net(|n, _| n.rss_refusals().to_vec());
        assert!(refused.is_empty(), "{refused:?}");
        let sent = wire_traffic(&nic, 64, 4);
        assert_clean(&report(&nic), sent);
        nic.stop();
    }
}
}

both_builds! {
fn a_reset_and_a_sleep_replay_the_rss_config(build: Build) {
    use ndis_emu::SystemSleep;
    use std::time::Duration;
    let nic = start_device_rss(build);
    let key = [0x21u8; 40];
    let table: Vec<u8> = (0..128).map(|i| ((i / 3) % 4) as u8).collect();
    set_table(&nic, &table, &key);
    let programmed = nic.net(|n, _| n.rss_config().cloned()).unwrap();

    // The device asks for a reset; check-for-hang resets it; the configuration comes back.
    nic.net(|n, bus| n.set_needs_reset(bus, true));
    nic.emu.run_dpcs();
    nic.emu.advance_time(Duration::from_secs(2));
    assert_eq!(
        nic.emu.resets(nic.adapter),
        vec![(sys::NDIS_STATUS_SUCCESS, false)]
    );
    assert_eq!(
        nic.net(|n, _| n.rss_config().cloned()),
        Some(programmed.clone())
    );
    let sent = wire_traffic(&nic, 48, 4);
    let r = report(&nic);
    assert_clean(&r, sent);

    // Sleep resets the device (it forgets); waking replays.
    nic.emu.sleep(nic.adapter, SystemSleep::SLEEP);
    assert!(nic.net(|n, _| n.rss_config().is_none()), "reset in D3");
    nic.emu.wake(nic.adapter).expect("awake");
    assert_eq!(nic.net(|n, _| n.rss_config().cloned()), Some(programmed));
    let sent = wire_traffic(&nic, 48, 4);
    assert_clean(&report(&nic), sent);
    nic.stop();
}
}

both_builds! {
/// With hash report negotiated the header is 20 bytes in both directions: copied sends, mapped
/// (zero-copy) sends and frames over several MDLs all reach the device byte-exact.
fn sends_carry_the_longer_header_when_hash_report_is_negotiated(build: Build) {
    for resources in [InterruptResources::msix(10), InterruptResources::line()] {
        let nic = start_offering(build, feature::HASH_REPORT, resources, |_| {});
        assert_ne!(
            nic.net(|n, _| n.negotiated_features()) & feature::HASH_REPORT,
            0
        );
        // 64-byte (copied) and 1514-byte (mapped above the copy threshold) frames.
        let frames: Vec<Vec<u8>> = (0..20)
            .map(|i| nic::frame(i, if i % 2 == 0 { 64 } else { 1514 }))
            .collect();
        nic::check_tx(&nic, &frames);
        nic::check_tx_in_pieces(&nic, &frames, 100);
        nic.stop();
    }
}
}
