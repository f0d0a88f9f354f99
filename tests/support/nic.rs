//! What the vionet tests on the emulator share: an adapter on the virtio-net device model, test
//! frames, and byte-exact send checks. Included with `#[path]` by each test binary, which uses
//! a subset of it.
//!
//! Every scenario runs on both programs of the driver, through one parameter ([`Build`]): the
//! driver compiled for the host and linked into the test binary, and the release kernel image
//! (`vionet.dll`, cross-built for `x86_64-pc-windows-msvc` once per test process) loaded by the
//! emulator's PE loader. [`both_builds!`] turns `fn name(build: Build)` into the tests
//! `name::host` and `name::image`; an image scenario runs in a child process
//! (`ndis_emu::image::isolated`), so a bug check inside the image reaches the test structured.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ndis_emu::devices::virtio_net::{VirtioNet, VirtioNetConfig};
use ndis_emu::{AdapterId, Config, DeviceId, Emulator, InterruptResources};
use ndis_sys as sys;

/// Which program of the driver a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// The driver compiled for the host, linked into this test binary (`vionet::DRIVER_ENTRY`).
    Host,
    /// The release kernel image, loaded by the emulator's PE loader (its `DriverEntry`).
    Image,
}

/// The release image of vionet (default features, what users install), built once per test
/// process; the children of `isolated` reuse the parent's build.
pub fn image() -> PathBuf {
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| package.join("target"))
        .join("driver-image-tests");
    ndis_emu::image::cross_build(package, &target, "release", "vionet", &[])
}

/// DriverEntry of `build`: the host build's entry point, or the image loaded into `emu` (the
/// emulator unmaps it after unload).
pub fn load(emu: &Emulator, build: Build) -> sys::NTSTATUS {
    match build {
        Build::Host => emu.load_driver(vionet::DRIVER_ENTRY),
        Build::Image => {
            let image = emu.load_image(image()).expect("load the vionet image");
            emu.load_driver(image.entry())
        }
    }
}

/// `fn name(build: Build) { .. }` becomes the tests `name::host` and `name::image`; the image
/// variant builds the image here, in the test process, then runs the scenario in a child
/// process.
macro_rules! both_builds {
    ($(#[doc = $doc:literal])* fn $name:ident($build:ident: Build) $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use crate::nic::Build;

            fn scenario($build: Build) $body

            #[test]
            fn host() {
                scenario(Build::Host)
            }

            #[test]
            fn image() {
                crate::nic::image();
                ndis_emu::image::isolated(concat!(module_path!(), "::image"), || {
                    scenario(Build::Image)
                })
            }
        }
    };
}

pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

pub struct Nic {
    pub emu: Emulator,
    pub adapter: AdapterId,
    pub device: DeviceId,
    /// Queue pairs the device model has.
    pub device_pairs: u16,
}

pub fn config(cpus: usize) -> Config {
    Config {
        cpus,
        ..Config::default()
    }
}

pub fn start_with(
    build: Build,
    emu: Emulator,
    pairs: u16,
    resources: InterruptResources,
    tweak: impl FnOnce(&mut VirtioNetConfig),
) -> Result<Nic, sys::NDIS_STATUS> {
    assert_eq!(load(&emu, build), sys::STATUS_SUCCESS);
    let mut cfg = VirtioNetConfig::new(pairs);
    tweak(&mut cfg);
    let adapter = emu.add_adapter_with(resources, Box::new(VirtioNet::new(cfg)))?;
    let device = emu.device_of(adapter);
    assert_eq!(emu.restart(adapter), sys::NDIS_STATUS_SUCCESS);
    Ok(Nic {
        emu,
        adapter,
        device,
        device_pairs: pairs,
    })
}

pub fn start(build: Build, pairs: u16, resources: InterruptResources) -> Nic {
    start_with(build, Emulator::new(config(4)), pairs, resources, |_| {}).expect("initialize")
}

impl Nic {
    pub fn net<R>(&self, f: impl FnOnce(&mut VirtioNet, &mut ndis_emu::pci::Bus<'_>) -> R) -> R {
        self.emu.with_device::<VirtioNet, R>(self.device, f)
    }

    /// Injects `frames` on pair 0, runs the DPCs, takes what the driver indicated with `take`
    /// (one of the emulator's `received_frames*`), and returns the receives.
    pub fn receive<T>(
        &self,
        frames: &[Vec<u8>],
        take: impl FnOnce(&Emulator, AdapterId) -> Vec<T>,
    ) -> Vec<T> {
        self.net(|n, bus| {
            for f in frames {
                n.inject_frame(bus, 0, f);
            }
        });
        self.emu.run_dpcs();
        let got = take(&self.emu, self.adapter);
        self.emu.return_receives(self.adapter);
        got
    }

    /// Injects each frame on its pair, runs the DPCs, and checks the driver indicated exactly
    /// those frames, byte-exact, in any order across pairs. The protocol returns each batch it
    /// got, so frames that waited for a buffer come up too; nothing is held afterwards.
    pub fn check_rx_on(&self, frames: &[(u16, Vec<u8>)]) {
        for (pair, f) in frames {
            self.net(|n, bus| n.inject_frame(bus, *pair, f));
        }
        self.emu.run_dpcs();
        let mut got = Vec::new();
        loop {
            let batch = self.emu.received_frames(self.adapter);
            if batch.is_empty() {
                break;
            }
            got.extend(batch);
            self.emu.return_receives(self.adapter);
        }
        let mut expected: Vec<&Vec<u8>> = frames.iter().map(|(_, f)| f).collect();
        got.sort();
        expected.sort();
        assert_eq!(got.len(), expected.len(), "frames indicated");
        assert!(
            got.iter().eq(expected.iter().copied()),
            "the driver indicated different bytes than the device received"
        );
        self.emu.return_receives(self.adapter);
    }

    /// Sets the packet filter to promiscuous, for tests of frames that are not addressed to
    /// the adapter (the filter TCP/IP sets at bind would drop them).
    pub fn accept_all(&self) {
        let f = sys::NDIS_PACKET_TYPE_PROMISCUOUS.to_le_bytes();
        let mut r = self
            .emu
            .oid_set(self.adapter, sys::OID_GEN_CURRENT_PACKET_FILTER, &f);
        if r.status == sys::NDIS_STATUS_PENDING {
            self.emu.run_dpcs();
            r = self.emu.oid_completion().expect("the filter set completes");
        }
        assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    }

    /// Stops the adapter, after checking the driver broke none of the spec rules the device
    /// model ignores (e.g. a notification before DRIVER_OK).
    pub fn stop(self) {
        let errors = self.net(|n, _| n.driver_errors().to_vec());
        assert!(
            errors.is_empty(),
            "driver errors seen by the device: {errors:?}"
        );
        self.emu.return_receives(self.adapter);
        assert_eq!(self.emu.pause(self.adapter), sys::NDIS_STATUS_SUCCESS);
        self.emu.halt(self.adapter, sys::NdisHaltDeviceDisabled);
        self.emu.unload();
        assert_no_infallible_allocation(&self.emu);
    }
}

/// Checks that the driver made no infallible heap allocation (`Box::new`, `Vec::push` past
/// capacity, `collect()`, ...) in any callback so far: in the kernel each one bug-checks the
/// machine when the pool is exhausted. Counted on the host build (`DriverHeap`); the image's
/// allocations are pool calls, which the fault sweeps fail instead.
pub fn assert_no_infallible_allocation(emu: &Emulator) {
    assert_eq!(
        emu.infallible_heap_allocations(),
        (0, 0),
        "infallible driver heap allocations (count, bytes): each would bug-check an exhausted \
         pool (NDIS_EMU_INFALLIBLE_BACKTRACE=1 prints where)"
    );
}

/// A frame of `len` bytes to the adapter (directed: the packet filter TCP/IP sets passes it)
/// from a station that `seed` names.
pub fn frame(seed: u8, len: usize) -> Vec<u8> {
    let mut f = MAC.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, seed]);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend((0..len - 14).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)));
    f
}

/// `frame` as the wire carries it: zero-padded to Ethernet's 60-byte minimum.
pub fn on_the_wire(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// Sends `frames` and checks the device got them byte-exact (over all queue pairs; frames
/// shorter than 60 bytes zero-padded, as on the wire).
pub fn check_tx(nic: &Nic, frames: &[Vec<u8>]) {
    check_tx_in_pieces(nic, frames, usize::MAX)
}

/// As `check_tx`, each frame in MDLs of `piece` bytes.
pub fn check_tx_in_pieces(nic: &Nic, frames: &[Vec<u8>], piece: usize) {
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    nic.emu.send_fragmented(nic.adapter, &refs, piece);
    let completions = nic.emu.send_completions();
    let failed: Vec<(usize, i32)> = completions
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| *s != sys::NDIS_STATUS_SUCCESS)
        .map(|(i, (_, s))| (i, *s))
        .collect();
    assert!(
        failed.is_empty(),
        "failed sends (index, status): {failed:?}"
    );
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for p in 0..nic.device_pairs {
        seen.extend(nic.net(|n, _| n.take_transmitted(p)));
    }
    assert_eq!(seen.len(), frames.len(), "frames the device saw");
    let mut seen_sorted = seen.clone();
    seen_sorted.sort();
    let mut sent: Vec<Vec<u8>> = frames.iter().map(|f| on_the_wire(f)).collect();
    sent.sort();
    assert!(
        seen_sorted == sent,
        "the device saw different bytes than were sent"
    );
}

/// `frame` with an 802.1Q tag carrying `tci` after its addresses.
pub fn tagged(frame: &[u8], tci: u16) -> Vec<u8> {
    [
        &frame[..12],
        &[0x81, 0x00],
        &tci.to_be_bytes()[..],
        &frame[12..],
    ]
    .concat()
}

/// `frame` without the 802.1Q tag after its addresses.
pub fn untagged(frame: &[u8]) -> Vec<u8> {
    [&frame[..12], &frame[16..]].concat()
}
