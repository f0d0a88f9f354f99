//! `ndis-emu run IMAGE [--device virtio-net|none] [--messages N | --line] [--pairs N]`: a smoke
//! scenario on a cross-built miniport image (`.sys`/`.dll`), for vendors. DriverEntry;
//! initialize on the device; 1000 frames each way, byte-exact; pause, restart; halt; unload with
//! nothing leaked. One progress line per step, one summary line last; exit 0 on success. A bug
//! check prints the blue-screen text and exits 3; a failed step exits 1; an image that cannot be
//! loaded (not a driver, an import the emulator lacks) exits 2. See docs/emulator.md.

#[cfg(windows)]
fn main() {
    eprintln!("ndis-emu runs on the host (Linux, macOS), not on Windows");
    std::process::exit(2);
}

#[cfg(not(windows))]
fn main() {
    host::main()
}

/// Host heap accounting, as in a test binary (the image's own heap is pool, which the emulator
/// counts anyway); it also keeps the emulator from warning that leak detection is off.
#[cfg(not(windows))]
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[cfg(not(windows))]
mod host {
    use std::path::PathBuf;
    use std::process::exit;

    use ndis_emu::devices::virtio_net::{VirtioNet, VirtioNetConfig};
    use ndis_emu::image::{Stop, exit_on_stop};
    use ndis_emu::{AdapterId, Config, Emulator, InterruptResources};
    use ndis_sys as sys;

    const FRAMES: usize = 1000;
    /// Frames per send call (and per receive burst): within the receive buffers a driver keeps.
    const BURST: usize = 25;

    const USAGE: &str = "usage: ndis-emu run IMAGE [--device virtio-net|none] \
                         [--messages N | --line] [--pairs N]";

    const HELP: &str = "Runs a smoke scenario on a cross-built miniport image (.sys/.dll): DriverEntry, \
                        initialize on the device, 1000 frames each way, pause, restart, halt, unload.\n\
                        \n  --device virtio-net|none  the emulated device (default virtio-net)\
                        \n  --messages N              grant N MSI-X messages (1..=2048; default 2*pairs+2)\
                        \n  --line                    grant the line interrupt instead\
                        \n  --pairs N                 queue pairs of the virtio-net device (1..=256, default 1)\
                        \n  -h, --help                this text\n\
                        \nExit status: 0 passed, 1 a step failed, 2 bad arguments or an image that cannot be \
                        loaded, 3 bug check.";

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Device {
        VirtioNet,
        None,
    }

    struct Args {
        image: PathBuf,
        device: Device,
        /// MSI-X messages granted; None: the line (or no interrupt for `--device none`).
        messages: Option<u32>,
        pairs: u16,
    }

    fn parse() -> Result<Args, String> {
        let mut args = std::env::args().skip(1);
        match args.next().as_deref() {
            Some("run") => {}
            Some("-h" | "--help") | None => return Err(USAGE.into()),
            Some(other) => return Err(format!("unknown command {other:?}\n{USAGE}")),
        }
        let mut image = None;
        let mut device = Device::VirtioNet;
        let mut messages = None;
        let mut line = false;
        let mut pairs = 1u16;
        while let Some(a) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
            };
            match a.as_str() {
                "--device" => {
                    device = match value("--device")?.as_str() {
                        "virtio-net" => Device::VirtioNet,
                        "none" => Device::None,
                        other => return Err(format!("unknown device {other:?}\n{USAGE}")),
                    }
                }
                "--messages" => {
                    let n: u32 = value("--messages")?
                        .parse()
                        .map_err(|e| format!("--messages: {e}"))?;
                    if !(1..=2048).contains(&n) {
                        return Err("--messages must be 1..=2048".into());
                    }
                    messages = Some(n);
                }
                "--line" => line = true,
                "--pairs" => {
                    pairs = value("--pairs")?
                        .parse()
                        .map_err(|e| format!("--pairs: {e}"))?;
                    if !(1..=256).contains(&pairs) {
                        return Err("--pairs must be 1..=256".into());
                    }
                }
                "-h" | "--help" => return Err(USAGE.into()),
                s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
                s if image.is_none() => image = Some(PathBuf::from(s)),
                s => return Err(format!("unexpected argument {s:?}\n{USAGE}")),
            }
        }
        if line && messages.is_some() {
            return Err(format!("--messages and --line exclude each other\n{USAGE}"));
        }
        let image = image.ok_or_else(|| format!("no IMAGE given\n{USAGE}"))?;
        if device == Device::VirtioNet && messages.is_none() && !line {
            // The default grant: every message the device's MSI-X table has (2N+2).
            messages = Some(2 * u32::from(pairs) + 2);
        }
        Ok(Args {
            image,
            device,
            messages,
            pairs,
        })
    }

    fn step(name: &str, what: impl std::fmt::Display) {
        println!("[{name}] {what}");
    }

    fn fail(name: &str, what: impl std::fmt::Display) -> ! {
        println!("[{name}] FAILED: {what}");
        println!("ndis-emu: FAIL at {name}");
        exit(1)
    }

    pub fn main() {
        // `-h`/`--help` anywhere: the usage on stdout, success (a request, not an error).
        if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
            println!("{USAGE}\n\n{HELP}");
            exit(0);
        }
        let args = match parse() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{e}");
                exit(2);
            }
        };
        // Image code cannot be unwound through: a bug check (or any other panic) ends the run
        // here, before unwinding starts.
        exit_on_stop(|stop| match stop {
            Stop::BugCheck(b) => {
                println!("\n{b}\n");
                println!("ndis-emu: BUG CHECK {:#010X} ({})", b.code, b.name());
                3
            }
            Stop::Panic(message) => {
                println!("ndis-emu: FAIL: {message}");
                1
            }
        });
        let emu = Emulator::new(Config::default());
        let image = match emu.load_image(&args.image) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("ndis-emu: error: {}: {e}", args.image.display());
                exit(2);
            }
        };
        step(
            "load",
            format!(
                "{} mapped at {:#x} ({} KiB), {} relocations, {} imports bound",
                image.name,
                image.base,
                image.size / 1024,
                image.relocations,
                image.imports.len()
            ),
        );
        let status = emu.load_driver(image.entry());
        if status != sys::STATUS_SUCCESS {
            fail("DriverEntry", format!("returned {status:#010x}"));
        }
        step("DriverEntry", "STATUS_SUCCESS");

        let resources = match (args.device, args.messages) {
            (Device::None, None) => InterruptResources::None,
            (_, Some(n)) => InterruptResources::MsiX {
                requested: (2 * u32::from(args.pairs) + 2).max(n),
                granted: n,
            },
            (Device::VirtioNet, None) => InterruptResources::line(),
        };
        let adapter = match args.device {
            Device::None => emu.add_adapter(resources),
            Device::VirtioNet => {
                let mut cfg = VirtioNetConfig::new(args.pairs);
                cfg.msix_vectors = (2 * args.pairs + 2).max(args.messages.unwrap_or(0) as u16);
                emu.add_adapter_with(resources, Box::new(VirtioNet::new(cfg)))
            }
        };
        let a = adapter.unwrap_or_else(|s| fail("initialize", format!("{s:#010x}")));
        step(
            "initialize",
            format!("{:?} device, {resources:?}", args.device),
        );
        restart(&emu, a, "restart");

        let mac = current_address(&emu, a);
        let frames: Vec<Vec<u8>> = (0..FRAMES).map(|i| frame(mac, i)).collect();
        match args.device {
            Device::None => loopback_traffic(&emu, a, &frames),
            Device::VirtioNet => virtio_traffic(&emu, a, &frames),
        }

        pause(&emu, a);
        restart(&emu, a, "restart");
        emu.return_receives(a);
        pause(&emu, a);
        emu.halt(a, sys::NdisHaltDeviceDisabled);
        step("halt", "MiniportHaltEx returned");
        emu.unload();
        step(
            "unload",
            "nothing leaked (pool, shared memory, NDIS objects)",
        );
        println!(
            "ndis-emu: PASS {}: DriverEntry, initialize on {:?}, {FRAMES} frames each way \
             byte-exact, pause/restart, halt, unload with zero leaks",
            image.name, args.device
        );
    }

    fn restart(emu: &Emulator, a: AdapterId, name: &str) {
        let s = emu.restart(a);
        if s != sys::NDIS_STATUS_SUCCESS {
            fail(name, format!("{s:#010x}"));
        }
        step(name, "NDIS_STATUS_SUCCESS");
    }

    fn pause(emu: &Emulator, a: AdapterId) {
        emu.return_receives(a);
        let s = emu.pause(a);
        if s != sys::NDIS_STATUS_SUCCESS {
            fail("pause", format!("{s:#010x}"));
        }
        step("pause", "NDIS_STATUS_SUCCESS");
    }

    fn current_address(emu: &Emulator, a: AdapterId) -> [u8; 6] {
        let r = emu.oid_query(a, sys::OID_802_3_CURRENT_ADDRESS, 6);
        if r.status != sys::NDIS_STATUS_SUCCESS || r.data.len() != 6 {
            fail(
                "address",
                format!("OID_802_3_CURRENT_ADDRESS: {:#010x}", r.status),
            );
        }
        r.data.try_into().expect("6 bytes")
    }

    /// Frame `i`: to the adapter, 60..=1514 bytes, contents from its index.
    fn frame(dst: [u8; 6], i: usize) -> Vec<u8> {
        let len = 60 + (i * 131) % (1514 - 60 + 1);
        let mut f = dst.to_vec();
        f.extend_from_slice(&[0x02, 0, 0, 0, (i >> 8) as u8, i as u8]);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend((0..len - 14).map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8)));
        f
    }

    fn sends_complete(emu: &Emulator, n: usize, name: &str) {
        let done = emu.send_completions();
        let ok = done
            .iter()
            .filter(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS)
            .count();
        if done.len() != n || ok != n {
            fail(
                name,
                format!("{} of {n} sends completed, {ok} successfully", done.len()),
            );
        }
    }

    /// A device-less driver: what is sent comes back (the loopback sample's contract), so both
    /// directions are one exchange.
    fn loopback_traffic(emu: &Emulator, a: AdapterId, frames: &[Vec<u8>]) {
        let mut received = Vec::new();
        for burst in frames.chunks(BURST) {
            let refs: Vec<&[u8]> = burst.iter().map(Vec::as_slice).collect();
            emu.send(a, &refs);
            sends_complete(emu, burst.len(), "send");
            received.extend(emu.received_frames(a));
            emu.return_receives(a);
        }
        step("send", format!("{} frames completed", frames.len()));
        if received != frames {
            let first = received
                .iter()
                .zip(frames)
                .position(|(r, f)| r != f)
                .unwrap_or(received.len().min(frames.len()));
            fail(
                "receive",
                format!(
                    "{} frames came back for {} sent; first difference at frame {first}",
                    received.len(),
                    frames.len()
                ),
            );
        }
        step(
            "receive",
            format!("{} frames back, byte-exact", frames.len()),
        );
    }

    /// On the virtio-net model: sends reach the device byte-exact (padded to 60 bytes as on the
    /// wire), frames the device receives reach NDIS byte-exact.
    fn virtio_traffic(emu: &Emulator, a: AdapterId, frames: &[Vec<u8>]) {
        let device = emu.device_of(a);
        let mut sent = Vec::new();
        for burst in frames.chunks(BURST) {
            let refs: Vec<&[u8]> = burst.iter().map(Vec::as_slice).collect();
            emu.send(a, &refs);
            sends_complete(emu, burst.len(), "send");
        }
        emu.with_device::<VirtioNet, _>(device, |net, _| {
            let pairs = net.active_queue_pairs().max(1);
            for p in 0..pairs {
                sent.extend(net.take_transmitted(p));
            }
        });
        sent.sort();
        let mut expected: Vec<Vec<u8>> = frames.to_vec();
        expected.sort();
        if sent != expected {
            fail(
                "send",
                format!(
                    "the device got {} frames for {} sent, or different bytes",
                    sent.len(),
                    frames.len()
                ),
            );
        }
        step(
            "send",
            format!("{} frames on the wire, byte-exact", frames.len()),
        );
        let mut received = Vec::new();
        for burst in frames.chunks(BURST) {
            emu.with_device::<VirtioNet, _>(device, |net, bus| {
                for f in burst {
                    net.inject_frame(bus, 0, f);
                }
            });
            emu.run_dpcs();
            received.extend(emu.received_frames(a));
            emu.return_receives(a);
        }
        // With RSS on (TCP/IP sets it at bind), frames of different flows are indicated on
        // different processors, so only the order within a flow is kept.
        received.sort();
        let mut expected: Vec<Vec<u8>> = frames.to_vec();
        expected.sort();
        if received != expected {
            fail(
                "receive",
                format!(
                    "{} frames indicated for {} the device received, or different bytes",
                    received.len(),
                    frames.len()
                ),
            );
        }
        step(
            "receive",
            format!("{} frames indicated, byte-exact", frames.len()),
        );
    }
}
