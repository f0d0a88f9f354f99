//! The transmit path: lists copied into bounce buffers (with the tag and checksum requests
//! applied) on the pair of the current processor, and descriptors reaped back.

use core::sync::atomic::Ordering;

use ndis::Status;
use ndis::heap::Shared;
use ndis::hw::DeviceMemory;
use ndis::irql::{AtMostDispatch, Dispatch, DispatchOrBelow};
use ndis::nbl::{
    CopyError, HeldSend, Ieee8021Q, ListMapping, MapHook, MappedSend, SendCompletion, SendLists,
    SendNbl, TxPrep,
};

use super::{Device, NO_BOUNCE, TxRing};
use crate::virtio::net::{NetHeader, features};
use crate::virtio::queue::{Buffer, First};

/// The shortest Ethernet frame without FCS (IEEE 802.3: 64 with it).
const MIN_FRAME: usize = 60;

/// Lists a transmit ring holds back while it is full or waits for a mapping
/// (`TxRing::backlog`), sent from the transmit completion path; beyond this a list fails
/// with `NDIS_STATUS_RESOURCES`. The lists are linked through themselves (an
/// [`ndis::nbl::HeldQueue`]), so the bound costs no memory: it is there to give a stack that
/// keeps sending to a device that takes nothing an error before the hang check resets it. The
/// same bound as the Windows virtio-net driver's per-path send queue (NetKVM,
/// `PARANDIS_TX_LOCK_FREE_QUEUE_DEFAULT_SIZE`).
pub const TX_BACKLOG: usize = 2048;

/// Frames of at least this many bytes (a list of one frame, with no checksum, tag or large
/// send to apply) are mapped for DMA and sent in place (`NdisMAllocateNetBufferSGList`);
/// shorter ones are copied into a bounce buffer, which costs less than a mapping.
pub const MAP_THRESHOLD: usize = 1024;

/// Longest scatter/gather list sent as it is (one descriptor per element, after the header's);
/// a frame in more pieces is copied.
pub(super) const MAX_MAPPED_ELEMENTS: usize = 32;

/// The ring has no room for a list now (nothing of it was queued).
pub(super) struct NoRoom;

/// Why a list was not queued now.
pub(super) enum Defer {
    NoRoom,
    /// To be mapped and sent in place; `rewrites`: a tag, a checksum or a large send rewrites
    /// its headers (as [`Device::mapped_rewrites`] would say now).
    Map {
        rewrites: bool,
    },
}

impl From<NoRoom> for Defer {
    fn from(_: NoRoom) -> Defer {
        Defer::NoRoom
    }
}

/// What became of a list offered to the ring.
enum Queued {
    /// Queued (or refused for good): the list's status.
    Done(Status),
    /// The ring has no room for it now; nothing of it was queued.
    NoRoom,
    /// Nothing queued: the list is to be mapped (zero-copy); see [`Defer::Map`].
    Map { rewrites: bool },
}

/// The NDIS callback with a mapped frame, after the map call returned (a deferred mapping):
/// queued on the ring it was mapped for (the cookie).
impl MapHook for super::Device {
    fn mapped(&self, shared: &Shared<Self>, send: MappedSend, irql: &mut Dispatch<'_>) {
        let j = send.cookie();
        if let Some(h) = self.map_done(j, Ok(send), irql) {
            self.start_map(shared, j, h, irql);
        }
    }
}

impl Device {
    /// The TCI to insert into the frames of `nbl`, if any: its own priority and VLAN (as far
    /// as tagging is on), the adapter's VLAN when it names none.
    fn tx_tag(&self, nbl: &SendNbl<'_>) -> Option<u16> {
        if !self.tagging.any() {
            return None;
        }
        let Some(info) = nbl.ieee8021q() else {
            // Nothing on the list: only the adapter's VLAN can tag its frames.
            let vlan_id = if self.tagging.vlan {
                self.vlan_id.load(Ordering::Relaxed)
            } else {
                0
            };
            return (vlan_id != 0).then(|| {
                Ieee8021Q {
                    priority: 0,
                    vlan_id,
                }
                .tci()
            });
        };
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

    /// Reclaims transmit descriptors the device finished; mapped sends among them go to
    /// `tx.finished` (see [`complete_finished`](Self::complete_finished)).
    pub(super) fn reap_tx(&self, tx: &mut TxRing) -> bool {
        Self::reap_tx_with(tx, |finished, m| finished.push(m))
    }

    /// As [`reap_tx`](Self::reap_tx), completing the mapped sends among them into `done`
    /// at once (the usual path: no stop in `tx.finished`).
    pub(super) fn reap_tx_into(tx: &mut TxRing, done: &mut SendCompletion<'_>) -> bool {
        Self::reap_tx_with(tx, |_, m| m.complete(done, Status::SUCCESS))
    }

    /// Reclaims what the device finished; `mapped` takes each mapped send among it (with
    /// `tx.finished` at hand).
    #[inline(always)]
    fn reap_tx_with(
        tx: &mut TxRing,
        mut mapped: impl FnMut(&mut alloc::vec::Vec<MappedSend>, MappedSend),
    ) -> bool {
        let TxRing {
            vq,
            carried,
            next_bounce,
            free,
            finished,
            in_flight_mapped,
            ..
        } = tx;
        vq.pop_each(usize::MAX, |head, _| {
            let c = &mut carried[head as usize];
            if *in_flight_mapped > 0
                && let Some(m) = c.mapped.take()
            {
                *in_flight_mapped -= 1;
                mapped(finished, m);
                if c.bounce == NO_BOUNCE {
                    // After the zero header: no bounce buffer.
                    return;
                }
            }
            super::health::free_bounce_chain(c.bounce, next_bounce, free);
        })
        .is_ok()
    }

    /// Completes the mapped sends the device finished (their scatter/gather lists freed).
    pub(super) fn complete_finished(tx: &mut TxRing, done: &mut SendCompletion<'_>) {
        for m in tx.finished.drain(..) {
            m.complete(done, Status::SUCCESS);
        }
    }

    /// Transmit interrupts on while anything waits for the device (mapped sends on the ring, a
    /// backlog, a parked mapped send), off otherwise (the send path reaps). Mapped sends the
    /// device finished (found now, or reaped before into `tx.finished`) go to `done`.
    pub(super) fn arm_tx(&self, tx: &mut TxRing, done: &mut SendCompletion<'_>) {
        if !tx.finished.is_empty() {
            Self::complete_finished(tx, done);
        }
        loop {
            if tx.in_flight_mapped == 0 && !tx.waiting() {
                tx.vq.disable_interrupts();
                return;
            }
            // Entries finished before the re-enable get no interrupt: reap them now.
            if !tx.vq.enable_interrupts() || !Self::reap_tx_into(tx, done) {
                return;
            }
        }
    }

    /// Asks NDIS to map `held` (of ring `j`), and copies it instead if that fails. Called with
    /// no lock held: the mapping may complete inside the request, and is then queued here
    /// (taking the ring's lock), possibly starting the next mapping of the backlog.
    pub(super) fn start_map<C: AtMostDispatch>(
        &self,
        shared: &Shared<Self>,
        j: usize,
        held: HeldSend,
        irql: &mut C,
    ) {
        let mut next = Some(held);
        while let Some(h) = next.take() {
            let mapped = match self.pairs.get(j) {
                Some(pair) => pair.map_pool.map(h, shared, j, irql),
                None => h.map(&self._dma, shared, j, irql),
            };
            next = match mapped {
                // Deferred: the hook queues it.
                Ok(None) => return,
                Ok(Some(send)) => self.map_done(j, Ok(send), irql),
                Err((h, _)) => self.map_done(j, Err(h), irql),
            };
        }
    }

    /// The end of a mapping of ring `j` started outside its lock (`tx.mapping` set): the
    /// mapped send queued (Ok), or the list copied instead (Err: the mapping failed); then the
    /// backlog sent into the room left. Returns the next list of the backlog to map, if any.
    fn map_done<C: AtMostDispatch>(
        &self,
        j: usize,
        mapped: Result<MappedSend, HeldSend>,
        irql: &mut C,
    ) -> Option<HeldSend> {
        let mut done = SendCompletion::new(&self.ndis);
        let Some(pair) = self.pairs.get(j) else {
            match mapped {
                Ok(send) => send.complete(&mut done, Status::FAILURE),
                Err(h) => done.push(h, Status::FAILURE),
            }
            done.complete(irql);
            return None;
        };
        let mut next = None;
        pair.tx.with(irql, |tx, _| {
            tx.mapping = false;
            match mapped {
                Ok(send) if !self.is_healthy() => {
                    send.complete(&mut done, self.health().send_status());
                    Self::complete_finished(tx, &mut done);
                    return;
                }
                Ok(send) => {
                    if let Err(send) = self.queue_mapped(tx, send, None, &mut done) {
                        tx.parked = Some(send);
                    }
                }
                Err(h) => match self.queue_list(tx, h.list(), false) {
                    Queued::Done(status) => done.push(h, status),
                    Queued::NoRoom | Queued::Map { .. } => tx.backlog.push_front(h),
                },
            }
            if tx.parked.is_none() && !tx.backlog.is_empty() {
                self.drain_backlog(tx, &mut done, &mut next);
            }
            if self.is_healthy() && tx.vq.should_notify() {
                self.transport.notify(&tx.notifier);
            }
            self.arm_tx(tx, &mut done);
        });
        done.complete(irql);
        next
    }

    /// Whether a mapped send's headers need rewriting (a tag, a checksum or a large send):
    /// false for nothing (the usual case: the whole frame read in place, after a header that
    /// asks for nothing). Err: the list fails with that status.
    fn mapped_rewrites(&self, list: &SendNbl<'_>) -> Result<bool, Status> {
        let large_send = list.large_send()?;
        if let Some(ls) = large_send {
            // Checked again: the mapping may complete after an OID switched LSO off for this
            // IP version, and NDIS says such a list is dropped.
            return match self.large_send_refusal(list, ls) {
                Some(status) => Err(status),
                None => Ok(true),
            };
        }
        Ok(self.tx_tag(list).is_some() || !list.checksum_request().is_empty())
    }

    /// What [`mapped_headers`](Self::mapped_headers) rewrites in a mapped send's frame (one
    /// that [`mapped_rewrites`](Self::mapped_rewrites) accepted).
    fn mapped_prep(&self, list: &SendNbl<'_>) -> TxPrep {
        let large_send = list.large_send().ok().flatten();
        TxPrep {
            tci: self.tx_tag(list),
            checksum: if large_send.is_some() {
                Default::default()
            } else {
                list.checksum_request()
            },
            device_l4: large_send.is_some() || self.features & features::CSUM != 0,
            large_send,
        }
    }

    /// The virtio-net header of a mapped send whose headers `prep` rewrites, with those
    /// headers written after it at `at` (in a bounce buffer): (header, bytes of frame headers
    /// written, bytes of the frame they stand for). Err(Some): the list fails with that status;
    /// Err(None): the frame is not contiguous, to be copied instead.
    fn mapped_headers(
        &self,
        tx: &mut TxRing,
        send: &MappedSend,
        at: usize,
        prep: &TxPrep,
    ) -> Result<(NetHeader, usize, usize), Option<Status>> {
        let frame = send
            .list()
            .frames()
            .next()
            .ok_or(Some(Status::INVALID_PACKET))?;
        let room = self.frame.buffer - self.hdr_len;
        let copy = match frame.copy_headers_to_device(&tx.bounce, at + self.hdr_len, room, prep) {
            Ok(Some(c)) => c,
            Ok(None) => return Err(None),
            Err(CopyError::TooLong) => return Err(Some(Status::INVALID_LENGTH)),
            Err(CopyError::Malformed) => return Err(Some(Status::INVALID_PACKET)),
        };
        let header = match (copy.copy.gso, copy.copy.partial) {
            (Some(gso), Some(partial)) => self
                .large_send_header(gso, partial, prep.tci.is_some() || frame.has_8021q_tag())
                .ok_or(Some(Status::INVALID_PACKET))?,
            (None, Some((start, offset))) => NetHeader {
                flags: NetHeader::F_NEEDS_CSUM,
                csum_start: start,
                csum_offset: offset,
                ..NetHeader::default()
            },
            _ => NetHeader::default(),
        };
        Ok((header, copy.copy.len, copy.consumed))
    }

    /// Frees `send`'s mapping and copies its list instead (done now, or first in the backlog
    /// when the ring has no room).
    fn copy_instead(&self, tx: &mut TxRing, send: MappedSend, done: &mut SendCompletion<'_>) {
        let held = send.into_held();
        match self.queue_list(tx, held.list(), false) {
            Queued::Done(status) => done.push(held, status),
            Queued::NoRoom | Queued::Map { .. } => tx.backlog.push_front(held),
        }
    }

    /// Queues a mapped frame: its virtio-net header, then one descriptor per element of the
    /// frame. A frame with nothing to rewrite goes out after the ring's zero header (shared,
    /// never written: no bounce buffer); one whose headers an offload or a tag rewrites gets a
    /// bounce buffer with its header and those headers, and the rest read in place. Err: no
    /// room now (the caller parks it). A mapping of more elements than [`MAX_MAPPED_ELEMENTS`]
    /// (or than the ring holds) is freed and the frame copied.
    ///
    /// `checked`: what [`mapped_rewrites`](Self::mapped_rewrites) says, when the caller just
    /// worked it out under this lock (the send call); None: asked now (a mapping NDIS completed
    /// later, or a parked send: an OID may have changed the offloads meanwhile).
    ///
    /// What it stages is published (and transmit interrupts armed, [`arm_tx`](Self::arm_tx),
    /// so that its completion is not missed) by the `should_notify` and `arm_tx` every caller
    /// ends with.
    // The usual case inlined into the send call: a frame checked just now with nothing to
    // rewrite, in few enough elements, with room on the ring; the rest out of line.
    #[inline(always)]
    fn queue_mapped(
        &self,
        tx: &mut TxRing,
        send: MappedSend,
        checked: Option<bool>,
        done: &mut SendCompletion<'_>,
    ) -> Result<(), MappedSend> {
        let n = send.len();
        if checked == Some(false) && (1..=MAX_MAPPED_ELEMENTS).contains(&n) {
            // The ring says whether it has room (no check of ours before it): without, the
            // slow path reaps and tries again, or copies a chain the ring cannot hold.
            return match Self::stage_mapped(tx, send, First::Common, NO_BOUNCE, 0, 0) {
                Ok(()) => Ok(()),
                Err(send) => self.queue_mapped_slow(tx, send, checked, done),
            };
        }
        self.queue_mapped_slow(tx, send, checked, done)
    }

    /// [`queue_mapped`](Self::queue_mapped) of any mapped send.
    #[inline(never)]
    fn queue_mapped_slow(
        &self,
        tx: &mut TxRing,
        send: MappedSend,
        checked: Option<bool>,
        done: &mut SendCompletion<'_>,
    ) -> Result<(), MappedSend> {
        let n = send.len();
        if n == 0 || n > MAX_MAPPED_ELEMENTS || n + 1 > usize::from(tx.vq.size()) {
            self.copy_instead(tx, send, done);
            return Ok(());
        }
        let rewrites = match checked.map_or_else(|| self.mapped_rewrites(send.list()), Ok) {
            Ok(r) => r,
            Err(status) => {
                send.complete(done, status);
                return Ok(());
            }
        };
        let short = |tx: &TxRing| {
            (rewrites && tx.free.is_empty())
                || usize::from(tx.vq.num_free()) < tx.vq.descriptors_for(n + 1)
        };
        if short(tx) && (!self.reap_tx(tx) || short(tx)) {
            return Err(send);
        }
        let (header, b, first, cut) = if !rewrites {
            (First::Common, NO_BOUNCE, 0, 0)
        } else {
            let Some(b) = tx.free.pop() else {
                return Err(send);
            };
            let at = b as usize * self.frame.buffer;
            let prep = self.mapped_prep(send.list());
            // What the device is told, and the headers rewritten, copied after it: the device
            // reads the rest of the frame in place, from byte `skip` on.
            let (header, copied, skip) = match self.mapped_headers(tx, &send, at, &prep) {
                Ok(h) => h,
                Err(Some(status)) => {
                    tx.free.push(b);
                    send.complete(done, status);
                    return Ok(());
                }
                Err(None) => {
                    // Not contiguous: copied whole instead.
                    tx.free.push(b);
                    self.copy_instead(tx, send, done);
                    return Ok(());
                }
            };
            tx.bounce
                .write_bytes(at, &header.encode_hash()[..self.hdr_len]);
            let (first, cut) = send.locate(skip).unwrap_or((n, 0));
            let header = First::Buffer(
                tx.bounce.device_address() + at as u64,
                (self.hdr_len + copied) as u32,
            );
            (header, b, first, cut)
        };
        Self::stage_mapped(tx, send, header, b, first, cut)
    }

    /// Stages `send`'s chain: `header` (in bounce buffer `b`, or the ring's zero header, which
    /// is the queue's common first buffer), then the frame's elements in place from element
    /// `first` on, `cut` bytes into it. Err: the ring refused it (the bounce buffer is free
    /// again).
    #[inline(always)]
    fn stage_mapped(
        tx: &mut TxRing,
        send: MappedSend,
        header: First,
        b: u16,
        first: usize,
        cut: u32,
    ) -> Result<(), MappedSend> {
        // Inlined (each element is a few loads): called once per element.
        let chain = tx.vq.stage_readable(
            header,
            send.len() - first,
            #[inline(always)]
            |i| {
                let e = send.element(first + i).unwrap_or_default();
                // The first element past the copied headers starts `cut` bytes in.
                let cut = if i == 0 { cut } else { 0 };
                (e.address + u64::from(cut), e.length - cut)
            },
        );
        match chain {
            Ok(head) => {
                let c = &mut tx.carried[head as usize];
                c.bounce = b;
                c.mapped = Some(send);
                tx.in_flight_mapped += 1;
                Ok(())
            }
            Err(_) => {
                if b != NO_BOUNCE {
                    tx.free.push(b);
                }
                Err(send)
            }
        }
    }

    /// The transmit DPC work for pair `j` (used when a TX vector fires): reclaims what the
    /// device finished and sends the ring's backlog into the room made (completing those
    /// lists), outside the lock.
    pub fn reap<C: AtMostDispatch>(&self, shared: &Shared<Self>, j: usize, irql: &mut C) {
        let Some(pair) = self.pairs.get(j) else {
            return;
        };
        if !self.is_healthy() {
            return;
        }
        let mut done = SendCompletion::new(&self.ndis);
        let mut to_map = None;
        let ok = pair.tx.with(irql, |tx, _| {
            if !self.is_healthy() {
                return true;
            }
            if !self.reap_tx(tx) {
                return false;
            }
            if let Some(p) = tx.parked.take()
                && let Err(p) = self.queue_mapped(tx, p, None, &mut done)
            {
                tx.parked = Some(p);
            }
            if tx.parked.is_none() && !tx.backlog.is_empty() {
                self.drain_backlog(tx, &mut done, &mut to_map);
            }
            if self.is_healthy() && tx.vq.should_notify() {
                self.transport.notify(&tx.notifier);
            }
            self.arm_tx(tx, &mut done);
            true
        });
        done.complete(irql);
        if !ok {
            self.needs_reset();
        }
        if let Some(h) = to_map {
            self.start_map(shared, j, h, irql);
        }
    }

    /// Sends lists of the backlog, oldest first, while the ring has room; each one sent (or
    /// refused for good) goes to `done`. With the backlog empty, transmit interrupts go off
    /// again (the send path reaps); while it is not, they stay on, so that the completion path
    /// runs when the device makes room.
    ///
    /// A list to be mapped stops the drain: it goes to `to_map` (with `tx.mapping` set), for
    /// the caller to map once it let go of the lock.
    fn drain_backlog(
        &self,
        tx: &mut TxRing,
        done: &mut SendCompletion<'_>,
        to_map: &mut Option<HeldSend>,
    ) {
        loop {
            while !tx.mapping
                && let Some(held) = tx.backlog.pop_front()
            {
                match self.queue_list(tx, held.list(), true) {
                    Queued::NoRoom => {
                        tx.backlog.push_front(held);
                        break;
                    }
                    Queued::Map { .. } => {
                        tx.mapping = true;
                        *to_map = Some(held);
                        return;
                    }
                    Queued::Done(status) => done.push(held, status),
                }
            }
            if tx.backlog.is_empty() || tx.mapping {
                if tx.in_flight_mapped == 0 && !tx.waiting() {
                    tx.vq.disable_interrupts();
                }
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
                Status::PENDING
            }
            None => Status::RESOURCES,
        }
    }

    /// Completes every list of every backlog with `status` (pause, reset, power-down, halt):
    /// nothing is left held when the adapter stops.
    ///
    /// Mapped sends: those the device finished complete successfully; the others too, with
    /// `status`, once the device no longer runs (reset, asleep, removed: it reads no frame any
    /// more). A running device keeps its own and finishes them (the transmit interrupt is on
    /// while any is on the ring, and a pause waits for them).
    pub fn flush_backlog<C: AtMostDispatch>(&self, status: Status, irql: &mut C) {
        let mut done = SendCompletion::new(&self.ndis);
        for pair in &self.pairs {
            pair.tx.with(irql, |tx, _| {
                while let Some(held) = tx.backlog.pop_front() {
                    done.push(held, status);
                }
                if self.is_healthy() {
                    let _ = self.reap_tx(tx);
                } else {
                    if let Some(p) = tx.parked.take() {
                        p.complete(&mut done, status);
                    }
                    let _ = self.reap_tx(tx);
                    for c in tx.carried.iter_mut() {
                        if let Some(m) = c.mapped.take() {
                            m.complete(&mut done, status);
                        }
                    }
                    tx.in_flight_mapped = 0;
                }
                Self::complete_finished(tx, &mut done);
            });
        }
        done.complete(irql);
    }

    /// Copies every frame of every list into transmit buffers of the pair chosen by the current
    /// processor and hands them to the device: one lock acquisition and at most one doorbell
    /// for the whole chain.
    // Inlined into the framework's send trampoline (its only caller): whether the optimizer
    // does so on its own changes with unrelated edits, and costs instructions per packet.
    #[inline(always)]
    pub fn send(
        &self,
        shared: &Shared<Self>,
        lists: &mut SendLists<'_>,
        irql: &mut DispatchOrBelow<'_>,
    ) {
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
        let mut to_map = None;
        // The doorbell under the lock (see `device::health`).
        pair.tx.with(irql, |tx, irql_token| {
            if !tx.backlog.is_empty() && tx.parked.is_none() && !tx.mapping {
                if !self.reap_tx(tx) {
                    self.needs_reset();
                }
                self.drain_backlog(tx, &mut done, &mut to_map);
            }
            lists.each(|nbl| {
                // Behind a backlog or a mapping, a list waits its turn (frames go out in order).
                if !tx.waiting() {
                    match self.queue_list(tx, nbl, true) {
                        Queued::Done(status) => return status,
                        Queued::Map { rewrites } => {
                            // Held and mapped under the lock: a send NDIS hands over inside
                            // the request is queued now; a deferred one (the hook) finds
                            // `tx.mapping` set and later lists waiting behind it.
                            match pair.map_pool.map_list(nbl, shared, j, &*irql_token) {
                                ListMapping::Mapped(send) => {
                                    // Checked just now, under this lock.
                                    let checked = Some(rewrites);
                                    if let Err(send) =
                                        self.queue_mapped(tx, send, checked, &mut done)
                                    {
                                        tx.parked = Some(send);
                                    }
                                }
                                ListMapping::Deferred => tx.mapping = true,
                                ListMapping::NotHeld => return Status::RESOURCES,
                                ListMapping::Failed(held, _) => {
                                    // Copied instead.
                                    match self.queue_list(tx, held.list(), false) {
                                        Queued::Done(status) => done.push(held, status),
                                        _ => {
                                            tx.backlog.push_back(held);
                                            tx.vq.enable_interrupts();
                                        }
                                    }
                                }
                            }
                            return Status::PENDING;
                        }
                        Queued::NoRoom => {}
                    }
                }
                self.defer(tx, nbl)
            });
            if self.is_healthy() && tx.vq.should_notify() {
                self.transport.notify(&tx.notifier);
            }
            if tx.in_flight_mapped > 0 || !tx.finished.is_empty() {
                self.arm_tx(tx, &mut done);
            }
        });
        done.complete(irql);
        if let Some(h) = to_map {
            self.start_map(shared, j, h, irql);
        }
    }

    /// Queues the frames of one list, all or nothing as far as ring room goes (NDIS has one
    /// status per list).
    // Inlined into both callers (the send call and the backlog drain): the per-packet path.
    /// `may_map`: a list that qualifies is left to be mapped ([`Queued::Map`]).
    #[inline(always)]
    fn queue_list(&self, tx: &mut TxRing, nbl: &SendNbl<'_>, may_map: bool) -> Queued {
        Queued::Done(match self.queue_list_or(tx, nbl, may_map) {
            Ok(status) => status,
            Err(Defer::NoRoom) => return Queued::NoRoom,
            Err(Defer::Map { rewrites }) => return Queued::Map { rewrites },
        })
    }

    #[inline(always)]
    fn queue_list_or(
        &self,
        tx: &mut TxRing,
        nbl: &SendNbl<'_>,
        may_map: bool,
    ) -> Result<Status, Defer> {
        if !self.is_healthy() {
            return Ok(self.health().send_status());
        }
        // All or nothing: nothing of a list with a frame too long goes out. A frame may exceed
        // the MTU only by a tag it already carries (one this driver inserts counts against the
        // untagged limit, since the tagged frame must fit `max`).
        let tag = self.tx_tag(nbl);
        match nbl.large_send() {
            Ok(None) => {}
            Ok(Some(ls)) => {
                if let Some(status) = self.large_send_refusal(nbl, ls) {
                    return Ok(status);
                }
                // Mapped: the headers copied and rewritten, the payload read in place.
                if may_map
                    && nbl
                        .frames()
                        .next()
                        .is_some_and(|f| f.len() >= MAP_THRESHOLD && f.is_contiguous())
                {
                    return Err(Defer::Map { rewrites: true });
                }
                return self.queue_large_send(tx, nbl, ls, tag).map_err(Defer::from);
            }
            Err(status) => return Ok(status),
        }
        let checksum = nbl.checksum_request();
        if tag.is_none() && checksum.is_empty() && nbl.frame_count() == 1 {
            return self.queue_plain(tx, nbl, may_map);
        }
        let prep = TxPrep {
            tci: tag,
            checksum,
            device_l4: self.features & features::CSUM != 0,
            large_send: None,
        };
        let offload = !prep.checksum.is_empty();
        // A request the frame's headers do not match fails the whole list: checked before
        // anything is queued when the list has several frames (with one, the copy finds it).
        let check_first = offload && nbl.frame_count() > 1;
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
        if frames > tx.carried.len() {
            return Ok(Status::RESOURCES);
        }
        // Zero-copy: one frame long enough that mapping it costs less than copying it (the
        // length is within the frame limit, checked above); headers a checksum or a tag
        // rewrites are copied (`queue_mapped`), from a frame in one piece.
        let rewrites = offload || tag.is_some();
        if may_map
            && frames == 1
            && nbl
                .frames()
                .next()
                .is_some_and(|f| f.len() >= MAP_THRESHOLD && (!rewrites || f.is_contiguous()))
        {
            return Err(Defer::Map { rewrites });
        }
        match self.tx_room(tx, frames) {
            Ok(()) => {}
            Err(Status::RESOURCES) => return Err(Defer::NoRoom),
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
            let header = match partial {
                None => NetHeader::default(),
                Some((start, offset)) => NetHeader {
                    flags: NetHeader::F_NEEDS_CSUM,
                    csum_start: start,
                    csum_offset: offset,
                    ..NetHeader::default()
                },
            };
            if let Err(status) = self.stage_copied(tx, (b, at), len, &header.encode_hash()) {
                return Ok(status);
            }
        }
        Ok(Status::SUCCESS)
    }

    /// Stages a frame of `len` bytes copied into bounce buffer `b` (at `at`, after its
    /// header's room): padded to Ethernet's minimum, `header` (its first `hdr_len` bytes)
    /// written before it. Err: the ring refused it, and the buffer is free again.
    #[inline(always)]
    fn stage_copied(
        &self,
        tx: &mut TxRing,
        (b, at): (u16, usize),
        len: usize,
        header: &[u8; NetHeader::HASH_LEN],
    ) -> Result<(), Status> {
        // Ethernet's minimum: a shorter frame goes out zero-padded to 60 bytes (zeros add
        // nothing to a checksum the device completes from `csum_start` to the end).
        let len = if len < MIN_FRAME {
            tx.bounce
                .write_bytes(at + self.hdr_len + len, &[0; MIN_FRAME][..MIN_FRAME - len]);
            MIN_FRAME
        } else {
            len
        };
        tx.bounce.write_bytes(at, &header[..self.hdr_len]);
        let chain = [Buffer {
            addr: tx.bounce.device_address() + at as u64,
            len: (self.hdr_len + len) as u32,
            device_writable: false,
        }];
        // Published with the batch, by the `should_notify` that ends every send call.
        match tx.vq.stage(&chain) {
            Ok(head) => {
                tx.carried[head as usize].bounce = b;
                Ok(())
            }
            Err(_) => {
                tx.free.push(b);
                Err(Status::RESOURCES)
            }
        }
    }

    /// A list of one frame with nothing to rewrite (no tag, checksum or large send): the usual
    /// send, copied whole into one bounce buffer, in one pass.
    #[inline(always)]
    fn queue_plain(
        &self,
        tx: &mut TxRing,
        nbl: &SendNbl<'_>,
        may_map: bool,
    ) -> Result<Status, Defer> {
        let Some(frame) = nbl.frames().next() else {
            return Ok(Status::INVALID_PACKET);
        };
        let len = frame.len();
        if len > self.frame.frame && (len > self.frame.max || !frame.has_8021q_tag()) {
            return Ok(Status::INVALID_LENGTH);
        }
        // Zero-copy: long enough that mapping it costs less than copying it.
        if may_map && len >= MAP_THRESHOLD {
            return Err(Defer::Map { rewrites: false });
        }
        if tx.free.is_empty() || tx.vq.num_free() == 0 {
            match self.tx_room(tx, 1) {
                Ok(()) => {}
                Err(Status::RESOURCES) => return Err(Defer::NoRoom),
                Err(status) => return Ok(status),
            }
        }
        let Some(b) = tx.free.pop() else {
            return Ok(Status::RESOURCES);
        };
        let at = b as usize * self.frame.buffer;
        let Some(len) = frame.copy_to_device(&tx.bounce, at + self.hdr_len, &mut tx.scratch) else {
            tx.free.push(b);
            return Ok(Status::INVALID_LENGTH);
        };
        // The header of a frame the device sends as it is: all zeros.
        Ok(
            match self.stage_copied(tx, (b, at), len, &[0; NetHeader::HASH_LEN]) {
                Ok(()) => Status::SUCCESS,
                Err(status) => status,
            },
        )
    }

    /// Makes room for `n` more transmit buffers (and as many descriptors): rings the doorbell
    /// for what is queued and reaps what the device finished. Err: the status to fail the list
    /// with.
    pub(super) fn tx_room(&self, tx: &mut TxRing, n: usize) -> Result<(), Status> {
        // Mapped chains take more descriptors than bounce buffers: both must have room.
        let room = |tx: &TxRing| tx.free.len() >= n && usize::from(tx.vq.num_free()) >= n;
        if room(tx) {
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
        if !room(tx) {
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
