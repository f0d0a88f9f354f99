//! The control queue and its commands (queue pairs, receive filtering, MAC addresses).

use ndis::Status;
use ndis::dma::SharedMemory;
use ndis::hw::DeviceMemory;
use ndis::irql::Passive;

use super::{Device, Queue};
use crate::virtio::net;
use crate::virtio::pci::Notifier;
use crate::virtio::queue::Buffer;

/// The control queue: one command at a time, polled, at PASSIVE_LEVEL (initialize and OID
/// requests, which NDIS serialises).
pub struct ControlRing {
    pub(super) vq: Queue,
    /// Command bytes at 0, the device's one-byte ack at [`CONTROL_ACK_AT`].
    pub(super) buffer: SharedMemory,
    pub(super) notifier: Notifier,
    /// A command went unanswered: its descriptor may still complete, so the queue is not used
    /// again (a later answer would be taken for the wrong command).
    pub(super) stuck: bool,
}

/// Room for the largest command (a MAC table with the framework's whole multicast list).
const CONTROL_ACK_AT: usize = net::mac_table_set_len(ndis::miniport::MAX_MULTICAST);
pub(super) const CONTROL_BUFFER: usize = CONTROL_ACK_AT + 1;

impl Device {
    /// Tells the device how many queue pairs to use (`VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`); without
    /// it a multiqueue device uses pair 0 only. Polls for the answer (PASSIVE_LEVEL, after
    /// DRIVER_OK).
    pub fn set_queue_pairs(&self, pairs: u16, passive: &mut Passive<'_>) -> Result<(), Status> {
        let command = net::mq_vq_pairs_set(pairs).ok_or(Status::INVALID_PARAMETER)?;
        self.control_command(&command, passive)
    }

    /// Promiscuous and all-multicast reception from NDIS's packet filter (with
    /// `VIRTIO_NET_F_CTRL_RX`; without it the device's own filtering stays as it is).
    ///
    /// Best effort, as virtio's receive filtering is: a device that refuses or does not answer
    /// keeps filtering as it did, and the filter NDIS set still stands (failing the OID would
    /// leave the stack without any filter at all). Returns whether the device took it.
    pub fn set_packet_filter(&self, filter: u32, passive: &mut Passive<'_>) -> bool {
        if self.features & net::features::CTRL_RX == 0 {
            return true;
        }
        let promiscuous = filter & ndis::sys::NDIS_PACKET_TYPE_PROMISCUOUS != 0;
        let all_multicast = filter & ndis::sys::NDIS_PACKET_TYPE_ALL_MULTICAST != 0;
        let a = self.control_command(&net::rx_mode(net::ctrl::RX_PROMISC, promiscuous), passive);
        let b = self.control_command(
            &net::rx_mode(net::ctrl::RX_ALLMULTI, all_multicast),
            passive,
        );
        a.is_ok() && b.is_ok()
    }

    /// The unicast address to receive on instead of the configuration-space MAC
    /// (`VIRTIO_NET_CTRL_MAC_ADDR_SET`, with `VIRTIO_NET_F_CTRL_MAC_ADDR`).
    pub fn set_mac_address(&self, mac: [u8; 6], passive: &mut Passive<'_>) -> Result<(), Status> {
        if self.features & net::features::CTRL_MAC_ADDR == 0 {
            return Err(Status::NOT_SUPPORTED);
        }
        self.control_command(&net::mac_addr_set(mac), passive)
    }

    /// The multicast addresses to receive (`VIRTIO_NET_CTRL_MAC_TABLE_SET`, with
    /// `VIRTIO_NET_F_CTRL_RX`). Best effort, as [`set_packet_filter`](Self::set_packet_filter).
    pub fn set_multicast_list(&self, list: &[[u8; 6]], passive: &mut Passive<'_>) -> bool {
        if self.features & net::features::CTRL_RX == 0 {
            return true;
        }
        let mut command = [0u8; CONTROL_ACK_AT];
        net::mac_table_set(list, &mut command)
            .is_some_and(|len| self.control_command(&command[..len], passive).is_ok())
    }

    /// Sends one control command and polls for the device's answer (up to 100 ms).
    fn control_command(&self, command: &[u8], passive: &mut Passive<'_>) -> Result<(), Status> {
        let Some(control) = &self.control else {
            return Err(Status::NOT_SUPPORTED);
        };
        if self.is_broken() {
            return Err(Status::DEVICE_FAILED);
        }
        if command.len() > CONTROL_ACK_AT {
            return Err(Status::INVALID_LENGTH);
        }
        let notifier = control.with(passive, |c, _| {
            if c.stuck {
                return Err(Status::DEVICE_FAILED);
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
        })?;
        self.transport.notify(&notifier);
        for _ in 0..10_000 {
            let answer = control.with(passive, |c, _| match c.vq.pop_used() {
                Ok(Some(_)) => {
                    let mut ack = [0u8];
                    c.buffer.read_bytes(CONTROL_ACK_AT, &mut ack);
                    Some(
                        net::ctrl_ack(ack[0])
                            .map_err(|_| Status(ndis::sys::NDIS_STATUS_NOT_ACCEPTED)),
                    )
                }
                Ok(None) => None,
                Err(_) => {
                    // The device wrote a used ring it cannot have: it is not used again.
                    c.stuck = true;
                    Some(Err(Status::DEVICE_FAILED))
                }
            });
            if answer == Some(Err(Status::DEVICE_FAILED)) {
                self.fail();
            }
            if let Some(result) = answer {
                return result;
            }
            ndis::sync::stall(10);
        }
        control.with(passive, |c, _| c.stuck = true);
        Err(Status::DEVICE_FAILED)
    }
}
