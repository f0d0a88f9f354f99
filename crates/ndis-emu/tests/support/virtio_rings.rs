//! Register-level access to a device-only virtio-net model (no driver): common configuration
//! through `with_device`, feature negotiation, and hand-built split rings in guest memory, for
//! tests of what no well-behaved driver does and of what `virtio-drivers` never negotiates.
//! Shared by `tests/virtio_net_model.rs`, `tests/virtio_net_checksum.rs` and
//! `tests/virtio_net_tso.rs`.

// Each includer uses a different subset.
#![allow(dead_code)]

use ndis_emu::devices::virtio_net::regs::{self, common, status};
use ndis_emu::devices::virtio_net::{VirtioNet, VirtioNetConfig};
use ndis_emu::pci::PciFunction;
use ndis_emu::vm_memory::{Bytes, GuestAddress};
use ndis_emu::{Config, DeviceId, Emulator, GUEST_MEMORY_BASE, InterruptResources};

pub fn model<R>(emu: &Emulator, dev: DeviceId, f: impl FnOnce(&mut VirtioNet) -> R) -> R {
    emu.with_device::<VirtioNet, _>(dev, |m, _| f(m))
}

/// Register access to a device-only model (no driver), through `with_device`.
pub struct Regs<'a> {
    pub emu: &'a Emulator,
    pub dev: DeviceId,
}

impl Regs<'_> {
    pub fn read(&self, bar: u8, offset: u64, width: u32) -> u32 {
        self.emu
            .with_device::<VirtioNet, _>(self.dev, |m, bus| m.mmio_read(bus, bar, offset, width))
            as u32
    }
    pub fn write(&self, bar: u8, offset: u64, width: u32, value: u32) {
        self.emu.with_device::<VirtioNet, _>(self.dev, |m, bus| {
            m.mmio_write(bus, bar, offset, width, value.into())
        })
    }
    pub fn common(&self, field: u64, width: u32) -> u32 {
        self.read(regs::MODERN_BAR, regs::COMMON_OFFSET + field, width)
    }
    pub fn set_common(&self, field: u64, width: u32, value: u32) {
        self.write(regs::MODERN_BAR, regs::COMMON_OFFSET + field, width, value)
    }
    pub fn isr(&self) -> u8 {
        self.read(regs::MODERN_BAR, regs::ISR_OFFSET, 1) as u8
    }
    pub fn model<R>(&self, f: impl FnOnce(&mut VirtioNet) -> R) -> R {
        model(self.emu, self.dev, f)
    }
    pub fn mem_write<T: ndis_emu::vm_memory::ByteValued>(&self, at: u64, v: T) {
        self.emu.with_device::<VirtioNet, _>(self.dev, |_, bus| {
            bus.memory().write_obj(v, GuestAddress(at)).unwrap()
        })
    }
    pub fn mem_read_u16(&self, at: u64) -> u16 {
        self.emu.with_device::<VirtioNet, _>(self.dev, |_, bus| {
            bus.memory().read_obj::<u16>(GuestAddress(at)).unwrap()
        })
    }

    /// Negotiates `features` and sets DRIVER_OK after `setup` (queue programming) ran.
    pub fn bring_up(&self, features: u64, setup: impl FnOnce(&Self)) {
        self.set_common(common::DEVICE_STATUS, 1, 0);
        self.set_common(
            common::DEVICE_STATUS,
            1,
            (status::ACKNOWLEDGE | status::DRIVER) as u32,
        );
        self.set_common(common::DRIVER_FEATURE_SELECT, 4, 0);
        self.set_common(common::DRIVER_FEATURE, 4, features as u32);
        self.set_common(common::DRIVER_FEATURE_SELECT, 4, 1);
        self.set_common(common::DRIVER_FEATURE, 4, (features >> 32) as u32);
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        self.set_common(common::DEVICE_STATUS, 1, s as u32);
        assert_eq!(
            self.common(common::DEVICE_STATUS, 1) as u8,
            s,
            "FEATURES_OK stuck"
        );
        setup(self);
        self.set_common(common::DEVICE_STATUS, 1, (s | status::DRIVER_OK) as u32);
    }
}

pub fn device_only(resources: InterruptResources, cfg: VirtioNetConfig) -> (Emulator, DeviceId) {
    let emu = Emulator::new(Config::default());
    let (dev, _) = emu.add_device_with(resources, Box::new(VirtioNet::new(cfg)));
    (emu, dev)
}

/// A hand-built split ring of 8 entries in guest memory (no NDIS allocation: the device only
/// needs addresses inside the region).
pub struct Ring {
    pub queue: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub buffers: u64,
    pub next: u16,
}

pub const RING_SIZE: u16 = 8;
/// The size of each slot's buffer for [`Ring::transmit_large`]: the 8 of a ring end 0x8F000
/// bytes past its base, before the next ring a test programs 1 MiB further.
pub const LARGE_BUFFER: u64 = 0x1_1000;

impl Ring {
    pub fn program(r: &Regs<'_>, queue: u16, base: u64) -> Ring {
        let ring = Ring {
            queue,
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            buffers: base + 0x3000,
            next: 0,
        };
        if (GUEST_MEMORY_BASE..GUEST_MEMORY_BASE + ndis_emu::GUEST_MEMORY_SIZE).contains(&base) {
            // A fresh ring, as a driver initializes it after every reset.
            r.emu.with_device::<VirtioNet, _>(r.dev, |_, bus| {
                bus.memory()
                    .write_slice(&[0u8; 0x3000], GuestAddress(base))
                    .unwrap()
            });
        }
        r.set_common(common::QUEUE_SELECT, 2, queue as u32);
        r.set_common(common::QUEUE_SIZE, 2, RING_SIZE as u32);
        for (field, value) in [
            (common::QUEUE_DESC, ring.desc),
            (common::QUEUE_DRIVER, ring.avail),
            (common::QUEUE_DEVICE, ring.used),
        ] {
            r.set_common(field, 4, value as u32);
            r.set_common(field + 4, 4, (value >> 32) as u32);
        }
        r.set_common(common::QUEUE_ENABLE, 2, 1);
        ring
    }

    /// Descriptor `i`: (address, length, flags, next).
    pub fn desc(&self, r: &Regs<'_>, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = self.desc + 16 * i as u64;
        r.mem_write(at, addr.to_le());
        r.mem_write(at + 8, len.to_le());
        r.mem_write(at + 12, flags.to_le());
        r.mem_write(at + 14, next.to_le());
    }

    /// Makes chain `head` available and rings the doorbell.
    pub fn publish(&mut self, r: &Regs<'_>, head: u16) {
        r.mem_write(
            self.avail + 4 + 2 * (self.next % RING_SIZE) as u64,
            head.to_le(),
        );
        self.next = self.next.wrapping_add(1);
        r.mem_write(self.avail + 2, self.next.to_le());
        r.write(
            regs::MODERN_BAR,
            regs::NOTIFY_OFFSET + self.queue as u64 * regs::NOTIFY_OFF_MULTIPLIER as u64,
            2,
            self.queue as u32,
        );
    }

    /// A TX chain of a zeroed header + `payload` in one descriptor at slot `slot`.
    pub fn transmit(&mut self, r: &Regs<'_>, slot: u16, payload: &[u8]) {
        self.transmit_with_header(r, slot, &[0; regs::NET_HDR_LEN], payload);
    }

    /// A TX chain of `header` + `payload` in one descriptor at slot `slot`.
    pub fn transmit_with_header(
        &mut self,
        r: &Regs<'_>,
        slot: u16,
        header: &[u8; regs::NET_HDR_LEN],
        payload: &[u8],
    ) {
        let buf = self.buffers + 0x800 * slot as u64;
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(payload);
        r.emu.with_device::<VirtioNet, _>(r.dev, |_, bus| {
            bus.memory().write_slice(&bytes, GuestAddress(buf)).unwrap()
        });
        self.desc(r, slot, buf, bytes.len() as u32, 0, 0);
        self.publish(r, slot);
    }

    /// A TX chain of `header` + `packet` in one descriptor at slot `slot`, for packets up to
    /// [`LARGE_BUFFER`] bytes (a 64 KiB GSO packet and more): each slot has a buffer of that size
    /// after the 2 KiB ones, which it does not overlap.
    pub fn transmit_large(
        &mut self,
        r: &Regs<'_>,
        slot: u16,
        header: &[u8; regs::NET_HDR_LEN],
        packet: &[u8],
    ) {
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(packet);
        assert!(bytes.len() as u64 <= LARGE_BUFFER, "{} bytes", bytes.len());
        let buf = self.buffers + 0x800 * RING_SIZE as u64 + LARGE_BUFFER * slot as u64;
        r.emu.with_device::<VirtioNet, _>(r.dev, |_, bus| {
            bus.memory().write_slice(&bytes, GuestAddress(buf)).unwrap()
        });
        self.desc(r, slot, buf, bytes.len() as u32, 0, 0);
        self.publish(r, slot);
    }

    pub fn used_idx(&self, r: &Regs<'_>) -> u16 {
        r.mem_read_u16(self.used + 2)
    }

    /// Posts a 0x800-byte device-writable RX buffer as chain `slot`.
    pub fn post_receive(&mut self, r: &Regs<'_>, slot: u16) {
        self.desc(r, slot, self.buffers + 0x800 * slot as u64, 0x800, 2, 0); // VRING_DESC_F_WRITE
        self.publish(r, slot);
    }

    /// What the device wrote into the buffer of the `n`-th used element (posted by
    /// [`post_receive`](Self::post_receive)): header and frame.
    pub fn received(&self, r: &Regs<'_>, n: u16) -> Vec<u8> {
        let element = self.used + 4 + 8 * (n % RING_SIZE) as u64;
        let id = r.mem_read_u16(element) as u64;
        let len = r.mem_read_u16(element + 4) as usize;
        r.emu.with_device::<VirtioNet, _>(r.dev, |_, bus| {
            let mut b = vec![0u8; len];
            bus.memory()
                .read_slice(&mut b, GuestAddress(self.buffers + 0x800 * id))
                .unwrap();
            b
        })
    }
}

pub const BASE: u64 = GUEST_MEMORY_BASE + 0x10_0000;

/// Negotiates `features` and programs RX ring 0 and TX ring 1 of pair 0.
pub fn bring_up_pair(emu: &Emulator, dev: DeviceId, features: u64) -> (Ring, Ring) {
    let r = Regs { emu, dev };
    let mut rings = None;
    r.bring_up(features, |r| {
        rings = Some((
            Ring::program(r, 0, BASE),
            Ring::program(r, 1, BASE + 0x10_0000),
        ))
    });
    rings.unwrap()
}

/// Whether the device set DEVICE_NEEDS_RESET (it refused something the driver did).
pub fn needs_reset(r: &Regs<'_>) -> bool {
    r.common(common::DEVICE_STATUS, 1) as u8 & status::DEVICE_NEEDS_RESET != 0
}

/// A pcap sink the test can read back.
#[derive(Clone, Default)]
pub struct SharedBuf(pub std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The frames of a pcap capture (after its 24-byte file header, 16-byte record headers).
pub fn pcap_records(pcap: &[u8]) -> Vec<Vec<u8>> {
    let mut at = 24;
    let mut records = Vec::new();
    while at < pcap.len() {
        let n = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        records.push(pcap[at + 16..at + 16 + n].to_vec());
        at += 16 + n;
    }
    records
}
