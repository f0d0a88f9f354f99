//! The virtio-net device model, checked two ways:
//!
//! * by an independent driver, `virtio-drivers`' `VirtIONetRaw`, over a `Transport` that finds
//!   the registers the way a Windows driver does (PCI capability walk through `NdisMGetBusData`,
//!   `NdisMMapIoSpace`, `READ_REGISTER_*`) and a `Hal` over `NdisMAllocateSharedMemory`: if the
//!   model were shaped to our own driver rather than to the spec, this driver would not work;
//! * at register level, with hand-built rings in guest memory, for what no well-behaved driver
//!   does (garbage, misbehaviour switches, vector refusal).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ptr::NonNull;

use ndis_emu::devices::virtio_net::regs::{self, NO_VECTOR, common, feature, status};
use ndis_emu::devices::virtio_net::{VectorRefusal, VirtioNet, VirtioNetConfig};
use ndis_emu::pci::PciFunction;
use ndis_emu::vm_memory::{Bytes, GuestAddress};
use ndis_emu::{Config, Emulator, InterruptResources};
use ndis_sys as sys;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::InterruptStatus;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[path = "support/virtio_oracle.rs"]
mod virtio_oracle;
use virtio_oracle::{EmuTransport, allocate, entry, release};
#[path = "support/virtio_rings.rs"]
mod virtio_rings;
use virtio_rings::{
    BASE, RING_SIZE, Regs, Ring, SharedBuf, bring_up_pair, device_only, model, needs_reset,
    pcap_records,
};

thread_local! {
    /// Bounce buffers of `Hal::share`: physical address -> (virtual address, length).
    static SHARES: RefCell<HashMap<u64, (usize, u32)>> = RefCell::new(HashMap::new());
}

fn start(resources: InterruptResources, cfg: VirtioNetConfig) -> (Emulator, ndis_emu::AdapterId) {
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(entry), 0);
    let a = emu
        .add_adapter_with(resources, Box::new(VirtioNet::new(cfg)))
        .expect("initialize");
    (emu, a)
}

fn finish(emu: Emulator, a: ndis_emu::AdapterId) {
    let errors = model(&emu, emu.device_of(a), |m| m.driver_errors().to_vec());
    assert!(errors.is_empty(), "the oracle broke a rule: {errors:?}");
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload(); // finds any shared memory the Hal leaked
}

// ---- virtio-drivers' Hal over NdisMAllocateSharedMemory ----

struct EmuHal;

// SAFETY: dma_alloc returns zeroed, page-aligned shared memory the device reaches at the returned
// physical address; share bounces every buffer into such memory and unshare copies back.
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

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let length = buffer.len().max(1) as u32;
        let (pa, va) = allocate(length);
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller's buffer is valid for reads; the bounce block holds >= len bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    buffer.as_ptr().cast::<u8>(),
                    va as *mut u8,
                    buffer.len(),
                )
            };
        }
        SHARES.with(|s| s.borrow_mut().insert(pa, (va, length)));
        pa
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let (va, length) = SHARES
            .with(|s| s.borrow_mut().remove(&paddr))
            .expect("unshare of a shared buffer");
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: the caller's buffer is valid for writes and as long as when shared.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    va as *const u8,
                    buffer.as_ptr().cast::<u8>(),
                    buffer.len(),
                )
            };
        }
        release(paddr, va, length);
    }
}

type OracleNet = VirtIONetRaw<EmuHal, EmuTransport, 16>;

fn frame(n: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[0xFF; 6]);
    f[6..12].copy_from_slice(&[0x52, 0x54, 0, 0, 0, n]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    for (i, b) in f.iter_mut().enumerate().skip(14) {
        *b = (i as u8).wrapping_mul(7).wrapping_add(n);
    }
    f
}

#[test]
fn the_oracle_driver_transmits_and_receives_byte_exact_in_line_mode() {
    let (emu, a) = start(InterruptResources::line(), VirtioNetConfig::new(1));
    let dev = emu.device_of(a);
    let mut net = OracleNet::new(EmuTransport::new()).expect("virtio-drivers initializes");
    assert_eq!(net.mac_address(), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    let negotiated = model(&emu, dev, |m| m.negotiated_features());
    assert_ne!(negotiated & feature::VERSION_1, 0);
    assert_eq!(
        negotiated & feature::MQ,
        0,
        "virtio-drivers does not ask for MQ"
    );
    assert_eq!(
        model(&emu, dev, |m| m.status()),
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK
    );

    // TX: the oracle puts header and frame in separate descriptors.
    let sent: Vec<Vec<u8>> = (0..5u8).map(|n| frame(n, 60 + 97 * n as usize)).collect();
    for f in &sent {
        net.send(f).expect("send");
    }
    assert_eq!(model(&emu, dev, |m| m.transmitted_frames(0).to_vec()), sent);
    let isr = net.ack_interrupt();
    assert!(
        isr.contains(InterruptStatus::QUEUE_INTERRUPT),
        "{:#x}",
        isr.bits()
    );
    assert_eq!(net.ack_interrupt().bits(), 0, "ISR is read-to-clear");
    let counters = model(&emu, dev, |m| m.counters().clone());
    assert!(counters.line_interrupts >= 1);
    assert_eq!(
        counters.notifications[1], 5,
        "one doorbell per send on TX queue 1"
    );

    // RX: a buffer posted first, then a frame arrives; then a frame waits for its buffer.
    let mut buf = [0u8; 2048];
    // SAFETY: buf is not touched until receive_complete.
    let token = unsafe { net.receive_begin(&mut buf) }.expect("post");
    assert_eq!(net.poll_receive(), None);
    let incoming = frame(0xA0, 1514);
    emu.with_device::<VirtioNet, _>(dev, |m, bus| m.inject_frame(bus, 0, &incoming));
    assert_eq!(net.poll_receive(), Some(token));
    // SAFETY: the buffer passed to receive_begin.
    let (hdr, len) = unsafe { net.receive_complete(token, &mut buf) }.expect("complete");
    assert_eq!((hdr, len), (regs::NET_HDR_LEN, incoming.len()));
    assert_eq!(&buf[hdr..hdr + len], &incoming[..]);
    assert_eq!(u16::from_le_bytes([buf[10], buf[11]]), 1, "num_buffers");
    assert!(
        net.ack_interrupt()
            .contains(InterruptStatus::QUEUE_INTERRUPT)
    );

    let waiting = frame(0xB0, 64);
    emu.with_device::<VirtioNet, _>(dev, |m, bus| m.inject_frame(bus, 0, &waiting));
    assert_eq!(model(&emu, dev, |m| m.rx_backlog(0)), 1);
    let mut buf2 = [0u8; 2048];
    // SAFETY: as above.
    let token = unsafe { net.receive_begin(&mut buf2) }.expect("post");
    assert_eq!(
        net.poll_receive(),
        Some(token),
        "the doorbell delivered the backlog"
    );
    // SAFETY: as above.
    let (hdr, len) = unsafe { net.receive_complete(token, &mut buf2) }.expect("complete");
    assert_eq!(&buf2[hdr..hdr + len], &waiting[..]);
    assert_eq!(model(&emu, dev, |m| m.counters().rx_delivered[0]), 2);

    drop(net);
    finish(emu, a);
}

#[test]
fn the_oracle_gets_its_frames_back_with_loopback_and_a_pcap_records_both_ways() {
    let (emu, a) = start(InterruptResources::line(), VirtioNetConfig::new(1));
    let dev = emu.device_of(a);
    let capture = SharedBuf::default();
    let sink = capture.clone();
    model(&emu, dev, |m| {
        m.set_loopback(true);
        m.capture_to_writer(Box::new(sink)).unwrap();
    });
    let mut net = OracleNet::new(EmuTransport::new()).unwrap();
    let mut buf = [0u8; 2048];
    // SAFETY: buf is not touched until receive_complete.
    let token = unsafe { net.receive_begin(&mut buf) }.unwrap();
    let f = frame(7, 300);
    net.send(&f).unwrap();
    assert_eq!(net.poll_receive(), Some(token));
    // SAFETY: the buffer passed to receive_begin.
    let (hdr, len) = unsafe { net.receive_complete(token, &mut buf) }.unwrap();
    assert_eq!(&buf[hdr..hdr + len], &f[..]);
    drop(net);
    finish(emu, a);

    let pcap = capture.0.borrow().clone();
    assert_eq!(&pcap[0..4], &0xA1B2_C3D4u32.to_le_bytes());
    assert_eq!(
        u32::from_le_bytes(pcap[20..24].try_into().unwrap()),
        1,
        "Ethernet"
    );
    let records = pcap_records(&pcap);
    assert_eq!(records, vec![f.clone(), f], "TX then its looped-back RX");
}

#[test]
fn with_msix_granted_an_oracle_that_maps_no_vector_gets_no_interrupt() {
    // virtio-drivers never writes queue_msix_vector: every event stays NO_VECTOR.
    let (emu, a) = start(InterruptResources::msix(4), VirtioNetConfig::new(1));
    let dev = emu.device_of(a);
    let mut net = OracleNet::new(EmuTransport::new()).unwrap();
    let f = frame(1, 100);
    net.send(&f).unwrap();
    let counters = model(&emu, dev, |m| m.counters().clone());
    assert_eq!(
        model(&emu, dev, |m| m.transmitted_frames(0).to_vec()),
        vec![f]
    );
    assert!(counters.lost_interrupts >= 1);
    assert!(counters.message_interrupts.iter().all(|&n| n == 0));
    assert_eq!(counters.line_interrupts, 0);
    assert_eq!(
        net.ack_interrupt().bits(),
        0,
        "ISR is unused for queue events under MSI-X"
    );
    drop(net);
    finish(emu, a);
}

// ---- register level ----

const VERSION_1: u64 = feature::VERSION_1;

#[test]
fn the_capability_walk_finds_the_four_virtio_structures_and_msix() {
    let (emu, dev) = device_only(InterruptResources::msix(6), VirtioNetConfig::new(2));
    let c = emu.with_device::<VirtioNet, _>(dev, |m, _| *m.config());
    let u16_at = |o: usize| u16::from_le_bytes([c[o], c[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(c[o..o + 4].try_into().unwrap());
    assert_eq!((u16_at(0), u16_at(2)), (0x1AF4, 0x1041));
    assert!(c[8] >= 1, "revision >= 1 (non-transitional)");
    assert!(u16_at(0x2E) >= 0x40, "subsystem ID >= 0x40");
    assert_eq!(c[0x0B], 0x02, "network controller");
    assert_ne!(u16_at(6) & 0x10, 0, "capability list bit");
    let mut found = HashMap::new();
    let mut at = c[0x34] as usize;
    let mut msix = None;
    while at != 0 {
        match c[at] {
            0x09 => {
                found.insert(c[at + 3], (c[at + 4], u32_at(at + 8), u32_at(at + 12), at));
            }
            0x11 => msix = Some(at),
            other => panic!("unexpected capability {other:#x}"),
        }
        at = c[at + 1] as usize;
    }
    let mut kinds: Vec<u8> = found.keys().copied().collect();
    kinds.sort();
    assert_eq!(kinds, [1, 2, 3, 4], "COMMON, NOTIFY, ISR, DEVICE");
    let bar = found[&1].0;
    assert!(found.values().all(|v| v.0 == bar), "one BAR");
    assert_eq!(
        u32_at(0x10 + 4 * bar as usize) & 0x6,
        0x4,
        "a 64-bit memory BAR"
    );
    assert!(found[&1].2 >= common::SIZE as u32, "common cfg length");
    let notify_multiplier = u32_at(found[&2].3 + 16);
    assert!(notify_multiplier.is_power_of_two() && notify_multiplier % 2 == 0);
    let msix = msix.expect("an MSI-X capability");
    assert_eq!(
        u16_at(msix + 2) & 0x7FF,
        6 - 1,
        "table size = vectors - 1 (2N+2 = 6)"
    );
    assert_ne!(
        u16_at(msix + 2) & 0x8000,
        0,
        "MSI-X enabled when messages are granted"
    );
    let table = u32_at(msix + 4);
    let pba = u32_at(msix + 8);
    assert_eq!(table & 7, pba & 7, "table and PBA in one BAR");
    assert_ne!(table & 7, bar as u32, "not the virtio BAR");

    let r = Regs { emu: &emu, dev };
    assert_eq!(
        r.common(common::NUM_QUEUES, 2),
        2 * 2 + 1,
        "2 pairs + control"
    );
    let dev_cfg = |o: u64, w| r.read(regs::MODERN_BAR, found[&4].1 as u64 + o, w);
    assert_eq!(dev_cfg(0, 4), u32::from_le_bytes([0x52, 0x54, 0x00, 0x12]));
    assert_eq!(dev_cfg(6, 2), regs::NET_S_LINK_UP as u32);
    assert_eq!(dev_cfg(8, 2), 2, "max_virtqueue_pairs");
    r.set_common(common::QUEUE_SELECT, 2, 3);
    assert_eq!(r.common(common::QUEUE_NOTIFY_OFF, 2), 3);
    assert_eq!(r.common(common::QUEUE_SIZE, 2), 256);
    r.set_common(common::QUEUE_SELECT, 2, 9);
    assert_eq!(r.common(common::QUEUE_SIZE, 2), 0, "no queue 9");
}

#[test]
fn feature_negotiation_refuses_what_was_not_offered() {
    let mut cfg = VirtioNetConfig::new(1);
    cfg.features &= !feature::MQ;
    let (emu, dev) = device_only(InterruptResources::line(), cfg);
    let r = Regs { emu: &emu, dev };
    r.set_common(common::DEVICE_FEATURE_SELECT, 4, 0);
    assert_eq!(r.common(common::DEVICE_FEATURE, 4) as u64 & feature::MQ, 0);
    r.set_common(common::DEVICE_FEATURE_SELECT, 4, 1);
    assert_eq!(
        r.common(common::DEVICE_FEATURE, 4),
        1,
        "VERSION_1 in the high word"
    );
    r.set_common(common::DEVICE_STATUS, 1, 3);
    r.set_common(common::DRIVER_FEATURE, 4, feature::MQ as u32);
    r.set_common(common::DRIVER_FEATURE_SELECT, 4, 1);
    r.set_common(common::DRIVER_FEATURE, 4, 1);
    r.set_common(common::DEVICE_STATUS, 1, 0xB);
    assert_eq!(
        r.common(common::DEVICE_STATUS, 1),
        3,
        "FEATURES_OK does not stick"
    );
    r.bring_up(VERSION_1 | feature::MAC, |_| {});
    assert_eq!(
        r.model(|m| m.negotiated_features()),
        VERSION_1 | feature::MAC
    );
}

#[test]
fn reset_unmaps_every_vector_and_refused_mappings_read_back_no_vector() {
    let mut cfg = VirtioNetConfig::new(1);
    cfg.msix_vectors = 4;
    let (emu, dev) = device_only(InterruptResources::msix(4), cfg);
    let r = Regs { emu: &emu, dev };
    r.set_common(common::CONFIG_MSIX_VECTOR, 2, 3);
    assert_eq!(r.common(common::CONFIG_MSIX_VECTOR, 2), 3);
    r.set_common(common::QUEUE_SELECT, 2, 1);
    r.set_common(common::QUEUE_MSIX_VECTOR, 2, 2);
    assert_eq!(r.common(common::QUEUE_MSIX_VECTOR, 2), 2);
    // Outside the table: refused.
    r.set_common(common::QUEUE_SELECT, 2, 0);
    r.set_common(common::QUEUE_MSIX_VECTOR, 2, 4);
    assert_eq!(r.common(common::QUEUE_MSIX_VECTOR, 2), NO_VECTOR as u32);
    // The switch: vectors >= 1 refused, 0 still mapped.
    r.model(|m| m.refuse_vectors(VectorRefusal::AtOrAbove(1)));
    r.set_common(common::QUEUE_MSIX_VECTOR, 2, 1);
    assert_eq!(r.common(common::QUEUE_MSIX_VECTOR, 2), NO_VECTOR as u32);
    r.set_common(common::QUEUE_MSIX_VECTOR, 2, 0);
    assert_eq!(r.common(common::QUEUE_MSIX_VECTOR, 2), 0);
    r.model(|m| m.refuse_vectors(VectorRefusal::All));
    r.set_common(common::CONFIG_MSIX_VECTOR, 2, 0);
    assert_eq!(r.common(common::CONFIG_MSIX_VECTOR, 2), NO_VECTOR as u32);
    // Reset: everything unmapped, status 0.
    r.model(|m| m.refuse_vectors(VectorRefusal::None));
    r.set_common(common::CONFIG_MSIX_VECTOR, 2, 3);
    r.set_common(common::DEVICE_STATUS, 1, 3);
    r.set_common(common::DEVICE_STATUS, 1, 0);
    assert_eq!(r.common(common::DEVICE_STATUS, 1), 0);
    assert_eq!(r.common(common::CONFIG_MSIX_VECTOR, 2), NO_VECTOR as u32);
    for q in 0..3 {
        r.set_common(common::QUEUE_SELECT, 2, q);
        assert_eq!(
            r.common(common::QUEUE_MSIX_VECTOR, 2),
            NO_VECTOR as u32,
            "queue {q}"
        );
        assert_eq!(r.common(common::QUEUE_ENABLE, 2), 0);
    }
}

#[test]
fn line_mode_sets_isr_bits_that_clear_on_read() {
    let (emu, dev) = device_only(InterruptResources::line(), VirtioNetConfig::new(1));
    let r = Regs { emu: &emu, dev };
    let mut tx = None;
    r.bring_up(VERSION_1 | feature::STATUS, |r| {
        tx = Some(Ring::program(r, 1, BASE))
    });
    let mut tx = tx.unwrap();
    assert_eq!(r.isr(), 0);
    tx.transmit(&r, 0, b"hello");
    assert_eq!(
        r.model(|m| m.transmitted_frames(0).to_vec()),
        vec![b"hello".to_vec()]
    );
    assert_eq!(tx.used_idx(&r), 1);
    assert_eq!(r.isr(), regs::ISR_QUEUE);
    assert_eq!(r.isr(), 0, "read-to-clear");
    // Link down: config change, ISR bit 1, generation bumped, LINK_UP gone.
    let generation = r.common(common::CONFIG_GENERATION, 1);
    emu.with_device::<VirtioNet, _>(dev, |m, bus| m.set_link(bus, false));
    assert_eq!(r.isr(), regs::ISR_CONFIG);
    assert_eq!(r.common(common::CONFIG_GENERATION, 1), generation + 1);
    assert_eq!(r.read(regs::MODERN_BAR, regs::DEVICE_OFFSET + 6, 2), 0);
    assert_eq!(r.model(|m| m.counters().line_interrupts), 2);
    // The driver asks for no interrupts (VRING_AVAIL_F_NO_INTERRUPT): none comes.
    r.mem_write(tx.avail, 1u16.to_le());
    tx.transmit(&r, 1, b"quiet");
    assert_eq!(r.isr(), 0);
    let c = r.model(|m| m.counters().clone());
    assert_eq!((c.line_interrupts, c.suppressed_interrupts), (2, 1));
}

#[test]
fn msix_mode_raises_the_programmed_vector_and_holds_it_while_masked() {
    let (emu, dev) = device_only(
        InterruptResources::MsiX {
            requested: 4,
            granted: 2,
        },
        VirtioNetConfig::new(1),
    );
    let r = Regs { emu: &emu, dev };
    let mut tx = None;
    r.bring_up(VERSION_1 | feature::STATUS, |r| {
        r.set_common(common::CONFIG_MSIX_VECTOR, 2, 0);
        r.set_common(common::QUEUE_SELECT, 2, 1);
        r.set_common(common::QUEUE_MSIX_VECTOR, 2, 1);
        tx = Some(Ring::program(r, 1, BASE));
    });
    let mut tx = tx.unwrap();
    tx.transmit(&r, 0, b"one");
    let c = r.model(|m| m.counters().clone());
    assert_eq!(c.message_interrupts[..2], [0, 1]);
    assert_eq!(r.isr(), 0, "ISR unused for queue events under MSI-X");
    // Masked: pending in the PBA, delivered on unmask.
    emu.with_device::<VirtioNet, _>(dev, |m, bus| m.set_vector_masked(bus, 1, true));
    tx.transmit(&r, 1, b"two");
    assert!(r.model(|m| m.vector_pending(1)));
    let (pba, _) = regs::msix_layout(4);
    assert_eq!(r.read(regs::MSIX_BAR, pba, 4), 0b10, "PBA bit 1");
    assert_eq!(
        r.read(regs::MSIX_BAR, 16 + 12, 4),
        1,
        "table entry 1 masked"
    );
    assert_eq!(r.model(|m| m.counters().message_interrupts[1]), 1);
    emu.with_device::<VirtioNet, _>(dev, |m, bus| m.set_vector_masked(bus, 1, false));
    assert!(!r.model(|m| m.vector_pending(1)));
    assert_eq!(r.model(|m| m.counters().message_interrupts[1]), 2);
    // A vector in the table but beyond the two granted messages: lost.
    r.set_common(common::QUEUE_SELECT, 2, 1);
    r.set_common(common::QUEUE_MSIX_VECTOR, 2, 3);
    assert_eq!(
        r.common(common::QUEUE_MSIX_VECTOR, 2),
        3,
        "in the table: accepted"
    );
    tx.transmit(&r, 2, b"three");
    let c = r.model(|m| m.counters().clone());
    assert_eq!((c.message_interrupts[3], c.lost_interrupts), (0, 1));
    // Link change goes to config_msix_vector.
    emu.with_device::<VirtioNet, _>(dev, |m, bus| m.set_link(bus, false));
    assert_eq!(r.model(|m| m.counters().message_interrupts[0]), 1);
}

#[test]
fn rx_frames_wait_for_buffers_and_too_small_buffers_drop_the_frame() {
    let (emu, dev) = device_only(InterruptResources::line(), VirtioNetConfig::new(1));
    let r = Regs { emu: &emu, dev };
    let mut rx = None;
    r.bring_up(VERSION_1, |r| rx = Some(Ring::program(r, 0, BASE)));
    let mut rx = rx.unwrap();
    let big = frame(1, 200);
    emu.with_device::<VirtioNet, _>(dev, |m, bus| {
        m.inject_frame(bus, 0, &big);
        m.inject_frame(bus, 0, b"small")
    });
    assert_eq!(r.model(|m| m.rx_backlog(0)), 2);
    // A 64-byte buffer: too small for the 200-byte frame, which is dropped; "small" fits.
    rx.desc(&r, 0, rx.buffers, 64, 2, 0); // VRING_DESC_F_WRITE
    rx.publish(&r, 0);
    assert_eq!(rx.used_idx(&r), 1);
    let len = r.mem_read_u16(rx.used + 4 + 4) as usize;
    assert_eq!(len, regs::NET_HDR_LEN + 5);
    let got = emu.with_device::<VirtioNet, _>(dev, |_, bus| {
        let mut b = vec![0u8; 5];
        bus.memory()
            .read_slice(&mut b, GuestAddress(rx.buffers + regs::NET_HDR_LEN as u64))
            .unwrap();
        b
    });
    assert_eq!(got, b"small");
    let c = r.model(|m| m.counters().clone());
    assert_eq!((c.rx_dropped, c.rx_delivered[0]), (1, 1));
}

#[test]
fn a_burst_fills_posted_buffers_in_order_and_the_rest_waits_behind_the_backlog() {
    let (emu, dev) = device_only(InterruptResources::line(), VirtioNetConfig::new(1));
    let r = Regs { emu: &emu, dev };
    let mut rx = None;
    r.bring_up(VERSION_1, |r| rx = Some(Ring::program(r, 0, BASE)));
    let mut rx = rx.unwrap();
    let post = |rx: &mut Ring, slot: u16| {
        rx.desc(&r, slot, rx.buffers + 0x100 * slot as u64, 64, 2, 0); // VRING_DESC_F_WRITE
        rx.publish(&r, slot);
    };
    let (used_ring, buffers) = (rx.used, rx.buffers);
    let read = |slot: u16| {
        let used = used_ring + 4 + 8 * slot as u64;
        let len = r.mem_read_u16(used + 4) as usize - regs::NET_HDR_LEN;
        emu.with_device::<VirtioNet, _>(dev, |_, bus| {
            let mut b = vec![0u8; len];
            let at = buffers + 0x100 * slot as u64 + regs::NET_HDR_LEN as u64;
            bus.memory().read_slice(&mut b, GuestAddress(at)).unwrap();
            b
        })
    };
    for slot in 0..3 {
        post(&mut rx, slot);
    }
    let frames: Vec<Vec<u8>> = (0..6).map(|n| frame(n, 40 + n as usize)).collect();
    let big = frame(9, 200);
    let before = r.model(|m| m.counters().line_interrupts);
    emu.with_device::<VirtioNet, _>(dev, |m, bus| {
        m.inject_frames(
            bus,
            0,
            &[&frames[0], &big, &frames[1], &frames[2], &frames[3]],
        )
    });
    // 0 in buffer 0; the big one dropped with its buffer kept for 1; 2 in buffer 2; 3 waits.
    assert_eq!(rx.used_idx(&r), 3);
    assert_eq!(
        (read(0), read(1), read(2)),
        (frames[0].clone(), frames[1].clone(), frames[2].clone())
    );
    assert_eq!(r.model(|m| m.rx_backlog(0)), 1);
    let c = r.model(|m| m.counters().clone());
    assert_eq!((c.rx_dropped, c.rx_delivered[0]), (1, 3));
    assert_eq!(c.line_interrupts - before, 1, "one interrupt for the burst");
    // New frames queue behind the backlog, and leave in arrival order.
    emu.with_device::<VirtioNet, _>(dev, |m, bus| m.inject_frames(bus, 0, &[&frames[4]]));
    assert_eq!(r.model(|m| m.rx_backlog(0)), 2);
    post(&mut rx, 3);
    post(&mut rx, 4);
    assert_eq!(rx.used_idx(&r), 5);
    assert_eq!((read(3), read(4)), (frames[3].clone(), frames[4].clone()));
    assert_eq!(r.model(|m| m.rx_backlog(0)), 0);
}

#[test]
fn surprise_removal_reads_all_ones_everywhere() {
    let (emu, dev) = device_only(InterruptResources::msix(4), VirtioNetConfig::new(1));
    let r = Regs { emu: &emu, dev };
    r.model(|m| m.set_surprise_removed(true));
    assert_eq!(r.isr(), 0xFF);
    assert_eq!(r.common(common::DEVICE_FEATURE, 4), u32::MAX);
    assert_eq!(r.common(common::NUM_QUEUES, 2), 0xFFFF);
    assert_eq!(r.read(regs::MSIX_BAR, 0, 4), u32::MAX);
    let c = emu.with_device::<VirtioNet, _>(dev, |m, _| *m.config());
    assert_eq!(&c[0..4], &[0xFF; 4], "vendor/device read 0xFFFF");
    r.set_common(common::DEVICE_STATUS, 1, 1);
    r.model(|m| m.set_surprise_removed(false));
    assert_eq!(r.common(common::DEVICE_STATUS, 1), 0, "writes were dropped");
    assert_eq!(r.common(common::NUM_QUEUES, 2), 3);
    assert_eq!(r.isr(), 0);
}

#[test]
fn the_used_index_jump_and_a_stalled_queue_are_visible_to_the_driver() {
    let (emu, dev) = device_only(InterruptResources::line(), VirtioNetConfig::new(1));
    let r = Regs { emu: &emu, dev };
    let mut tx = None;
    r.bring_up(VERSION_1, |r| tx = Some(Ring::program(r, 1, BASE)));
    let mut tx = tx.unwrap();
    // Stalled: not consumed, not completed; un-stalling catches up.
    emu.with_device::<VirtioNet, _>(dev, |m, bus| m.set_stalled(bus, 1, true));
    tx.transmit(&r, 0, b"a");
    tx.transmit(&r, 1, b"b");
    assert_eq!(tx.used_idx(&r), 0);
    assert!(r.model(|m| m.transmitted_frames(0).is_empty()));
    assert_eq!(r.model(|m| m.counters().notifications[1]), 2);
    emu.with_device::<VirtioNet, _>(dev, |m, bus| m.set_stalled(bus, 1, false));
    assert_eq!(tx.used_idx(&r), 2);
    assert_eq!(r.model(|m| m.transmitted_frames(0).len()), 2);
    // The jump: the published index runs queue-size + 1 past the truth.
    r.model(|m| m.set_used_index_jump(1, true));
    tx.transmit(&r, 2, b"c");
    assert_eq!(tx.used_idx(&r), 3 + RING_SIZE + 1);
    r.model(|m| m.set_used_index_jump(1, false));
    tx.transmit(&r, 3, b"d");
    assert_eq!(tx.used_idx(&r), 4, "the device's own index was never wrong");
}

#[test]
fn garbage_from_the_driver_sets_needs_reset_instead_of_panicking() {
    let (emu, dev) = device_only(InterruptResources::line(), VirtioNetConfig::new(1));
    let r = Regs { emu: &emu, dev };
    let needs_reset =
        |r: &Regs<'_>| r.common(common::DEVICE_STATUS, 1) as u8 & status::DEVICE_NEEDS_RESET != 0;

    // A descriptor pointing far outside memory.
    let mut tx = None;
    r.bring_up(VERSION_1, |r| tx = Some(Ring::program(r, 1, BASE)));
    let mut tx = tx.unwrap();
    tx.desc(&r, 0, 0xDEAD_BEEF_0000, 64, 0, 0);
    tx.publish(&r, 0);
    assert!(needs_reset(&r));
    assert!(r.model(|m| m.device_error().unwrap().contains("reading")));
    assert_eq!(
        r.isr(),
        regs::ISR_CONFIG,
        "NEEDS_RESET after DRIVER_OK notifies"
    );
    tx.transmit(&r, 1, b"ignored");
    assert!(r.model(|m| m.transmitted_frames(0).is_empty()), "stopped");
    // Reset clears it; a descriptor loop is caught the same way.
    let mut tx = None;
    r.bring_up(VERSION_1, |r| tx = Some(Ring::program(r, 1, BASE)));
    let mut tx = tx.unwrap();
    assert!(!needs_reset(&r));
    tx.desc(&r, 0, BASE + 0x3000, 16, 1, 0); // NEXT -> itself
    tx.publish(&r, 0);
    assert!(
        needs_reset(&r),
        "{:?}",
        r.model(|m| m.device_error().map(String::from))
    );
    // A head index outside the ring.
    let mut tx = None;
    r.bring_up(VERSION_1, |r| tx = Some(Ring::program(r, 1, BASE)));
    let mut tx = tx.unwrap();
    tx.publish(&r, 200);
    assert!(needs_reset(&r));
    // An available index running more than a ring ahead.
    let mut tx = None;
    r.bring_up(VERSION_1, |r| tx = Some(Ring::program(r, 1, BASE)));
    let tx_ring = tx.take().unwrap();
    r.mem_write(tx_ring.avail + 2, 100u16.to_le());
    r.write(regs::MODERN_BAR, regs::NOTIFY_OFFSET + 4, 2, 1);
    assert!(needs_reset(&r));
    // Rings outside memory at queue enable; a length of 4 GiB - 1.
    r.bring_up(VERSION_1, |r| {
        Ring::program(r, 0, BASE + 1);
    });
    assert!(needs_reset(&r), "misaligned rings");
    assert!(r.model(|m| m.device_error().unwrap().contains("misaligned")));
    r.bring_up(VERSION_1, |r| {
        Ring::program(r, 0, 0x7000_0000_0000);
    });
    assert!(needs_reset(&r), "rings outside memory");
    let mut tx = None;
    r.bring_up(VERSION_1, |r| tx = Some(Ring::program(r, 1, BASE)));
    let mut tx = tx.unwrap();
    tx.desc(&r, 0, BASE, u32::MAX, 0, 0);
    tx.publish(&r, 0);
    assert!(needs_reset(&r));
    // Notifying queues that do not exist, and registers nobody defined: ignored.
    r.set_common(common::DEVICE_STATUS, 1, 0);
    r.write(regs::MODERN_BAR, regs::NOTIFY_OFFSET + 0xFFC, 2, 0x3FF);
    r.write(regs::MODERN_BAR, 0x3C, 4, 0xFFFF_FFFF);
    r.write(regs::MSIX_BAR, 0xFFC, 4, 1);
    assert_eq!(r.common(common::DEVICE_STATUS, 1), 0);
}

#[test]
fn the_control_queue_sets_queue_pairs_and_rx_mode() {
    let (emu, dev) = device_only(InterruptResources::line(), VirtioNetConfig::new(4));
    let r = Regs { emu: &emu, dev };
    let features = VERSION_1 | feature::MQ | feature::CTRL_VQ | feature::CTRL_RX;
    let mut ctrl = None;
    r.bring_up(features, |r| ctrl = Some(Ring::program(r, 8, BASE)));
    let mut ctrl = ctrl.unwrap();
    assert_eq!(r.model(|m| m.active_queue_pairs()), 1);
    let mut send = |slot: u16, command: &[u8]| -> u8 {
        let cmd = ctrl.buffers + 0x100 * slot as u64;
        let ack = cmd + 0x80;
        emu.with_device::<VirtioNet, _>(dev, |_, bus| {
            bus.memory()
                .write_slice(command, GuestAddress(cmd))
                .unwrap();
            bus.memory().write_obj(0xEEu8, GuestAddress(ack)).unwrap();
        });
        let head = 2 * slot;
        ctrl.desc(&r, head, cmd, command.len() as u32, 1, head + 1);
        ctrl.desc(&r, head + 1, ack, 1, 2, 0);
        ctrl.publish(&r, head);
        emu.with_device::<VirtioNet, _>(dev, |_, bus| {
            bus.memory().read_obj::<u8>(GuestAddress(ack)).unwrap()
        })
    };
    assert_eq!(send(0, &[4, 0, 3, 0]), 0, "VQ_PAIRS_SET 3: OK");
    assert_eq!(r.model(|m| m.active_queue_pairs()), 3);
    assert_eq!(send(1, &[4, 0, 5, 0]), 1, "5 > max pairs: ERR");
    assert_eq!(send(2, &[4, 0, 0, 0]), 1, "0 pairs: ERR");
    assert_eq!(send(3, &[0, 0, 1]), 0, "promiscuous on: OK");
    assert!(r.model(|m| m.promiscuous()));
    assert_eq!(r.model(|m| m.active_queue_pairs()), 3);
    let log = r.model(|m| m.control_log().to_vec());
    assert_eq!(log.len(), 4);
    assert_eq!((log[1].class, log[1].command, log[1].ack), (4, 0, 1));
}

#[test]
fn pair_queues_are_independent_with_mq() {
    let (emu, dev) = device_only(InterruptResources::line(), VirtioNetConfig::new(2));
    let r = Regs { emu: &emu, dev };
    let mut rings = Vec::new();
    r.bring_up(VERSION_1 | feature::MQ, |r| {
        rings.push(Ring::program(r, 1, BASE));
        rings.push(Ring::program(r, 3, BASE + 0x10_0000));
    });
    rings[1].transmit(&r, 0, b"pair one");
    rings[0].transmit(&r, 0, b"pair zero");
    assert_eq!(
        r.model(|m| m.transmitted_frames(0).to_vec()),
        vec![b"pair zero".to_vec()]
    );
    assert_eq!(
        r.model(|m| m.transmitted_frames(1).to_vec()),
        vec![b"pair one".to_vec()]
    );
}

/// Seeded garbage: random ring contents, register writes, doorbells and frames. The device must
/// never panic; whenever it stops, it says why and shows DEVICE_NEEDS_RESET.
#[test]
fn random_garbage_never_panics_the_device() {
    let (emu, dev) = device_only(
        InterruptResources::MsiX {
            requested: 6,
            granted: 3,
        },
        VirtioNetConfig::new(2),
    );
    let r = Regs { emu: &emu, dev };
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let all =
        VERSION_1 | feature::MQ | feature::CTRL_VQ | feature::CTRL_RX | feature::RING_EVENT_IDX;
    let bring_up = |r: &Regs<'_>| {
        let mut rings = Vec::new();
        r.bring_up(all, |r| {
            for q in 0..5u16 {
                r.set_common(common::QUEUE_SELECT, 2, q as u32);
                r.set_common(common::QUEUE_MSIX_VECTOR, 2, q as u32);
                rings.push(Ring::program(r, q, BASE + q as u64 * 0x10_0000));
            }
        });
        rings
    };
    let mut rings = bring_up(&r);
    let mut resets = 0;
    for _ in 0..3000 {
        let x = next();
        let q = (x % 5) as usize;
        match (x >> 8) % 8 {
            0..=2 => {
                // A random descriptor, half of them pointing at real buffers.
                let ring = &rings[q];
                let addr = if x & (1 << 20) != 0 {
                    ring.buffers + (next() % 0x1000)
                } else {
                    next()
                };
                let len = if x & (1 << 21) != 0 {
                    (next() % 2048) as u32
                } else {
                    next() as u32
                };
                ring.desc(
                    &r,
                    (next() % RING_SIZE as u64) as u16,
                    addr,
                    len,
                    (next() % 8) as u16,
                    (next() % 10) as u16,
                );
            }
            3 => {
                let head = (next() % 10) as u16;
                rings[q].publish(&r, head);
            }
            4 => r.mem_write(rings[q].avail + (next() % 24), next() as u16),
            5 => {
                let offset = next() % common::SIZE as u64;
                let width = [1, 2, 4][(next() % 3) as usize];
                if offset.is_multiple_of(width as u64) && offset != common::DEVICE_STATUS {
                    r.set_common(offset, width, next() as u32);
                }
            }
            6 => {
                let frame = vec![x as u8; (next() % 1600) as usize];
                emu.with_device::<VirtioNet, _>(dev, |m, bus| {
                    m.inject_frame(bus, (x % 2) as u16, &frame)
                });
            }
            _ => r.write(
                regs::MODERN_BAR,
                regs::NOTIFY_OFFSET + 4 * (next() % 8),
                2,
                0,
            ),
        }
        let s = r.common(common::DEVICE_STATUS, 1) as u8;
        if s & status::DEVICE_NEEDS_RESET != 0 {
            assert!(r.model(|m| m.device_error().is_some()));
            resets += 1;
            rings = bring_up(&r);
        }
    }
    assert!(
        resets > 10,
        "the garbage reached the device ({resets} resets)"
    );
}

/// virtio 1.2, 3.1.1: the driver MUST NOT notify before DRIVER_OK. The device ignores such a
/// doorbell (it may not consume buffers yet) and lists it as a driver error naming the queue;
/// it keeps working, and the list survives resets.
#[test]
fn a_notification_before_driver_ok_is_a_driver_error_naming_the_queue() {
    let (emu, dev) = device_only(InterruptResources::line(), VirtioNetConfig::new(1));
    let r = Regs { emu: &emu, dev };
    let mut rx = None;
    r.bring_up(VERSION_1, |r| {
        let mut ring = Ring::program(r, 0, BASE);
        ring.post_receive(r, 0); // publishes and rings the doorbell: too early
        assert_eq!(ring.used_idx(r), 0);
        rx = Some(ring);
    });
    let mut rx = rx.unwrap();
    let errors = r.model(|m| m.driver_errors().to_vec());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("queue 0: available-buffer notification before DRIVER_OK"),
        "{errors:?}"
    );
    assert_eq!(r.model(|m| m.counters().early_notifications), 1);
    assert!(!needs_reset(&r), "not a reason to stop the device");
    // Running, the device works, and later doorbells are fine.
    emu.with_device::<VirtioNet, _>(dev, |m, bus| m.inject_frame(bus, 0, &frame(1, 64)));
    assert_eq!(rx.used_idx(&r), 1);
    rx.post_receive(&r, 1);
    assert_eq!(r.model(|m| m.driver_errors().len()), 1);
    // After a reset (status 0) the rule applies again, to any queue.
    r.set_common(common::DEVICE_STATUS, 1, 0);
    r.write(regs::MODERN_BAR, regs::NOTIFY_OFFSET + 4, 2, 1);
    let errors = r.model(|m| m.driver_errors().to_vec());
    assert_eq!(errors.len(), 2, "kept across the reset: {errors:?}");
    assert!(errors[1].starts_with("queue 1: "), "{errors:?}");
    assert!(errors[1].contains("status 0x00"), "{errors:?}");
    // A driver that notifies only after DRIVER_OK leaves the list as it was.
    let (mut rx, _tx) = bring_up_pair(&emu, dev, VERSION_1);
    rx.post_receive(&r, 0);
    assert_eq!(r.model(|m| m.counters().early_notifications), 2);
}

/// ACCESS_PLATFORM is offered only when the test asks; offered, FEATURES_OK does not stick
/// unless the driver accepts it (virtio 1.2, 6.1: the device MAY fail without it). MAC can be
/// left out of the offer like any other feature.
#[test]
fn access_platform_and_mac_are_offered_as_configured() {
    let offered = |cfg: VirtioNetConfig| {
        let (emu, dev) = device_only(InterruptResources::line(), cfg);
        let r = Regs { emu: &emu, dev };
        r.set_common(common::DEVICE_FEATURE_SELECT, 4, 0);
        let lo = r.common(common::DEVICE_FEATURE, 4) as u64;
        r.set_common(common::DEVICE_FEATURE_SELECT, 4, 1);
        lo | (r.common(common::DEVICE_FEATURE, 4) as u64) << 32
    };
    let default = offered(VirtioNetConfig::new(1));
    assert_eq!(
        default & feature::ACCESS_PLATFORM,
        0,
        "not offered by default"
    );
    assert_ne!(default & feature::MAC, 0);
    let mut cfg = VirtioNetConfig::new(1);
    cfg.features = (cfg.features | feature::ACCESS_PLATFORM) & !feature::MAC;
    let f = offered(cfg.clone());
    assert_ne!(f & feature::ACCESS_PLATFORM, 0);
    assert_eq!(f & feature::MAC, 0);

    let (emu, dev) = device_only(InterruptResources::line(), cfg);
    let r = Regs { emu: &emu, dev };
    r.set_common(common::DEVICE_STATUS, 1, 3);
    r.set_common(common::DRIVER_FEATURE_SELECT, 4, 1);
    r.set_common(common::DRIVER_FEATURE, 4, 1); // VERSION_1 without ACCESS_PLATFORM
    r.set_common(common::DEVICE_STATUS, 1, 0xB);
    assert_eq!(
        r.common(common::DEVICE_STATUS, 1),
        3,
        "FEATURES_OK does not stick without ACCESS_PLATFORM"
    );
    let (mut rx, mut tx) = bring_up_pair(&emu, dev, VERSION_1 | feature::ACCESS_PLATFORM);
    assert_eq!(
        r.model(|m| m.negotiated_features()),
        VERSION_1 | feature::ACCESS_PLATFORM
    );
    tx.transmit(&r, 0, &frame(2, 60));
    assert_eq!(r.model(|m| m.transmitted_frames(0).len()), 1);
    rx.post_receive(&r, 0);
    emu.with_device::<VirtioNet, _>(dev, |m, bus| m.inject_frame(bus, 0, &frame(3, 60)));
    assert_eq!(rx.used_idx(&r), 1);
}

/// TX chains are completed with used length 0 unless the test asks for another value (a device
/// reporting the bytes it read, which drivers must tolerate); the switch survives a reset.
#[test]
fn transmit_used_length_is_zero_unless_switched() {
    let (emu, dev) = device_only(InterruptResources::line(), VirtioNetConfig::new(1));
    let r = Regs { emu: &emu, dev };
    let used_len = |tx: &Ring, n: u64| r.mem_read_u16(tx.used + 4 + 8 * n + 4);
    let (_rx, mut tx) = bring_up_pair(&emu, dev, VERSION_1);
    tx.transmit(&r, 0, &frame(1, 60));
    assert_eq!(used_len(&tx, 0), 0);
    r.model(|m| m.set_tx_used_length(1514));
    tx.transmit(&r, 1, &frame(2, 60));
    assert_eq!(used_len(&tx, 1), 1514);
    let (_rx, mut tx) = bring_up_pair(&emu, dev, VERSION_1);
    tx.transmit(&r, 0, &frame(3, 60));
    assert_eq!(used_len(&tx, 0), 1514, "survives the reset");
    assert!(!needs_reset(&r));
    assert_eq!(r.model(|m| m.transmitted_frames(0).len()), 3);
}

/// An indirect table (`VIRTIO_F_INDIRECT_DESC`) is followed as the chain it holds; each rule a
/// driver must keep with one (virtio 1.2, 2.7.5.3.1) sets DEVICE_NEEDS_RESET with a reason when
/// broken: no table without the feature, no `INDIRECT` with `NEXT`, whole descriptors and no
/// more than the queue size, no table inside a table.
#[test]
fn indirect_tables_are_followed_and_their_rules_enforced() {
    let (emu, dev) = device_only(InterruptResources::line(), VirtioNetConfig::new(1));
    let r = Regs { emu: &emu, dev };
    // Past both rings of `bring_up_pair` (TX at BASE + 1 MiB ends 0x8F000 later).
    let table = BASE + 0x1A_0000;
    let data = table + 0x1000;
    let payload = frame(7, 200);
    let (a, b) = payload.split_at(60);
    r.mem_write(data, [0u8; regs::NET_HDR_LEN]);
    r.model(|m| m.set_tx_used_length(0));
    let write_data = |at: u64, bytes: &[u8]| {
        r.emu.with_device::<VirtioNet, _>(r.dev, |_, bus| {
            bus.memory().write_slice(bytes, GuestAddress(at)).unwrap()
        })
    };
    write_data(data + 0x100, a);
    write_data(data + 0x200, b);
    // Entry `i` of the table: (address, length, flags, next).
    let entry = |i: u64, addr: u64, len: u32, flags: u16, next: u16| {
        let at = table + 16 * i;
        r.mem_write(at, addr.to_le());
        r.mem_write(at + 8, len.to_le());
        r.mem_write(at + 12, flags.to_le());
        r.mem_write(at + 14, next.to_le());
    };
    const NEXT: u16 = 1;
    const INDIRECT: u16 = 4;
    let fill_table = || {
        entry(0, data, regs::NET_HDR_LEN as u32, NEXT, 1);
        entry(1, data + 0x100, a.len() as u32, NEXT, 2);
        entry(2, data + 0x200, b.len() as u32, 0, 0);
    };
    let features = VERSION_1 | feature::RING_INDIRECT_DESC;

    // Followed: header and two pieces, from one ring descriptor.
    let (_rx, mut tx) = bring_up_pair(&emu, dev, features);
    fill_table();
    tx.desc(&r, 0, table, 48, INDIRECT, 0);
    tx.publish(&r, 0);
    assert!(
        !needs_reset(&r),
        "{:?}",
        r.model(|m| m.device_error().map(String::from))
    );
    assert_eq!(
        r.model(|m| m.transmitted_frames(0).to_vec()),
        vec![payload.clone()]
    );
    // Also after a direct descriptor (the device must take that layout too).
    r.mem_write(data + 0x300, [0u8; regs::NET_HDR_LEN]);
    entry(0, data + 0x100, a.len() as u32, NEXT, 1);
    entry(1, data + 0x200, b.len() as u32, 0, 0);
    tx.desc(&r, 1, data + 0x300, regs::NET_HDR_LEN as u32, NEXT, 2);
    tx.desc(&r, 2, table, 32, INDIRECT, 0);
    tx.publish(&r, 1);
    assert!(!needs_reset(&r));
    assert_eq!(r.model(|m| m.transmitted_frames(0).len()), 2);
    assert_eq!(r.model(|m| m.transmitted_frames(0)[1].clone()), payload);

    let broken = |features: u64, ring: (u32, u16), why: &str| {
        let (_rx, mut tx) = bring_up_pair(&emu, dev, features);
        fill_table();
        tx.desc(&r, 0, table, ring.0, ring.1, 1);
        tx.publish(&r, 0);
        assert!(needs_reset(&r), "{why}: not refused");
        let error = r.model(|m| m.device_error().map(String::from)).unwrap();
        assert!(error.contains(why), "{why}: {error}");
        assert!(
            r.model(|m| m.transmitted_frames(0).len()) <= 2,
            "{why}: nothing sent"
        );
    };
    broken(
        VERSION_1,
        (48, INDIRECT),
        "VIRTIO_F_INDIRECT_DESC was not negotiated",
    );
    broken(
        features,
        (48, INDIRECT | NEXT),
        "both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT",
    );
    broken(features, (40, INDIRECT), "indirect table of 40 bytes");
    broken(features, (0, INDIRECT), "indirect table of 0 bytes");
    broken(features, (16 * 9, INDIRECT), "indirect table of 144 bytes");
    // Ring descriptors and the table together longer than the queue (8): 2 + 7.
    let (_rx, mut tx) = bring_up_pair(&emu, dev, features);
    fill_table();
    tx.desc(&r, 0, data + 0x300, regs::NET_HDR_LEN as u32, NEXT, 1);
    tx.desc(&r, 1, data + 0x100, 4, NEXT, 2);
    tx.desc(&r, 2, table, 16 * 7, INDIRECT, 0);
    tx.publish(&r, 0);
    assert!(needs_reset(&r));
    let error = r.model(|m| m.device_error().map(String::from)).unwrap();
    assert!(
        error.contains("indirect table of 112 bytes after 2 ring descriptors"),
        "{error}"
    );
    // A table in a table: the chain walk refuses it.
    let (_rx, mut tx) = bring_up_pair(&emu, dev, features);
    fill_table();
    entry(1, table, 48, INDIRECT, 0);
    tx.desc(&r, 0, table, 48, INDIRECT, 0);
    tx.publish(&r, 0);
    assert!(needs_reset(&r), "a nested table is refused");
}
