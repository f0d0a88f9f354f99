//! The host side of the datapath benchmark (see the crate documentation in `datapath.rs`).

use std::cell::Cell;
use std::hint::black_box;
use std::process::Command;
use std::ptr::NonNull;
use std::time::Instant;

use ndis_emu::devices::virtio_net::regs;
use ndis_emu::devices::virtio_net::{Counters, RxChecksum, VirtioNet, VirtioNetConfig};
use ndis_emu::{AdapterId, Config, DeviceId, Emulator, InterruptResources};
use ndis_sys as sys;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// Frame length on the wire (without FCS).
const FRAME_LEN: usize = 64;
/// Frames per send call (TX) and per burst arriving at the device (RX).
const BATCH: usize = 64;
/// Bursts per measured run.
const ROUNDS: usize = 400;
/// Packets per measured run.
const PACKETS: usize = BATCH * ROUNDS;
/// Runs per figure; the best counts.
const RUNS: usize = 3;
/// Queue size of the model and of both drivers.
const QUEUE: usize = 256;
/// Bytes per DMA buffer of the baseline (header + frame fit with room to spare).
const BUF: usize = 2048;
/// virtio_net_hdr with VERSION_1 (num_buffers included).
const HDR: usize = regs::NET_HDR_LEN;
/// Rounds run under callgrind (instructions are repeatable: fewer suffice).
const CALLGRIND_ROUNDS: usize = 100;

fn frame(n: usize) -> Vec<u8> {
    frame_of(n, FRAME_LEN)
}

/// Frame `n` of `len` bytes (an IPv4 ethertype, a pattern after the header).
fn frame_of(n: usize, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, n as u8]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    for (i, b) in f.iter_mut().enumerate().skip(14) {
        *b = (i as u8).wrapping_mul(7).wrapping_add(n as u8);
    }
    f
}

fn one_cpu() -> Config {
    cpus(1)
}

fn cpus(n: usize) -> Config {
    Config {
        cpus: n,
        // Measured as the driver runs in a kernel: no heap accounting in the allocator.
        unaccounted_heap: true,
        ..Config::default()
    }
}

/// A 64 KiB-class large send: one TCP/IPv4 segment of [`LSO_PAYLOAD`] bytes with correct
/// checksums, as TCP/IP hands it down before segmentation.
fn large_send() -> Vec<u8> {
    use etherparse::PacketBuilder;
    let tcp = PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 1], [0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(50000, 443, 1, 65535)
        .ack(7);
    let data: Vec<u8> = (0..LSO_PAYLOAD).map(|i| (i % 251) as u8).collect();
    let mut out = Vec::new();
    tcp.write(&mut out, &data).unwrap();
    out
}

/// Frame `n` of [`BATCH`] TCP/IPv4 flows (one flow each, 64 bytes on the wire), as the RSS rows
/// receive them: Toeplitz-hashed, and steered by the indirection table.
fn flow_frame(n: usize) -> Vec<u8> {
    use etherparse::PacketBuilder;
    let tcp = PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 1], [0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        .ipv4([10, 0, 1, n as u8], [10, 0, 0, 2], 64)
        .tcp(40000 + n as u16, 443, 1, 65535)
        .ack(7);
    let mut out = Vec::new();
    tcp.write(&mut out, &[0x5A; 10]).unwrap();
    out
}

/// Payload of the large send: vionet's largest (NetKVM's 62 KiB, `LSO_MAX_PAYLOAD`).
const LSO_PAYLOAD: usize = 0xF800;
/// MSS of the large send.
const LSO_MSS: u32 = 1448;
/// Large sends per round (each its own call, as TCP/IP sends them one list at a time).
const LSO_BATCH: usize = 4;

fn interrupts(c: &Counters) -> u64 {
    c.message_interrupts.iter().sum::<u64>() + c.line_interrupts
}

fn counters(emu: &Emulator, dev: DeviceId) -> Counters {
    emu.with_device::<VirtioNet, _>(dev, |n, _| n.counters().clone())
}

/// What one measured run saw.
#[derive(Clone, Copy, Default)]
struct Run {
    secs: f64,
    packets: usize,
    interrupts: u64,
    notifications: u64,
}

impl Run {
    /// A run of `packets` in `secs`, with the device counters read before and after it.
    fn between(secs: f64, packets: usize, before: &Counters, after: &Counters) -> Run {
        let doorbells = |c: &Counters| c.notifications.iter().sum::<u64>();
        Run {
            secs,
            packets,
            interrupts: interrupts(after) - interrupts(before),
            notifications: doorbells(after) - doorbells(before),
        }
    }
}

// ================================ ours: vionet on ndis-emu ================================

struct Ours {
    emu: Emulator,
    adapter: AdapterId,
    dev: DeviceId,
    /// The device steers and reports hashes (see [`Ours::start_with`]).
    device_rss: bool,
}

impl Ours {
    fn start() -> Ours {
        Ours::start_with(1, false)
    }

    /// `pairs` queue pairs on as many emulated processors (MSI-X, 2N+2 messages); with
    /// `device_rss` the device offers RSS and hash reports (`VIRTIO_NET_F_RSS`,
    /// `VIRTIO_NET_F_HASH_REPORT`), which vionet then leaves to it.
    fn start_with(pairs: u16, device_rss: bool) -> Ours {
        let emu = Emulator::new(cpus(pairs as usize));
        assert_eq!(emu.load_driver(vionet::DRIVER_ENTRY), sys::STATUS_SUCCESS);
        let mut config = VirtioNetConfig::new(pairs);
        if device_rss {
            config.features |= regs::feature::RSS | regs::feature::HASH_REPORT;
        }
        let adapter = emu
            .add_adapter_with(
                InterruptResources::msix(2 * u32::from(pairs) + 2),
                Box::new(VirtioNet::new(config)),
            )
            .expect("vionet initializes");
        let dev = emu.device_of(adapter);
        assert_eq!(emu.restart(adapter), sys::NDIS_STATUS_SUCCESS);
        // vionet negotiates GUEST_CSUM and the baseline does not: without this the model would
        // validate checksums for ours only. A real device does that in hardware, at no cost to
        // the guest; here the same device work is charged to both.
        emu.with_device::<VirtioNet, _>(dev, |n, _| n.set_rx_checksum(RxChecksum::Off));
        Ours {
            emu,
            adapter,
            dev,
            device_rss,
        }
    }

    fn stop(self) {
        self.emu.return_receives(self.adapter);
        assert_eq!(self.emu.pause(self.adapter), sys::NDIS_STATUS_SUCCESS);
        self.emu.halt(self.adapter, sys::NdisHaltDeviceDisabled);
        self.emu.unload();
    }

    /// One TX batch; returns the frames the device saw.
    fn tx_round(&self, refs: &[&[u8]]) -> Vec<Vec<u8>> {
        self.emu.send(self.adapter, refs);
        let done = self.emu.send_statuses();
        assert_eq!(done.len(), refs.len(), "send completions");
        assert!(done.iter().all(|s| *s == sys::NDIS_STATUS_SUCCESS));
        self.emu
            .with_device::<VirtioNet, _>(self.dev, |n, _| n.take_transmitted(0))
    }

    /// One TX batch from each of `pairs` processors (vionet sends on the pair of the current
    /// processor); returns the frames the device saw on each queue, in queue order.
    fn tx_round_on(&self, refs: &[&[u8]], pairs: u16) -> Vec<Vec<u8>> {
        let mut seen = Vec::new();
        for q in 0..pairs {
            self.emu.set_passive_cpu(q as usize);
            self.emu.send(self.adapter, refs);
        }
        let done = self.emu.send_statuses();
        assert_eq!(done.len(), refs.len() * pairs as usize, "send completions");
        assert!(done.iter().all(|s| *s == sys::NDIS_STATUS_SUCCESS));
        for q in 0..pairs {
            seen.extend(
                self.emu
                    .with_device::<VirtioNet, _>(self.dev, |n, _| n.take_transmitted(q)),
            );
        }
        seen
    }

    /// One round of [`LSO_BATCH`] large sends; returns the segments the device sent.
    fn lso_round(&self, frame: &[u8]) -> usize {
        for _ in 0..LSO_BATCH {
            self.emu.send_large(self.adapter, &[frame], LSO_MSS);
        }
        let done = self.emu.send_statuses();
        assert_eq!(done.len(), LSO_BATCH, "large send completions");
        assert!(done.iter().all(|s| *s == sys::NDIS_STATUS_SUCCESS));
        self.emu
            .with_device::<VirtioNet, _>(self.dev, |n, _| n.take_transmitted(0))
            .len()
    }

    /// A burst of [`BATCH`] frames on each of `pairs` receive queues, counted.
    fn rx_count_on(&self, f: &[u8], pairs: u16) -> usize {
        self.rx_count_bursts(&[f; BATCH], pairs)
    }

    /// `burst` arriving as [`Ours::inject`] makes it arrive, counted (wherever RSS steers it).
    fn rx_count_bursts(&self, burst: &[&[u8]], pairs: u16) -> usize {
        self.inject(burst, pairs);
        self.emu.run_dpcs();
        let want = burst.len() * pairs as usize;
        let mut got = self.emu.received_count(self.adapter);
        self.emu.return_receives(self.adapter);
        while got < want {
            let more = self.emu.received_count(self.adapter);
            assert!(more > 0, "frames lost: {got} of {want}");
            got += more;
            self.emu.return_receives(self.adapter);
        }
        got
    }

    /// `burst` arriving on each of `pairs` queues, or with the device steering (device RSS)
    /// `pairs` copies of it from the wire.
    fn inject(&self, burst: &[&[u8]], pairs: u16) {
        if self.device_rss {
            let wire: Vec<&[u8]> = (0..pairs).flat_map(|_| burst.iter().copied()).collect();
            self.emu
                .with_device::<VirtioNet, _>(self.dev, |n, bus| n.inject_from_wire(bus, &wire));
            return;
        }
        for q in 0..pairs {
            self.emu
                .with_device::<VirtioNet, _>(self.dev, |n, bus| n.inject_frames(bus, q, burst));
        }
    }

    /// `burst` on each of `pairs` queues; returns the frames the protocol got, in any order.
    fn rx_round_flows(&self, burst: &[&[u8]], pairs: u16) -> Vec<Vec<u8>> {
        self.inject(burst, pairs);
        self.emu.run_dpcs();
        let want = burst.len() * pairs as usize;
        let mut got = self.emu.received_frames(self.adapter);
        self.emu.return_receives(self.adapter);
        while got.len() < want {
            let more = self.emu.received_frames(self.adapter);
            assert!(!more.is_empty(), "frames lost: {} of {want}", got.len());
            got.extend(more);
            self.emu.return_receives(self.adapter);
        }
        got
    }

    /// One RX burst of [`BATCH`] copies of `f` on pair 0; returns the frames the protocol got.
    fn rx_round(&self, f: &[u8]) -> Vec<Vec<u8>> {
        self.rx_round_flows(&[f; BATCH], 1)
    }

    /// As `rx_round`, counting the frames instead of copying them out (the emulator in its
    /// counting mode): the timed loop measures the driver, not a copy the protocol would make.
    fn rx_count(&self, f: &[u8]) -> usize {
        self.rx_count_bursts(&[f; BATCH], 1)
    }
}

#[inline(never)]
fn ours_tx(o: &Ours, refs: &[&[u8]], rounds: usize) -> usize {
    let mut n = 0;
    for _ in 0..rounds {
        n += black_box(o.tx_round(refs)).len();
    }
    n
}

#[inline(never)]
fn ours_rx(o: &Ours, f: &[u8], rounds: usize) -> usize {
    let mut n = 0;
    for _ in 0..rounds {
        n += black_box(o.rx_count(f));
    }
    n
}

#[inline(never)]
fn ours_txq(o: &Ours, refs: &[&[u8]], pairs: u16, rounds: usize) -> usize {
    let mut n = 0;
    for _ in 0..rounds {
        n += black_box(o.tx_round_on(refs, pairs)).len();
    }
    n
}

#[inline(never)]
fn ours_rxq(o: &Ours, f: &[u8], pairs: u16, rounds: usize) -> usize {
    let mut n = 0;
    for _ in 0..rounds {
        n += black_box(o.rx_count_on(f, pairs));
    }
    n
}

#[inline(never)]
fn ours_flows(o: &Ours, burst: &[&[u8]], pairs: u16, rounds: usize) -> usize {
    let mut n = 0;
    for _ in 0..rounds {
        n += black_box(o.rx_count_bursts(burst, pairs));
    }
    n
}

#[inline(never)]
fn ours_lso(o: &Ours, frame: &[u8], rounds: usize) -> usize {
    let mut segments = 0;
    for _ in 0..rounds {
        segments += black_box(o.lso_round(frame));
    }
    assert_eq!(
        segments,
        rounds * LSO_BATCH * LSO_PAYLOAD.div_ceil(LSO_MSS as usize)
    );
    rounds * LSO_BATCH
}

/// One benchmark case of the instruction table.
#[derive(Clone, Copy)]
struct Case {
    /// Row label and child argument.
    name: &'static str,
    path: Path,
    len: usize,
    pairs: u16,
    /// The device does RSS (steering and hash reports) instead of vionet.
    device_rss: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Tx,
    Rx,
    /// Receives of [`BATCH`] TCP flows with RSS in force (hashed, steered by the table).
    RxFlows,
    LargeSend,
}

const CASES: [Case; 11] = [
    Case {
        name: "tx64",
        path: Path::Tx,
        len: 64,
        pairs: 1,
        device_rss: false,
    },
    Case {
        name: "rx64",
        path: Path::Rx,
        len: 64,
        pairs: 1,
        device_rss: false,
    },
    Case {
        name: "tx1514",
        path: Path::Tx,
        len: 1514,
        pairs: 1,
        device_rss: false,
    },
    Case {
        name: "rx1514",
        path: Path::Rx,
        len: 1514,
        pairs: 1,
        device_rss: false,
    },
    Case {
        name: "lso64k",
        path: Path::LargeSend,
        len: 0,
        pairs: 1,
        device_rss: false,
    },
    Case {
        name: "tx64x4q",
        path: Path::Tx,
        len: 64,
        pairs: 4,
        device_rss: false,
    },
    Case {
        name: "rx64x4q",
        path: Path::Rx,
        len: 64,
        pairs: 4,
        device_rss: false,
    },
    Case {
        name: "rss1q",
        path: Path::RxFlows,
        len: 64,
        pairs: 1,
        device_rss: false,
    },
    Case {
        name: "rss4q",
        path: Path::RxFlows,
        len: 64,
        pairs: 4,
        device_rss: false,
    },
    Case {
        name: "devrss1q",
        path: Path::RxFlows,
        len: 64,
        pairs: 1,
        device_rss: true,
    },
    Case {
        name: "devrss4q",
        path: Path::RxFlows,
        len: 64,
        pairs: 4,
        device_rss: true,
    },
];

/// Ours on `case`: (packets, doorbells, interrupts) of the measured rounds (for a large send a
/// packet is one large send).
fn measure_ours_case(case: Case, rounds: usize) -> Run {
    let o = Ours::start_with(case.pairs, case.device_rss);
    let frames: Vec<Vec<u8>> = (0..BATCH).map(|n| frame_of(n, case.len.max(14))).collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    let big = large_send();
    let flows: Vec<Vec<u8>> = (0..BATCH).map(flow_frame).collect();
    let flow_refs: Vec<&[u8]> = flows.iter().map(|f| f.as_slice()).collect();
    let mut want = Vec::new();
    for _ in 0..case.pairs {
        want.extend(frames.iter().cloned());
    }
    match case.path {
        Path::Rx => {
            assert!(o.rx_round(&frames[1]).iter().all(|g| *g == frames[1]));
            o.emu.set_count_received_only(true);
        }
        Path::Tx => assert!(
            o.tx_round_on(&refs, case.pairs) == want,
            "frames byte-exact"
        ),
        Path::LargeSend => assert!(o.lso_round(&big) > 0),
        Path::RxFlows => {
            // RSS in force as TCP/IP set it at bind, the table over every processor.
            let (_, config) = o.emu.rss_report(o.adapter);
            assert!(config.is_some(), "RSS configured at bind");
            let frames = o.rx_round_flows(&flow_refs, case.pairs);
            let mut sorted = frames.clone();
            sorted.sort();
            let mut sent: Vec<Vec<u8>> = (0..case.pairs).flat_map(|_| flows.clone()).collect();
            sent.sort();
            assert!(sorted == sent, "frames byte-exact");
            if case.device_rss {
                let c = counters(&o.emu, o.dev);
                assert!(
                    c.rx_rss_steered > 0 && c.rx_hash_reported > 0,
                    "the device steered and reported hashes"
                );
            }
            o.emu.set_count_received_only(true);
        }
    }
    let before = counters(&o.emu, o.dev);
    let start = Instant::now();
    let packets = match case.path {
        Path::Rx => ours_rxq(&o, &frames[1], case.pairs, rounds),
        Path::Tx => ours_txq(&o, &refs, case.pairs, rounds),
        Path::LargeSend => ours_lso(&o, &big, rounds),
        Path::RxFlows => ours_flows(&o, &flow_refs, case.pairs, rounds),
    };
    let secs = start.elapsed().as_secs_f64();
    let after = counters(&o.emu, o.dev);
    o.emu.set_passive_cpu(0);
    o.stop();
    Run::between(secs, packets, &before, &after)
}

/// The baseline on `case`, where virtio-drivers can run it: None (with the reason) for what
/// `VirtIONetRaw` cannot do.
fn measure_baseline_case(case: Case, rounds: usize) -> Result<Run, &'static str> {
    if case.path == Path::LargeSend {
        return Err("n/a: VirtIONetRaw negotiates no HOST_TSO4/6 and fills no GSO header");
    }
    if case.path == Path::RxFlows {
        return Err("n/a: VirtIONetRaw has no RSS (no VIRTIO_NET_F_MQ, no hashing)");
    }
    if case.pairs != 1 {
        return Err("n/a: VirtIONetRaw drives one queue pair (no VIRTIO_NET_F_MQ)");
    }
    Ok(measure_baseline_len(
        case.path == Path::Rx,
        rounds,
        case.len,
    ))
}

fn measure_ours(rx: bool, rounds: usize) -> Run {
    let o = Ours::start();
    let frames: Vec<Vec<u8>> = (0..BATCH).map(frame).collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    // Warm-up and a byte-exact check, outside the clock.
    if rx {
        assert!(o.rx_round(&frames[1]).iter().all(|g| *g == frames[1]));
        o.emu.set_count_received_only(true);
    } else {
        assert_eq!(o.tx_round(&refs), frames);
    }
    let before = counters(&o.emu, o.dev);
    let start = Instant::now();
    let packets = if rx {
        ours_rx(&o, &frames[1], rounds)
    } else {
        ours_tx(&o, &refs, rounds)
    };
    let secs = start.elapsed().as_secs_f64();
    let after = counters(&o.emu, o.dev);
    assert_eq!(packets, rounds * BATCH);
    o.stop();
    Run::between(secs, packets, &before, &after)
}

// ============== baseline: virtio-drivers' VirtIONetRaw over a raw test miniport ==============
//
// The raw miniport, the Transport and shared-memory allocation are the oracle plumbing of
// crates/ndis-emu/tests/virtio_net_model.rs; the Hal here translates addresses instead of
// bouncing (the benchmark keeps every frame buffer in shared memory).

#[path = "../../crates/ndis-emu/tests/support/virtio_oracle.rs"]
mod virtio_oracle;
use virtio_oracle::{EmuTransport, allocate, entry, release};

thread_local! {
    /// (virtual, physical, length) of the buffer region `Hal::share` translates without copying.
    static REGION: Cell<(usize, u64, usize)> = const { Cell::new((0, 0, 0)) };
}

/// The baseline's Hal: rings in shared memory; buffers inside [`REGION`] (where the benchmark
/// keeps every frame buffer) are shared by address translation, as on a machine without an IOMMU.
struct EmuHal;

// SAFETY: dma_alloc returns zeroed, page-aligned shared memory the device reaches at the returned
// physical address; share hands out the physical address of buffers that live in shared memory
// (the only ones the benchmark passes) and refuses any other.
unsafe impl Hal for EmuHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let (pa, va) = allocate((pages * 4096) as u32);
        (pa, NonNull::new(va as *mut u8).unwrap())
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        release(paddr, vaddr.as_ptr() as usize, (pages * 4096) as u32);
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        unreachable!("the transport maps registers with NdisMMapIoSpace")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let (va, pa, len) = REGION.get();
        let at = buffer.as_ptr().cast::<u8>() as usize;
        assert!(
            at >= va && at + buffer.len() <= va + len,
            "the benchmark shares DMA buffers only"
        );
        pa + (at - va) as u64
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

type BaselineNet = VirtIONetRaw<EmuHal, EmuTransport, QUEUE>;

struct Baseline {
    emu: Emulator,
    adapter: AdapterId,
    dev: DeviceId,
    net: Option<BaselineNet>,
    /// (physical, virtual) of the buffer region: QUEUE TX buffers, then QUEUE RX buffers.
    region: (u64, usize),
    /// RX buffer index under each posted token.
    rx_of: Vec<usize>,
    /// TX buffer index under each token in flight.
    tx_of: Vec<usize>,
}

const REGION_LEN: usize = 2 * QUEUE * BUF;

impl Baseline {
    fn start() -> Baseline {
        let emu = Emulator::new(one_cpu());
        assert_eq!(emu.load_driver(entry), 0);
        let adapter = emu
            .add_adapter_with(
                InterruptResources::None,
                Box::new(VirtioNet::new(VirtioNetConfig::new(1))),
            )
            .expect("raw miniport initializes");
        let dev = emu.device_of(adapter);
        let region = allocate(REGION_LEN as u32);
        REGION.set((region.1, region.0, REGION_LEN));
        let mut net = BaselineNet::new(EmuTransport::new()).expect("virtio-drivers initializes");
        // Polling, and no interrupt resource at all: the device never raises anything, so the
        // baseline pays for no interrupt (with EVENT_IDX negotiated `disable_interrupts` does not
        // suppress them; a raised line nobody registered for would sit pending in the emulator).
        net.disable_interrupts();
        let mut b = Baseline {
            emu,
            adapter,
            dev,
            net: Some(net),
            region,
            rx_of: vec![usize::MAX; QUEUE],
            tx_of: vec![usize::MAX; QUEUE],
        };
        for i in 0..QUEUE {
            b.post_rx(i);
        }
        b
    }

    fn buffer(&mut self, i: usize) -> &'static mut [u8] {
        // SAFETY: buffer i of the region, which lives until stop(); the benchmark hands each
        // buffer to at most one user at a time (the device or the code below).
        unsafe { std::slice::from_raw_parts_mut((self.region.1 + i * BUF) as *mut u8, BUF) }
    }

    fn net(&mut self) -> &mut BaselineNet {
        self.net.as_mut().expect("running")
    }

    fn post_rx(&mut self, i: usize) {
        let buf = self.buffer(QUEUE + i);
        // SAFETY: the buffer is not touched until receive_complete.
        let token = unsafe { self.net().receive_begin(buf) }.expect("post an RX buffer");
        self.rx_of[token as usize] = i;
    }

    fn stop(mut self) {
        drop(self.net.take());
        release(self.region.0, self.region.1, REGION_LEN as u32);
        self.emu.halt(self.adapter, sys::NdisHaltDeviceDisabled);
        self.emu.unload();
    }

    fn tx_round(&mut self, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        for (i, f) in frames.iter().enumerate() {
            let buf = self.buffer(i);
            let hdr = self.net().fill_buffer_header(buf).expect("header");
            buf[hdr..hdr + f.len()].copy_from_slice(f);
            // SAFETY: the buffer is not touched until transmit_complete.
            let token = unsafe { self.net().transmit_begin(&buf[..hdr + f.len()]) }
                .expect("transmit_begin");
            self.tx_of[token as usize] = i;
        }
        let mut done = 0;
        while let Some(token) = self.net().poll_transmit() {
            let i = self.tx_of[token as usize];
            let len = HDR + frames[i].len();
            let buf = self.buffer(i);
            // SAFETY: the buffer passed to transmit_begin with this token.
            unsafe { self.net().transmit_complete(token, &buf[..len]) }.expect("transmit_complete");
            done += 1;
        }
        assert_eq!(done, frames.len(), "transmit completions");
        self.emu
            .with_device::<VirtioNet, _>(self.dev, |n, _| n.take_transmitted(0))
    }

    fn rx_round(&mut self, f: &[u8]) -> Vec<Vec<u8>> {
        let burst = [f; BATCH];
        self.emu
            .with_device::<VirtioNet, _>(self.dev, |n, bus| n.inject_frames(bus, 0, &burst));
        let mut got = Vec::with_capacity(BATCH);
        while let Some(token) = self.net().poll_receive() {
            let i = self.rx_of[token as usize];
            let buf = self.buffer(QUEUE + i);
            // SAFETY: the buffer passed to receive_begin with this token.
            let (hdr, len) =
                unsafe { self.net().receive_complete(token, buf) }.expect("receive_complete");
            got.push(buf[hdr..hdr + len].to_vec());
            self.post_rx(i);
        }
        assert_eq!(got.len(), BATCH, "frames received");
        got
    }

    /// As `rx_round`, counting the frames instead of copying them (see `Ours::rx_count`).
    fn rx_count(&mut self, f: &[u8]) -> usize {
        let burst = [f; BATCH];
        self.emu
            .with_device::<VirtioNet, _>(self.dev, |n, bus| n.inject_frames(bus, 0, &burst));
        let mut got = 0;
        while let Some(token) = self.net().poll_receive() {
            let i = self.rx_of[token as usize];
            let buf = self.buffer(QUEUE + i);
            // SAFETY: the buffer passed to receive_begin with this token.
            let (hdr, len) =
                unsafe { self.net().receive_complete(token, buf) }.expect("receive_complete");
            black_box(&buf[hdr..hdr + len]);
            got += 1;
            self.post_rx(i);
        }
        assert_eq!(got, BATCH, "frames received");
        got
    }
}

#[inline(never)]
fn baseline_tx(b: &mut Baseline, frames: &[Vec<u8>], rounds: usize) -> usize {
    let mut n = 0;
    for _ in 0..rounds {
        n += black_box(b.tx_round(frames)).len();
    }
    n
}

#[inline(never)]
fn baseline_rx(b: &mut Baseline, f: &[u8], rounds: usize) -> usize {
    let mut n = 0;
    for _ in 0..rounds {
        n += black_box(b.rx_count(f));
    }
    n
}

fn measure_baseline(rx: bool, rounds: usize) -> Run {
    measure_baseline_len(rx, rounds, FRAME_LEN)
}

fn measure_baseline_len(rx: bool, rounds: usize, len: usize) -> Run {
    let mut b = Baseline::start();
    let frames: Vec<Vec<u8>> = (0..BATCH).map(|n| frame_of(n, len)).collect();
    if rx {
        assert!(b.rx_round(&frames[1]).iter().all(|g| *g == frames[1]));
    } else {
        assert_eq!(b.tx_round(&frames), frames);
    }
    let before = counters(&b.emu, b.dev);
    let start = Instant::now();
    let packets = if rx {
        baseline_rx(&mut b, &frames[1], rounds)
    } else {
        baseline_tx(&mut b, &frames, rounds)
    };
    let secs = start.elapsed().as_secs_f64();
    let after = counters(&b.emu, b.dev);
    assert_eq!(packets, rounds * BATCH);
    b.stop();
    Run::between(secs, packets, &before, &after)
}

// ======================================== report ========================================

/// Whether a line of `callgrind_annotate` output (`file:function`, self cost) is the driver's own
/// code. By source file, wherever the compiler inlined it: for ours the driver crate and the
/// framework it is built on (`src/`, `crates/ndis/src/`), for the baseline the `virtio-drivers`
/// crate. Standard-library code (`/rustc/...`) counts where it was inlined into a driver
/// function (`vionet::`, `ndis::` or `virtio_drivers::`). Everything else is not driver code:
/// the emulated OS and its imports (`ndis-emu`, `ndis-sys`, even when inlined into a driver
/// function: on Windows those are calls into ndis.sys), the device model, the harness (the
/// baseline's `Hal` and its buffer copies included).
fn is_driver_code(line: &str, who: &str) -> bool {
    let Some((path, function)) = line
        .split_once(')')
        .map(|(_, rest)| rest.trim_start())
        .and_then(|rest| rest.split_once(':'))
    else {
        return false;
    };
    let in_function = |prefix: &str| {
        function.starts_with(prefix)
            || function.contains(&format!("<{prefix}"))
            || function.contains(&format!(" {prefix}"))
    };
    let (own_file, own_function) = match who {
        "ours" => (
            path.starts_with("src/") || path.starts_with("crates/ndis/src/"),
            in_function("vionet::") || in_function("ndis::"),
        ),
        _ => (
            path.contains("/virtio-drivers-"),
            in_function("virtio_drivers::"),
        ),
    };
    own_file || (path.starts_with("/rustc/") && own_function)
}

/// Instructions callgrind counted inside `function` (and everything it called), inside the
/// device model's register and frame entry points, and in the driver's own code (self cost), for
/// one child run.
fn callgrind(case: Case, who: &str) -> Option<(u64, u64, u64, Run)> {
    let path = case.name;
    let exe = std::env::current_exe().ok()?;
    let out = std::env::temp_dir().join(format!(
        "datapath.{}.{who}.{path}.callgrind",
        std::process::id()
    ));
    let function = match (who, case.path) {
        ("ours", Path::Tx) => "datapath::host::ours_txq",
        ("ours", Path::Rx) => "datapath::host::ours_rxq",
        ("ours", Path::LargeSend) => "datapath::host::ours_lso",
        ("ours", Path::RxFlows) => "datapath::host::ours_flows",
        (_, Path::Rx) => "datapath::host::baseline_rx",
        _ => "datapath::host::baseline_tx",
    };
    let status = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--dump-instr=no",
            "--collect-atstart=no",
        ])
        .arg(format!("--toggle-collect={function}"))
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .args(["--child", who, path])
        .output()
        .ok()?;
    if !status.status.success() {
        eprintln!(
            "callgrind run failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        return None;
    }
    let annotate = |inclusive: &str| -> Option<String> {
        let o = Command::new("callgrind_annotate")
            .arg(format!("--inclusive={inclusive}"))
            .args(["--threshold=100", "--auto=no"])
            .arg(&out)
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    // The child's own report of the measured rounds: packets, doorbells, interrupts.
    let run = String::from_utf8_lossy(&status.stdout)
        .lines()
        .find_map(|l| {
            let v: Vec<u64> = l
                .strip_prefix("EXITS ")?
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (v.len() == 3).then(|| Run {
                secs: 0.0,
                packets: v[0] as usize,
                notifications: v[1],
                interrupts: v[2],
            })
        })?;
    let (inclusive, exclusive) = (annotate("yes"), annotate("no"));
    let _ = std::fs::remove_file(&out);
    let count = |l: &str| -> Option<u64> {
        l.split_whitespace()
            .next()?
            .replace(',', "")
            .parse::<u64>()
            .ok()
    };
    let total = inclusive?
        .lines()
        .find(|l| l.contains("PROGRAM TOTALS"))
        .and_then(count)?;
    // The device model: its own functions and the virtqueue and guest-memory crates it runs its
    // rings with (self cost, so nothing is counted twice).
    let exclusive = exclusive?;
    let model: u64 = exclusive
        .lines()
        .filter(|l| {
            l.contains("ndis_emu::devices::virtio_net")
                || l.contains("virtio_queue::")
                || l.contains("vm_memory::")
        })
        .filter_map(count)
        .sum();
    let driver: u64 = exclusive
        .lines()
        .filter(|l| is_driver_code(l, who))
        .filter_map(count)
        .sum();
    Some((total, model, driver, run))
}

fn child(who: &str, name: &str) {
    let case = *CASES.iter().find(|c| c.name == name).expect("a known case");
    let rounds = if case.path == Path::LargeSend {
        CALLGRIND_ROUNDS / 10
    } else {
        CALLGRIND_ROUNDS
    };
    let run = match who {
        "ours" => measure_ours_case(case, rounds),
        _ => measure_baseline_case(case, rounds).expect("a case the baseline runs"),
    };
    println!(
        "EXITS {} {} {}",
        run.packets, run.notifications, run.interrupts
    );
}

/// Cycles of one VM exit for an MMIO doorbell that KVM hands to an ioeventfd (about 3,600:
/// QEMU's docs/specs/pci-testdev.txt measures ioeventfd-backed MMIO exits with this device;
/// see docs/emulator.md).
const DOORBELL_EXIT_CYCLES: f64 = 3600.0;
/// Cycles of the exits an interrupt costs a guest (about 2,000: the SplitX paper, Landau,
/// Ben-Yehuda, Gordon, WIOV 2011; see docs/emulator.md).
const INTERRUPT_EXIT_CYCLES: f64 = 2000.0;

pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        child(&args[at + 1], &args[at + 2]);
        return;
    }
    println!(
        "datapath: {FRAME_LEN}-byte frames, batches/bursts of {BATCH}, {PACKETS} packets per run, best of {RUNS}; one emulated CPU; same VirtioNet model ({QUEUE}-entry queues, 1 pair)"
    );
    println!(
        "  ours: vionet, MSI-X 4 messages; baseline: virtio-drivers 0.13 VirtIONetRaw, polling, no interrupt resources"
    );
    println!();
    println!(
        "{:<4} {:<9} {:>12} {:>10} {:>12} {:>12} {:>10}",
        "path", "driver", "packets/s", "ns/pkt", "irq/pkt", "doorbell/pkt", "ratio"
    );
    let mut goals = Vec::new();
    for (path, rx) in [("tx", false), ("rx", true)] {
        // Interleaved, so that load from other processes hits both alike.
        let mut base = Run::default();
        let mut ours = Run::default();
        for i in 0..RUNS {
            let b = measure_baseline(rx, ROUNDS);
            let o = measure_ours(rx, ROUNDS);
            if i == 0 || b.secs < base.secs {
                base = b;
            }
            if i == 0 || o.secs < ours.secs {
                ours = o;
            }
        }
        let pps = |r: &Run| r.packets as f64 / r.secs;
        let ratio = pps(&ours) / pps(&base);
        for (name, r, ratio) in [("baseline", &base, None), ("ours", &ours, Some(ratio))] {
            println!(
                "{:<4} {:<9} {:>12.0} {:>10.1} {:>12.4} {:>12.4} {:>10}",
                path,
                name,
                pps(r),
                r.secs * 1e9 / r.packets as f64,
                r.interrupts as f64 / r.packets as f64,
                r.notifications as f64 / r.packets as f64,
                ratio.map(|x| format!("{x:.2}x")).unwrap_or_default()
            );
        }
        let exits = (ours.interrupts + ours.notifications) as f64 / ours.packets as f64;
        // Wall-clock rates are shown, not judged: the emulator charges nothing for a VM exit,
        // so the goals are in instructions and exits (the callgrind table below).
        goals.push(format!(
            "{path}: ours/baseline packet rate {ratio:.2}x (wall clock, no goal); ours {exits:.4} exits (doorbells + interrupts) per packet at saturation (goal <= 1/64 = 0.0156: {})",
            if exits <= 1.0 / 64.0 + 1e-9 { "met" } else { "MISSED" },
        ));
    }
    println!();
    for g in &goals {
        println!("{g}");
    }
    println!();
    let have_valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_valgrind {
        println!("valgrind not found: no instruction counts");
        return;
    }
    println!(
        "per packet under callgrind ({CALLGRIND_ROUNDS} rounds; large send: {} rounds of {LSO_BATCH} sends of {LSO_PAYLOAD} bytes of TCP payload, MSS {LSO_MSS}, a packet = one large send); whole = driver + emulated NDIS + device model + harness; driver = self cost of vionet::/ndis:: (ours) or virtio_drivers:: (baseline) functions; exits = doorbells + interrupts; KVM est. = driver instructions (1 instruction ~ 1 cycle) + doorbells x {DOORBELL_EXIT_CYCLES} + interrupts x {INTERRUPT_EXIT_CYCLES} cycles (docs/emulator.md):",
        CALLGRIND_ROUNDS / 10
    );
    println!(
        "{:<8} {:<9} {:>10} {:>10} {:>7} {:>9} {:>9} {:>9} {:>10} {:>7}",
        "case",
        "driver",
        "whole",
        "driver",
        "ratio",
        "doorbell",
        "irq",
        "exits",
        "KVM est.",
        "ratio"
    );
    let mut ratios = std::collections::HashMap::new();
    for case in CASES {
        let mut base: Option<(f64, f64)> = None;
        for who in ["baseline", "ours"] {
            if who == "baseline"
                && let Err(why) = measure_baseline_case(case, 0).map(|_| ())
            {
                println!("{:<8} {who:<9} {why}", case.name);
                continue;
            }
            let Some((total, _model, driver, run)) = callgrind(case, who) else {
                println!("{:<8} {who:<9} callgrind failed", case.name);
                continue;
            };
            let p = run.packets as f64;
            let (t, d) = (total as f64 / p, driver as f64 / p);
            let (db, irq) = (run.notifications as f64 / p, run.interrupts as f64 / p);
            let kvm = d + db * DOORBELL_EXIT_CYCLES + irq * INTERRUPT_EXIT_CYCLES;
            let ratio = |b: Option<f64>, x: f64| match (who, b) {
                ("ours", Some(b)) => format!("{:.2}x", x / b),
                _ => String::new(),
            };
            println!(
                "{:<8} {who:<9} {t:>10.0} {d:>10.0} {:>7} {db:>9.4} {irq:>9.4} {:>9.4} {kvm:>10.0} {:>7}",
                case.name,
                ratio(base.map(|b| b.0), d),
                db + irq,
                ratio(base.map(|b| b.1), kvm),
            );
            if who == "baseline" {
                base = Some((d, kvm));
            } else if let Some((bd, _)) = base {
                ratios.insert(case.name, d / bd);
            }
            if who == "ours" {
                ratios.insert(
                    match case.name {
                        "tx64" => "ours tx64",
                        "tx1514" => "ours tx1514",
                        "tx64x4q" => "ours tx64x4q",
                        "rx64" => "ours rx64",
                        "rx64x4q" => "ours rx64x4q",
                        "rss1q" => "ours rss1q",
                        "rss4q" => "ours rss4q",
                        "devrss1q" => "ours devrss1q",
                        "devrss4q" => "ours devrss4q",
                        _ => "",
                    },
                    d,
                );
            }
        }
    }
    println!();
    let r = |k: &str| ratios.get(k).copied().unwrap_or(f64::NAN);
    println!(
        "ours 1514-byte vs 64-byte TX driver code: {:.2}x (goal <= 1.25x); 4 queues vs 1: tx {:.2}x rx {:.2}x, RSS {:.2}x (software steering) {:.2}x (device RSS) (goal <= 1.10x)",
        r("ours tx1514") / r("ours tx64"),
        r("ours tx64x4q") / r("ours tx64"),
        r("ours rx64x4q") / r("ours rx64"),
        r("ours rss4q") / r("ours rss1q"),
        r("ours devrss4q") / r("ours devrss1q"),
    );
    println!(
        "driver code vs virtio-drivers: tx {:.2}x rx {:.2}x (goal <= 2.00x)",
        r("tx64"),
        r("rx64")
    );
}
