//! Device RSS (`VIRTIO_NET_F_RSS`) and hash report (`VIRTIO_NET_F_HASH_REPORT`): what NDIS's
//! RSS configuration becomes on the device, and the mode the receive path runs in.
//!
//! On every change ([`Device::program_rss`], from `Miniport::rss_changed` at PASSIVE_LEVEL) the
//! receive path first falls back to software (Toeplitz in the driver, steering through the
//! per-processor chains of [`super::steer`]); then one control command, polled for at most
//! 100 ms, tells the device:
//!
//! * RSS on and `VIRTIO_NET_F_RSS`: `VIRTIO_NET_CTRL_MQ_RSS_CONFIG` with the hash types, NDIS's
//!   key, and the table with each entry's processor replaced by the receive queue whose DPC
//!   runs there ([`ndis::rss::RssEntry::queue`]); unclassified frames go to the base
//!   processor's queue. When every entry's queue has its own message whose DPC runs on the
//!   entry's processor, the device's choice of queue *is* the processor: the receive path
//!   indicates on the spot ([`DEVICE_STEERS`]).
//! * Hashes without device steering (RSS without `VIRTIO_NET_F_RSS`, or `OID_GEN_RECEIVE_HASH`)
//!   and `VIRTIO_NET_F_HASH_REPORT`: `VIRTIO_NET_CTRL_MQ_HASH_CONFIG` with the types and key;
//!   software steering on the hash the device reports.
//! * Nothing to hash: back to automatic steering (`VQ_PAIRS_SET`, the last multiqueue command
//!   decides the mode) or hashing off (`HASH_CONFIG` without types).
//!
//! With `VIRTIO_NET_F_HASH_REPORT` and the device's configuration in force ([`DEVICE_HASH`]),
//! each frame's hash comes from its `virtio_net_hdr_v1_hash` instead of being computed. A
//! device that refuses the command, or cannot take the configuration (hash types it does not
//! support, a key or table longer than it takes), leaves the adapter in software mode, which
//! is correct on its own. The command is kept and replayed after every re-initialization
//! (reset, D0 entry).

use core::sync::atomic::Ordering;

use ndis::Status;
use ndis::irql::{AtMostDispatch, Passive};
use ndis::rss::{HashTypes, RssTable, RxHash};

use super::Device;
use crate::virtio::net::{self, features, hash};
use crate::virtio::pci::RssLimits;

/// `Device::rss_mode` bit: frames carry the hash NDIS's configuration asks for in their header.
pub const DEVICE_HASH: u8 = 1;
/// `Device::rss_mode` bit: the device steers by NDIS's table, and each receive queue's DPC runs
/// on the processor its entries name.
pub const DEVICE_STEERS: u8 = 2;

/// A command for the device's RSS state and the mode it puts in force once accepted.
#[derive(Clone, Copy)]
pub(super) struct RssCommand {
    bytes: [u8; net::RSS_CONFIG_MAX_LEN],
    len: usize,
    mode: u8,
}

/// NDIS hash types as virtio's.
fn virtio_types(t: HashTypes) -> u32 {
    let mut v = 0;
    for (ndis, virtio) in [
        (HashTypes::IPV4, hash::TYPE_IPV4),
        (HashTypes::TCP_IPV4, hash::TYPE_TCPV4),
        (HashTypes::IPV6, hash::TYPE_IPV6),
        (HashTypes::TCP_IPV6, hash::TYPE_TCPV6),
    ] {
        if t.contains(ndis) {
            v |= virtio;
        }
    }
    v
}

/// A reported hash as NDIS's (None for a report type NDIS has no hash type for).
pub fn ndis_hash(value: u32, report: u16) -> Option<RxHash> {
    let kind = match report {
        hash::REPORT_IPV4 => HashTypes::IPV4,
        hash::REPORT_TCPV4 => HashTypes::TCP_IPV4,
        hash::REPORT_IPV6 => HashTypes::IPV6,
        hash::REPORT_TCPV6 => HashTypes::TCP_IPV6,
        _ => return None,
    };
    Some(RxHash { value, kind })
}

impl Device {
    /// The RSS mode bits in force ([`DEVICE_HASH`], [`DEVICE_STEERS`]).
    #[inline]
    pub fn rss_mode(&self) -> u8 {
        self.rss_mode.load(Ordering::Acquire)
    }

    /// NDIS's RSS configuration changed (PASSIVE_LEVEL): tells the device what it can do of it
    /// and switches the receive path's mode; see the module doc. Never fails: software RSS is
    /// always there to fall back to.
    pub fn program_rss(&self, table: &RssTable, passive: &mut Passive<'_>) {
        self.rss_mode.store(0, Ordering::Release);
        let command = self.rss_command(table);
        self.restore.with(passive, |r, _| r.rss = command);
        let Some(c) = command else {
            return;
        };
        if !self.is_healthy() {
            return; // replayed by the re-initialization
        }
        if self.control_command(&c.bytes[..c.len], passive).is_ok() {
            self.rss_mode.store(c.mode, Ordering::Release);
        }
    }

    /// Replays the last RSS command after a re-initialization (`polls` as for the others).
    pub(super) fn replay_rss<C: AtMostDispatch>(
        &self,
        irql: &mut C,
        polls: u32,
    ) -> Result<(), Status> {
        self.rss_mode.store(0, Ordering::Release);
        let (Some(control), Some(c)) = (&self.control, self.restore.with(irql, |r, _| r.rss))
        else {
            return Ok(());
        };
        self.command_polled(control, &c.bytes[..c.len], irql, polls)?;
        self.rss_mode.store(c.mode, Ordering::Release);
        Ok(())
    }

    /// The command for `table`, or None when the device needs none (it has no RSS or hash
    /// report, or no control queue).
    fn rss_command(&self, table: &RssTable) -> Option<RssCommand> {
        let has = |f: u64| self.features & f != 0;
        if self.control.is_none() || !has(features::RSS | features::HASH_REPORT) {
            return None;
        }
        let mut c = RssCommand {
            bytes: [0; net::RSS_CONFIG_MAX_LEN],
            len: 0,
            mode: 0,
        };
        let types = virtio_types(table.hash_types());
        let limits = self.rss_limits.filter(|l| {
            types & !l.supported_hash_types == 0 && usize::from(l.max_key_size) >= table.key().len()
        });
        if table.hashes()
            && let Some(limits) = limits
        {
            if table.is_enabled()
                && has(features::RSS)
                && let Some((len, steers)) = self.rss_config(table, types, limits, &mut c.bytes)
            {
                let hashes = if has(features::HASH_REPORT) {
                    DEVICE_HASH
                } else {
                    0
                };
                let mode = hashes | if steers { DEVICE_STEERS } else { 0 };
                if mode != 0 {
                    c.len = len;
                    c.mode = mode;
                    return Some(c);
                }
            }
            if has(features::HASH_REPORT)
                && let Some(len) = net::hash_config(types, table.key(), &mut c.bytes)
            {
                c.len = len;
                c.mode = DEVICE_HASH;
                return Some(c);
            }
        }
        // Nothing the device does for this configuration: automatic steering, no hashes.
        if has(features::MQ) {
            let pairs = self.active_pairs.load(Ordering::Relaxed) as u16;
            let command = net::mq_vq_pairs_set(pairs)?;
            c.bytes[..command.len()].copy_from_slice(&command);
            c.len = command.len();
        } else if has(features::HASH_REPORT) {
            c.len = net::hash_config(0, &[], &mut c.bytes)?;
        } else {
            return None;
        }
        Some(c)
    }

    /// `RSS_CONFIG` for `table` into `out`: (length, whether each entry's queue has a DPC of
    /// its own on the entry's processor). None when the device cannot hold the table.
    fn rss_config(
        &self,
        table: &RssTable,
        types: u32,
        limits: RssLimits,
        out: &mut [u8],
    ) -> Option<(usize, bool)> {
        let entries = table.entries();
        if entries.len() > usize::from(limits.max_indirection_table_length) {
            return None;
        }
        let pairs = self.active_pairs.load(Ordering::Relaxed) as u16;
        let cpus = self.queue_cpus.get()?;
        let mut queues = [0u16; ndis::rss::TABLE_ENTRIES];
        let mut steers = self.plan.mode() == net::InterruptMode::PerQueue;
        for (q, e) in queues.iter_mut().zip(entries) {
            if e.queue >= pairs {
                return None;
            }
            *q = e.queue;
            steers &= e.processor.group == 0
                && cpus.get(usize::from(e.queue)) == Some(&u16::from(e.processor.number));
        }
        let base = table.base_cpu();
        let unclassified = cpus[..usize::from(pairs).min(cpus.len())]
            .iter()
            .position(|&p| p == base)
            .map_or(0, |q| q as u16);
        let len = net::rss_config(
            types,
            &queues[..entries.len()],
            unclassified,
            pairs,
            table.key(),
            out,
        )?;
        Some((len, steers))
    }
}
