//! vionet's split virtqueue (driver side) against a hostile device: the fuzz input plays the
//! device, writing used entries (any id, any length), `used.idx` (any jump) and garbage over
//! the descriptor table and the available ring, between the driver's adds, pops, interrupt
//! toggles and resets.
//!
//! Properties, against a model of what the driver put in flight: every access the queue makes
//! lies inside its ring memory (the memory below asserts it); a chain's descriptors and its
//! available-ring entry are what was added; `pop_used` returns only a head in flight, once,
//! with a length no larger than the chain's writable bytes (0 for a device-readable chain);
//! anything else is a device fault that stays until `reclaim_after_reset`, which hands back
//! exactly the chains in flight; free descriptors and chains in flight always add up. With
//! indirect tables a device-readable chain that fits one takes one ring descriptor, which
//! points at its head's table, and the table holds the chain (its first entry too, which the
//! queue writes only when it changes).
#![no_main]

use std::cell::RefCell;
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use ndis::hw::DeviceMemory;
use ndis_rs_fuzz::Input;
use vionet::virtio::queue::{Buffer, First, Layout, QueueError, Slot, SplitQueue};

/// Ring memory that fails the run on any access outside it, at a device address.
struct Ring(RefCell<Vec<u8>>, u64);

impl Ring {
    fn at(&self, offset: usize, n: usize) -> core::ops::Range<usize> {
        let len = self.0.borrow().len();
        assert!(
            offset.checked_add(n).is_some_and(|e| e <= len),
            "queue access {offset}+{n} outside its {len}-byte ring"
        );
        offset..offset + n
    }
}

impl DeviceMemory for &Ring {
    fn device_address(&self) -> u64 {
        self.1
    }
    fn len(&self) -> usize {
        self.0.borrow().len()
    }
    fn read_u16(&self, o: usize) -> u16 {
        u16::from_le_bytes(self.0.borrow()[self.at(o, 2)].try_into().unwrap())
    }
    fn read_u32(&self, o: usize) -> u32 {
        u32::from_le_bytes(self.0.borrow()[self.at(o, 4)].try_into().unwrap())
    }
    fn read_u64(&self, o: usize) -> u64 {
        u64::from_le_bytes(self.0.borrow()[self.at(o, 8)].try_into().unwrap())
    }
    fn write_u16(&self, o: usize, v: u16) {
        let r = self.at(o, 2);
        self.0.borrow_mut()[r].copy_from_slice(&v.to_le_bytes());
    }
    fn write_u32(&self, o: usize, v: u32) {
        let r = self.at(o, 4);
        self.0.borrow_mut()[r].copy_from_slice(&v.to_le_bytes());
    }
    fn write_u64(&self, o: usize, v: u64) {
        let r = self.at(o, 8);
        self.0.borrow_mut()[r].copy_from_slice(&v.to_le_bytes());
    }
    fn read_bytes(&self, o: usize, buf: &mut [u8]) {
        let r = self.at(o, buf.len());
        buf.copy_from_slice(&self.0.borrow()[r]);
    }
    fn write_bytes(&self, o: usize, data: &[u8]) {
        let r = self.at(o, data.len());
        self.0.borrow_mut()[r].copy_from_slice(data);
    }
}

fn le16(m: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([m[at], m[at + 1]])
}

fn le32(m: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(m[at..at + 4].try_into().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let size = 1u16 << (input.u8() % 6); // 1..=32
    let event_idx = input.bool();
    let layout = Layout::new(size).unwrap();
    let ring = Ring(RefCell::new(vec![0u8; layout.total]), 0x10_0000);
    let slots = vec![Slot::EMPTY; usize::from(size)];
    // Indirect tables (the device may not write them; nothing here does).
    let entries = 2 + u16::from(input.u8() % 4);
    const TABLES: u64 = 0x30_0000;
    let table_bytes = 16 * usize::from(entries) * usize::from(size);
    let tables = Ring(RefCell::new(vec![0u8; table_bytes]), TABLES);
    let mut q = SplitQueue::new(&ring, slots, size, event_idx).expect("a valid queue");
    // A receive ring's mode: chains of one, under the descriptor the driver names; or a
    // transmit ring's with indirect tables.
    let mode = input.u8() % 3;
    let fixed = mode == 1;
    if fixed {
        q.use_fixed_descriptors().expect("nothing in flight yet");
    }
    // The common first buffer: a header most chains start with.
    let common = (0x1F_0000, 12);
    let indirect = mode == 2 && entries <= size;
    if indirect {
        q.set_common_first(common).expect("nothing in flight yet");
        q.use_indirect_tables(&tables, entries)
            .expect("nothing in flight yet");
    }

    // The model: chains in flight by head (descriptors, writable bytes), and the used index as
    // the driver consumed it.
    let mut in_flight: BTreeMap<u16, (u16, u32)> = BTreeMap::new();
    let mut consumed: u16 = 0;
    let mut device_used: u16 = 0;
    let mut fault: Option<QueueError> = None;
    // Chains made available since the queue was (re)initialized.
    let mut avail_count: u16 = 0;
    // The device wrote over the descriptor table since the last reset: a fixed queue does not
    // rewrite a descriptor that already describes its buffer, nor a queue with indirect tables
    // a ring descriptor that already refers to its table (the device may not write the table,
    // so a device that does only misleads itself), so those contents are not checked.
    let mut scribbled = false;

    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 9 {
            // The driver adds a chain.
            0 | 1 => {
                // How the chain is staged: `add` (a copied frame), `stage_readable` (a mapped
                // frame: read-only pieces given on the fly), or `stage_fixed` (one buffer under
                // a named descriptor, on a fixed queue).
                let how = input.u8() % 3;
                let named = u16::from(input.u8()) % (size * 2);
                let n = if fixed {
                    1
                } else {
                    usize::from(input.u8() % 6)
                };
                let read_only = !fixed && how == 1;
                let mut bufs = Vec::new();
                for i in 0..n {
                    bufs.push(Buffer {
                        addr: 0x20_0000 + 0x1000 * i as u64,
                        len: u32::from(input.u16()) + 1,
                        device_writable: !read_only && input.bool(),
                    });
                }
                let free = q.num_free();
                // Ring descriptors the chain takes (one in a table, for a readable one that fits).
                let needed = if read_only { q.descriptors_for(n) } else { n };
                let readable_after_writable = bufs
                    .windows(2)
                    .any(|w| w[0].device_writable && !w[1].device_writable);
                let avail_before = avail_count;
                let added = if fixed {
                    if how == 0 {
                        // The other staging calls are refused on a fixed queue.
                        let r = q.add(&bufs);
                        let want = fault.unwrap_or(QueueError::WrongMode);
                        assert_eq!(r, Err(want), "add on a fixed queue");
                        continue;
                    }
                    let r = q.stage_fixed(named, &bufs[0]);
                    q.publish();
                    r.map(|()| named)
                } else if read_only && n > 0 {
                    if indirect && input.bool() {
                        bufs[0].addr = common.0;
                        bufs[0].len = common.1;
                    }
                    let pieces: Vec<(u64, u32)> = bufs.iter().map(|b| (b.addr, b.len)).collect();
                    let first = if indirect && pieces[0] == common {
                        First::Common
                    } else {
                        First::Buffer(pieces[0].0, pieces[0].1)
                    };
                    let r = q.stage_readable(first, n - 1, |i| pieces[i + 1]);
                    q.publish();
                    r
                } else {
                    q.add(&bufs)
                };
                if let Some(f) = fault {
                    assert_eq!(added, Err(f), "a faulted queue takes no chain");
                    continue;
                }
                if fixed {
                    let busy = named >= size || in_flight.contains_key(&named);
                    assert_eq!(
                        added.is_err(),
                        busy,
                        "stage_fixed({named}): {added:?}, in flight {in_flight:?}"
                    );
                    if let Err(e) = added {
                        assert_eq!(e, QueueError::DescriptorInUse { idx: named });
                        continue;
                    }
                }
                match added {
                    Ok(head) => {
                        // A readable chain that fits a table takes one ring descriptor.
                        let tabled =
                            indirect && read_only && (2..=usize::from(entries)).contains(&n);
                        let descs = if tabled { 1 } else { n };
                        if read_only {
                            assert_eq!(descs, q.descriptors_for(n));
                        }
                        assert!(
                            !bufs.is_empty()
                                && needed <= usize::from(free)
                                && !readable_after_writable
                        );
                        assert!(
                            !in_flight.contains_key(&head),
                            "head {head} handed out twice"
                        );
                        // What the driver wrote: the chain, linked, and its head made available.
                        let m = ring.0.borrow();
                        let t = tables.0.borrow();
                        if tabled {
                            let at = layout.desc + 16 * usize::from(head);
                            let table = 16 * usize::from(entries) * usize::from(head);
                            let addr = u64::from_le_bytes(m[at..at + 8].try_into().unwrap());
                            // Written only when it changes (as a fixed queue's): not checked
                            // once the device scribbled over the descriptor table.
                            if !scribbled {
                                assert_eq!(
                                    (addr, le32(&m, at + 8), le16(&m, at + 12)),
                                    (TABLES + table as u64, 16 * n as u32, 4),
                                    "the ring descriptor points at the head's table, INDIRECT alone"
                                );
                            }
                            for (i, b) in bufs.iter().enumerate() {
                                let at = table + 16 * i;
                                let addr = u64::from_le_bytes(t[at..at + 8].try_into().unwrap());
                                assert_eq!((addr, le32(&t, at + 8)), (b.addr, b.len), "entry {i}");
                                let (flags, next) = (le16(&t, at + 12), le16(&t, at + 14));
                                if i + 1 < n {
                                    assert_eq!((flags, usize::from(next)), (1, i + 1), "entry {i}");
                                } else {
                                    assert_eq!(flags, 0, "the last entry");
                                }
                            }
                        }
                        let mut d = head;
                        let checked = if (fixed && scribbled) || tabled {
                            0
                        } else {
                            bufs.len()
                        };
                        for (i, b) in bufs.iter().enumerate().take(checked) {
                            let at = layout.desc + 16 * usize::from(d);
                            let addr = u64::from_le_bytes(m[at..at + 8].try_into().unwrap());
                            let flags = le16(&m, at + 12);
                            assert_eq!((addr, le32(&m, at + 8)), (b.addr, b.len));
                            assert_eq!(flags & 2 != 0, b.device_writable);
                            assert_eq!(flags & 1 != 0, i + 1 < bufs.len());
                            d = le16(&m, at + 14);
                            assert!(d < size || i + 1 == bufs.len());
                        }
                        let avail_idx = le16(&m, layout.avail + 2);
                        assert_eq!(avail_idx, avail_before.wrapping_add(1));
                        let slot = usize::from(avail_before & (size - 1));
                        assert_eq!(le16(&m, layout.avail + 4 + 2 * slot), head);
                        let capacity = bufs
                            .iter()
                            .filter(|b| b.device_writable)
                            .map(|b| b.len)
                            .sum();
                        in_flight.insert(head, (descs as u16, capacity));
                        avail_count = avail_count.wrapping_add(1);
                    }
                    Err(e) => assert!(
                        matches!(e, QueueError::EmptyChain if bufs.is_empty())
                            || matches!(e, QueueError::NoSpace { .. } if needed > usize::from(free))
                            || matches!(e, QueueError::ReadableAfterWritable if readable_after_writable),
                        "add refused {bufs:?} with {e:?} ({free} free)"
                    ),
                }
            }
            // An honest completion of a chain in flight, with a length it may report.
            2 => {
                let pick = usize::from(input.u8());
                if let Some((&head, &(_, cap))) =
                    in_flight.iter().nth(pick % in_flight.len().max(1))
                {
                    let len = if cap == 0 {
                        input.u32() % 2048
                    } else {
                        input.u32() % (cap + 1)
                    };
                    let slot = usize::from(device_used & (size - 1));
                    let at = layout.used + 4 + 8 * slot;
                    let mut m = ring.0.borrow_mut();
                    m[at..at + 4].copy_from_slice(&u32::from(head).to_le_bytes());
                    m[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
                    device_used = device_used.wrapping_add(1);
                    m[layout.used + 2..layout.used + 4].copy_from_slice(&device_used.to_le_bytes());
                }
            }
            // A hostile used entry.
            3 => {
                let slot = usize::from(input.u8() % size as u8);
                let at = layout.used + 4 + 8 * slot;
                let (id, len) = (input.u32() % (u32::from(size) * 2), input.u32());
                let mut m = ring.0.borrow_mut();
                m[at..at + 4].copy_from_slice(&id.to_le_bytes());
                m[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
            }
            // A hostile used index.
            4 => {
                device_used = if input.bool() {
                    input.u16()
                } else {
                    device_used.wrapping_add(u16::from(input.u8() % 4))
                };
                ring.0.borrow_mut()[layout.used + 2..layout.used + 4]
                    .copy_from_slice(&device_used.to_le_bytes());
            }
            // Garbage over the descriptor table or the available ring (the device may not write
            // them; the driver must never read them back).
            5 => {
                let at = usize::from(input.u16()) % layout.used;
                scribbled |= at < layout.avail;
                let b = input.u8();
                ring.0.borrow_mut()[at] = b;
            }
            // The driver drains.
            6 | 7 => {
                let r = q.pop_used();
                if let Some(f) = fault {
                    assert_eq!(r, Err(f), "a device fault is sticky");
                    continue;
                }
                match r {
                    Ok(None) => assert_eq!(
                        le16(&ring.0.borrow(), layout.used + 2),
                        consumed,
                        "used entries left unread"
                    ),
                    Ok(Some((head, len))) => {
                        let (_, cap) = in_flight
                            .remove(&head)
                            .unwrap_or_else(|| panic!("head {head} popped but not in flight"));
                        assert!(
                            len <= cap,
                            "length {len} above the chain's {cap} writable bytes"
                        );
                        consumed = consumed.wrapping_add(1);
                    }
                    Err(e) => {
                        assert!(e.is_device_fault(), "pop_used: {e:?}");
                        fault = Some(e);
                    }
                }
            }
            // Interrupt suppression and notification decisions touch only the ring.
            8 => match input.u8() % 4 {
                0 => q.disable_interrupts(),
                1 => {
                    let _ = q.enable_interrupts();
                }
                2 => {
                    let _ = q.should_notify();
                }
                _ => {
                    // A device reset: everything in flight comes back, once.
                    let mut back = Vec::new();
                    q.reclaim_after_reset(|h| back.push(h));
                    let want: Vec<u16> = in_flight.keys().copied().collect();
                    assert_eq!(back, want, "reclaimed chains");
                    in_flight.clear();
                    consumed = 0;
                    avail_count = 0;
                    device_used = 0;
                    fault = None;
                    scribbled = false;
                    assert_eq!(q.num_free(), size);
                    assert_eq!(q.fault(), None);
                }
            },
            _ => unreachable!(),
        }
        let busy: u16 = in_flight.values().map(|(n, _)| n).sum();
        assert_eq!(q.num_free() + busy, size, "descriptors lost or doubled");
        assert_eq!(q.in_flight() as usize, in_flight.len());
    }
});
