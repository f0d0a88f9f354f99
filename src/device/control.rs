//! The control queue and its commands (queue pairs, receive filtering, MAC addresses).

use ndis::Status;
use ndis::dma::SharedMemory;
use ndis::hw::DeviceMemory;
use ndis::irql::{AtMostDispatch, Passive};
use ndis::oid::{PendingOid, SetRequest};

use super::{Device, Queue};
use crate::virtio::net;
use crate::virtio::pci::Notifier;
use crate::virtio::queue::Buffer;
use ndis::sync::SpinLock;

/// The control queue: one command at a time. Initialize polls for the answers; an OID request
/// never waits for the device: it is pended, and the control queue's DPC sends the request's
/// next command or completes it when the device answers (NDIS serialises OID requests, so one
/// request at a time is in flight).
pub struct ControlRing {
    pub(super) vq: Queue,
    /// Command bytes at 0, the device's one-byte ack at [`CONTROL_ACK_AT`].
    pub(super) buffer: SharedMemory,
    pub(super) notifier: Notifier,
    /// A command went unanswered: its descriptor may still complete, so the queue is not used
    /// again (a later answer would be taken for the wrong command).
    pub(super) stuck: bool,
    /// The pended set request the command in flight belongs to, and its next command.
    pub(super) waiting: Option<Waiting>,
}

pub(super) struct Waiting {
    pub(super) oid: PendingOid,
    then: Option<[u8; 3]>,
}

/// Room for the largest command: a MAC table with the framework's whole multicast list, or an
/// RSS configuration with a 128-entry table and a 40-byte key.
pub(super) const CONTROL_ACK_AT: usize = {
    let mac = net::mac_table_set_len(ndis::miniport::MAX_MULTICAST);
    if mac > net::RSS_CONFIG_MAX_LEN {
        mac
    } else {
        net::RSS_CONFIG_MAX_LEN
    }
};
pub(super) const CONTROL_BUFFER: usize = CONTROL_ACK_AT + 1;

impl Device {
    /// Tells the device how many queue pairs to use (`VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`); without
    /// it a multiqueue device uses pair 0 only. Polls for the answer (PASSIVE_LEVEL, after
    /// DRIVER_OK).
    pub fn set_queue_pairs(&self, pairs: u16, passive: &mut Passive<'_>) -> Result<(), Status> {
        let command = net::mq_vq_pairs_set(pairs).ok_or(Status::INVALID_PARAMETER)?;
        self.control_command(&command, passive)
    }

    /// The packet filter and multicast list, kept for a re-initialization to replay.
    fn remember<C: AtMostDispatch>(
        &self,
        irql: &mut C,
        f: impl FnOnce(&mut super::health::Restore),
    ) {
        self.restore.with(irql, |r, _| f(r));
    }

    /// Promiscuous and all-multicast reception from NDIS's packet filter (with
    /// `VIRTIO_NET_F_CTRL_RX`; without it the device's own filtering stays as it is).
    ///
    /// Best effort, as virtio's receive filtering is: a device that refuses or does not answer
    /// keeps filtering as it did, and the filter NDIS set still stands (failing the OID would
    /// leave the stack without any filter at all). Returns whether the device took it.
    ///
    /// The OID is pended: the two commands go one after the other as the device answers.
    pub fn set_packet_filter(&self, filter: u32, request: &mut SetRequest<'_>) {
        if self.features & net::features::CTRL_RX == 0 {
            return;
        }
        self.remember(request.passive_mut(), |r| r.filter = Some(filter));
        let promiscuous = filter & ndis::sys::NDIS_PACKET_TYPE_PROMISCUOUS != 0;
        let all_multicast = filter & ndis::sys::NDIS_PACKET_TYPE_ALL_MULTICAST != 0;
        let first = net::rx_mode(net::ctrl::RX_PROMISC, promiscuous);
        let then = net::rx_mode(net::ctrl::RX_ALLMULTI, all_multicast);
        self.pended_command(&first, Some(then), request);
    }

    /// The unicast address to receive on instead of the configuration-space MAC
    /// (`VIRTIO_NET_CTRL_MAC_ADDR_SET`, with `VIRTIO_NET_F_CTRL_MAC_ADDR`).
    pub fn set_mac_address(&self, mac: [u8; 6], passive: &mut Passive<'_>) -> Result<(), Status> {
        if self.features & net::features::CTRL_MAC_ADDR == 0 {
            return Err(Status::NOT_SUPPORTED);
        }
        self.control_command(&net::mac_addr_set(mac), passive)?;
        self.remember(passive, |r| r.mac = Some(mac));
        Ok(())
    }

    /// The multicast addresses to receive (`VIRTIO_NET_CTRL_MAC_TABLE_SET`, with
    /// `VIRTIO_NET_F_CTRL_RX`). Best effort, as [`set_packet_filter`](Self::set_packet_filter).
    pub fn set_multicast_list(&self, list: &[[u8; 6]], request: &mut SetRequest<'_>) {
        if self.features & net::features::CTRL_RX == 0 {
            return;
        }
        let n = list.len().min(ndis::miniport::MAX_MULTICAST);
        self.remember(request.passive_mut(), |r| {
            let mut kept = [[0u8; 6]; ndis::miniport::MAX_MULTICAST];
            kept[..n].copy_from_slice(&list[..n]);
            r.multicast = Some((kept, n));
        });
        let mut command = [0u8; CONTROL_ACK_AT];
        if let Some(len) = net::mac_table_set(list, &mut command) {
            self.pended_command(&command[..len], None, request);
        }
    }

    /// Sends `command` for a set request that is pended until the device answered it and
    /// `then` (see [`control_answered`](Self::control_answered)). Best effort: a command that
    /// cannot be sent completes the request successfully at once, as a refused one does.
    fn pended_command(&self, command: &[u8], then: Option<[u8; 3]>, request: &mut SetRequest<'_>) {
        let Some(control) = &self.control else {
            return;
        };
        if !self.is_healthy() {
            // Kept (see `remember`) and replayed when the device is re-initialized.
            return;
        }
        let oid = request.pend();
        let answered = control.with(request.passive_mut(), |c, dispatch| {
            if c.stuck || c.waiting.is_some() || !self.is_healthy() {
                oid.complete(Ok(()), dispatch);
                return false;
            }
            match submit(c, command) {
                Ok(notifier) => {
                    c.waiting = Some(Waiting { oid, then });
                    // The answer interrupts; one that came already is picked up below.
                    let answered = c.vq.enable_interrupts();
                    self.transport.notify(&notifier);
                    answered
                }
                Err(_) => {
                    oid.complete(Ok(()), dispatch);
                    false
                }
            }
        });
        if answered {
            self.control_answered(request.passive_mut());
        }
    }

    /// The control queue's interrupt (its DPC) or a pended command found its answer: sends the
    /// pended request's next command, or completes the request. Commands of initialize, which
    /// polls, are not touched here.
    pub fn control_answered<C: AtMostDispatch>(&self, irql: &mut C) {
        let Some(control) = &self.control else {
            return;
        };
        if !self.is_healthy() {
            return;
        }
        let mut failed = false;
        let done = control.with(irql, |c, dispatch| {
            if !self.is_healthy() {
                return None;
            }
            let waiting = c.waiting.as_mut()?;
            match c.vq.pop_used() {
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(_) => {
                    c.stuck = true;
                    failed = true;
                }
            }
            // A request NDIS cancelled meanwhile gets no further command.
            let next = if failed || waiting.oid.is_cancelled(dispatch) {
                None
            } else {
                waiting.then.take()
            };
            if let Some(Ok(notifier)) = next.map(|command| submit(c, &command)) {
                c.vq.enable_interrupts();
                self.transport.notify(&notifier);
                return None;
            }
            // Answered (accepted or refused: receive filtering is best effort), or the device
            // broke: the request is done.
            c.waiting.take().map(|w| w.oid)
        });
        if failed {
            self.needs_reset();
        }
        if let Some(oid) = done {
            oid.complete(Ok(()), irql);
        }
    }

    /// Sends one control command and polls for the device's answer (up to 100 ms).
    pub(super) fn control_command(
        &self,
        command: &[u8],
        passive: &mut Passive<'_>,
    ) -> Result<(), Status> {
        let Some(control) = &self.control else {
            return Err(Status::NOT_SUPPORTED);
        };
        if !self.is_healthy() {
            return Err(Status::DEVICE_FAILED);
        }
        self.command_polled(control, command, passive, 10_000)
    }

    /// Sends one control command and polls up to `polls` times, 10 µs apart, for the answer
    /// (`NDIS_STATUS_NOT_ACCEPTED`: the device refused it). Does not look at the health: a
    /// re-initialization uses it before the device counts as healthy again.
    pub(super) fn command_polled<C: AtMostDispatch>(
        &self,
        control: &SpinLock<ControlRing>,
        command: &[u8],
        irql: &mut C,
        polls: u32,
    ) -> Result<(), Status> {
        if command.len() > CONTROL_ACK_AT {
            return Err(Status::INVALID_LENGTH);
        }
        let notifier = control.with(irql, |c, _| {
            if c.stuck || c.waiting.is_some() {
                return Err(Status::DEVICE_FAILED);
            }
            submit(c, command)
        })?;
        self.transport.notify(&notifier);
        for _ in 0..polls {
            let answer = control.with(irql, |c, _| match c.vq.pop_used() {
                Ok(Some(_)) => {
                    let mut ack = [0u8];
                    c.buffer.read_bytes(CONTROL_ACK_AT, &mut ack);
                    Some(net::ctrl_ack(ack[0]).map_err(|_| Status::NOT_ACCEPTED))
                }
                Ok(None) => None,
                Err(_) => {
                    // The device wrote a used ring it cannot have: it is not used again.
                    c.stuck = true;
                    Some(Err(Status::DEVICE_FAILED))
                }
            });
            if answer == Some(Err(Status::DEVICE_FAILED)) {
                self.needs_reset();
            }
            if let Some(result) = answer {
                return result;
            }
            ndis::sync::stall(10);
        }
        control.with(irql, |c, _| c.stuck = true);
        Err(Status::DEVICE_FAILED)
    }
}

/// Puts `command` and the ack byte on the control queue (under its lock); the caller notifies.
fn submit(c: &mut ControlRing, command: &[u8]) -> Result<Notifier, Status> {
    if command.len() > CONTROL_ACK_AT {
        return Err(Status::INVALID_LENGTH);
    }
    c.buffer.write_bytes(0, command);
    c.buffer.write_bytes(CONTROL_ACK_AT, &[0xFF]);
    let base = c.buffer.device_address();
    let chain = [
        Buffer {
            addr: base,
            len: command.len() as u32,
            device_writable: false,
        },
        Buffer {
            addr: base + CONTROL_ACK_AT as u64,
            len: 1,
            device_writable: true,
        },
    ];
    c.vq.add(&chain)
        .map(|_| c.notifier)
        .map_err(|_| Status::RESOURCES)
}
