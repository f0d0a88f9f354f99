//! Device health, and bringing a reset device back: what the driver does when the device reset
//! itself (status 0), cleared DRIVER_OK, set DEVICE_NEEDS_RESET or wrote a ring it cannot have;
//! and the stop/re-initialization pair power management uses ([`Device::suspend`],
//! [`Device::resume`]).
//!
//! The health is one byte ([`Health`]); the send path reads it once per call (a relaxed load).
//! Only a [`Health::Healthy`] device has its rings read, its doorbells rung or its registers
//! touched by the datapath. Doorbells are rung under their queue's lock after the health was
//! read under the same lock, and a re-initialization takes and releases every queue lock after
//! it leaves `Healthy` and before it resets the device: so once the driver knows, no doorbell
//! reaches the device until it is DRIVER_OK again. (A device that resets *itself* can of course
//! be rung in the instant before the driver notices; the device ignores a queue it disabled.)

use core::sync::atomic::{Ordering, fence};

use ndis::Status;
use ndis::irql::AtMostDispatch;
use ndis::miniport::MAX_MULTICAST;

use super::{Device, NO_BOUNCE, TxRing, program};
use crate::virtio::net::{self, InterruptMode, VectorPlan};
use crate::virtio::pci::{NO_VECTOR, Transport, status};

/// Where the device stands. Stored in [`Device`] as a byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Running: the only state in which rings are read and doorbells rung.
    Healthy = 0,
    /// The device reset itself, lost DRIVER_OK, set DEVICE_NEEDS_RESET or wrote a used ring it
    /// cannot have: the link is reported down and check-for-hang asks NDIS for a reset.
    NeedsReset = 1,
    /// A re-initialization ([`Device::resume`], `MiniportResetEx`) is under way.
    Resetting = 2,
    /// Stopped by [`Device::suspend`] (D3): no register is touched, not even by the ISR.
    Asleep = 3,
    /// A re-initialization failed; the device was reset again and marked FAILED. A later reset
    /// may still bring it back (check-for-hang keeps asking).
    Failed = 4,
    /// Surprise-removed (registers read all ones), or stopped for halt or shutdown: never
    /// touched again.
    Gone = 5,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            0 => Health::Healthy,
            1 => Health::NeedsReset,
            2 => Health::Resetting,
            3 => Health::Asleep,
            4 => Health::Failed,
            _ => Health::Gone,
        }
    }

    /// The status a send gets in this state (SUCCESS only when healthy).
    ///
    /// * `NeedsReset`: `NDIS_STATUS_MEDIA_DISCONNECTED`. The driver has reported the link down;
    ///   this is the status a miniport gives sends on a disconnected medium (one of the drop
    ///   reasons ndis.h lists for send completions), which protocols treat as transient.
    ///   `NDIS_STATUS_RESET_IN_PROGRESS` would be untrue before NDIS has started a reset, and
    ///   `NDIS_STATUS_HARD_ERRORS` is what a *reset* reports when it could not recover.
    /// * `Resetting`: `NDIS_STATUS_RESET_IN_PROGRESS` (NDIS sends nothing during a reset; a send
    ///   racing one gets this).
    /// * `Asleep`: `NDIS_STATUS_LOW_POWER_STATE`.
    /// * `Failed`: `NDIS_STATUS_HARD_ERRORS`, as `MiniportResetEx` reported it.
    /// * `Gone`: `NDIS_STATUS_ADAPTER_REMOVED`.
    pub fn send_status(self) -> Status {
        Status(match self {
            Health::Healthy => ndis::sys::NDIS_STATUS_SUCCESS,
            Health::NeedsReset => ndis::sys::NDIS_STATUS_MEDIA_DISCONNECTED,
            Health::Resetting => ndis::sys::NDIS_STATUS_RESET_IN_PROGRESS,
            Health::Asleep => ndis::sys::NDIS_STATUS_LOW_POWER_STATE,
            Health::Failed => ndis::sys::NDIS_STATUS_HARD_ERRORS,
            Health::Gone => ndis::sys::NDIS_STATUS_ADAPTER_REMOVED,
        })
    }
}

/// What the control queue told the device, replayed after a reset: the device forgets it, the
/// adapter does not.
pub(super) struct Restore {
    /// The address given with `MAC_ADDR_SET`, if one was accepted.
    pub(super) mac: Option<[u8; 6]>,
    /// The packet filter NDIS last set (with `CTRL_RX`).
    pub(super) filter: Option<u32>,
    /// The multicast list NDIS last set (with `CTRL_RX`).
    pub(super) multicast: Option<([[u8; 6]; MAX_MULTICAST], usize)>,
    /// The last RSS or hash command (with `RSS` or `HASH_REPORT`).
    pub(super) rss: Option<super::rss::RssCommand>,
}

impl Restore {
    pub(super) const fn new() -> Restore {
        Restore {
            mac: None,
            filter: None,
            multicast: None,
            rss: None,
        }
    }
}

/// Register polls (10 µs apart) granted to each control command replayed by a
/// re-initialization, which may run at DISPATCH_LEVEL: 10 ms, against initialize's 100 ms.
const REINIT_COMMAND_POLLS: u32 = 1_000;

/// Maps config and queue vectors for `plan` (`control`: the control queue, if any); false when
/// the device refused one (read back something else).
pub fn map_vectors<R: ndis::hw::Registers>(
    t: &Transport<R>,
    plan: &VectorPlan,
    control: Option<u16>,
) -> bool {
    if plan.mode() == InterruptMode::Line {
        return true;
    }
    if t.set_config_vector(plan.config_vector()).is_err() {
        return false;
    }
    let queues = (0..2 * plan.pairs()).chain(control);
    for q in queues {
        let v = plan.queue_vector(q).unwrap_or(NO_VECTOR);
        if t.set_queue_vector(q, v).is_err() {
            return false;
        }
    }
    true
}

impl Device {
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Acquire))
    }

    /// The datapath may use the device (rings, doorbells). Relaxed: callers that act on the
    /// answer read it under the queue lock a re-initialization also takes.
    #[inline]
    pub fn is_healthy(&self) -> bool {
        self.health.load(Ordering::Relaxed) == Health::Healthy as u8
    }

    /// Surprise removal, halt or shutdown: the device is never touched again.
    pub fn mark_removed(&self) {
        self.health.store(Health::Gone as u8, Ordering::SeqCst);
    }

    /// The device needs a reset (it said so, or misbehaved). Only a healthy device becomes
    /// `NeedsReset`: a sleeping, resetting, failed or removed one keeps its state.
    pub fn needs_reset(&self) {
        let _ = self.health.compare_exchange(
            Health::Healthy as u8,
            Health::NeedsReset as u8,
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
    }

    /// Reads the device status of a healthy device and records what it says: all ones is a
    /// removed device; 0 (it reset itself), no DRIVER_OK, DEVICE_NEEDS_RESET or FAILED is one
    /// that needs a reset. Touches no register unless the device is healthy. Returns whether it
    /// still is.
    pub fn check_health(&self) -> bool {
        if !self.is_healthy() {
            return false;
        }
        let s = self.transport.status();
        if s == 0xFF {
            self.mark_removed();
        } else if s & status::DRIVER_OK == 0 || s & (status::NEEDS_RESET | status::FAILED) != 0 {
            self.needs_reset();
        }
        self.is_healthy()
    }

    /// The link as NDIS should see it: down unless the device is healthy and says it is up.
    pub fn reported_link(&self) -> bool {
        self.check_health() && self.link_up()
    }

    /// Takes and releases every queue lock: a datapath call that read `Healthy` under one of
    /// them has finished with the device (its doorbell included) when this returns.
    fn quiesce_datapath<C: AtMostDispatch>(&self, irql: &mut C) {
        for pair in &self.pairs {
            pair.rx.with(irql, |_, _| ());
            pair.tx.with(irql, |_, _| ());
        }
        if let Some(c) = &self.control {
            c.with(irql, |_, _| ());
        }
    }

    /// A pended OID waiting for the control queue is completed (successfully: receive filtering
    /// is best effort, and the adapter keeps what NDIS set, replayed after the reset).
    fn abandon_control<C: AtMostDispatch>(&self, irql: &mut C) {
        if let Some(control) = &self.control {
            let waiting = control.with(irql, |c, _| c.waiting.take());
            if let Some(w) = waiting {
                w.oid.complete(Ok(()), irql);
            }
        }
    }

    /// Stops the device for D3: marks it asleep (the ISR then declines without reading a
    /// register, DPCs do nothing, no doorbell is rung, sends fail with
    /// `NDIS_STATUS_LOW_POWER_STATE`), waits for datapath calls that saw it running, resets it
    /// (a bounded poll of at most 100 ms) and completes a pended OID waiting for the control
    /// queue. Indicates nothing (NDIS expects no indications from a device leaving D0).
    ///
    /// The caller: at IRQL <= DISPATCH_LEVEL, with the device still in D0 (its registers
    /// reachable), not concurrently with [`resume`](Self::resume) or a reset (NDIS serializes
    /// power requests and resets). Receives lent to NDIS stay lent; returned ones go back to
    /// the receive pool and are posted by `resume`. A removed device stays removed.
    pub fn suspend<C: AtMostDispatch>(&self, irql: &mut C) {
        let mut h = self.health.load(Ordering::Acquire);
        loop {
            if h == Health::Gone as u8 {
                return;
            }
            match self.health.compare_exchange(
                h,
                Health::Asleep as u8,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => h = now,
            }
        }
        self.quiesce_datapath(irql);
        if self.transport.status() != 0xFF {
            let _ = self.transport.reset(|| ndis::sync::stall(10));
        }
        // Lists held for a full ring: completed before the device leaves D0 or is reset.
        self.flush_backlog(self.health().send_status(), irql);
        self.abandon_control(irql);
    }

    /// Re-initializes a device that was reset (by [`suspend`](Self::suspend), by itself, or by
    /// losing power) into exactly what initialize set up, then reports the link; see
    /// [`reinitialize`](Self::reinitialize). For the D0 entry of power management.
    ///
    /// The caller: at IRQL <= DISPATCH_LEVEL (it polls with `ndis::sync::stall`, bounded: at
    /// most about 100 ms for the reset and 10 ms per replayed control command), with the device
    /// in D0, not concurrently with `suspend` or a reset. On error the device is reset again and
    /// marked FAILED, sends fail with `NDIS_STATUS_HARD_ERRORS`, and a later call may still
    /// succeed (`NDIS_STATUS_ADAPTER_REMOVED`: the device is gone; nothing is touched).
    pub fn resume<C: AtMostDispatch>(&self, irql: &mut C) -> Result<(), Status> {
        let result = self.reinitialize(irql);
        let up = self.reported_link();
        self.ndis.link_changed(
            || (up && self.is_healthy(), crate::adapter::LINK_SPEED),
            irql,
        );
        result
    }

    /// The re-initialization shared by `MiniportResetEx` and [`resume`](Self::resume): virtio
    /// reset; ACKNOWLEDGE | DRIVER; the same features renegotiated (refused if the device no
    /// longer offers one); MSI-X vectors re-mapped per the same plan; every queue re-programmed
    /// on its shared memory with fresh ring state (descriptors the device held are forfeit:
    /// receive buffers go back to the pool, transmit bounce buffers are freed and the frames
    /// counted as transmit errors); the control queue re-created; DRIVER_OK; receive buffers
    /// posted and their doorbells rung; then queue pairs, MAC address, receive filter,
    /// multicast list and the RSS or hash configuration replayed through the control queue as the adapter last had them. VLAN and
    /// offloads are driver state and stay as they are. Receives lent to NDIS stay lent and are
    /// posted when returned.
    pub fn reinitialize<C: AtMostDispatch>(&self, irql: &mut C) -> Result<(), Status> {
        let mut h = self.health.load(Ordering::Acquire);
        loop {
            match Health::from_u8(h) {
                Health::Gone => return Err(Status::ADAPTER_REMOVED),
                Health::Resetting => {
                    return Err(Status::RESET_IN_PROGRESS);
                }
                _ => {}
            }
            match self.health.compare_exchange(
                h,
                Health::Resetting as u8,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => h = now,
            }
        }
        self.quiesce_datapath(irql);
        let result = self.bring_up(irql);
        let end = match result {
            Ok(()) => Health::Healthy,
            Err(_) => {
                // Holds no ring address any more, and says it is unusable.
                if self.transport.status() != 0xFF {
                    let _ = self.transport.reset(|| ndis::sync::stall(10));
                    self.transport.add_status(status::FAILED);
                }
                Health::Failed
            }
        };
        // A removal that came meanwhile stands.
        let _ = self.health.compare_exchange(
            Health::Resetting as u8,
            end as u8,
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
        fence(Ordering::SeqCst);
        if self.is_healthy() {
            // Buffers returned while the reset ran went to the pool (see `post_rx`).
            self.post_free_receive_buffers(irql);
        }
        result
    }

    /// The device steps of [`reinitialize`](Self::reinitialize), with the health `Resetting`.
    fn bring_up<C: AtMostDispatch>(&self, irql: &mut C) -> Result<(), Status> {
        let t = &self.transport;
        t.reset(|| ndis::sync::stall(10))
            .map_err(|_| Status::DEVICE_FAILED)?;
        if t.status() == 0xFF {
            self.mark_removed();
            return Err(Status::ADAPTER_REMOVED);
        }
        t.add_status(status::ACKNOWLEDGE);
        t.add_status(status::DRIVER);
        let offered = t.device_features();
        if offered & self.features != self.features {
            // The device no longer offers what the adapter was set up with.
            t.add_status(status::FAILED);
            return Err(Status::DEVICE_FAILED);
        }
        t.set_driver_features(self.features);
        t.add_status(status::FEATURES_OK);
        if t.status() & status::FEATURES_OK == 0 {
            t.add_status(status::FAILED);
            return Err(Status::DEVICE_FAILED);
        }
        if !map_vectors(t, &self.plan, self.control_queue) {
            return Err(Status::RESOURCE_CONFLICT);
        }
        let mut forfeit_tx = 0u64;
        // Mapped sends: finished ones complete, the others were never sent (the device is
        // reset: it reads none of them any more).
        let mut mapped_done = ndis::nbl::SendCompletion::new(&self.ndis);
        for (j, pair) in self.pairs.iter().enumerate() {
            let j = j as u16;
            // The device is reset: it writes nothing any more, so the used rings say what it
            // finished before (a faulted ring says nothing, and everything is reclaimed).
            pair.rx.with(irql, |rx, _| -> Result<(), Status> {
                // Frames delivered but not yet indicated: dropped, and counted.
                let mut delivered = 0u64;
                while let Ok(Some((head, _))) = rx.vq.pop_used() {
                    pair.pool.release(usize::from(head));
                    delivered += 1;
                }
                self.ndis.stats.rx_discards(delivered);
                rx.vq
                    .reclaim_after_reset(|head| pair.pool.release(usize::from(head)));
                rx.notifier = program(t, net::rx_queue(j), &rx.vq)?;
                Ok(())
            })?;
            pair.tx.with(irql, |tx, _| -> Result<(), Status> {
                // Sent before the reset: their buffers are simply free again.
                Self::complete_finished(tx, &mut mapped_done);
                let _ = Self::reap_tx_into(tx, &mut mapped_done);
                let TxRing {
                    vq,
                    carried,
                    next_bounce,
                    free,
                    ..
                } = &mut *tx;
                vq.reclaim_after_reset(|head| {
                    let c = &mut carried[head as usize];
                    if c.bounce != NO_BOUNCE {
                        free_bounce_chain(c.bounce, next_bounce, free);
                    }
                    match c.mapped.take() {
                        // Completed as failed (and counted so by the framework).
                        Some(m) => m.complete(&mut mapped_done, Status::FAILURE),
                        None => forfeit_tx += 1,
                    }
                });
                tx.in_flight_mapped = 0;
                // Completions are reaped by the send path, as initialize set it up.
                tx.vq.disable_interrupts();
                tx.notifier = program(t, net::tx_queue(j), &tx.vq)?;
                Ok(())
            })?;
        }
        mapped_done.complete(irql);
        if forfeit_tx > 0 {
            // Completed to NDIS, never sent: counted, not lost silently.
            self.ndis.stats.tx_errors(forfeit_tx);
        }
        if let (Some(control), Some(q)) = (&self.control, self.control_queue) {
            let waiting = control.with(irql, |c, _| -> Result<_, Status> {
                c.vq.reclaim_after_reset(|_| {});
                c.stuck = false;
                c.notifier = program(t, q, &c.vq)?;
                t.enable_queue(q).map_err(|_| Status::DEVICE_FAILED)?;
                Ok(c.waiting.take())
            })?;
            if let Some(w) = waiting {
                w.oid.complete(Ok(()), irql);
            }
        }
        for j in 0..self.plan.pairs() {
            t.enable_queue(net::rx_queue(j))
                .map_err(|_| Status::DEVICE_FAILED)?;
            t.enable_queue(net::tx_queue(j))
                .map_err(|_| Status::DEVICE_FAILED)?;
        }
        // Made available before DRIVER_OK, announced after it (virtio 1.2, 3.1.1).
        self.post_receive_buffers(irql);
        t.add_status(status::DRIVER_OK);
        if t.status() & status::DRIVER_OK == 0 {
            return Err(Status::DEVICE_FAILED);
        }
        for pair in &self.pairs {
            pair.rx.with(irql, |rx, _| {
                if rx.vq.should_notify() {
                    t.notify(&rx.notifier);
                }
            });
        }
        self.replay_configuration(irql)
    }

    /// The control-queue state the device forgot in its reset, as the adapter last had it.
    /// A refusal is taken as initialize takes it (fewer pairs; filters best effort); a command
    /// the device does not answer fails the re-initialization.
    fn replay_configuration<C: AtMostDispatch>(&self, irql: &mut C) -> Result<(), Status> {
        let Some(control) = &self.control else {
            return Ok(());
        };
        let refused = |r: Result<(), Status>| -> Result<bool, Status> {
            match r {
                Ok(()) => Ok(false),
                Err(s) if s.0 == ndis::sys::NDIS_STATUS_NOT_ACCEPTED => Ok(true),
                Err(s) => Err(s),
            }
        };
        let pairs = self.plan.pairs();
        if pairs > 1 {
            let command = net::mq_vq_pairs_set(pairs).ok_or(Status::INVALID_PARAMETER)?;
            let no = refused(self.command_polled(control, &command, irql, REINIT_COMMAND_POLLS))?;
            self.active_pairs
                .store(if no { 1 } else { pairs as usize }, Ordering::Relaxed);
        }
        let (mac, filter, multicast) = self
            .restore
            .with(irql, |r, _| (r.mac, r.filter, r.multicast));
        if let Some(mac) = mac {
            refused(self.command_polled(
                control,
                &net::mac_addr_set(mac),
                irql,
                REINIT_COMMAND_POLLS,
            ))?;
        }
        if let Some(filter) = filter {
            let promiscuous = filter & ndis::sys::NDIS_PACKET_TYPE_PROMISCUOUS != 0;
            let all_multicast = filter & ndis::sys::NDIS_PACKET_TYPE_ALL_MULTICAST != 0;
            for command in [
                net::rx_mode(net::ctrl::RX_PROMISC, promiscuous),
                net::rx_mode(net::ctrl::RX_ALLMULTI, all_multicast),
            ] {
                refused(self.command_polled(control, &command, irql, REINIT_COMMAND_POLLS))?;
            }
        }
        if let Some((list, n)) = multicast {
            let mut command = [0u8; super::control::CONTROL_ACK_AT];
            if let Some(len) = net::mac_table_set(&list[..n], &mut command) {
                refused(self.command_polled(control, &command[..len], irql, REINIT_COMMAND_POLLS))?;
            }
        }
        // After VQ_PAIRS_SET: the last multiqueue command decides the mode. Refused: software
        // RSS, as when NDIS set it.
        refused(self.replay_rss(irql, REINIT_COMMAND_POLLS))?;
        Ok(())
    }

    /// After a recovery: every receive buffer in the pool (returned while the device was not
    /// healthy) is posted again.
    fn post_free_receive_buffers<C: AtMostDispatch>(&self, irql: &mut C) {
        for pair in &self.pairs {
            let mut batch = [0usize; 64];
            let mut n = 0;
            for i in 0..pair.pool.len() {
                if pair.pool.claim(i) {
                    batch[n] = i;
                    n += 1;
                    if n == batch.len() {
                        self.post_rx(pair, &batch, irql);
                        n = 0;
                    }
                }
            }
            self.post_rx(pair, &batch[..n], irql);
        }
    }

    /// Claims every receive buffer of every pair that is free (not lent to NDIS) and makes it
    /// available on its ring, without notifying the device, in batches on the stack (no heap).
    pub(super) fn post_receive_buffers<C: AtMostDispatch>(&self, irql: &mut C) {
        for pair in &self.pairs {
            let mut batch = [0usize; 64];
            let mut n = 0;
            let size = pair.pool.len();
            let mut i = 0;
            while i < size {
                if pair.pool.claim(i) {
                    batch[n] = i;
                    n += 1;
                }
                i += 1;
                if n == batch.len() || (i == size && n > 0) {
                    pair.rx
                        .with(irql, |rx, _| self.add_rx_buffers(rx, pair, &batch[..n]));
                    n = 0;
                }
            }
        }
    }
}

/// Returns the bounce buffers of a frame, from `first` on, to the free list (the fields of a
/// [`TxRing`], so that it can run while its queue is borrowed). Not for a frame without any
/// ([`NO_BOUNCE`]: a mapped send after the ring's zero header).
pub(super) fn free_bounce_chain(
    first: u16,
    next_bounce: &mut [u16],
    free: &mut alloc::vec::Vec<u16>,
) {
    let mut b = first;
    loop {
        free.push(b);
        let next = core::mem::replace(&mut next_bounce[b as usize], NO_BOUNCE);
        if next == NO_BOUNCE {
            break;
        }
        b = next;
    }
}
