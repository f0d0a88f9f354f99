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
    let mut f = vec![0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, n as u8]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    for (i, b) in f.iter_mut().enumerate().skip(14) {
        *b = (i as u8).wrapping_mul(7).wrapping_add(n as u8);
    }
    f
}

fn one_cpu() -> Config {
    Config {
        cpus: 1,
        ..Config::default()
    }
}

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
}

impl Ours {
    fn start() -> Ours {
        let emu = Emulator::new(one_cpu());
        assert_eq!(emu.load_driver(vionet::DRIVER_ENTRY), sys::STATUS_SUCCESS);
        let adapter = emu
            .add_adapter_with(
                InterruptResources::msix(4),
                Box::new(VirtioNet::new(VirtioNetConfig::new(1))),
            )
            .expect("vionet initializes");
        let dev = emu.device_of(adapter);
        assert_eq!(emu.restart(adapter), sys::NDIS_STATUS_SUCCESS);
        // vionet negotiates GUEST_CSUM and the baseline does not: without this the model would
        // validate checksums for ours only. A real device does that in hardware, at no cost to
        // the guest; here the same device work is charged to both.
        emu.with_device::<VirtioNet, _>(dev, |n, _| n.set_rx_checksum(RxChecksum::Off));
        Ours { emu, adapter, dev }
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

    /// One RX burst; returns the frames the protocol got.
    fn rx_round(&self, f: &[u8]) -> Vec<Vec<u8>> {
        let burst = [f; BATCH];
        self.emu
            .with_device::<VirtioNet, _>(self.dev, |n, bus| n.inject_frames(bus, 0, &burst));
        self.emu.run_dpcs();
        let mut got = self.emu.received_frames(self.adapter);
        self.emu.return_receives(self.adapter);
        while got.len() < BATCH {
            let more = self.emu.received_frames(self.adapter);
            assert!(!more.is_empty(), "frames lost: {} of {BATCH}", got.len());
            got.extend(more);
            self.emu.return_receives(self.adapter);
        }
        got
    }

    /// As `rx_round`, counting the frames instead of copying them out (the emulator in its
    /// counting mode): the timed loop measures the driver, not a copy the protocol would make.
    fn rx_count(&self, f: &[u8]) -> usize {
        let burst = [f; BATCH];
        self.emu
            .with_device::<VirtioNet, _>(self.dev, |n, bus| n.inject_frames(bus, 0, &burst));
        self.emu.run_dpcs();
        let mut got = self.emu.received_count(self.adapter);
        self.emu.return_receives(self.adapter);
        while got < BATCH {
            let more = self.emu.received_count(self.adapter);
            assert!(more > 0, "frames lost: {got} of {BATCH}");
            got += more;
            self.emu.return_receives(self.adapter);
        }
        got
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
    let mut b = Baseline::start();
    let frames: Vec<Vec<u8>> = (0..BATCH).map(frame).collect();
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

/// Whether a callgrind symbol line belongs to the driver under test: for ours the driver crate
/// and the framework it is built on (`vionet::`, `ndis::`, including trait impls written as
/// `<vionet::.. as ndis::..>`), for the baseline the `virtio_drivers` crate. `ndis_sys::` and
/// `ndis_emu::` are not driver code (imports and the emulated OS).
fn is_driver_code(line: &str, who: &str) -> bool {
    let starts = |prefix: &str| {
        line.contains(&format!(":{prefix}"))
            || line.contains(&format!("<{prefix}"))
            || line.contains(&format!(" {prefix}"))
    };
    match who {
        "ours" => starts("vionet::") || starts("ndis::"),
        _ => starts("virtio_drivers::"),
    }
}

/// Instructions callgrind counted inside `function` (and everything it called), inside the
/// device model's register and frame entry points, and in the driver's own code (self cost), for
/// one child run.
fn callgrind(path: &str, who: &str) -> Option<(u64, u64, u64)> {
    let exe = std::env::current_exe().ok()?;
    let out = std::env::temp_dir().join(format!(
        "datapath.{}.{who}.{path}.callgrind",
        std::process::id()
    ));
    let function = format!("datapath::host::{who}_{path}");
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
    Some((total, model, driver))
}

fn child(who: &str, path: &str) {
    let rx = path == "rx";
    match who {
        "ours" => measure_ours(rx, CALLGRIND_ROUNDS),
        _ => measure_baseline(rx, CALLGRIND_ROUNDS),
    };
}

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
        let irq = ours.interrupts as f64 / ours.packets as f64;
        goals.push(format!(
            "{path}: ours/baseline packet rate {ratio:.2}x (goal >= 1.5x: {}); ours {irq:.4} interrupts/packet (goal <= 1/32 = 0.0313: {})",
            if ratio >= 1.5 { "met" } else { "MISSED" },
            if irq <= 1.0 / 32.0 { "met" } else { "MISSED" },
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
    let packets = (CALLGRIND_ROUNDS * BATCH) as f64;
    println!(
        "instructions per packet (callgrind, {} packets; whole path = driver + emulated NDIS + device model + harness; driver code = self cost of vionet::/ndis:: (ours) or virtio_drivers:: (baseline) functions):",
        CALLGRIND_ROUNDS * BATCH
    );
    println!(
        "{:<4} {:<9} {:>12} {:>14} {:>14} {:>10} {:>14} {:>10}",
        "path", "driver", "instr/pkt", "model instr", "rest instr", "ratio", "driver code", "ratio"
    );
    for path in ["tx", "rx"] {
        let mut base_total = None;
        let mut base_driver = None;
        for who in ["baseline", "ours"] {
            match callgrind(path, who) {
                Some((total, model, driver)) => {
                    let t = total as f64 / packets;
                    let m = model as f64 / packets;
                    let d = driver as f64 / packets;
                    let ratio = |base: Option<f64>, x: f64| match (who, base) {
                        ("ours", Some(b)) => format!("{:.2}x", x / b),
                        _ => String::new(),
                    };
                    let (r_total, r_driver) = (ratio(base_total, t), ratio(base_driver, d));
                    if who == "baseline" {
                        base_total = Some(t);
                        base_driver = Some(d);
                    }
                    println!(
                        "{path:<4} {who:<9} {t:>12.0} {m:>14.0} {:>14.0} {r_total:>10} {d:>14.0} {r_driver:>10}",
                        t - m
                    );
                }
                None => println!("{path:<4} {who:<9} callgrind failed"),
            }
        }
    }
}
