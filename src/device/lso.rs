//! Large send offload (LSOv2): a frame of up to [`LSO_MAX_FRAME`] bytes copied over several
//! bounce buffers and handed to the device as one chain for it to segment.

use ndis::Status;
use ndis::hw::DeviceMemory;
use ndis::irql::Passive;
use ndis::nbl::{CopyError, DeviceCopy, Gso, SendNbl, TxPrep};
use ndis::offload::{LargeSend, LargeSendOffload};

use super::{Device, NO_BOUNCE, TxRing};
use crate::virtio::net::{NetHeader, features};
use crate::virtio::queue::Buffer;

/// The largest large send: NetKVM's `MaxOffLoadSize` of TCP payload ([`LSO_MAX_PAYLOAD`]) with
/// the most header bytes NDIS uses LSO with (`NDIS_LARGE_SEND_OFFLOAD_MAX_HEADER_LENGTH`, 128)
/// and room for a tag the driver inserts. Under the device's 64 KiB chain.
pub const LSO_MAX_PAYLOAD: u32 = 0xF800;
pub const LSO_MAX_FRAME: usize = LSO_MAX_PAYLOAD as usize + 128 + 4;

/// Bounce buffers a large send may take (the smallest buffer is 2 KiB).
const LSO_MAX_BUFFERS: usize = (NetHeader::HASH_LEN + LSO_MAX_FRAME).div_ceil(2048);

impl Device {
    /// Whether every transmit ring holds two of the largest large sends, so that one can be
    /// queued while the device still holds the other.
    pub fn lso_fits(&self, passive: &mut Passive<'_>) -> bool {
        let needed = (self.hdr_len + LSO_MAX_FRAME).div_ceil(self.frame.buffer);
        self.pairs.iter().all(|p| {
            p.tx.with(passive, |tx, _| usize::from(tx.vq.size()) >= 2 * needed)
        })
    }

    /// Why a large send cannot go out at all, if so: NDIS says such a list must be dropped
    /// when LSO is off for its IP version (after an OID switched it off), with
    /// `INVALID_PACKET`; a frame above [`LSO_MAX_FRAME`] (less a tag's room) is too long.
    pub(super) fn large_send_refusal(&self, nbl: &SendNbl<'_>, ls: LargeSend) -> Option<Status> {
        let version = if ls.ipv6 {
            LargeSendOffload::IPV6
        } else {
            LargeSendOffload::IPV4
        };
        if !self.ndis.large_send_offload().contains(version) {
            return Some(Status::INVALID_PACKET);
        }
        match nbl.frames().next() {
            None => Some(Status::INVALID_PACKET),
            Some(frame) if frame.len() > LSO_MAX_FRAME - 4 => Some(Status::INVALID_LENGTH),
            Some(_) => None,
        }
    }

    /// The virtio-net header that has the device segment a large send the framework prepared
    /// (`gso`, the TCP checksum left `partial`); None when the device must not be asked: a
    /// segment (headers and one MSS of payload) must fit the adapter's frame (`tagged`: a tag
    /// included), and CWR needs the device to know ECN (virtio: the driver SHOULD NOT ask for
    /// segmentation of it otherwise).
    pub(super) fn large_send_header(
        &self,
        gso: Gso,
        partial: (u16, u16),
        tagged: bool,
    ) -> Option<NetHeader> {
        let ecn_ok = self.features & features::HOST_ECN != 0;
        let segment_max = if tagged {
            self.frame.frame + 4
        } else {
            self.frame.frame
        };
        if usize::from(gso.header_len) + usize::from(gso.mss) > segment_max || (gso.ecn && !ecn_ok)
        {
            return None;
        }
        let ecn = if gso.ecn { NetHeader::GSO_ECN } else { 0 };
        Some(NetHeader {
            flags: NetHeader::F_NEEDS_CSUM,
            gso_type: ecn
                | if gso.ipv6 {
                    NetHeader::GSO_TCPV6
                } else {
                    NetHeader::GSO_TCPV4
                },
            hdr_len: gso.header_len,
            gso_size: gso.mss,
            csum_start: partial.0,
            csum_offset: partial.1,
            num_buffers: 0,
        })
    }

    /// Queues a large send (LSOv2): the frame, up to [`LSO_MAX_FRAME`] bytes, copied over as
    /// many bounce buffers as it takes and handed to the device as one chain for it to segment
    /// (`VIRTIO_NET_F_HOST_TSO4`/`6`). NDIS says such a list must be dropped when LSO is off
    /// for its IP version (after an OID switched it off): it fails with `INVALID_PACKET`.
    pub(super) fn queue_large_send(
        &self,
        tx: &mut TxRing,
        nbl: &SendNbl<'_>,
        ls: LargeSend,
        tag: Option<u16>,
    ) -> Result<Status, super::tx::NoRoom> {
        if let Some(status) = self.large_send_refusal(nbl, ls) {
            return Ok(status);
        }
        let Some(frame) = nbl.frames().next() else {
            return Ok(Status::INVALID_PACKET);
        };
        let prep = TxPrep {
            tci: tag,
            large_send: Some(ls),
            device_l4: true,
            ..TxPrep::default()
        };
        let buffer = self.frame.buffer;
        let tag_room = if tag.is_some() { 4 } else { 0 };
        let n = (self.hdr_len + frame.len() + tag_room).div_ceil(buffer);
        match self.tx_room(tx, n) {
            Ok(()) => {}
            Err(Status::RESOURCES) => return Err(super::tx::NoRoom),
            Err(status) => return Ok(status),
        }
        let mut slots = [0u16; LSO_MAX_BUFFERS];
        let mut regions = [(0usize, 0usize); LSO_MAX_BUFFERS];
        for i in 0..n {
            slots[i] = tx.free.pop().unwrap_or(NO_BOUNCE); // `tx_room` made sure of n
            let at = usize::from(slots[i]) * buffer;
            regions[i] = if i == 0 {
                (at + self.hdr_len, buffer - self.hdr_len)
            } else {
                (at, buffer)
            };
        }
        let copied =
            frame.copy_to_device_regions(&tx.bounce, &regions[..n], &mut tx.scratch, &prep);
        let tagged = tag.is_some() || frame.has_8021q_tag();
        let (len, header) = match copied {
            Ok(DeviceCopy {
                len,
                gso: Some(gso),
                partial: Some(partial),
            }) => match self.large_send_header(gso, partial, tagged) {
                Some(header) => (len, header),
                None => {
                    tx.free.extend(slots[..n].iter().rev());
                    return Ok(Status::INVALID_PACKET);
                }
            },
            other => {
                tx.free.extend(slots[..n].iter().rev());
                return Ok(match other {
                    Err(CopyError::TooLong) => Status::INVALID_LENGTH,
                    _ => Status::INVALID_PACKET,
                });
            }
        };
        tx.bounce.write_bytes(
            usize::from(slots[0]) * buffer,
            &header.encode_hash()[..self.hdr_len],
        );
        // The chain: the buffers the frame fills; one taken for a tag it did not need goes back.
        let used = (self.hdr_len + len).div_ceil(buffer);
        tx.free.extend(slots[used..n].iter().rev());
        let mut chain = [Buffer {
            addr: 0,
            len: 0,
            device_writable: false,
        }; LSO_MAX_BUFFERS];
        let mut left = self.hdr_len + len;
        for (i, b) in chain[..used].iter_mut().enumerate() {
            let take = left.min(buffer);
            b.addr = tx.bounce.device_address() + (usize::from(slots[i]) * buffer) as u64;
            b.len = take as u32;
            left -= take;
        }
        match tx.vq.add(&chain[..used]) {
            Ok(head) => {
                tx.carried[head as usize].bounce = slots[0];
                for pair in slots[..used].windows(2) {
                    tx.next_bounce[usize::from(pair[0])] = pair[1];
                }
                Ok(Status::SUCCESS)
            }
            Err(_) => {
                tx.free.extend(slots[..used].iter().rev());
                Ok(Status::RESOURCES)
            }
        }
    }
}
