//! The receive path: buffers posted to the device and handed back by NDIS, receives drained
//! from the used ring, 802.1Q tags stripped into the list information, and the checksum verdict
//! NDIS is told.

use core::sync::atomic::{Ordering, fence};

use ndis::irql::{AtMostDispatch, DispatchOrBelow};
use ndis::nbl::{Ieee8021Q, Returned, RxFrame};
use ndis::offload::{DeviceRxChecksum, RxChecksum};

use super::rss::{DEVICE_HASH, ndis_hash};
use super::{Device, Pair, RxRing};
use crate::virtio::net::{NetHeader, features};
use crate::virtio::queue::Buffer;

/// What becomes of a receive.
enum Received {
    /// Shorter than a header, or not what the device may deliver: an error.
    Runt,
    /// A frame the adapter does not take (too long for its MTU, another VLAN's): a discard.
    Dropped,
    /// Taken: where it starts in its buffer, its length, the tag stripped into the list
    /// information.
    Frame {
        offset: usize,
        length: usize,
        ieee8021q: Option<Ieee8021Q>,
    },
}

/// Receives collected per pass before indicating them in one chain.
const RX_BATCH: usize = 64;

/// Bytes of a receive buffer read once per frame for every step that looks at it (the
/// virtio-net header, the tag, the checksum verdict, the RSS hash): the longest header (20)
/// and what RSS parses of a frame (Ethernet, a tag, IPv4 with options or IPv6, the ports).
const PEEK: usize = 20 + 108;

impl Device {
    /// Posts claimed receive buffers to the device and rings the doorbell once.
    pub(super) fn post_rx<C: AtMostDispatch>(&self, pair: &Pair, buffers: &[usize], irql: &mut C) {
        if buffers.is_empty() {
            return;
        }
        if !self.is_healthy() {
            // To the pool; a re-initialization posts what it finds there.
            for &b in buffers {
                pair.pool.release(b);
            }
            // One that finished between the check and the release may not have seen these:
            // take back what it did not (SeqCst pairs with its store and fence).
            fence(Ordering::SeqCst);
            if self.health.load(Ordering::SeqCst) != super::Health::Healthy as u8 {
                return;
            }
            let mut again = [0usize; RX_BATCH];
            let mut n = 0;
            for &b in buffers.iter().take(RX_BATCH) {
                if pair.pool.claim(b) {
                    again[n] = b;
                    n += 1;
                }
            }
            self.post_claimed(pair, &again[..n], irql);
            return;
        }
        self.post_claimed(pair, buffers, irql);
    }

    /// [`Self::post_rx`] once the health was seen: under the ring's lock.
    fn post_claimed<C: AtMostDispatch>(&self, pair: &Pair, buffers: &[usize], irql: &mut C) {
        // The doorbell under the lock, after the health was read under it: a
        // re-initialization takes this lock before it resets the device.
        pair.rx.with(irql, |rx, _| {
            if !self.is_healthy() {
                for &b in buffers {
                    pair.pool.release(b);
                }
                return;
            }
            self.add_rx_buffers(rx, pair, buffers);
            if rx.vq.should_notify() {
                self.transport.notify(&rx.notifier);
            }
        });
    }

    /// Stages claimed receive buffers on `rx` (its lock held) for the caller's next
    /// `should_notify` to publish; a buffer the ring has no room for goes back to the pool.
    pub(super) fn add_rx_buffers(&self, rx: &mut RxRing, pair: &Pair, buffers: &[usize]) {
        let base = pair.pool.device_address();
        for &b in buffers {
            Self::stage_rx(rx, pair, base, self.frame.buffer, b);
        }
    }

    /// Stages claimed buffer `b` (of `size` bytes, the pool's block at device address `base`) on
    /// `rx`, or gives it back to the pool when the ring has no room.
    #[inline(always)]
    fn stage_rx(rx: &mut RxRing, pair: &Pair, base: u64, size: usize, b: usize) {
        let buffer = Buffer {
            addr: base + (b * size) as u64,
            len: size as u32,
            device_writable: true,
        };
        // Under its own descriptor (see `RxRing::vq`); published by the caller's
        // `should_notify` (after the batch, or at DRIVER_OK).
        let staged = u16::try_from(b).map(|i| rx.vq.stage_fixed(i, &buffer));
        if !matches!(staged, Ok(Ok(()))) {
            pair.pool.release(b);
        }
    }

    /// Drains up to `budget` receives of pair `j` and indicates them; returns (indicated,
    /// more_pending). Receives that cannot be indicated (paused, runts, oversize) go straight back
    /// to the device.
    ///
    /// With `rss_on` (RSS or receive hashing on) every frame gets its hash, and goes to the chain
    /// of the processor the table names for it (this one when the table names none), pushed
    /// under the ring's lock (see [`super::steer`]); `kick` collects the other processors whose
    /// DPCs the caller queues, and the caller drains this processor's chains.
    pub fn receive<C: AtMostDispatch>(
        &self,
        j: usize,
        budget: u32,
        rss_on: bool,
        kick: &mut u64,
        irql: &mut C,
    ) -> (u32, bool) {
        let Some(pair) = self.pairs.get(j) else {
            return (0, false);
        };
        if !self.is_healthy() {
            return (0, false);
        }
        let mut total = 0u32;
        // Each frame's first bytes, read into the front of this per frame: only the bytes read
        // are looked at, so nothing is cleared between frames.
        let mut peek = [0u8; PEEK];
        loop {
            // Frames indicated here, linked as they are popped (lent, not yet seen by NDIS),
            // indicated once the ring's lock is released.
            let mut chain = pair.pool.chain();
            let mut runts = 0;
            let mut discards = 0;
            let mut popped = 0;
            let mut repost = [0usize; RX_BATCH];
            let mut r = 0;
            // Processors (below 64) this pass pushed to.
            let mut pushed_to = 0u64;
            let want = (budget - total).min(RX_BATCH as u32) as usize;
            let vlan_filter = self.vlan_id.load(Ordering::Relaxed);
            // Only steering needs the processor (an NDIS call): none while RSS is off.
            let here = if rss_on {
                ndis::sync::current_processor() as usize
            } else {
                0
            };
            let mode = if rss_on { self.rss_mode() } else { 0 };
            let (fault, pending) = pair.rx.with(irql, |rx, _| {
                if !self.is_healthy() {
                    return (false, false);
                }
                // The configuration as this ring last saw it; taken again only if it changed.
                let rss = if rss_on {
                    self.ndis.rss_view(&mut rx.rss)
                } else {
                    None
                };
                // This is the processor of this queue's entries: frames for it are indicated
                // here at once (after this pass), unless frames of this ring still wait in its
                // chain for this processor from an earlier pass, which must go first. The chain
                // is this ring's, under this lock (held), so an empty one now means none of them
                // waits. (Frames of one flow the device moved between rings have no order
                // between the rings' DPCs whichever way they go: steering would not give them
                // one.)
                let direct = rss.is_some_and(|t| t.is_enabled())
                    && self.queue_cpus.get().and_then(|c| c.get(j)) == Some(&(here as u16))
                    && rx.steered.is_empty(here);
                // What decides each frame's path, read once for the pass.
                let hdr = self.hdr_len;
                let tagging = self.tagging.any();
                let csum = self.features & features::GUEST_CSUM != 0;
                let device_hash = mode & DEVICE_HASH != 0;
                // Whether each frame's first bytes are read (see `PEEK`).
                let look = rss.is_some() || tagging || csum;
                // The longest receive taken as it is (no tag to look at, within the MTU); one
                // longer needs its first bytes for the tag that decides whether it is taken.
                let plain = hdr + self.frame.frame;
                rx.vq.disable_interrupts();
                let drained = rx.vq.pop_each(want, |head, len| {
                    let b = usize::from(head);
                    let len = len as usize;
                    // One read of the buffer's first bytes for all that follows, when anything
                    // looks at them.
                    let seen = if look || len > plain {
                        len.min(PEEK)
                    } else {
                        0
                    };
                    let peek = &mut peek[..seen];
                    if !pair.pool.read(b, 0, peek) {
                        // Not ours to read: never indicated.
                        repost[r] = b;
                        r += 1;
                        discards += 1;
                        return;
                    }
                    // A receive within the MTU without a tag (or on an adapter that strips
                    // none) is taken as it is; the rest is for `accept`.
                    let untagged =
                        !tagging || peek.get(hdr + 12..hdr + 14) != Some(&[0x81, 0x00][..]);
                    let mut frame = if len <= plain && len >= hdr + 14 && untagged {
                        RxFrame {
                            index: b,
                            offset: hdr,
                            length: len - hdr,
                            ..RxFrame::default()
                        }
                    } else {
                        match self.accept(pair, b, len, peek, vlan_filter) {
                            Received::Frame {
                                offset,
                                length,
                                ieee8021q,
                            } => RxFrame {
                                index: b,
                                offset,
                                length,
                                ieee8021q,
                                ..RxFrame::default()
                            },
                            Received::Runt => {
                                repost[r] = b;
                                r += 1;
                                runts += 1;
                                return;
                            }
                            Received::Dropped => {
                                repost[r] = b;
                                r += 1;
                                discards += 1;
                                return;
                            }
                        }
                    };
                    // A verdict only when the device gave one (either flag).
                    if csum
                        && peek.first().copied().unwrap_or(0)
                            & (NetHeader::F_NEEDS_CSUM | NetHeader::F_DATA_VALID)
                            != 0
                    {
                        frame.checksum =
                            self.checksum_of(pair, frame.index, frame.offset, frame.length, peek);
                    }
                    let Some(t) = rss else {
                        chain.push(&frame, |b| {
                            repost[r] = b;
                            r += 1;
                        });
                        return;
                    };
                    // A stripped tag is still in `peek`: the hash parses past it.
                    frame.hash = if device_hash {
                        Self::reported_hash(peek)
                    } else {
                        t.hash(peek.get(hdr..).unwrap_or(&[]))
                    };
                    let cpu = match frame.hash {
                        Some(h) => t
                            .target(h.value)
                            .map_or(here, |e| usize::from(e.processor.number)),
                        None => here,
                    };
                    if direct && cpu == here {
                        chain.push(&frame, |b| {
                            repost[r] = b;
                            r += 1;
                        });
                    } else if rx.steered.push(&mut chain, cpu, &frame, |b| {
                        repost[r] = b;
                        r += 1;
                    }) {
                        pushed_to |= 1u64.wrapping_shl(cpu as u32);
                    } else {
                        repost[r] = b;
                        r += 1;
                        discards += 1;
                    }
                });
                // Told before the lock is released, and before the DPCs that drain it are
                // queued (see `super::steer`).
                if rss.is_some() {
                    *kick |= self.steer.tell(j, pushed_to, here);
                }
                match drained {
                    Ok(n) => {
                        popped = n;
                        (false, n == want)
                    }
                    Err(_) => (true, false),
                }
            });
            if fault {
                // A used ring the device cannot have written: it needs a reset. The frames
                // chained so far go back to the pool (dropping the chain), for the
                // re-initialization to post.
                drop(chain);
                self.needs_reset();
                return (total, false);
            }
            self.ndis.stats.rx_errors(runts);
            self.ndis.stats.rx_discards(discards);
            // Every popped entry counts against the budget, runts included: a device that only
            // returns garbage cannot keep the DPC looping.
            total += popped as u32;
            // Frames NDIS does not take (paused) come back here, decided before NDIS sees any.
            chain.indicate(irql, |b| {
                repost[r] = b;
                r += 1;
            });
            // Runts and refused frames go back to the device.
            self.post_rx(pair, &repost[..r], irql);
            if !pending {
                // Idle: re-enable, and drain again if the device raced us.
                let raced = pair.rx.with(irql, |rx, _| rx.vq.enable_interrupts());
                if !raced || total >= budget {
                    return (total, raced);
                }
            } else if total >= budget {
                return (total, true);
            }
        }
    }

    /// The hash the device reported in the buffer's `virtio_net_hdr_v1_hash` (its first bytes,
    /// `peek`), as NDIS's.
    fn reported_hash(peek: &[u8]) -> Option<ndis::rss::RxHash> {
        let header = peek.get(..NetHeader::HASH_LEN)?;
        NetHeader::decode_hash(header).and_then(|(value, report)| ndis_hash(value, report))
    }

    /// Indicates the frames other DPCs (or this one) steered to this processor (`here`, the
    /// caller's), oldest first per ring, one chain per ring; returns how many were indicated.
    pub fn drain_steered<C: AtMostDispatch>(&self, here: usize, irql: &mut C) -> u32 {
        let mut total = 0u32;
        // Only rings that flagged frames for this processor: their locks alone are taken.
        let mut rings = self.steer.take_rings(here);
        while rings != 0 {
            let j = rings.trailing_zeros() as usize;
            rings &= rings - 1;
            let Some(pair) = self.pairs.get(j) else {
                continue;
            };
            let mut chain = pair.pool.chain();
            // The frames were filled in when pushed: taking them is a few stores, under the
            // ring's lock; indicated once it is released.
            pair.rx
                .with(irql, |rx, _| rx.steered.take(here, &mut chain));
            match chain.try_indicate(irql) {
                Ok(n) => total += n as u32,
                // Paused: they go back to the device, in batches (there may be more than one
                // pass's).
                Err(back) => {
                    let mut repost = [0usize; RX_BATCH];
                    let mut r = 0;
                    back.give_back(|b| {
                        repost[r] = b;
                        r += 1;
                        if r == RX_BATCH {
                            self.post_rx(pair, &repost, irql);
                            r = 0;
                        }
                    });
                    self.post_rx(pair, &repost[..r], irql);
                }
            }
        }
        total
    }

    /// A receive of `len` bytes (header included) in buffer `b`: its 802.1Q tag, if tagging is
    /// on for it, is stripped into the list information (the addresses move up over it). With
    /// only priority tagging on, VLAN-tagged frames pass as they are; with VLAN tagging on,
    /// frames tagged for another VLAN than `vlan_filter` (when one is set) are dropped.
    /// `peek`: the buffer's first bytes (at most [`PEEK`], never past the receive).
    #[inline(never)]
    fn accept(&self, pair: &Pair, b: usize, len: usize, peek: &[u8], vlan_filter: u16) -> Received {
        let hdr = self.hdr_len;
        let Some(length) = len.checked_sub(hdr).filter(|&l| l >= 14) else {
            return Received::Runt;
        };
        if length > self.frame.max {
            return Received::Dropped; // the device's MTU is larger than the adapter's
        }
        let untouched = Received::Frame {
            offset: hdr,
            length,
            ieee8021q: None,
        };
        if !self.tagging.any() && length <= self.frame.frame {
            return untouched;
        }
        let mut head = [0u8; 16];
        if let Some(h) = peek.get(hdr..hdr + 16) {
            head.copy_from_slice(h);
        }
        let tagged = length >= 18 && head[12..14] == [0x81, 0x00];
        if !tagged {
            return if length <= self.frame.frame {
                untouched
            } else {
                Received::Dropped
            };
        }
        let tag = Ieee8021Q::from_tci(u16::from_be_bytes([head[14], head[15]]));
        let strip = if self.tagging.vlan {
            true
        } else {
            self.tagging.priority && tag.vlan_id == 0
        };
        if !strip {
            return untouched; // carried in band
        }
        if vlan_filter != 0 && tag.vlan_id != 0 && tag.vlan_id != vlan_filter {
            return Received::Dropped;
        }
        if !pair.pool.write(b, hdr + 4, &head[..12]) {
            return Received::Dropped;
        }
        let info = Ieee8021Q {
            priority: if self.tagging.priority {
                tag.priority
            } else {
                0
            },
            vlan_id: tag.vlan_id,
        };
        let info = (info != Ieee8021Q::default()).then_some(info);
        Received::Frame {
            offset: hdr + 4,
            length: length - 4,
            ieee8021q: info,
        }
    }

    /// What NDIS is to be told about the checksums of the frame at `offset..offset + length` of
    /// buffer `index`: the device's verdict from the virtio header (`DATA_VALID`, or
    /// `NEEDS_CSUM` for a checksum it left partial, which is completed here), within the tasks
    /// in force, and then the IPv4 header checksum, verified here. Only with `GUEST_CSUM`,
    /// without which the device never says anything. The verdict alone goes in and out (not
    /// the frame), so the receive loop keeps its frame in registers.
    #[inline(never)]
    fn checksum_of(
        &self,
        pair: &Pair,
        index: usize,
        offset: usize,
        length: usize,
        peek: &[u8],
    ) -> RxChecksum {
        let nothing = RxChecksum::empty();
        if self.features & features::GUEST_CSUM == 0 {
            return nothing;
        }
        // Neither flag (the common case): nothing to tell, whatever the rest of the header says.
        let flags = peek.first().copied().unwrap_or(0);
        if flags & (NetHeader::F_NEEDS_CSUM | NetHeader::F_DATA_VALID) == 0 {
            return nothing;
        }
        let Some(header) = peek.get(..NetHeader::LEN).and_then(NetHeader::decode) else {
            return nothing;
        };
        // A stripped tag moved the frame's start 4 bytes on.
        let stripped = offset - self.hdr_len;
        let device = if header.flags & NetHeader::F_NEEDS_CSUM != 0 {
            match usize::from(header.csum_start).checked_sub(stripped) {
                Some(start) => DeviceRxChecksum::Partial {
                    start: start as u16,
                    offset: header.csum_offset,
                },
                None => DeviceRxChecksum::Unchecked,
            }
        } else if header.flags & NetHeader::F_DATA_VALID != 0 {
            DeviceRxChecksum::Valid
        } else {
            DeviceRxChecksum::Unchecked
        };
        // A frame the device did not check is left to the stack whole: verifying only its IPv4
        // header here would move work, not save it.
        if device == DeviceRxChecksum::Unchecked {
            return nothing;
        }
        pair.pool
            .checksum(index, offset, length, self.ndis.checksum_offload(), device)
    }

    /// Buffers NDIS handed back go to the device again, staged as they are taken from the chain
    /// under the ring's lock, one doorbell per ring at the end (nothing is allocated on this
    /// DISPATCH_LEVEL path).
    ///
    /// The chain is taken run by run (lists come back in the runs they were indicated in, one
    /// pool each), so that each list is looked at once however many rings indicated.
    pub fn returned(&self, returned: &mut Returned<'_>, irql: &mut DispatchOrBelow<'_>) {
        // Rings with buffers staged but not published: their doorbells are owed.
        let mut owed = 0u64;
        // The pair of the run before: the next run's, most often.
        let mut k = 0;
        while !returned.is_empty() {
            let first = |p: &Pair| p.pool.owns_first(returned);
            let found = if self.pairs.get(k).is_some_and(first) {
                Some(k)
            } else {
                self.pairs.iter().position(first)
            };
            let Some(at) = found else {
                break;
            };
            k = at;
            let pair = &self.pairs[k];
            let bit = 1u64 << (k & 63);
            if !self.is_healthy() {
                self.returned_to_pool(pair, returned, true, irql);
                continue;
            }
            // As `post_rx`: the health read again and the doorbell rung under the lock, which a
            // re-initialization takes before it resets the device.
            pair.rx.with(irql, |rx, _| {
                if !self.is_healthy() {
                    // Each comes back claimed; to the pool, for the re-initialization.
                    pair.pool.reclaim_run(returned, |b| pair.pool.release(b));
                    return;
                }
                let base = pair.pool.device_address();
                let size = self.frame.buffer;
                // Each comes back claimed: no other processor can take it in between.
                pair.pool.reclaim_run(returned, |b| {
                    Self::stage_rx(rx, pair, base, size, b);
                });
                // The last run, and no other ring owed: its doorbell now, under this lock.
                if returned.is_empty() && owed & !bit == 0 {
                    owed = 0;
                    if rx.vq.should_notify() {
                        self.transport.notify(&rx.notifier);
                    }
                } else {
                    owed |= bit;
                }
            });
        }
        if !returned.is_empty() {
            // A list no pool's run starts with (not lent, or not ours: a bug): what each pool
            // finds of its own anywhere in the rest.
            self.returned_scattered(returned, irql);
        }
        while owed != 0 {
            let j = owed.trailing_zeros() as usize;
            owed &= owed - 1;
            let Some(pair) = self.pairs.get(j) else {
                continue;
            };
            pair.rx.with(irql, |rx, _| {
                if self.is_healthy() && rx.vq.should_notify() {
                    self.transport.notify(&rx.notifier);
                }
            });
        }
    }

    /// [`Self::returned`] for lists left behind one no pool's run starts with: each pool takes
    /// its own wherever they are.
    #[cold]
    fn returned_scattered(&self, returned: &mut Returned<'_>, irql: &mut DispatchOrBelow<'_>) {
        for pair in &self.pairs {
            if returned.is_empty() {
                break;
            }
            if !self.is_healthy() {
                self.returned_to_pool(pair, returned, false, irql);
                continue;
            }
            pair.rx.with(irql, |rx, _| {
                if !self.is_healthy() {
                    pair.pool
                        .reclaim_returned(returned, |b| pair.pool.release(b));
                    return;
                }
                let base = pair.pool.device_address();
                let size = self.frame.buffer;
                pair.pool.reclaim_returned(returned, |b| {
                    Self::stage_rx(rx, pair, base, size, b);
                });
                if rx.vq.should_notify() {
                    self.transport.notify(&rx.notifier);
                }
            });
        }
    }

    /// [`Self::returned`] while the device is not healthy: through [`Self::post_rx`], which gives
    /// the buffers to the pool (or posts them, if the device recovered meanwhile). The run at
    /// the front of `returned` only, with `run`; else all of the pool's.
    #[cold]
    fn returned_to_pool(
        &self,
        pair: &Pair,
        returned: &mut Returned<'_>,
        run: bool,
        irql: &mut DispatchOrBelow<'_>,
    ) {
        let mut batch = [0usize; RX_BATCH];
        let mut n = 0;
        let each = |b| {
            batch[n] = b;
            n += 1;
            if n == RX_BATCH {
                self.post_rx(pair, &batch, irql);
                n = 0;
            }
        };
        if run {
            pair.pool.reclaim_run(returned, each);
        } else {
            pair.pool.reclaim_returned(returned, each);
        }
        self.post_rx(pair, &batch[..n], irql);
    }
}
