//! The transmit path: lists copied into bounce buffers (with the tag and checksum requests
//! applied) on the pair of the current processor, and descriptors reaped back.

use core::sync::atomic::Ordering;

use ndis::Status;
use ndis::hw::DeviceMemory;
use ndis::irql::{AtMostDispatch, DispatchOrBelow};
use ndis::nbl::{CopyError, Ieee8021Q, SendCompletion, SendLists, SendNbl, TxPrep};

use super::{Device, TxRing};
use crate::virtio::net::{NetHeader, features};
use crate::virtio::queue::Buffer;

/// The shortest Ethernet frame without FCS (IEEE 802.3: 64 with it).
const MIN_FRAME: usize = 60;

/// Lists a transmit ring holds back while it is full ([`TxRing::backlog`]), sent from the
/// transmit completion path; beyond this a list fails with `NDIS_STATUS_RESOURCES`.
pub const TX_BACKLOG: usize = 64;

/// The ring has no room for a list now (nothing of it was queued).
pub(super) struct NoRoom;

/// What became of a list offered to the ring.
enum Queued {
    /// Queued (or refused for good): the list's status.
    Done(Status),
    /// The ring has no room for it now; nothing of it was queued.
    NoRoom,
}

impl Device {
    /// The TCI to insert into the frames of `nbl`, if any: its own priority and VLAN (as far
    /// as tagging is on), the adapter's VLAN when it names none.
    fn tx_tag(&self, nbl: &SendNbl<'_>) -> Option<u16> {
        if !self.tagging.any() {
            return None;
        }
        let info = nbl.ieee8021q().unwrap_or_default();
        let tag = Ieee8021Q {
            priority: if self.tagging.priority {
                info.priority
            } else {
                0
            },
            vlan_id: match (self.tagging.vlan, info.vlan_id) {
                (false, _) => 0,
                (true, 0) => self.vlan_id.load(Ordering::Relaxed),
                (true, id) => id,
            },
        };
        (tag != Ieee8021Q::default()).then(|| tag.tci())
    }

    /// Reclaims transmit descriptors the device finished.
    pub(super) fn reap_tx(&self, tx: &mut TxRing) -> bool {
        loop {
            match tx.vq.pop_used() {
                Ok(Some((head, _))) => super::health::free_bounce_chain(
                    &tx.bounce_of,
                    &mut tx.next_bounce,
                    &mut tx.free,
                    head,
                ),
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    /// The transmit DPC work for pair `j` (used when a TX vector fires): reclaims what the
    /// device finished and sends the ring's backlog into the room made (completing those
    /// lists), outside the lock.
    pub fn reap<C: AtMostDispatch>(&self, j: usize, irql: &mut C) {
        let Some(pair) = self.pairs.get(j) else {
            return;
        };
        if !self.is_healthy() {
            return;
        }
        let mut done = SendCompletion::new(&self.ndis);
        let ok = pair.tx.with(irql, |tx, _| {
            if !self.is_healthy() {
                return true;
            }
            if !self.reap_tx(tx) {
                return false;
            }
            if !tx.backlog.is_empty() {
                self.drain_backlog(tx, &mut done);
                if self.is_healthy() && tx.vq.should_notify() {
                    self.transport.notify(&tx.notifier);
                }
            }
            true
        });
        done.complete(irql);
        if !ok {
            self.needs_reset();
        }
    }

    /// Sends lists of the backlog, oldest first, while the ring has room; each one sent (or
    /// refused for good) goes to `done`. With the backlog empty, transmit interrupts go off
    /// again (the send path reaps); while it is not, they stay on, so that the completion path
    /// runs when the device makes room.
    fn drain_backlog(&self, tx: &mut TxRing, done: &mut SendCompletion<'_>) {
        loop {
            while let Some(held) = tx.backlog.pop_front() {
                match self.queue_list(tx, held.list()) {
                    Queued::NoRoom => {
                        tx.backlog.push_front(held);
                        break;
                    }
                    Queued::Done(status) => done.push(held, status),
                }
            }
            if tx.backlog.is_empty() {
                tx.vq.disable_interrupts();
                return;
            }
            // Still full: interrupts on; if the device finished entries meanwhile (no
            // interrupt may come for them), reap and try again.
            if !tx.vq.enable_interrupts() || !self.reap_tx(tx) || tx.free.is_empty() {
                return;
            }
        }
    }

    /// Holds `nbl` at the end of the backlog (the ring is full, or older lists wait): `PENDING`
    /// (the framework leaves it to the driver), or `RESOURCES` when the backlog is full too.
    fn defer(&self, tx: &mut TxRing, nbl: &SendNbl<'_>) -> Status {
        if tx.backlog.len() >= TX_BACKLOG {
            return Status::RESOURCES;
        }
        match nbl.hold() {
            Some(held) => {
                tx.backlog.push_back(held);
                if tx.backlog.len() == 1 {
                    // The completion path sends it once the device made room.
                    tx.vq.enable_interrupts();
                }
                Status(ndis::sys::NDIS_STATUS_PENDING)
            }
            None => Status::RESOURCES,
        }
    }

    /// Completes every list of every backlog with `status` (pause, reset, power-down, halt):
    /// nothing is left held when the adapter stops.
    pub fn flush_backlog<C: AtMostDispatch>(&self, status: Status, irql: &mut C) {
        let mut done = SendCompletion::new(&self.ndis);
        for pair in &self.pairs {
            pair.tx.with(irql, |tx, _| {
                while let Some(held) = tx.backlog.pop_front() {
                    done.push(held, status);
                }
            });
        }
        done.complete(irql);
    }

    /// Copies every frame of every list into transmit buffers of the pair chosen by the current
    /// processor and hands them to the device: one lock acquisition and at most one doorbell
    /// for the whole chain.
    pub fn send(&self, lists: &mut SendLists<'_>, irql: &mut DispatchOrBelow<'_>) {
        // The one health check of the send path: a relaxed load.
        let health = self.health.load(Ordering::Relaxed);
        if health != super::Health::Healthy as u8 {
            let status = self.health().send_status();
            return lists.each(|_| status);
        }
        let pairs = self
            .active_pairs
            .load(Ordering::Relaxed)
            .clamp(1, self.pairs.len().max(1));
        let j = ndis::sync::current_processor() as usize % pairs;
        let Some(pair) = self.pairs.get(j) else {
            return lists.each(|_| Status::FAILURE);
        };
        // Backlog lists the ring now takes complete after the lock (a completion may send
        // again, on this processor).
        let mut done = SendCompletion::new(&self.ndis);
        // The doorbell under the lock (see `device::health`).
        pair.tx.with(irql, |tx, _| {
            if !tx.backlog.is_empty() {
                if !self.reap_tx(tx) {
                    self.needs_reset();
                }
                self.drain_backlog(tx, &mut done);
            }
            lists.each(|nbl| {
                // Behind a backlog, a list waits its turn (frames go out in order).
                if tx.backlog.is_empty()
                    && let Queued::Done(status) = self.queue_list(tx, nbl)
                {
                    return status;
                }
                self.defer(tx, nbl)
            });
            if self.is_healthy() && tx.vq.should_notify() {
                self.transport.notify(&tx.notifier);
            }
        });
        done.complete(irql);
    }

    /// Queues the frames of one list, all or nothing as far as ring room goes (NDIS has one
    /// status per list).
    // Inlined into both callers (the send call and the backlog drain): the per-packet path.
    #[inline(always)]
    fn queue_list(&self, tx: &mut TxRing, nbl: &SendNbl<'_>) -> Queued {
        Queued::Done(match self.queue_list_or(tx, nbl) {
            Ok(status) => status,
            Err(NoRoom) => return Queued::NoRoom,
        })
    }

    #[inline(always)]
    fn queue_list_or(&self, tx: &mut TxRing, nbl: &SendNbl<'_>) -> Result<Status, NoRoom> {
        if !self.is_healthy() {
            return Ok(self.health().send_status());
        }
        // All or nothing: nothing of a list with a frame too long goes out. A frame may exceed
        // the MTU only by a tag it already carries (one this driver inserts counts against the
        // untagged limit, since the tagged frame must fit `max`).
        let tag = self.tx_tag(nbl);
        match nbl.large_send() {
            Ok(None) => {}
            Ok(Some(ls)) => return self.queue_large_send(tx, nbl, ls, tag),
            Err(status) => return Ok(status),
        }
        let prep = TxPrep {
            tci: tag,
            checksum: nbl.checksum_request(),
            device_l4: self.features & features::CSUM != 0,
            large_send: None,
        };
        let offload = !prep.checksum.is_empty();
        // A request the frame's headers do not match fails the whole list: checked before
        // anything is queued when the list has several frames (with one, the copy finds it).
        let check_first = offload && nbl.frames().nth(1).is_some();
        let mut frames = 0;
        for f in nbl.frames() {
            if f.len() > self.frame.frame && (f.len() > self.frame.max || !f.has_8021q_tag()) {
                return Ok(Status::INVALID_LENGTH);
            }
            if check_first && f.check(&prep, &mut tx.scratch) == Err(CopyError::Malformed) {
                return Ok(Status::INVALID_PACKET);
            }
            frames += 1;
        }
        // A list with more frames than the ring has slots never fits: refused now, not held.
        if frames > tx.bounce_of.len() {
            return Ok(Status::RESOURCES);
        }
        match self.tx_room(tx, frames) {
            Ok(()) => {}
            Err(Status::RESOURCES) => return Err(NoRoom),
            Err(status) => return Ok(status),
        }
        for frame in nbl.frames() {
            let Some(b) = tx.free.pop() else {
                return Ok(Status::RESOURCES);
            };
            let at = b as usize * self.frame.buffer;
            let copied = match (offload, tag) {
                (false, None) => frame
                    .copy_to_device(&tx.bounce, at + self.hdr_len, &mut tx.scratch)
                    .map(|len| (len, None))
                    .ok_or(Status::INVALID_LENGTH),
                _ => frame
                    .copy_to_device_prepared(&tx.bounce, at + self.hdr_len, &mut tx.scratch, &prep)
                    .map(|c| (c.len, c.partial))
                    .map_err(|e| match e {
                        CopyError::Malformed => Status::INVALID_PACKET,
                        CopyError::TooLong => Status::INVALID_LENGTH,
                    }),
            };
            let (len, partial) = match copied {
                Ok(c) => c,
                Err(status) => {
                    tx.free.push(b);
                    return Ok(status);
                }
            };
            // Ethernet's minimum: a shorter frame goes out zero-padded to 60 bytes (zeros add
            // nothing to a checksum the device completes from `csum_start` to the end).
            let len = if len < MIN_FRAME {
                tx.bounce
                    .write_bytes(at + self.hdr_len + len, &[0; MIN_FRAME][..MIN_FRAME - len]);
                MIN_FRAME
            } else {
                len
            };
            let header = match partial {
                None => NetHeader::default(),
                Some((start, offset)) => NetHeader {
                    flags: NetHeader::F_NEEDS_CSUM,
                    csum_start: start,
                    csum_offset: offset,
                    ..NetHeader::default()
                },
            };
            tx.bounce
                .write_bytes(at, &header.encode_hash()[..self.hdr_len]);
            let chain = [Buffer {
                addr: tx.bounce.device_address() + at as u64,
                len: (self.hdr_len + len) as u32,
                device_writable: false,
            }];
            match tx.vq.add(&chain) {
                Ok(head) => tx.bounce_of[head as usize] = b,
                Err(_) => {
                    tx.free.push(b);
                    return Ok(Status::RESOURCES);
                }
            }
        }
        Ok(Status::SUCCESS)
    }

    /// Makes room for `n` more transmit buffers (and as many descriptors): rings the doorbell
    /// for what is queued and reaps what the device finished. Err: the status to fail the list
    /// with.
    pub(super) fn tx_room(&self, tx: &mut TxRing, n: usize) -> Result<(), Status> {
        if tx.free.len() >= n {
            return Ok(());
        }
        // Let the device see what is queued (the doorbell for this call has not rung yet),
        // then take back what it finished.
        if tx.vq.should_notify() {
            self.transport.notify(&tx.notifier);
        }
        if !self.reap_tx(tx) {
            self.needs_reset();
            return Err(self.health().send_status());
        }
        if tx.free.len() < n {
            // A full ring the device does not drain: has it reset itself or stopped? (One
            // register read, only on this slow path.)
            if !self.check_health() {
                return Err(self.health().send_status());
            }
            return Err(Status::RESOURCES);
        }
        Ok(())
    }
}
