//! The driver-side virtio code against independent device-side code: `virtio-queue` (rust-vmm)
//! plays the device over `vm-memory` guest memory for the split ring, and small fake register
//! windows play the PCI transport.
#![cfg(not(windows))]

use std::cell::{Cell, RefCell};

use ndis::hw::{ConfigSpace, DeviceMemory, Registers};
use vionet::virtio::net::features;
use vionet::virtio::pci::{
    self, CapRegion, IsrStatus, NO_VECTOR, PciError, Transport, TransportError, VectorRefused,
    find_capabilities, status,
};
use vionet::virtio::queue::{
    AVAIL_F_NO_INTERRUPT, Buffer, First, Layout, QueueError, Slot, SplitQueue,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

// ---------------------------------------------------------------------------------------------
// Split ring against virtio-queue
// ---------------------------------------------------------------------------------------------

const RING_BASE: u64 = 0x1_0000;
const DATA_BASE: u64 = 0x10_0000;
const MEM_SIZE: usize = 0x40_0000;

/// `DeviceMemory` over a region of guest memory: the driver's view of its ring block.
#[derive(Debug)]
struct GuestRegion<'a> {
    mem: &'a GuestMemoryMmap,
    base: u64,
    len: usize,
}

impl GuestRegion<'_> {
    fn addr(&self, offset: usize, size: usize) -> GuestAddress {
        assert!(offset + size <= self.len, "access outside the ring block");
        GuestAddress(self.base + offset as u64)
    }
}

impl DeviceMemory for GuestRegion<'_> {
    fn device_address(&self) -> u64 {
        self.base
    }
    fn len(&self) -> usize {
        self.len
    }
    fn read_u16(&self, offset: usize) -> u16 {
        u16::from_le(self.mem.read_obj(self.addr(offset, 2)).unwrap())
    }
    fn read_u32(&self, offset: usize) -> u32 {
        u32::from_le(self.mem.read_obj(self.addr(offset, 4)).unwrap())
    }
    fn read_u64(&self, offset: usize) -> u64 {
        u64::from_le(self.mem.read_obj(self.addr(offset, 8)).unwrap())
    }
    fn write_u16(&self, offset: usize, value: u16) {
        self.mem
            .write_obj(value.to_le(), self.addr(offset, 2))
            .unwrap()
    }
    fn write_u32(&self, offset: usize, value: u32) {
        self.mem
            .write_obj(value.to_le(), self.addr(offset, 4))
            .unwrap()
    }
    fn write_u64(&self, offset: usize, value: u64) {
        self.mem
            .write_obj(value.to_le(), self.addr(offset, 8))
            .unwrap()
    }
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        self.mem
            .read_slice(buf, self.addr(offset, buf.len()))
            .unwrap()
    }
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        self.mem
            .write_slice(data, self.addr(offset, data.len()))
            .unwrap()
    }
}

fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

type DriverQueue<'a> = SplitQueue<GuestRegion<'a>, Vec<Slot>>;

/// A driver queue of `size` entries in `mem`, and the `virtio-queue` device side programmed with
/// the addresses the driver reports (as the transport would).
fn pair(mem: &GuestMemoryMmap, size: u16, event_idx: bool) -> (DriverQueue<'_>, Queue) {
    let layout = Layout::new(size).unwrap();
    let region = GuestRegion {
        mem,
        base: RING_BASE,
        len: layout.total,
    };
    let drv = SplitQueue::new(
        region,
        vec![Slot::EMPTY; usize::from(size)],
        size,
        event_idx,
    )
    .unwrap();
    let dev = device_for(&drv, event_idx);
    (drv, dev)
}

fn device_for(drv: &DriverQueue<'_>, event_idx: bool) -> Queue {
    let mut dev = Queue::new(drv.size()).unwrap();
    dev.set_size(drv.size());
    let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
    let (lo, hi) = split(drv.desc_address());
    dev.set_desc_table_address(lo, hi);
    let (lo, hi) = split(drv.driver_address());
    dev.set_avail_ring_address(lo, hi);
    let (lo, hi) = split(drv.device_address());
    dev.set_used_ring_address(lo, hi);
    dev.set_event_idx(event_idx);
    dev.set_ready(true);
    dev
}

/// What the device saw in a chain: head, bytes it read, writable (addr, len)s.
type Taken = (u16, Vec<u8>, Vec<(u64, u32)>);

/// Device side: takes the next chain.
fn device_take(dev: &mut Queue, mem: &GuestMemoryMmap) -> Option<Taken> {
    let chain = dev.pop_descriptor_chain(mem)?;
    let head = chain.head_index();
    let mut read = Vec::new();
    let mut writable = Vec::new();
    for d in chain {
        if d.is_write_only() {
            writable.push((d.addr().0, d.len()));
        } else {
            let mut b = vec![0u8; d.len() as usize];
            mem.read_slice(&mut b, d.addr()).unwrap();
            read.extend_from_slice(&b);
        }
    }
    Some((head, read, writable))
}

/// Device side: writes `data` across the writable buffers; returns the bytes written.
fn device_fill(mem: &GuestMemoryMmap, writable: &[(u64, u32)], data: &[u8]) -> u32 {
    let mut rest = data;
    for &(addr, len) in writable {
        let n = rest.len().min(len as usize);
        mem.write_slice(&rest[..n], GuestAddress(addr)).unwrap();
        rest = &rest[n..];
    }
    assert!(rest.is_empty(), "test data larger than the chain");
    data.len() as u32
}

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u32 * 7) >> 1) as u8)
        .collect()
}

#[test]
fn transmit_and_receive_round_trip_byte_exact() {
    let mem = guest_memory();
    let (mut drv, mut dev) = pair(&mem, 16, false);

    // Transmit: header + payload, both device-readable.
    let hdr = vionet::virtio::net::NetHeader::default().encode();
    let payload = pattern(1, 1514);
    mem.write_slice(&hdr, GuestAddress(DATA_BASE)).unwrap();
    mem.write_slice(&payload, GuestAddress(DATA_BASE + 0x100))
        .unwrap();
    let tx = [
        Buffer {
            addr: DATA_BASE,
            len: 12,
            device_writable: false,
        },
        Buffer {
            addr: DATA_BASE + 0x100,
            len: payload.len() as u32,
            device_writable: false,
        },
    ];
    let head = drv.add(&tx).unwrap();
    assert_eq!(drv.num_free(), 14);
    assert!(drv.should_notify());
    assert_eq!(
        drv.pop_used(),
        Ok(None),
        "nothing used before the device acts"
    );

    let (dhead, read, writable) = device_take(&mut dev, &mem).unwrap();
    assert_eq!(dhead, head);
    assert!(writable.is_empty());
    assert_eq!(&read[..12], &hdr);
    assert_eq!(&read[12..], &payload[..]);
    dev.add_used(&mem, dhead, 0).unwrap();
    assert_eq!(drv.pop_used(), Ok(Some((head, 0))));
    assert_eq!(drv.num_free(), 16);
    assert_eq!(drv.in_flight(), 0);

    // Receive: one writable buffer, the device writes a header and a frame into it.
    let rx = [Buffer {
        addr: DATA_BASE + 0x1000,
        len: 2048,
        device_writable: true,
    }];
    let head = drv.add(&rx).unwrap();
    let (dhead, read, writable) = device_take(&mut dev, &mem).unwrap();
    assert_eq!(dhead, head);
    assert!(read.is_empty());
    assert_eq!(writable, vec![(DATA_BASE + 0x1000, 2048)]);
    let frame = pattern(2, 12 + 1000);
    let n = device_fill(&mem, &writable, &frame);
    dev.add_used(&mem, dhead, n).unwrap();
    let (h, len) = drv.pop_used().unwrap().unwrap();
    assert_eq!((h, len), (head, 1012));
    let mut got = vec![0u8; len as usize];
    mem.read_slice(&mut got, GuestAddress(DATA_BASE + 0x1000))
        .unwrap();
    assert_eq!(got, frame);
}

#[test]
fn chain_errors_are_reported_and_leave_the_queue_usable() {
    let mem = guest_memory();
    let (mut drv, _dev) = pair(&mem, 4, false);
    let r = Buffer {
        addr: DATA_BASE,
        len: 10,
        device_writable: false,
    };
    let w = Buffer {
        device_writable: true,
        ..r
    };
    assert_eq!(drv.add(&[]), Err(QueueError::EmptyChain));
    assert_eq!(drv.add(&[w, r]), Err(QueueError::ReadableAfterWritable));
    assert_eq!(
        drv.add(&[r; 5]),
        Err(QueueError::NoSpace { needed: 5, free: 4 })
    );
    drv.add(&[r, r, w]).unwrap();
    assert_eq!(
        drv.add(&[r, w]),
        Err(QueueError::NoSpace { needed: 2, free: 1 })
    );
    drv.add(&[w]).unwrap();
    assert_eq!(drv.num_free(), 0);
    assert_eq!(drv.in_flight(), 2);
}

#[test]
fn driver_honours_used_no_notify_without_event_idx() {
    let mem = guest_memory();
    let (mut drv, mut dev) = pair(&mem, 8, false);
    let b = [Buffer {
        addr: DATA_BASE,
        len: 64,
        device_writable: false,
    }];
    drv.add(&b).unwrap();
    assert!(drv.should_notify());
    assert!(
        !drv.should_notify(),
        "nothing new since the last notification"
    );

    dev.disable_notification(&mem).unwrap();
    drv.add(&b).unwrap();
    assert!(!drv.should_notify(), "device set VIRTQ_USED_F_NO_NOTIFY");

    // The device re-enables and finds work already there (so it will process it).
    assert!(dev.enable_notification(&mem).unwrap());
    drv.add(&b).unwrap();
    assert!(drv.should_notify());
}

#[test]
fn driver_honours_avail_event_with_event_idx() {
    let mem = guest_memory();
    let (mut drv, mut dev) = pair(&mem, 8, true);
    let b = [Buffer {
        addr: DATA_BASE,
        len: 64,
        device_writable: false,
    }];
    // avail_event = 0: the first chain crosses it.
    assert!(!dev.enable_notification(&mem).unwrap());
    drv.add(&b).unwrap();
    assert!(drv.should_notify());
    // The device has not consumed; it asked for a kick at index 0 only.
    drv.add(&b).unwrap();
    drv.add(&b).unwrap();
    assert!(!drv.should_notify());

    // Device consumes everything and asks for the next one.
    while let Some((h, _, _)) = device_take(&mut dev, &mem) {
        dev.add_used(&mem, h, 0).unwrap();
    }
    assert!(!dev.enable_notification(&mem).unwrap());
    drv.add(&b).unwrap();
    assert!(drv.should_notify());
    drv.add(&b).unwrap();
    assert!(!drv.should_notify());
}

#[test]
fn interrupt_suppression_without_event_idx_uses_the_avail_flag() {
    let mem = guest_memory();
    let (mut drv, mut dev) = pair(&mem, 8, false);
    let avail_flags = |drv: &DriverQueue<'_>| drv.memory().read_u16(drv.layout().avail);
    let b = [Buffer {
        addr: DATA_BASE,
        len: 64,
        device_writable: true,
    }];
    assert_eq!(avail_flags(&drv), 0);
    drv.disable_interrupts();
    assert_eq!(avail_flags(&drv), AVAIL_F_NO_INTERRUPT);
    assert!(!drv.enable_interrupts(), "nothing pending");
    assert_eq!(avail_flags(&drv), 0);

    drv.add(&b).unwrap();
    drv.add(&b).unwrap();
    drv.disable_interrupts();
    let (h, _, _) = device_take(&mut dev, &mem).unwrap();
    dev.add_used(&mem, h, 10).unwrap();
    // Entry arrived while suppressed: enabling must report it so the caller drains again.
    assert!(drv.enable_interrupts());
    assert_eq!(drv.pop_used(), Ok(Some((h, 10))));
    assert!(!drv.enable_interrupts());
}

#[test]
fn interrupt_suppression_with_event_idx_uses_used_event() {
    let mem = guest_memory();
    let (mut drv, mut dev) = pair(&mem, 8, true);
    let b = [Buffer {
        addr: DATA_BASE,
        len: 64,
        device_writable: true,
    }];
    for _ in 0..6 {
        drv.add(&b).unwrap();
    }
    // Enabled: the device must interrupt for the first used entry.
    let (h0, _, _) = device_take(&mut dev, &mem).unwrap();
    dev.add_used(&mem, h0, 1).unwrap();
    assert!(dev.needs_notification(&mem).unwrap());

    // Suppressed while the DPC drains: no interrupt for any number of entries.
    drv.disable_interrupts();
    assert_eq!(drv.pop_used(), Ok(Some((h0, 1))));
    let mut expect = Vec::new();
    for i in 0..3 {
        let (h, _, _) = device_take(&mut dev, &mem).unwrap();
        dev.add_used(&mem, h, i).unwrap();
        assert!(!dev.needs_notification(&mem).unwrap());
        expect.push((h, i));
    }
    // Re-enabling reports what is pending (no lost wakeup).
    assert!(drv.enable_interrupts());
    for e in expect {
        assert_eq!(drv.pop_used(), Ok(Some(e)));
    }
    assert!(!drv.enable_interrupts());
    // Enabled again: the next entry interrupts.
    let (h, _, _) = device_take(&mut dev, &mem).unwrap();
    dev.add_used(&mem, h, 0).unwrap();
    assert!(dev.needs_notification(&mem).unwrap());
}

/// Bytes the device writes for chain `seq` with `nw` 100-byte writable buffers (0..=capacity).
fn reply_len(seq: u32, nw: usize) -> usize {
    seq as usize % (100 * nw + 1)
}

/// Many more than 65536 chains through a small ring, completed out of order in batches, with
/// mixed chain shapes: indices wrap several times and the free list is stirred.
fn wraparound(event_idx: bool) {
    let mem = guest_memory();
    let size = 16u16;
    let (mut drv, mut dev) = pair(&mem, size, event_idx);
    let mut rng = 0x1234_5678u32;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        rng
    };
    let mut outstanding = std::collections::HashMap::new();
    let mut completed = 0u64;
    let mut notifies = 0u64;
    let mut seq = 0u32;
    while completed < 140_000 {
        // Driver: add a few chains (readable header + writable buffer(s)).
        let batch = 1 + next() % 6;
        for _ in 0..batch {
            let nw = 1 + (next() % 2) as usize;
            if drv.num_free() < (1 + nw) as u16 {
                break;
            }
            seq += 1;
            let slot = u64::from(seq % 64) * 0x1000;
            let out = pattern(seq, 8);
            mem.write_slice(&out, GuestAddress(DATA_BASE + slot))
                .unwrap();
            let mut bufs = vec![Buffer {
                addr: DATA_BASE + slot,
                len: 8,
                device_writable: false,
            }];
            for k in 0..nw {
                bufs.push(Buffer {
                    addr: DATA_BASE + slot + 0x100 + 0x100 * k as u64,
                    len: 100,
                    device_writable: true,
                });
            }
            let head = drv.add(&bufs).unwrap();
            assert!(outstanding.insert(head, (seq, nw)).is_none());
        }
        if drv.should_notify() {
            notifies += 1;
        }
        // Device: take some chains, complete them in reverse order.
        let take = 1 + next() % 5;
        let mut taken = Vec::new();
        for _ in 0..take {
            let Some((h, read, writable)) = device_take(&mut dev, &mem) else {
                break;
            };
            let (s, nw) = outstanding[&h];
            assert_eq!(read, pattern(s, 8), "device read the wrong bytes");
            assert_eq!(writable.len(), nw);
            let reply = pattern(s ^ 0xFFFF, reply_len(s, nw));
            let n = device_fill(&mem, &writable, &reply);
            taken.push((h, n));
        }
        for &(h, n) in taken.iter().rev() {
            dev.add_used(&mem, h, n).unwrap();
        }
        // Driver: drain.
        while let Some((h, len)) = drv.pop_used().unwrap() {
            let (s, nw) = outstanding.remove(&h).expect("head in flight");
            let reply = pattern(s ^ 0xFFFF, reply_len(s, nw));
            assert_eq!(len as usize, reply.len());
            let mut got = vec![0u8; reply.len()];
            let base = DATA_BASE + u64::from(s % 64) * 0x1000 + 0x100;
            let first = got.len().min(100);
            mem.read_slice(&mut got[..first], GuestAddress(base))
                .unwrap();
            if got.len() > 100 {
                mem.read_slice(&mut got[100..], GuestAddress(base + 0x100))
                    .unwrap();
            }
            assert_eq!(got, reply, "driver saw the wrong bytes");
            completed += 1;
        }
        assert_eq!(usize::from(drv.in_flight()), outstanding.len());
    }
    assert!(notifies > 0);
    // More than 65536 avail and used indices: both counters wrapped at least twice.
    assert!(u64::from(seq) > 2 * 65536);
}

#[test]
fn wraparound_over_many_indices() {
    wraparound(false);
}

#[test]
fn wraparound_over_many_indices_with_event_idx() {
    wraparound(true);
}

/// Device-side view of the used ring for forging entries.
fn forge_used(mem: &GuestMemoryMmap, drv: &DriverQueue<'_>, slot: u16, id: u32, len: u32) {
    let used = drv.device_address();
    let e = used + 4 + 8 * u64::from(slot % drv.size());
    mem.write_obj(id.to_le(), GuestAddress(e)).unwrap();
    mem.write_obj(len.to_le(), GuestAddress(e + 4)).unwrap();
}
fn forge_used_idx(mem: &GuestMemoryMmap, drv: &DriverQueue<'_>, idx: u16) {
    mem.write_obj(idx.to_le(), GuestAddress(drv.device_address() + 2))
        .unwrap();
}

fn rx_buf(len: u32) -> [Buffer; 1] {
    [Buffer {
        addr: DATA_BASE,
        len,
        device_writable: true,
    }]
}

/// After a fault the queue stays stopped; a reset and reclaim make it work again.
fn assert_sticky_then_recover(mem: &GuestMemoryMmap, drv: &mut DriverQueue<'_>, err: QueueError) {
    assert!(err.is_device_fault());
    assert_eq!(drv.fault(), Some(err));
    assert_eq!(drv.pop_used(), Err(err));
    assert_eq!(drv.add(&rx_buf(10)), Err(err));
    let in_flight = drv.in_flight();
    let mut reclaimed = Vec::new();
    drv.reclaim_after_reset(|h| reclaimed.push(h));
    assert_eq!(reclaimed.len(), usize::from(in_flight));
    assert_eq!(drv.fault(), None);
    assert_eq!(drv.num_free(), drv.size());
    // Works against a fresh (reset) device.
    let mut dev = device_for(drv, false);
    let h = drv.add(&rx_buf(10)).unwrap();
    let (dh, _, _) = device_take(&mut dev, mem).unwrap();
    dev.add_used(mem, dh, 10).unwrap();
    assert_eq!(drv.pop_used(), Ok(Some((h, 10))));
}

#[test]
fn malicious_head_out_of_range() {
    let mem = guest_memory();
    let (mut drv, _dev) = pair(&mem, 8, false);
    drv.add(&rx_buf(100)).unwrap();
    forge_used(&mem, &drv, 0, 8, 0);
    forge_used_idx(&mem, &drv, 1);
    let err = drv.pop_used().unwrap_err();
    assert_eq!(err, QueueError::HeadOutOfRange { head: 8 });
    assert_sticky_then_recover(&mem, &mut drv, err);

    let (mut drv, _dev) = pair(&mem, 8, false);
    drv.add(&rx_buf(100)).unwrap();
    forge_used(&mem, &drv, 0, u32::MAX, 0);
    forge_used_idx(&mem, &drv, 1);
    assert_eq!(
        drv.pop_used(),
        Err(QueueError::HeadOutOfRange { head: u32::MAX })
    );
}

#[test]
fn malicious_head_not_in_flight() {
    let mem = guest_memory();
    let r = Buffer {
        addr: DATA_BASE,
        len: 4,
        device_writable: false,
    };
    // A chain of three occupies descriptors 0, 1, 2; 1 is inside the chain, 5 is free.
    for bogus in [1u32, 5] {
        let (mut d2, _) = pair(&mem, 8, false);
        assert_eq!(d2.add(&[r, r, rx_buf(100)[0]]), Ok(0));
        forge_used(&mem, &d2, 0, bogus, 0);
        forge_used_idx(&mem, &d2, 1);
        assert_eq!(
            d2.pop_used(),
            Err(QueueError::HeadNotInFlight { head: bogus as u16 })
        );
    }

    // The same head returned twice: the second time it is no longer in flight.
    let (mut drv2, mut dev2) = pair(&mem, 8, false);
    let h1 = drv2.add(&rx_buf(100)).unwrap();
    let h2 = drv2.add(&rx_buf(100)).unwrap();
    let (dh, _, _) = device_take(&mut dev2, &mem).unwrap();
    dev2.add_used(&mem, dh, 5).unwrap();
    dev2.add_used(&mem, dh, 5).unwrap();
    assert_eq!(drv2.pop_used(), Ok(Some((h1, 5))));
    let err = drv2.pop_used().unwrap_err();
    assert_eq!(err, QueueError::HeadNotInFlight { head: h1 });
    let mut reclaimed = Vec::new();
    drv2.reclaim_after_reset(|h| reclaimed.push(h));
    assert_eq!(reclaimed, vec![h2]);
}

#[test]
fn malicious_length_larger_than_the_writable_buffers() {
    let mem = guest_memory();
    let (mut drv, _dev) = pair(&mem, 8, false);
    let r = Buffer {
        addr: DATA_BASE,
        len: 4000,
        device_writable: false,
    };
    let w = Buffer {
        addr: DATA_BASE + 0x2000,
        len: 100,
        device_writable: true,
    };
    let h = drv.add(&[r, w, w]).unwrap();
    // Exactly the capacity is fine; readable bytes do not count.
    forge_used(&mem, &drv, 0, u32::from(h), 201);
    forge_used_idx(&mem, &drv, 1);
    let err = drv.pop_used().unwrap_err();
    assert_eq!(
        err,
        QueueError::LengthTooLarge {
            head: h,
            len: 201,
            capacity: 200
        }
    );
    assert_sticky_then_recover(&mem, &mut drv, err);

    let (mut drv, _dev) = pair(&mem, 8, false);
    let h = drv.add(&[r, w, w]).unwrap();
    forge_used(&mem, &drv, 0, u32::from(h), 200);
    forge_used_idx(&mem, &drv, 1);
    assert_eq!(drv.pop_used(), Ok(Some((h, 200))));

    // A TX chain (nothing writable): whatever length the device reports is ignored (virtio
    // 1.2, 2.7.8: it wrote nothing), counted, and given back as 0; the queue goes on.
    assert_eq!(drv.ignored_used_lengths(), 0);
    let h = drv.add(&[r]).unwrap();
    forge_used(&mem, &drv, 1, u32::from(h), 1);
    forge_used_idx(&mem, &drv, 2);
    assert_eq!(drv.pop_used(), Ok(Some((h, 0))));
    let h = drv.add(&[r, r]).unwrap();
    forge_used(&mem, &drv, 2, u32::from(h), u32::MAX);
    forge_used_idx(&mem, &drv, 3);
    assert_eq!(drv.pop_used(), Ok(Some((h, 0))));
    assert_eq!(drv.ignored_used_lengths(), 2);
    assert_eq!(drv.fault(), None);
    let h = drv.add(&[r]).unwrap();
    forge_used(&mem, &drv, 3, u32::from(h), 0);
    forge_used_idx(&mem, &drv, 4);
    assert_eq!(drv.pop_used(), Ok(Some((h, 0))));
    assert_eq!(
        drv.ignored_used_lengths(),
        2,
        "a length of 0 is not counted"
    );
}

#[test]
fn malicious_used_index_jump() {
    let mem = guest_memory();
    let (mut drv, _dev) = pair(&mem, 8, false);
    drv.add(&rx_buf(100)).unwrap();
    drv.add(&rx_buf(100)).unwrap();
    // Past the queue size: reported, never read as 200 entries.
    forge_used_idx(&mem, &drv, 200);
    let err = drv.pop_used().unwrap_err();
    assert_eq!(
        err,
        QueueError::UsedIndexJump {
            used_idx: 200,
            last_used: 0,
            in_flight: 2
        }
    );
    assert_sticky_then_recover(&mem, &mut drv, err);

    // Within the size but beyond what is in flight is just as impossible.
    let (mut drv, _dev) = pair(&mem, 8, false);
    drv.add(&rx_buf(100)).unwrap();
    forge_used_idx(&mem, &drv, 3);
    assert!(matches!(
        drv.pop_used(),
        Err(QueueError::UsedIndexJump { used_idx: 3, .. })
    ));
    // Going backwards (a wrapped "jump") too.
    let (mut drv, _dev) = pair(&mem, 8, false);
    drv.add(&rx_buf(100)).unwrap();
    forge_used_idx(&mem, &drv, 0xFFFF);
    assert!(matches!(
        drv.pop_used(),
        Err(QueueError::UsedIndexJump {
            used_idx: 0xFFFF,
            ..
        })
    ));
}

#[test]
fn reclaim_after_reset_returns_every_chain_in_flight() {
    let mem = guest_memory();
    let (mut drv, mut dev) = pair(&mem, 8, true);
    let mut heads: Vec<u16> = (0..3).map(|_| drv.add(&rx_buf(64)).unwrap()).collect();
    // One completed before the reset is not reclaimed.
    let (dh, _, _) = device_take(&mut dev, &mem).unwrap();
    dev.add_used(&mem, dh, 1).unwrap();
    assert_eq!(drv.pop_used(), Ok(Some((dh, 1))));
    heads.retain(|&h| h != dh);
    let mut reclaimed = Vec::new();
    drv.reclaim_after_reset(|h| reclaimed.push(h));
    reclaimed.sort();
    heads.sort();
    assert_eq!(reclaimed, heads);
    assert_eq!((drv.num_free(), drv.in_flight()), (8, 0));
    // The ring memory is back to its initial state.
    let l = drv.layout();
    assert_eq!(drv.memory().read_u16(l.avail + 2), 0);
    assert_eq!(drv.memory().read_u16(l.used + 2), 0);
}

/// Buffer `i` of a receive ring of fixed descriptors: 256 bytes at its own address.
fn fixed_buf(i: u16) -> Buffer {
    Buffer {
        addr: DATA_BASE + 0x1000 * u64::from(i),
        len: 256,
        device_writable: true,
    }
}

#[test]
fn fixed_descriptors_keep_their_buffers_across_many_rounds_and_a_reset() {
    let mem = guest_memory();
    let (mut drv, mut dev) = pair(&mem, 8, true);
    drv.use_fixed_descriptors().unwrap();
    for i in 0..8 {
        drv.stage_fixed(i, &fixed_buf(i)).unwrap();
    }
    assert!(drv.should_notify());
    assert_eq!((drv.num_free(), drv.in_flight()), (0, 8));
    // Posted twice while the device holds it: refused, nothing changes.
    assert_eq!(
        drv.stage_fixed(3, &fixed_buf(3)),
        Err(QueueError::DescriptorInUse { idx: 3 })
    );
    assert_eq!(
        drv.stage_fixed(8, &fixed_buf(0)),
        Err(QueueError::DescriptorInUse { idx: 8 })
    );
    // The other staging calls are for the free list, which this mode does not keep.
    assert_eq!(drv.stage(&rx_buf(64)), Err(QueueError::WrongMode));
    assert_eq!(
        drv.add(&[rx_buf(64)[0], rx_buf(64)[0]]),
        Err(QueueError::WrongMode)
    );
    for round in 0..40u32 {
        // The device fills buffers in the order it took them; the driver posts each one
        // again under its own descriptor, which must still name that buffer.
        let mut done = Vec::new();
        while let Some((head, read, writable)) = device_take(&mut dev, &mem) {
            assert!(read.is_empty());
            assert_eq!(
                writable,
                vec![(fixed_buf(head).addr, 256)],
                "descriptor {head}"
            );
            let data = pattern(
                round * 8 + u32::from(head),
                1 + (round as usize * 7 + usize::from(head)) % 256,
            );
            let n = device_fill(&mem, &writable, &data);
            dev.add_used(&mem, head, n).unwrap();
            done.push((head, data));
            if done.len() == 3 {
                break; // a few at a time, so that the ring indexes wrap unevenly
            }
        }
        for (head, data) in done {
            let (h, len) = drv.pop_used().unwrap().unwrap();
            assert_eq!((h, len as usize), (head, data.len()));
            let mut got = vec![0u8; data.len()];
            mem.read_slice(&mut got, GuestAddress(fixed_buf(h).addr))
                .unwrap();
            assert_eq!(got, data);
            drv.stage_fixed(h, &fixed_buf(h)).unwrap();
        }
        assert!(drv.in_flight() == 8);
        let _ = drv.should_notify();
    }
    // A descriptor given another buffer is written again.
    let (head, _, writable) = device_take(&mut dev, &mem).unwrap();
    dev.add_used(&mem, head, device_fill(&mem, &writable, &[1]))
        .unwrap();
    let (h, _) = drv.pop_used().unwrap().unwrap();
    let moved = Buffer {
        addr: DATA_BASE + 0x20_0000,
        len: 128,
        device_writable: true,
    };
    drv.stage_fixed(h, &moved).unwrap();
    let _ = drv.should_notify();
    let mut seen = None;
    while let Some((head, _, writable)) = device_take(&mut dev, &mem) {
        if head == h {
            seen = Some(writable);
        }
    }
    assert_eq!(seen, Some(vec![(moved.addr, 128)]));
    // After a reset the ring is zeroed: every descriptor is written again when posted.
    let mut reclaimed = Vec::new();
    drv.reclaim_after_reset(|h| reclaimed.push(h));
    assert_eq!(reclaimed.len(), 8);
    let mut dev = device_for(&drv, true);
    for i in 0..8 {
        drv.stage_fixed(i, &fixed_buf(i)).unwrap();
    }
    assert!(drv.should_notify());
    for _ in 0..8 {
        let (head, _, writable) = device_take(&mut dev, &mem).unwrap();
        assert_eq!(writable, vec![(fixed_buf(head).addr, 256)]);
    }
}

#[test]
fn fixed_descriptors_are_chosen_before_anything_is_in_flight() {
    let mem = guest_memory();
    let (mut drv, _dev) = pair(&mem, 8, false);
    assert_eq!(
        drv.stage_fixed(0, &fixed_buf(0)),
        Err(QueueError::WrongMode)
    );
    drv.add(&rx_buf(64)).unwrap();
    assert_eq!(drv.use_fixed_descriptors(), Err(QueueError::WrongMode));
}

const TABLE_BASE: u64 = 0x8_0000;

/// Indirect tables for a queue of `size` entries, `entries` descriptors each, in guest memory.
fn tables(mem: &GuestMemoryMmap, size: u16, entries: u16) -> GuestRegion<'_> {
    GuestRegion {
        mem,
        base: TABLE_BASE,
        len: 16 * usize::from(size) * usize::from(entries),
    }
}

/// `(address, length)` as a first buffer that is not the common one.
fn buf((addr, len): (u64, u32)) -> First {
    First::Buffer(addr, len)
}

/// A device-readable chain as `stage_readable` takes it: the first buffer (`common`: the
/// queue's common first buffer, named as such), then the rest.
fn stage_chain(
    drv: &mut DriverQueue<'_>,
    common: Option<(u64, u32)>,
    bufs: &[(u64, u32)],
) -> Result<u16, QueueError> {
    let (first, rest) = bufs.split_first().unwrap();
    let first = if common == Some(*first) {
        First::Common
    } else {
        buf(*first)
    };
    drv.stage_readable(first, rest.len(), |i| rest[i])
}

/// Chains of 2 to `entries` buffers take one ring entry each and reach the device byte-exact
/// through their head's table, round after round (heads reused, the ring wrapped), whether
/// they start with the common first buffer (written once per table) or another one (written
/// over it, and the common one written back when a later chain of that head starts with it);
/// a longer chain, and one of one buffer, use ring descriptors as without tables.
#[test]
fn indirect_tables_carry_chains_in_one_ring_entry_byte_exact() {
    let mem = guest_memory();
    let (size, entries) = (8u16, 4u16);
    let (mut drv, mut dev) = pair(&mem, size, true);
    let common = (DATA_BASE, 12);
    let other = (DATA_BASE + 0x40, 12);
    mem.write_slice(&pattern(100, 12), GuestAddress(common.0))
        .unwrap();
    mem.write_slice(&pattern(101, 12), GuestAddress(other.0))
        .unwrap();
    drv.set_common_first(common).unwrap();
    drv.use_indirect_tables(tables(&mem, size, entries), entries)
        .unwrap();
    assert_eq!(
        (1..=6).map(|n| drv.descriptors_for(n)).collect::<Vec<_>>(),
        [1, 1, 1, 1, 5, 6]
    );
    let mut seed = 7u32;
    for round in 0..60u32 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let first = if seed >> 16 & 1 == 0 { common } else { other };
        // 1 to 5 buffers: 1 and 5 do not go in a table.
        let n = 1 + (seed >> 17) as usize % 5;
        let mut bufs = vec![first];
        let mut want = pattern(if first == common { 100 } else { 101 }, 12);
        for k in 1..n {
            let addr = DATA_BASE + 0x1000 * (1 + k as u64) + u64::from(round % 8) * 0x100;
            let piece = pattern(round * 8 + k as u32, 50 + k * 10);
            mem.write_slice(&piece, GuestAddress(addr)).unwrap();
            bufs.push((addr, piece.len() as u32));
            want.extend_from_slice(&piece);
        }
        let free = drv.num_free();
        let head = stage_chain(&mut drv, Some(common), &bufs).unwrap();
        assert_eq!(
            usize::from(free - drv.num_free()),
            drv.descriptors_for(n),
            "round {round}: {n} buffers"
        );
        drv.publish();
        let (dhead, read, writable) = device_take(&mut dev, &mem).unwrap();
        assert_eq!(dhead, head);
        assert!(writable.is_empty());
        assert_eq!(read, want, "round {round}: {n} buffers, first {first:?}");
        dev.add_used(&mem, dhead, 0).unwrap();
        assert_eq!(drv.pop_used(), Ok(Some((head, 0))));
        assert_eq!((drv.num_free(), drv.in_flight()), (size, 0));
    }
}

/// Writes a descriptor over the first entry of head `head`'s table, behind the queue's back:
/// (address, length), linked to entry 1.
fn overwrite_first_entry(mem: &GuestMemoryMmap, entries: u16, head: u16, buf: (u64, u32)) {
    let at = TABLE_BASE + 16 * u64::from(entries) * u64::from(head);
    mem.write_obj(buf.0.to_le(), GuestAddress(at)).unwrap();
    mem.write_obj(buf.1.to_le(), GuestAddress(at + 8)).unwrap();
    mem.write_obj(1u16.to_le(), GuestAddress(at + 12)).unwrap();
    mem.write_obj(1u16.to_le(), GuestAddress(at + 14)).unwrap();
}

/// Stages `bufs`, lets the device take the chain and hands it back; returns the head and the
/// bytes the device read.
fn round_trip(
    drv: &mut DriverQueue<'_>,
    dev: &mut Queue,
    mem: &GuestMemoryMmap,
    bufs: &[(u64, u32)],
) -> (u16, Vec<u8>) {
    let head = stage_chain(drv, Some((DATA_BASE, 12)), bufs).unwrap();
    drv.publish();
    let (dhead, read, _) = device_take(dev, mem).unwrap();
    assert_eq!(dhead, head);
    dev.add_used(mem, dhead, 0).unwrap();
    assert_eq!(drv.pop_used(), Ok(Some((head, 0))));
    (head, read)
}

/// The first entry of a table is written only when a chain starts with another buffer than
/// the table has: a chain that starts with the common one leaves it as it is (so a table
/// changed behind the queue's back shows through, which no device may do), one that starts
/// with another buffer writes it, and the next common chain writes the common one back. A
/// reset forgets what every table starts with, so each is written again.
#[test]
fn indirect_tables_write_their_first_entry_only_when_it_changes() {
    let mem = guest_memory();
    let (size, entries) = (4u16, 3u16);
    let (mut drv, mut dev) = pair(&mem, size, true);
    let common = (DATA_BASE, 12);
    let other = (DATA_BASE + 0x40, 12);
    let payload = (DATA_BASE + 0x1000, 64);
    for (buf, seed) in [(common, 100), (other, 101), (payload, 102)] {
        mem.write_slice(&pattern(seed, buf.1 as usize), GuestAddress(buf.0))
            .unwrap();
    }
    let read_with = |header: u32| {
        let mut want = pattern(header, 12);
        want.extend_from_slice(&pattern(102, 64));
        want
    };
    drv.set_common_first(common).unwrap();
    drv.use_indirect_tables(tables(&mem, size, entries), entries)
        .unwrap();
    let (head, read) = round_trip(&mut drv, &mut dev, &mem, &[common, payload]);
    assert_eq!(read, read_with(100));
    // The freed head comes back first: its table is the one changed here.
    overwrite_first_entry(&mem, entries, head, other);
    let (again, read) = round_trip(&mut drv, &mut dev, &mem, &[common, payload]);
    assert_eq!(again, head);
    assert_eq!(
        read,
        read_with(101),
        "the common first entry was written again"
    );
    // Another first buffer is written, and the common one written back after it.
    let (_, read) = round_trip(&mut drv, &mut dev, &mem, &[other, payload]);
    assert_eq!(read, read_with(101));
    let (_, read) = round_trip(&mut drv, &mut dev, &mem, &[common, payload]);
    assert_eq!(read, read_with(100));

    // Every table changed behind the queue's back, with chains in flight, then a reset.
    for _ in 0..size {
        stage_chain(&mut drv, Some(common), &[common, payload]).unwrap();
    }
    drv.publish();
    for h in 0..size {
        overwrite_first_entry(&mem, entries, h, other);
    }
    let mut reclaimed = 0;
    drv.reclaim_after_reset(|_| reclaimed += 1);
    assert_eq!(reclaimed, size);
    let mut dev = device_for(&drv, true);
    let mut heads = Vec::new();
    for _ in 0..size {
        let (h, read) = round_trip(&mut drv, &mut dev, &mem, &[common, payload]);
        assert_eq!(read, read_with(100), "head {h} after the reset");
        heads.push(h);
        // Keep each head in flight so that the next chain takes another one.
        stage_chain(&mut drv, Some(common), &[payload, payload]).unwrap();
        drv.publish();
        device_take(&mut dev, &mem).unwrap();
    }
    heads.sort();
    assert_eq!(heads, (0..size).collect::<Vec<_>>(), "every table was used");
}

/// A ring descriptor that refers to its table is written again whenever anything else was
/// written over it in between: the head used as a link of a chain in ring descriptors (and as
/// that chain's last descriptor), then in a table again, reaches the device byte-exact each
/// time; and tables set up again (nothing in flight) are the ones the ring refers to.
#[test]
fn indirect_ring_descriptors_are_written_again_after_other_uses() {
    let mem = guest_memory();
    let (size, entries) = (4u16, 2u16);
    let (mut drv, mut dev) = pair(&mem, size, true);
    let pieces: Vec<(u64, u32)> = (0..4)
        .map(|i| (DATA_BASE + 0x1000 * (i + 1), 20 + 4 * i as u32))
        .collect();
    for (i, p) in pieces.iter().enumerate() {
        mem.write_slice(&pattern(i as u32, p.1 as usize), GuestAddress(p.0))
            .unwrap();
    }
    let want = |which: &[usize]| -> Vec<u8> {
        which
            .iter()
            .flat_map(|&i| pattern(i as u32, pieces[i].1 as usize))
            .collect()
    };
    drv.use_indirect_tables(tables(&mem, size, entries), entries)
        .unwrap();
    let readable = |p: (u64, u32)| Buffer {
        addr: p.0,
        len: p.1,
        device_writable: false,
    };
    for round in 0..6 {
        // In a table: every head's ring descriptor refers to its table.
        let mut heads = Vec::new();
        for _ in 0..size {
            heads.push(stage_chain(&mut drv, None, &[pieces[0], pieces[1]]).unwrap());
        }
        drv.publish();
        for &h in &heads {
            let (dh, read, _) = device_take(&mut dev, &mem).unwrap();
            assert_eq!((dh, read), (h, want(&[0, 1])), "round {round}: tabled");
            dev.add_used(&mem, dh, 0).unwrap();
        }
        while drv.pop_used().unwrap().is_some() {}
        // The same descriptors as heads, links and ends of chains in ring descriptors: two
        // chains of two, in the order `add` links them, then of `stage_readable` too long for
        // a table.
        let mut chains = Vec::new();
        if round % 2 == 0 {
            for _ in 0..2 {
                let bufs = [readable(pieces[2]), readable(pieces[3])];
                chains.push((drv.add(&bufs).unwrap(), want(&[2, 3])));
            }
        } else {
            let head = drv
                .stage_readable(buf(pieces[3]), 3, |i| pieces[i % 3])
                .unwrap();
            chains.push((head, want(&[3, 0, 1, 2])));
        }
        drv.publish();
        for (h, w) in chains {
            let (dh, read, _) = device_take(&mut dev, &mem).unwrap();
            assert_eq!((dh, read), (h, w), "round {round}: linked");
            dev.add_used(&mem, dh, 0).unwrap();
        }
        while drv.pop_used().unwrap().is_some() {}
        assert_eq!(drv.num_free(), size);
    }
    // Every ring descriptor refers to its table again, then new tables elsewhere (nothing in
    // flight): the ring refers to them, not to the old ones.
    for _ in 0..size {
        stage_chain(&mut drv, None, &[pieces[0], pieces[1]]).unwrap();
    }
    drv.publish();
    for _ in 0..size {
        let (dh, _, _) = device_take(&mut dev, &mem).unwrap();
        dev.add_used(&mem, dh, 0).unwrap();
    }
    while drv.pop_used().unwrap().is_some() {}
    let moved = GuestRegion {
        base: TABLE_BASE + 0x1_0000,
        ..tables(&mem, size, entries)
    };
    drv.use_indirect_tables(moved, entries).unwrap();
    let old = TABLE_BASE;
    for h in 0..size {
        // Garbage in the old tables: read only if the ring still refers to them.
        for e in 0..entries {
            let at = old + 16 * u64::from(entries * h + e);
            mem.write_slice(&[0xEE; 16], GuestAddress(at)).unwrap();
        }
    }
    for _ in 0..size {
        let h = stage_chain(&mut drv, None, &[pieces[0], pieces[1]]).unwrap();
        drv.publish();
        let (dh, read, _) = device_take(&mut dev, &mem).unwrap();
        assert_eq!((dh, read), (h, want(&[0, 1])), "after new tables");
        // Kept in flight, so that the next chain takes another head.
    }
}

#[test]
fn indirect_tables_are_refused_when_they_cannot_be_used() {
    let mem = guest_memory();
    let (mut drv, _dev) = pair(&mem, 8, false);
    // A table of one descriptor holds no chain; one longer than the queue breaks the spec.
    for bad in [0, 1, 9] {
        assert_eq!(
            drv.use_indirect_tables(tables(&mem, 8, 9), bad),
            Err(QueueError::BadSize(bad))
        );
    }
    let short = GuestRegion {
        len: 16 * 8 * 4 - 1,
        ..tables(&mem, 8, 4)
    };
    assert_eq!(
        drv.use_indirect_tables(short, 4),
        Err(QueueError::MemoryTooSmall {
            needed: 16 * 8 * 4,
            have: 16 * 8 * 4 - 1
        })
    );
    let unaligned = GuestRegion {
        base: TABLE_BASE + 8,
        ..tables(&mem, 8, 4)
    };
    assert!(matches!(
        drv.use_indirect_tables(unaligned, 4),
        Err(QueueError::MemoryTooSmall { .. })
    ));
    // Not with chains in flight, nor on a queue of fixed descriptors.
    drv.add(&rx_buf(64)).unwrap();
    assert_eq!(
        drv.use_indirect_tables(tables(&mem, 8, 4), 4),
        Err(QueueError::WrongMode)
    );
    let (mut fixed, _dev) = pair(&mem, 8, false);
    fixed.use_fixed_descriptors().unwrap();
    assert_eq!(
        fixed.use_indirect_tables(tables(&mem, 8, 4), 4),
        Err(QueueError::WrongMode)
    );
    // Without tables every buffer takes a ring descriptor.
    let (mut plain, mut dev) = pair(&mem, 8, false);
    assert_eq!(plain.descriptors_for(3), 3);
    // A chain that starts with the common first buffer needs one named (with tables or not),
    // and it is named only with nothing in flight.
    assert_eq!(
        plain.stage_readable(First::Common, 1, |_| (DATA_BASE, 4)),
        Err(QueueError::NoCommonFirst)
    );
    let (mut tabled, _dev) = pair(&mem, 8, false);
    tabled.use_indirect_tables(tables(&mem, 8, 4), 4).unwrap();
    assert_eq!(
        tabled.stage_readable(First::Common, 1, |_| (DATA_BASE, 4)),
        Err(QueueError::NoCommonFirst)
    );
    assert_eq!((tabled.num_free(), tabled.in_flight()), (8, 0));
    mem.write_slice(&pattern(9, 16), GuestAddress(DATA_BASE))
        .unwrap();
    plain.set_common_first((DATA_BASE, 12)).unwrap();
    let head = plain
        .stage_readable(First::Common, 1, |_| (DATA_BASE + 12, 4))
        .unwrap();
    plain.publish();
    assert_eq!(
        plain.set_common_first((DATA_BASE, 12)),
        Err(QueueError::WrongMode)
    );
    let (h, read, _) = device_take(&mut dev, &mem).unwrap();
    assert_eq!((h, read), (head, pattern(9, 16)));
}

#[test]
fn new_rejects_bad_sizes_and_short_memory() {
    let mem = guest_memory();
    let region = |len| GuestRegion {
        mem: &mem,
        base: RING_BASE,
        len,
    };
    let total = Layout::new(64).unwrap().total;
    assert_eq!(
        SplitQueue::new(region(total - 1), [Slot::EMPTY; 64], 64, false).unwrap_err(),
        QueueError::MemoryTooSmall {
            needed: total,
            have: total - 1
        }
    );
    assert_eq!(
        SplitQueue::new(region(total), [Slot::EMPTY; 32], 64, false).unwrap_err(),
        QueueError::BadSize(64)
    );
    assert_eq!(
        SplitQueue::new(region(total), [Slot::EMPTY; 64], 48, false).unwrap_err(),
        QueueError::BadSize(48)
    );
    assert!(SplitQueue::new(region(total), [Slot::EMPTY; 64], 64, false).is_ok());
}

// ---------------------------------------------------------------------------------------------
// PCI capabilities and transport against fake windows
// ---------------------------------------------------------------------------------------------

/// 256 bytes of PCI configuration space.
struct FakeConfig(Vec<u8>);

impl ConfigSpace for FakeConfig {
    fn read_config(&self, offset: u16, buf: &mut [u8]) -> usize {
        let off = usize::from(offset);
        if off >= self.0.len() {
            return 0;
        }
        let n = buf.len().min(self.0.len() - off);
        buf[..n].copy_from_slice(&self.0[off..off + n]);
        n
    }
}

impl FakeConfig {
    fn new() -> Self {
        let mut c = vec![0u8; 256];
        c[0..2].copy_from_slice(&0x1AF4u16.to_le_bytes());
        c[2..4].copy_from_slice(&0x1041u16.to_le_bytes());
        c[6] = 0x10; // capability list
        Self(c)
    }
    fn cap_ptr(&mut self, p: u8) {
        self.0[0x34] = p;
    }
    fn virtio_cap(&mut self, at: usize, next: u8, ty: u8, bar: u8, offset: u32, length: u32) {
        let len = if ty == pci::cfg_type::NOTIFY { 20 } else { 16 };
        let c = &mut self.0;
        c[at] = 0x09;
        c[at + 1] = next;
        c[at + 2] = len;
        c[at + 3] = ty;
        c[at + 4] = bar;
        c[at + 8..at + 12].copy_from_slice(&offset.to_le_bytes());
        c[at + 12..at + 16].copy_from_slice(&length.to_le_bytes());
        if ty == pci::cfg_type::NOTIFY {
            c[at + 16..at + 20].copy_from_slice(&4u32.to_le_bytes());
        }
    }
    fn msix_cap(&mut self, at: usize, next: u8, table_size: u16) {
        self.0[at] = 0x11;
        self.0[at + 1] = next;
        self.0[at + 2..at + 4].copy_from_slice(&(table_size - 1).to_le_bytes());
    }
}

fn bar4(bar: u8) -> Option<u64> {
    (bar == 4).then_some(0x4000)
}

/// The layout QEMU uses: MSI-X first, then common/ISR/device/notify in BAR 4.
fn qemu_like_config() -> FakeConfig {
    let mut c = FakeConfig::new();
    c.cap_ptr(0x98);
    c.msix_cap(0x98, 0x84, 10);
    c.virtio_cap(0x84, 0x70, pci::cfg_type::PCI_CFG, 0, 0, 0);
    c.virtio_cap(0x70, 0x60, pci::cfg_type::NOTIFY, 4, 0x3000, 0x1000);
    c.virtio_cap(0x60, 0x50, pci::cfg_type::DEVICE, 4, 0x2000, 0x1000);
    c.virtio_cap(0x50, 0x40, pci::cfg_type::ISR, 4, 0x1000, 0x1000);
    c.virtio_cap(0x40, 0x00, pci::cfg_type::COMMON, 4, 0x0000, 0x1000);
    c
}

#[test]
fn capability_walk_finds_every_structure() {
    let caps = find_capabilities(&qemu_like_config(), bar4).unwrap();
    let r = |offset| CapRegion {
        bar: 4,
        offset,
        length: 0x1000,
    };
    assert_eq!(caps.common, r(0));
    assert_eq!(caps.isr, r(0x1000));
    assert_eq!(caps.device, Some(r(0x2000)));
    assert_eq!(caps.notify, r(0x3000));
    assert_eq!(caps.notify_off_multiplier, 4);
    assert_eq!(caps.msix_table_size, Some(10));
}

#[test]
fn capability_walk_uses_the_first_usable_of_each_type() {
    let mut c = qemu_like_config();
    // Common cfg with a reserved BAR number first (ignored), then a second common (ignored).
    c.virtio_cap(0x40, 0xA0, pci::cfg_type::COMMON, 7, 0x0, 0x1000);
    c.virtio_cap(0xA0, 0xB0, pci::cfg_type::COMMON, 4, 0x0800, 0x100);
    c.virtio_cap(0xB0, 0x00, pci::cfg_type::COMMON, 4, 0x0000, 0x100);
    let caps = find_capabilities(&c, bar4).unwrap();
    assert_eq!(caps.common.offset, 0x0800);
}

#[test]
fn capability_walk_rejects_garbage() {
    // No capability list bit.
    let mut c = qemu_like_config();
    c.0[6] = 0;
    assert_eq!(find_capabilities(&c, bar4), Err(PciError::NoCapabilityList));
    // A cycle back to an earlier capability.
    let mut c = qemu_like_config();
    c.0[0x40 + 1] = 0x70;
    assert_eq!(find_capabilities(&c, bar4), Err(PciError::Cycle(0x70)));
    // A capability pointing at itself.
    let mut c = qemu_like_config();
    c.0[0x40 + 1] = 0x40;
    assert_eq!(find_capabilities(&c, bar4), Err(PciError::Cycle(0x40)));
    // A pointer into the standard header.
    let mut c = qemu_like_config();
    c.0[0x50 + 1] = 0x20;
    assert_eq!(find_capabilities(&c, bar4), Err(PciError::BadPointer(0x20)));
    let mut c = qemu_like_config();
    c.cap_ptr(0x3C);
    assert_eq!(find_capabilities(&c, bar4), Err(PciError::BadPointer(0x3C)));
    // A region past the end of its BAR.
    let mut c = qemu_like_config();
    c.virtio_cap(0x50, 0x40, pci::cfg_type::ISR, 4, 0x3FFF, 2);
    assert_eq!(
        find_capabilities(&c, bar4),
        Err(PciError::OutsideBar {
            cfg_type: pci::cfg_type::ISR,
            bar: 4,
            offset: 0x3FFF,
            length: 2
        })
    );
    // Overflowing offset + length must not wrap into range.
    let mut c = qemu_like_config();
    c.virtio_cap(0x50, 0x40, pci::cfg_type::ISR, 4, 0xFFFF_FFFF, 2);
    assert!(matches!(
        find_capabilities(&c, bar4),
        Err(PciError::OutsideBar { .. })
    ));
    // A BAR the adapter does not have.
    let mut c = qemu_like_config();
    c.virtio_cap(0x70, 0x60, pci::cfg_type::NOTIFY, 2, 0x3000, 0x1000);
    assert_eq!(
        find_capabilities(&c, bar4),
        Err(PciError::NoSuchBar {
            cfg_type: pci::cfg_type::NOTIFY,
            bar: 2
        })
    );
    // A missing ISR structure (unlink it).
    let mut c = qemu_like_config();
    c.0[0x60 + 1] = 0x40;
    assert_eq!(
        find_capabilities(&c, bar4),
        Err(PciError::Missing(pci::cfg_type::ISR))
    );
    // A truncated virtio capability.
    let mut c = qemu_like_config();
    c.0[0x70 + 2] = 16; // notify needs 20
    assert_eq!(
        find_capabilities(&c, bar4),
        Err(PciError::BadCapLength { at: 0x70, len: 16 })
    );
    // A capability at the very end whose body runs past configuration space.
    let mut c = qemu_like_config();
    c.0[0x40 + 1] = 0xFC;
    c.0[0xFC] = 0x09;
    c.0[0xFD] = 0;
    c.0[0xFE] = 16;
    c.0[0xFF] = pci::cfg_type::DEVICE;
    assert!(matches!(
        find_capabilities(&c, bar4),
        Err(PciError::ConfigRead(_))
    ));
    // Every byte value as the only capability pointer and next pointer: never a panic or hang.
    for p in 0..=255u8 {
        for n in [0u8, 0x40, 0x41, p] {
            let mut c = qemu_like_config();
            c.cap_ptr(p);
            if p >= 0x40 {
                c.0[usize::from(p & 0xFC) + 1] = n;
            }
            let _ = find_capabilities(&c, bar4);
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct FakeQueue {
    max: u16,
    size: u16,
    vector: u16,
    enable: u16,
    notify_off: u16,
    desc: u64,
    driver: u64,
    device: u64,
}

/// A virtio-pci modern register file with just enough behaviour for the transport: selector
/// registers, status with FEATURES_OK refusal, vector refusal above `vectors`, read-to-clear ISR,
/// and a generation counter that can be made to move during configuration reads.
#[derive(Debug)]
struct FakeDevice {
    device_features: u64,
    dfselect: Cell<u32>,
    drfselect: Cell<u32>,
    driver_features: Cell<u64>,
    status: Cell<u8>,
    refuse_features_ok: bool,
    reset_stuck: bool,
    vectors: u16,
    config_vector: Cell<u16>,
    queue_select: Cell<u16>,
    queues: RefCell<Vec<FakeQueue>>,
    notifies: RefCell<Vec<(usize, u16)>>,
    isr: Cell<u8>,
    generation: Cell<u8>,
    /// Configuration reads that bump the generation (simulating concurrent changes).
    unstable_reads: Cell<u32>,
    device_cfg: Vec<u8>,
}

impl FakeDevice {
    fn new() -> Self {
        let mut device_cfg = vec![0u8; 12];
        device_cfg[..6].copy_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        device_cfg[6..8].copy_from_slice(&1u16.to_le_bytes());
        device_cfg[8..10].copy_from_slice(&4u16.to_le_bytes());
        Self {
            device_features: features::VERSION_1
                | features::MAC
                | features::STATUS
                | features::MQ
                | features::RING_EVENT_IDX,
            dfselect: Cell::new(0),
            drfselect: Cell::new(0),
            driver_features: Cell::new(0),
            status: Cell::new(0),
            refuse_features_ok: false,
            reset_stuck: false,
            vectors: 3,
            config_vector: Cell::new(NO_VECTOR),
            queue_select: Cell::new(0),
            queues: RefCell::new(
                (0..9)
                    .map(|i| FakeQueue {
                        max: 256,
                        vector: NO_VECTOR,
                        notify_off: i,
                        ..Default::default()
                    })
                    .collect(),
            ),
            notifies: RefCell::new(Vec::new()),
            isr: Cell::new(0),
            generation: Cell::new(0),
            unstable_reads: Cell::new(0),
            device_cfg,
        }
    }
    fn q(&self) -> std::cell::RefMut<'_, FakeQueue> {
        let i = usize::from(self.queue_select.get());
        std::cell::RefMut::map(self.queues.borrow_mut(), |v| &mut v[i])
    }
    fn vector_ok(&self, v: u16) -> u16 {
        if v == NO_VECTOR || v < self.vectors {
            v
        } else {
            NO_VECTOR
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Common,
    Notify,
    Isr,
    Device,
}

#[derive(Debug)]
struct Window<'a> {
    dev: &'a FakeDevice,
    kind: Kind,
    len: usize,
}

fn set_half(v: u64, hi: bool, x: u32) -> u64 {
    if hi {
        (v & 0xFFFF_FFFF) | (u64::from(x) << 32)
    } else {
        (v & !0xFFFF_FFFF) | u64::from(x)
    }
}

impl Window<'_> {
    fn check(&self, off: usize, size: usize) {
        assert!(off + size <= self.len, "register access outside the window");
    }
    fn read(&self, off: usize, size: usize) -> u32 {
        self.check(off, size);
        let d = self.dev;
        match self.kind {
            Kind::Common => match (off, size) {
                (0x04, 4) => (d.device_features >> (32 * d.dfselect.get())) as u32,
                (0x0C, 4) => (d.driver_features.get() >> (32 * d.drfselect.get())) as u32,
                (0x10, 2) => u32::from(d.config_vector.get()),
                (0x12, 2) => d.queues.borrow().len() as u32,
                (0x14, 1) => {
                    if d.reset_stuck {
                        0xFF
                    } else {
                        u32::from(d.status.get())
                    }
                }
                (0x15, 1) => u32::from(d.generation.get()),
                (0x16, 2) => u32::from(d.queue_select.get()),
                (0x18, 2) => u32::from({
                    let q = d.q();
                    if q.size == 0 { q.max } else { q.size }
                }),
                (0x1A, 2) => u32::from(d.q().vector),
                (0x1C, 2) => u32::from(d.q().enable),
                (0x1E, 2) => u32::from(d.q().notify_off),
                _ => panic!("unexpected common read {off:#x}/{size}"),
            },
            Kind::Isr => {
                let v = d.isr.get();
                d.isr.set(0);
                u32::from(v)
            }
            Kind::Device => {
                if d.unstable_reads.get() > 0 {
                    d.unstable_reads.set(d.unstable_reads.get() - 1);
                    d.generation.set(d.generation.get().wrapping_add(1));
                }
                let mut b = [0u8; 4];
                b[..size].copy_from_slice(&d.device_cfg[off..off + size]);
                u32::from_le_bytes(b)
            }
            Kind::Notify => panic!("notify is write-only"),
        }
    }
    fn write(&self, off: usize, size: usize, v: u32) {
        self.check(off, size);
        let d = self.dev;
        match self.kind {
            Kind::Common => match (off, size) {
                (0x00, 4) => d.dfselect.set(v.min(1)),
                (0x08, 4) => d.drfselect.set(v.min(1)),
                (0x0C, 4) => d.driver_features.set(set_half(
                    d.driver_features.get(),
                    d.drfselect.get() == 1,
                    v,
                )),
                (0x10, 2) => d.config_vector.set(d.vector_ok(v as u16)),
                (0x14, 1) => {
                    let mut s = v as u8;
                    if s == 0 {
                        d.config_vector.set(NO_VECTOR);
                    }
                    if d.refuse_features_ok {
                        s &= !status::FEATURES_OK;
                    }
                    d.status.set(s);
                }
                (0x16, 2) => d.queue_select.set(v as u16),
                (0x18, 2) => d.q().size = v as u16,
                (0x1A, 2) => {
                    let ok = d.vector_ok(v as u16);
                    d.q().vector = ok;
                }
                (0x1C, 2) => d.q().enable = v as u16,
                (0x20 | 0x24, 4) => {
                    let x = set_half(d.q().desc, off == 0x24, v);
                    d.q().desc = x;
                }
                (0x28 | 0x2C, 4) => {
                    let x = set_half(d.q().driver, off == 0x2C, v);
                    d.q().driver = x;
                }
                (0x30 | 0x34, 4) => {
                    let x = set_half(d.q().device, off == 0x34, v);
                    d.q().device = x;
                }
                _ => panic!("unexpected common write {off:#x}/{size}"),
            },
            Kind::Notify => d.notifies.borrow_mut().push((off, v as u16)),
            _ => panic!("unexpected write"),
        }
    }
}

impl Registers for Window<'_> {
    fn len(&self) -> usize {
        self.len
    }
    fn read8(&self, offset: usize) -> u8 {
        self.read(offset, 1) as u8
    }
    fn read16(&self, offset: usize) -> u16 {
        self.read(offset, 2) as u16
    }
    fn read32(&self, offset: usize) -> u32 {
        self.read(offset, 4)
    }
    fn read64(&self, offset: usize) -> u64 {
        panic!("unexpected 8-byte read at {offset:#x}: virtio-pci registers are 1, 2 or 4 bytes")
    }
    fn write8(&self, offset: usize, value: u8) {
        self.write(offset, 1, value.into())
    }
    fn write16(&self, offset: usize, value: u16) {
        self.write(offset, 2, value.into())
    }
    fn write32(&self, offset: usize, value: u32) {
        self.write(offset, 4, value)
    }
    fn write64(&self, offset: usize, value: u64) {
        panic!(
            "unexpected 8-byte write of {value:#x} at {offset:#x}: virtio-pci registers are 1, 2 or 4 bytes"
        )
    }
}

fn transport(dev: &FakeDevice) -> Transport<Window<'_>> {
    transport_with(dev, 0x40, 0x20, 12)
}

fn transport_with(
    dev: &FakeDevice,
    common: usize,
    notify: usize,
    device: usize,
) -> Transport<Window<'_>> {
    let w = |kind, len| Window { dev, kind, len };
    Transport::new(
        w(Kind::Common, common),
        w(Kind::Notify, notify),
        4,
        w(Kind::Isr, 1),
        Some(w(Kind::Device, device)),
    )
    .unwrap()
}

#[test]
fn transport_rejects_short_windows() {
    let dev = FakeDevice::new();
    let w = |kind, len| Window {
        dev: &dev,
        kind,
        len,
    };
    let t = Transport::new(
        w(Kind::Common, 0x37),
        w(Kind::Notify, 4),
        4,
        w(Kind::Isr, 1),
        None,
    );
    assert_eq!(t.unwrap_err(), TransportError::WindowTooSmall);
    let t = Transport::new(
        w(Kind::Common, 0x38),
        w(Kind::Notify, 4),
        4,
        w(Kind::Isr, 0),
        None,
    );
    assert_eq!(t.unwrap_err(), TransportError::WindowTooSmall);
}

#[test]
fn reset_waits_for_zero_and_gives_up_on_a_stuck_device() {
    let mut dev = FakeDevice::new();
    dev.status.set(status::ACKNOWLEDGE | status::DRIVER);
    dev.config_vector.set(1);
    let t = transport(&dev);
    let mut waits = 0;
    assert_eq!(t.reset(|| waits += 1), Ok(()));
    assert_eq!((dev.status.get(), waits), (0, 0));
    assert_eq!(t.config_msix_vector(), NO_VECTOR);

    dev.reset_stuck = true;
    let t = transport(&dev);
    let mut waits = 0;
    assert_eq!(t.reset(|| waits += 1), Err(TransportError::ResetTimeout));
    assert_eq!(waits, pci::RESET_POLLS);
}

#[test]
fn feature_negotiation_accepts_the_intersection_and_checks_features_ok() {
    let dev = FakeDevice::new();
    let t = transport(&dev);
    t.add_status(status::ACKNOWLEDGE);
    t.add_status(status::DRIVER);
    assert_eq!(t.device_features(), dev.device_features);
    let wanted = features::VERSION_1 | features::MAC | features::CTRL_VQ | features::MRG_RXBUF;
    let got = t.negotiate_features(wanted).unwrap();
    assert_eq!(got, features::VERSION_1 | features::MAC);
    assert_eq!(dev.driver_features.get(), got, "both halves written");
    assert_eq!(
        t.status(),
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK
    );
    t.add_status(status::DRIVER_OK);
    assert_eq!(t.status() & status::DRIVER_OK, status::DRIVER_OK);
    assert!(!t.needs_reset());
}

#[test]
fn feature_negotiation_fails_when_features_ok_does_not_stick() {
    let mut dev = FakeDevice::new();
    dev.refuse_features_ok = true;
    let t = transport(&dev);
    t.add_status(status::ACKNOWLEDGE | status::DRIVER);
    assert_eq!(
        t.negotiate_features(u64::MAX),
        Err(TransportError::FeaturesRejected)
    );
    assert_ne!(t.status() & status::FAILED, 0);
    assert_eq!(t.status() & status::FEATURES_OK, 0);
}

#[test]
fn feature_negotiation_refuses_a_legacy_only_device() {
    let mut dev = FakeDevice::new();
    dev.device_features &= !features::VERSION_1;
    let t = transport(&dev);
    assert_eq!(
        t.negotiate_features(u64::MAX),
        Err(TransportError::NotVersion1)
    );
    assert_ne!(t.status() & status::FAILED, 0);
}

#[test]
fn queue_setup_programs_size_addresses_and_notification() {
    let dev = FakeDevice::new();
    let t = transport(&dev);
    assert_eq!(t.num_queues(), 9);
    assert_eq!(t.queue_max_size(3), Ok(256));
    let n = t
        .setup_queue(3, 64, 0x1_2345_6000, 0xABCD_EF01_0000, 0x7_0000_1000)
        .unwrap();
    {
        let q = dev.queues.borrow()[3];
        assert_eq!(q.size, 64);
        assert_eq!(q.desc, 0x1_2345_6000);
        assert_eq!(q.driver, 0xABCD_EF01_0000);
        assert_eq!(q.device, 0x7_0000_1000);
        assert_eq!(q.enable, 0);
    }
    t.enable_queue(3).unwrap();
    assert_eq!(t.queue_enabled(3), Ok(true));
    t.notify(&n);
    assert_eq!(n.queue(), 3);
    // notify_off 3 * multiplier 4.
    assert_eq!(*dev.notifies.borrow(), vec![(12, 3)]);
    assert_eq!(t.notifier(3), Ok(n));

    assert_eq!(
        t.setup_queue(0, 512, 0, 0, 0),
        Err(TransportError::BadQueueSize {
            queue: 0,
            size: 512,
            max: 256
        })
    );
    assert!(matches!(
        t.setup_queue(0, 48, 0, 0, 0),
        Err(TransportError::BadQueueSize { .. })
    ));
    assert!(matches!(
        t.setup_queue(0, 0, 0, 0, 0),
        Err(TransportError::BadQueueSize { .. })
    ));
    assert_eq!(
        t.setup_queue(9, 64, 0, 0, 0),
        Err(TransportError::NoSuchQueue(9))
    );
    dev.queues.borrow_mut()[1].max = 0;
    assert_eq!(
        t.setup_queue(1, 64, 0, 0, 0),
        Err(TransportError::NoSuchQueue(1))
    );
    // A notify_off the notify window cannot hold (0x20 bytes: offsets up to 0x1E).
    dev.queues.borrow_mut()[2].notify_off = 8;
    assert_eq!(
        t.setup_queue(2, 64, 0, 0, 0),
        Err(TransportError::NotifyOutOfWindow { queue: 2 })
    );
    dev.queues.borrow_mut()[2].notify_off = 7;
    assert!(t.setup_queue(2, 64, 0, 0, 0).is_ok());
}

#[test]
fn vector_mapping_is_read_back() {
    let dev = FakeDevice::new(); // 3 vectors
    let t = transport(&dev);
    assert_eq!(t.set_queue_vector(0, 0), Ok(()));
    assert_eq!(t.set_queue_vector(1, 2), Ok(()));
    assert_eq!(
        t.set_queue_vector(2, 3),
        Err(VectorRefused {
            requested: 3,
            read_back: NO_VECTOR
        })
    );
    assert_eq!(dev.queues.borrow()[1].vector, 2);
    assert_eq!(dev.queues.borrow()[2].vector, NO_VECTOR);
    assert_eq!(t.set_queue_vector(1, NO_VECTOR), Ok(()));
    assert_eq!(
        t.set_queue_vector(40, 0),
        Err(VectorRefused {
            requested: 0,
            read_back: NO_VECTOR
        })
    );
    assert_eq!(t.set_config_vector(2), Ok(()));
    assert_eq!(t.config_msix_vector(), 2);
    assert_eq!(
        t.set_config_vector(7),
        Err(VectorRefused {
            requested: 7,
            read_back: NO_VECTOR
        })
    );
}

#[test]
fn isr_is_read_to_clear_and_all_ones_means_gone() {
    let dev = FakeDevice::new();
    let t = transport(&dev);
    dev.isr.set(3);
    let s = t.isr();
    assert!(s.queue() && s.config_changed() && !s.is_empty());
    assert!(t.isr().is_empty());
    dev.isr.set(0xFF);
    let s = t.isr();
    assert!(s.is_device_gone() && !s.queue() && !s.config_changed());
    assert!(!IsrStatus(2).queue());
}

#[test]
fn net_config_is_read_consistently() {
    let dev = FakeDevice::new();
    let t = transport(&dev);
    let c = t.net_config().unwrap();
    assert_eq!(c.mac, Some([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
    assert_eq!(c.status, Some(1));
    assert_eq!(c.max_virtqueue_pairs, Some(4));
    assert!(c.link_up(true));

    // Generation moves during the first reads: retried, same result.
    dev.unstable_reads.set(5);
    assert_eq!(t.net_config(), Ok(c));
    assert_eq!(dev.unstable_reads.get(), 0);
    // Never settles: an error, not a hang.
    dev.unstable_reads.set(u32::MAX);
    assert_eq!(t.net_config(), Err(TransportError::ConfigUnstable));
    dev.unstable_reads.set(0);

    // A short device window: the missing fields are absent, nothing is read past the end.
    let t = transport_with(&dev, 0x40, 0x20, 7);
    let c = t.net_config().unwrap();
    assert!(c.mac.is_some() && c.status.is_none() && c.max_virtqueue_pairs.is_none());
    assert!(c.link_up(false), "without STATUS the link is up");
    assert!(!c.link_up(true));
}

/// A chain staged but not yet published is not the device's: a used entry naming it cannot be
/// taken as a completion while `avail.idx` does not cover it (the driver would free descriptors
/// that an available-ring entry still names, to be published later, and hand them out again).
/// Either the entry is a device fault, or the chain is published before it is accepted.
#[test]
fn a_staged_chain_is_not_completed_before_the_device_can_see_it() {
    let mem = guest_memory();
    let (mut drv, _dev) = pair(&mem, 8, false);
    let h = drv.stage(&rx_buf(100)).unwrap();
    forge_used(&mem, &drv, 0, u32::from(h), 10);
    forge_used_idx(&mem, &drv, 1);
    let popped = drv.pop_used();
    let avail_idx: u16 = mem
        .read_obj(GuestAddress(drv.driver_address() + 2))
        .unwrap();
    match popped {
        Ok(Some((head, _))) => assert_eq!(
            (head, avail_idx),
            (h, 1),
            "completed a chain whose avail.idx the device never saw"
        ),
        Err(e) => assert!(e.is_device_fault()),
        Ok(None) => panic!("a used entry ignored"),
    }
}

/// A read-only chain staged on the fly (the mapped transmit path): the device reads the pieces
/// in order, none writable; a chain that does not fit is refused with nothing changed, and the
/// descriptors come back with the used entry, for the next chain.
#[test]
fn read_only_chains_staged_on_the_fly_reach_the_device_in_order() {
    let mem = guest_memory();
    let (mut drv, mut dev) = pair(&mem, 8, false);
    let pieces: Vec<Vec<u8>> = (0..4).map(|i| pattern(i, 10 + 7 * i as usize)).collect();
    let mut at = DATA_BASE;
    let mut placed = Vec::new();
    for p in &pieces {
        mem.write_slice(p, GuestAddress(at)).unwrap();
        placed.push((at, p.len() as u32));
        at += 0x100;
    }
    for round in 0..5u32 {
        assert_eq!(
            drv.stage_readable(buf(placed[0]), 8, |i| placed[(i + 1) % 4]),
            Err(QueueError::NoSpace { needed: 9, free: 8 })
        );
        assert_eq!((drv.num_free(), drv.in_flight()), (8, 0));
        let head = drv
            .stage_readable(buf(placed[0]), 3, |i| placed[i + 1])
            .unwrap();
        drv.publish();
        let (h, read, writable) = device_take(&mut dev, &mem).expect("the chain is published");
        assert_eq!(h, head);
        assert!(writable.is_empty());
        assert_eq!(read, pieces.concat(), "round {round}");
        dev.add_used(&mem, h, 0).unwrap();
        assert_eq!(drv.pop_used(), Ok(Some((head, 0))));
        assert_eq!((drv.num_free(), drv.in_flight()), (8, 0));
    }
    // A queue of fixed descriptors takes no such chain.
    let (mut fixed, _dev) = pair(&mem, 8, false);
    fixed.use_fixed_descriptors().unwrap();
    assert_eq!(
        fixed.stage_readable(buf(placed[0]), 0, |_| placed[0]),
        Err(QueueError::WrongMode)
    );
}
