//! Receive side scaling: what a driver declares ([`RssCapabilities`] in
//! [`AdapterInfo::rss`](crate::miniport::AdapterInfo)), what the framework does with it, and
//! what the driver reads back ([`RssTable`]).
//!
//! The framework reports the capabilities in the general attributes (an
//! `NDIS_RECEIVE_SCALE_CAPABILITIES` of the revision the registered NDIS version uses), answers
//! `OID_GEN_RECEIVE_SCALE_PARAMETERS` (set: every field checked, a refused set changes nothing;
//! query: the parameters in force) and `OID_GEN_RECEIVE_HASH`, keeps the parameters in force in
//! a lock-free snapshot the DPC path reads ([`NdisAdapter::rss`](crate::miniport::NdisAdapter::rss):
//! one relaxed load while RSS is off), and hands every change to the driver
//! ([`Miniport::rss_changed`](crate::miniport::Miniport::rss_changed)) at PASSIVE_LEVEL, at any
//! time, without a reset. The indirection table names processors; the snapshot maps each one to
//! a receive queue of the driver ([`RssEntry::queue`]): the queue whose DPC runs on that
//! processor ([`RssCapabilities::queue_processors`]), or the processor number modulo the queue
//! count when no queue runs there. [`ReceivePool::indicate`](crate::nbl::ReceivePool::indicate)
//! writes the hash value, type and function a frame carries ([`RxHash`]) into its list.

use ndis_sys as sys;

use crate::Status;
use crate::packet::{
    IpVersion, RssFields, RssInput, TOEPLITZ_NIBBLES, rss_fields, toeplitz, toeplitz_fields,
    toeplitz_nibbles,
};
use crate::sync::atomic::{AtomicU32, Ordering, fence};

/// Indirection-table entries the framework supports (Windows' maximum, and what certification
/// asks for).
pub const TABLE_ENTRIES: usize = 128;
/// The Toeplitz secret key's length.
pub const KEY_LEN: usize = 40;
/// Receive queues a driver may describe.
pub const MAX_QUEUES: usize = 64;

bitflags::bitflags! {
    /// RSS hash types (`NDIS_HASH_*`): which header fields a hash covers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct HashTypes: u32 {
        const IPV4 = sys::NDIS_HASH_IPV4;
        const TCP_IPV4 = sys::NDIS_HASH_TCP_IPV4;
        const IPV6 = sys::NDIS_HASH_IPV6;
        const TCP_IPV6 = sys::NDIS_HASH_TCP_IPV6;
    }
}

/// A received frame's RSS hash: the value and the type it was computed over (the function is
/// always Toeplitz).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxHash {
    pub value: u32,
    /// One of [`HashTypes`].
    pub kind: HashTypes,
}

impl RxHash {
    /// The `NetBufferListHashInfo` value: function and type.
    pub fn info(self) -> u32 {
        sys::NdisHashFunctionToeplitz | (self.kind.bits() & sys::NDIS_HASH_TYPE_MASK)
    }
}

/// What a driver's RSS can do, declared in [`AdapterInfo::rss`](crate::miniport::AdapterInfo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssCapabilities {
    /// Hash types the driver can compute (or have the device compute).
    pub hash_types: HashTypes,
    /// Receive queues (1..=[`MAX_QUEUES`]).
    pub receive_queues: u16,
    /// Interrupt messages granted (0 for a line interrupt).
    pub interrupt_messages: u32,
    /// The grant is MSI-X (otherwise MSI or the line).
    pub msix: bool,
    /// The processor each receive queue's DPC runs on by default (its message's affinity),
    /// first `receive_queues` used.
    pub queue_processors: [u16; MAX_QUEUES],
}

impl RssCapabilities {
    /// Receive queues q = 0.. whose DPC runs on processor `q mod processors`, with IPv4,
    /// TCP/IPv4, IPv6 and TCP/IPv6 hashing.
    pub fn new(receive_queues: u16, interrupt_messages: u32, msix: bool) -> Self {
        let cpus = crate::sync::processor_count().max(1);
        let mut queue_processors = [0u16; MAX_QUEUES];
        for (q, p) in queue_processors.iter_mut().enumerate() {
            *p = (q as u32 % cpus) as u16;
        }
        RssCapabilities {
            hash_types: HashTypes::all(),
            receive_queues: receive_queues.clamp(1, MAX_QUEUES as u16),
            interrupt_messages,
            msix,
            queue_processors,
        }
    }

    /// The queue for processor `p`: the first queue whose DPC runs there, else `p` modulo the
    /// queue count.
    pub fn queue_of(&self, p: u16) -> u16 {
        let n = usize::from(self.receive_queues.max(1));
        self.queue_processors[..n]
            .iter()
            .position(|&q| q == p)
            .map_or(p % n as u16, |q| q as u16)
    }

    /// `NDIS_RECEIVE_SCALE_CAPABILITIES` for the registered version: revision 1 (16 bytes) to
    /// NDIS 6.20, 2 (18, the table size) from 6.30, 3 from 6.60.
    pub(crate) fn to_ndis(
        self,
        version: crate::NdisVersion,
    ) -> sys::NDIS_RECEIVE_SCALE_CAPABILITIES {
        let (revision, size) = if version >= crate::NdisVersion::new(6, 60) {
            (
                sys::NDIS_RECEIVE_SCALE_CAPABILITIES_REVISION_3,
                sys::NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_3,
            )
        } else if version >= crate::NdisVersion::V6_30 {
            (
                sys::NDIS_RECEIVE_SCALE_CAPABILITIES_REVISION_2,
                sys::NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_2,
            )
        } else {
            (
                sys::NDIS_RECEIVE_SCALE_CAPABILITIES_REVISION_1,
                sys::NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_1,
            )
        };
        let mut flags = sys::NdisHashFunctionToeplitz | sys::NDIS_RSS_CAPS_CLASSIFICATION_AT_DPC;
        if self.hash_types.contains(HashTypes::TCP_IPV4) {
            flags |= sys::NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV4;
        }
        if self.hash_types.contains(HashTypes::TCP_IPV6) {
            flags |= sys::NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV6;
        }
        if self.interrupt_messages > 0 {
            flags |= sys::NDIS_RSS_CAPS_MESSAGE_SIGNALED_INTERRUPTS;
        }
        if self.msix {
            flags |= sys::NDIS_RSS_CAPS_SUPPORTS_MSI_X | sys::NDIS_RSS_CAPS_USING_MSI_X;
        }
        sys::NDIS_RECEIVE_SCALE_CAPABILITIES {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_RSS_CAPABILITIES,
                Revision: revision,
                Size: size,
            },
            CapabilitiesFlags: flags,
            NumberOfInterruptMessages: self.interrupt_messages,
            NumberOfReceiveQueues: u32::from(self.receive_queues),
            NumberOfIndirectionTableEntries: if revision >= 2 {
                TABLE_ENTRIES as u16
            } else {
                0
            },
        }
    }
}

/// A processor as NDIS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Processor {
    pub group: u16,
    pub number: u8,
}

/// One indirection-table entry: the processor NDIS named and the driver's queue for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RssEntry {
    pub processor: Processor,
    pub queue: u16,
}

/// The RSS configuration in force, as the driver sees it: a copy, taken lock-free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssTable {
    /// Hash types on (empty: no hashing at all).
    types: HashTypes,
    /// RSS proper (hash and steer) rather than `OID_GEN_RECEIVE_HASH` (hash only).
    steering: bool,
    key: [u8; KEY_LEN],
    /// Entries in use (a power of two, 1..=128; 0 without steering).
    len: usize,
    entries: [RssEntry; TABLE_ENTRIES],
    base_cpu: u16,
}

impl RssTable {
    const OFF: RssTable = RssTable {
        types: HashTypes::empty(),
        steering: false,
        key: [0; KEY_LEN],
        len: 0,
        entries: [RssEntry {
            processor: Processor {
                group: 0,
                number: 0,
            },
            queue: 0,
        }; TABLE_ENTRIES],
        base_cpu: 0,
    };

    /// Whether RSS steers (`OID_GEN_RECEIVE_SCALE_PARAMETERS` enabled it).
    pub fn is_enabled(&self) -> bool {
        self.steering
    }

    /// Whether frames get a hash (RSS, or `OID_GEN_RECEIVE_HASH` alone).
    pub fn hashes(&self) -> bool {
        !self.types.is_empty()
    }

    pub fn hash_types(&self) -> HashTypes {
        self.types
    }

    pub fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    pub fn base_cpu(&self) -> u16 {
        self.base_cpu
    }

    /// The entries in use (empty without steering).
    pub fn entries(&self) -> &[RssEntry] {
        &self.entries[..self.len]
    }

    /// Where a frame of hash `value` goes: `entries[value & (len - 1)]`; None without
    /// steering.
    pub fn target(&self, value: u32) -> Option<RssEntry> {
        if self.len == 0 {
            return None;
        }
        Some(self.entries[value as usize & (self.len - 1)])
    }

    /// The hash of `frame` (its first bytes suffice: the headers) under the types on: the
    /// 4-tuple of a TCP segment that is no fragment when that TCP type is on, else the
    /// addresses when the IP version's type is on; None for anything else (not IP, an IPv6
    /// extension header before TCP counts as no TCP, a type that is off).
    pub fn hash(&self, frame: &[u8]) -> Option<RxHash> {
        self.hash_with(frame, |f| {
            let (input, _, _) = RssInput::of_frame(frame, f.ports.is_some())?;
            Some(toeplitz(&self.key, input.bytes()))
        })
    }

    /// [`hash`](Self::hash) with `toeplitz` computing the hash of the input `fields` name in
    /// `frame` (the 4-tuple when they carry ports) under this key.
    #[inline]
    fn hash_with(
        &self,
        frame: &[u8],
        toeplitz: impl Fn(&RssFields) -> Option<u32>,
    ) -> Option<RxHash> {
        if self.types.is_empty() {
            return None;
        }
        let fields = rss_fields(frame, true)?;
        let (tcp, addresses) = match fields.ip {
            IpVersion::V4 => (HashTypes::TCP_IPV4, HashTypes::IPV4),
            IpVersion::V6 => (HashTypes::TCP_IPV6, HashTypes::IPV6),
        };
        // One input, one hash (one call of `toeplitz`, inlined).
        let (input, kind) = if matches!(fields.ports, Some((_, crate::packet::PROTO_TCP)))
            && self.types.contains(tcp)
        {
            (fields, tcp)
        } else if self.types.contains(addresses) {
            (
                RssFields {
                    ports: None,
                    ..fields
                },
                addresses,
            )
        } else {
            return None;
        };
        Some(RxHash {
            value: toeplitz(&input)?,
            kind,
        })
    }
}

/// A receive path's own copy of the RSS configuration ([`NdisAdapter::rss_view`]): taken again
/// only when NDIS changed the configuration, with the key's Toeplitz nibble table
/// ([`crate::packet::toeplitz_nibbles`]) computed then, so that a DPC pays neither a copy of the
/// table nor the bitwise hash per frame. One per ring (or per processor), kept where its user
/// holds it exclusively (under the ring's lock).
///
/// [`NdisAdapter::rss_view`]: crate::miniport::NdisAdapter::rss_view
pub struct RssView {
    table: RssTable,
    /// [`TOEPLITZ_NIBBLES`] rows for `table`'s key.
    nibbles: alloc::vec::Vec<[u32; 16]>,
    /// The configuration's sequence number when `table` was taken (None: never).
    generation: Option<u32>,
}

impl RssView {
    /// An empty view (refreshed at first use); allocates the nibble table (4.5 KiB).
    pub fn try_new<C: crate::irql::AtMostDispatch>(irql: &C) -> Result<Self, Status> {
        let mut nibbles = crate::heap::try_vec(TOEPLITZ_NIBBLES, irql)?;
        // Within the capacity reserved: no allocation.
        nibbles.resize(TOEPLITZ_NIBBLES, [0u32; 16]);
        Ok(RssView {
            table: RssTable::OFF,
            nibbles,
            generation: None,
        })
    }

    /// The configuration this view holds.
    pub fn table(&self) -> &RssTable {
        &self.table
    }

    /// As [`RssTable::hash`], by the nibble table.
    #[inline]
    pub fn hash(&self, frame: &[u8]) -> Option<RxHash> {
        self.table
            .hash_with(frame, |f| Some(toeplitz_fields(&self.nibbles, frame, f)))
    }

    /// Where a frame of hash `value` goes ([`RssTable::target`]).
    pub fn target(&self, value: u32) -> Option<RssEntry> {
        self.table.target(value)
    }

    pub fn is_enabled(&self) -> bool {
        self.table.is_enabled()
    }
}

/// The framework's copy of the parameters in force: a sequence lock over atomics, written only
/// by OID sets (which NDIS serializes), read from any IRQL without a lock.
pub(crate) struct RssState {
    seq: AtomicU32,
    /// Hash information when RSS or receive hashing is on, 0 when off: the load the receive
    /// path pays while it is off. Bit 31: steering (RSS proper).
    on: AtomicU32,
    key: [AtomicU32; KEY_LEN / 4],
    len: AtomicU32,
    base_cpu: AtomicU32,
    /// Bits 0..8 processor number, 8..24 group, 24..32 queue... queue in the top 16 bits,
    /// processor as group << 8 | number in the low 16.
    entries: [AtomicU32; TABLE_ENTRIES],
}

const STEERING: u32 = 1 << 31;

impl RssState {
    // Not `const`: loom's atomics (the model-checking build) have no const constructor.
    pub(crate) fn new() -> Self {
        RssState {
            seq: AtomicU32::new(0),
            on: AtomicU32::new(0),
            key: core::array::from_fn(|_| AtomicU32::new(0)),
            len: AtomicU32::new(0),
            base_cpu: AtomicU32::new(0),
            entries: core::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// Whether anything is on (one relaxed load).
    #[inline]
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed) != 0
    }

    /// Brings `view` up to the configuration in force: nothing but one load when it is current.
    ///
    /// Never waits for a writer: a configuration being written (an odd sequence, or one that
    /// changed during the copy) leaves `view` as it was, for the next refresh to take. The
    /// writer is an OID set at PASSIVE_LEVEL, which a DPC spinning on the same processor would
    /// keep from ever finishing.
    pub(crate) fn refresh(&self, view: &mut RssView) {
        let seq = self.seq.load(Ordering::Acquire);
        if view.generation == Some(seq) || seq & 1 != 0 {
            return;
        }
        let Some((table, generation)) = self.try_snapshot(seq) else {
            return;
        };
        if view.generation.is_none() || table.key != view.table.key {
            toeplitz_nibbles(&table.key, &mut view.nibbles);
        }
        view.table = table;
        view.generation = Some(generation);
    }

    pub(crate) fn snapshot(&self) -> RssTable {
        self.snapshot_with_generation().0
    }

    /// A consistent copy, with the (even) sequence number it was taken at.
    fn snapshot_with_generation(&self) -> (RssTable, u32) {
        loop {
            let s = self.seq.load(Ordering::Acquire);
            if s & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            if let Some(taken) = self.try_snapshot(s) {
                return taken;
            }
        }
    }

    /// A copy taken after `seq` (even) was read, if no writer changed the configuration
    /// meanwhile.
    fn try_snapshot(&self, s: u32) -> Option<(RssTable, u32)> {
        let mut t = RssTable::OFF;
        let on = self.on.load(Ordering::Relaxed);
        t.types = HashTypes::from_bits_truncate(on & sys::NDIS_HASH_TYPE_MASK);
        t.steering = on & STEERING != 0;
        for (i, k) in self.key.iter().enumerate() {
            t.key[4 * i..4 * i + 4].copy_from_slice(&k.load(Ordering::Relaxed).to_le_bytes());
        }
        t.len = (self.len.load(Ordering::Relaxed) as usize).min(TABLE_ENTRIES);
        t.base_cpu = self.base_cpu.load(Ordering::Relaxed) as u16;
        for (e, a) in t.entries[..t.len].iter_mut().zip(&self.entries) {
            let v = a.load(Ordering::Relaxed);
            *e = RssEntry {
                processor: Processor {
                    group: ((v >> 8) & 0xFF) as u16,
                    number: v as u8,
                },
                queue: (v >> 16) as u16,
            };
        }
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == s).then_some((t, s))
    }

    /// Publishes `t` (callers are serialized: OID requests come one at a time).
    pub(crate) fn publish(&self, t: &RssTable) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for (i, k) in self.key.iter().enumerate() {
            let b = &t.key[4 * i..4 * i + 4];
            k.store(
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                Ordering::Relaxed,
            );
        }
        self.len.store(t.len as u32, Ordering::Relaxed);
        self.base_cpu
            .store(u32::from(t.base_cpu), Ordering::Relaxed);
        for (a, e) in self.entries.iter().zip(&t.entries[..t.len]) {
            let v = (u32::from(e.queue) << 16)
                | (u32::from(e.processor.group & 0xFF) << 8)
                | u32::from(e.processor.number);
            a.store(v, Ordering::Relaxed);
        }
        let on = if t.types.is_empty() {
            0
        } else {
            sys::NdisHashFunctionToeplitz | t.types.bits() | if t.steering { STEERING } else { 0 }
        };
        self.on.store(on, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

fn u16_at(d: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([d[at], d[at + 1]])
}

fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

/// A range of `len` bytes at `offset` inside `data`, not overlapping the first `header` bytes.
fn inside(data: &[u8], header: usize, offset: u32, len: usize) -> Result<&[u8], Status> {
    let start = offset as usize;
    if start < header {
        return Err(Status::INVALID_PARAMETER);
    }
    start
        .checked_add(len)
        .and_then(|end| data.get(start..end))
        .ok_or(Status::INVALID_PARAMETER)
}

/// The hash types of `info` after checking its function (Toeplitz) and that every type is one
/// the driver can do; a zero function or no type means "off".
fn hash_types(info: u32, caps: &RssCapabilities) -> Result<HashTypes, Status> {
    let function = info & sys::NDIS_HASH_FUNCTION_MASK;
    let types = info & sys::NDIS_HASH_TYPE_MASK;
    if info & !(sys::NDIS_HASH_FUNCTION_MASK | sys::NDIS_HASH_TYPE_MASK) != 0 {
        return Err(Status::INVALID_PARAMETER);
    }
    if function == 0 || types == 0 {
        return Ok(HashTypes::empty());
    }
    if function != sys::NdisHashFunctionToeplitz {
        return Err(Status::INVALID_PARAMETER);
    }
    let t = HashTypes::from_bits(types).ok_or(Status::INVALID_PARAMETER)?;
    if !caps.hash_types.contains(t) {
        return Err(Status::INVALID_PARAMETER);
    }
    Ok(t)
}

/// `OID_GEN_RECEIVE_SCALE_PARAMETERS` set: the table that follows from `data` and the table in
/// force, or why it is refused (nothing changes then).
pub(crate) fn parse_parameters(
    data: &[u8],
    current: &RssTable,
    caps: &RssCapabilities,
    cpus: u32,
    needed: &mut usize,
) -> Result<RssTable, Status> {
    let min = usize::from(sys::NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_1);
    if data.len() < min {
        *needed = min;
        return Err(Status::INVALID_LENGTH);
    }
    let (kind, revision, size) = (data[0], data[1], usize::from(u16_at(data, 2)));
    let header = match revision {
        1 => min,
        2 => usize::from(sys::NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_2),
        3 => usize::from(sys::NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_3),
        _ => return Err(Status::INVALID_PARAMETER),
    };
    if kind != sys::NDIS_OBJECT_TYPE_RSS_PARAMETERS || size < header {
        return Err(Status::INVALID_PARAMETER);
    }
    if data.len() < header {
        *needed = header;
        return Err(Status::INVALID_LENGTH);
    }
    let flags = u16_at(data, 4);
    let known = sys::NDIS_RSS_PARAM_FLAG_BASE_CPU_UNCHANGED
        | sys::NDIS_RSS_PARAM_FLAG_HASH_INFO_UNCHANGED
        | sys::NDIS_RSS_PARAM_FLAG_ITABLE_UNCHANGED
        | sys::NDIS_RSS_PARAM_FLAG_HASH_KEY_UNCHANGED
        | sys::NDIS_RSS_PARAM_FLAG_DISABLE_RSS
        | if revision >= 3 {
            sys::NDIS_RSS_PARAM_FLAG_DEFAULT_PROCESSOR_UNCHANGED
        } else {
            0
        };
    if flags & !known != 0 {
        return Err(Status::INVALID_PARAMETER);
    }
    if flags & sys::NDIS_RSS_PARAM_FLAG_DISABLE_RSS != 0 {
        return Ok(RssTable::OFF);
    }
    let cpus = cpus.clamp(1, 64);
    let mut next = if current.steering {
        current.clone()
    } else {
        RssTable::OFF
    };
    next.steering = true;
    if flags & sys::NDIS_RSS_PARAM_FLAG_BASE_CPU_UNCHANGED == 0 {
        let base = u16_at(data, 6);
        if u32::from(base) >= cpus {
            return Err(Status::INVALID_PARAMETER);
        }
        next.base_cpu = base;
    }
    if flags & sys::NDIS_RSS_PARAM_FLAG_HASH_INFO_UNCHANGED == 0 {
        next.types = hash_types(u32_at(data, 8), caps)?;
    } else if !current.steering {
        return Err(Status::INVALID_PARAMETER);
    }
    // The processors the table may name (revision 2 and later: the masks, when given).
    let mut allowed: Option<(u16, u64)> = None;
    if revision >= 2 {
        let masks = u32_at(data, 32) as usize;
        if masks > 0 {
            let entry = u32_at(data, 36) as usize;
            if entry < core::mem::size_of::<sys::GROUP_AFFINITY>() {
                return Err(Status::INVALID_PARAMETER);
            }
            let total = masks.checked_mul(entry).ok_or(Status::INVALID_PARAMETER)?;
            let bytes = inside(data, header, u32_at(data, 28), total)?;
            let mut mask = 0u64;
            for m in bytes.chunks_exact(entry) {
                // Group 0 only: the processors this framework reports.
                if u16_at(m, 8) == 0 {
                    mask |= u64::from_le_bytes(m[..8].try_into().unwrap_or([0; 8]));
                }
            }
            allowed = Some((0, mask));
        }
    }
    if flags & sys::NDIS_RSS_PARAM_FLAG_ITABLE_UNCHANGED == 0 {
        let bytes = usize::from(u16_at(data, 12));
        let width = if revision >= 2 { 4 } else { 1 };
        let n = bytes / width;
        if bytes % width != 0 || n == 0 || n > TABLE_ENTRIES || !n.is_power_of_two() {
            return Err(Status::INVALID_PARAMETER);
        }
        let table = inside(data, header, u32_at(data, 16), bytes)?;
        for (i, e) in table.chunks_exact(width).enumerate() {
            let (group, number) = if width == 4 {
                (u16_at(e, 0), e[2])
            } else {
                (0, e[0])
            };
            if group != 0 || u32::from(number) >= cpus || number >= 64 {
                return Err(Status::INVALID_PARAMETER);
            }
            if let Some((_, mask)) = allowed
                && mask & (1u64 << number) == 0
            {
                return Err(Status::INVALID_PARAMETER);
            }
            next.entries[i] = RssEntry {
                processor: Processor { group, number },
                queue: caps.queue_of(u16::from(number)),
            };
        }
        next.len = n;
    } else if !current.steering {
        return Err(Status::INVALID_PARAMETER);
    }
    if flags & sys::NDIS_RSS_PARAM_FLAG_HASH_KEY_UNCHANGED == 0 {
        if usize::from(u16_at(data, 20)) != KEY_LEN {
            return Err(Status::INVALID_PARAMETER);
        }
        let key = inside(data, header, u32_at(data, 24), KEY_LEN)?;
        next.key.copy_from_slice(key);
    } else if !current.steering {
        return Err(Status::INVALID_PARAMETER);
    }
    if next.types.is_empty() {
        // A zero hash function or no hash type: RSS off.
        return Ok(RssTable::OFF);
    }
    Ok(next)
}

/// `OID_GEN_RECEIVE_SCALE_PARAMETERS` query: the parameters in force, the table (as
/// `PROCESSOR_NUMBER`s) and the key after them.
pub(crate) fn write_parameters(t: &RssTable, version: crate::NdisVersion, out: &mut [u8]) -> usize {
    let (revision, size) = if version >= crate::NdisVersion::new(6, 60) {
        (
            sys::NDIS_RECEIVE_SCALE_PARAMETERS_REVISION_3,
            sys::NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_3,
        )
    } else {
        (
            sys::NDIS_RECEIVE_SCALE_PARAMETERS_REVISION_2,
            sys::NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_2,
        )
    };
    let header = usize::from(size);
    let (table, key) = if t.steering {
        (t.len * 4, KEY_LEN)
    } else {
        (0, 0)
    };
    let total = header + table + key;
    if out.len() < total {
        return total;
    }
    out[..total].fill(0);
    out[0] = sys::NDIS_OBJECT_TYPE_RSS_PARAMETERS;
    out[1] = revision;
    out[2..4].copy_from_slice(&size.to_le_bytes());
    out[6..8].copy_from_slice(&t.base_cpu.to_le_bytes());
    let info = if t.steering {
        sys::NdisHashFunctionToeplitz | t.types.bits()
    } else {
        0
    };
    out[8..12].copy_from_slice(&info.to_le_bytes());
    out[12..14].copy_from_slice(&(table as u16).to_le_bytes());
    out[16..20].copy_from_slice(&(header as u32).to_le_bytes());
    out[20..22].copy_from_slice(&(key as u16).to_le_bytes());
    out[24..28].copy_from_slice(&((header + table) as u32).to_le_bytes());
    if t.steering {
        for (i, e) in t.entries().iter().enumerate() {
            let at = header + 4 * i;
            out[at..at + 2].copy_from_slice(&e.processor.group.to_le_bytes());
            out[at + 2] = e.processor.number;
        }
        out[header + table..total].copy_from_slice(&t.key);
    }
    total
}

/// `OID_GEN_RECEIVE_HASH` set: hashing without steering. Refused (NOT_SUPPORTED) while RSS is
/// on, as the OID's documentation asks.
pub(crate) fn parse_receive_hash(
    data: &[u8],
    current: &RssTable,
    caps: &RssCapabilities,
    needed: &mut usize,
) -> Result<RssTable, Status> {
    let header = usize::from(sys::NDIS_SIZEOF_RECEIVE_HASH_PARAMETERS_REVISION_1);
    if data.len() < header {
        *needed = header;
        return Err(Status::INVALID_LENGTH);
    }
    if data[0] != sys::NDIS_OBJECT_TYPE_DEFAULT
        || data[1] < sys::NDIS_RECEIVE_HASH_PARAMETERS_REVISION_1
        || usize::from(u16_at(data, 2)) < header
    {
        return Err(Status::INVALID_PARAMETER);
    }
    let flags = u32_at(data, 4);
    let known = sys::NDIS_RECEIVE_HASH_FLAG_ENABLE_HASH
        | sys::NDIS_RECEIVE_HASH_FLAG_HASH_INFO_UNCHANGED
        | sys::NDIS_RECEIVE_HASH_FLAG_HASH_KEY_UNCHANGED;
    if flags & !known != 0 {
        return Err(Status::INVALID_PARAMETER);
    }
    if flags & sys::NDIS_RECEIVE_HASH_FLAG_ENABLE_HASH == 0 {
        return Ok(if current.steering {
            current.clone()
        } else {
            RssTable::OFF
        });
    }
    if current.steering {
        return Err(Status::NOT_SUPPORTED);
    }
    let mut next = current.clone();
    let was_on = current.hashes();
    if flags & sys::NDIS_RECEIVE_HASH_FLAG_HASH_INFO_UNCHANGED == 0 {
        next.types = hash_types(u32_at(data, 8), caps)?;
    } else if !was_on {
        return Err(Status::INVALID_PARAMETER);
    }
    if flags & sys::NDIS_RECEIVE_HASH_FLAG_HASH_KEY_UNCHANGED == 0 {
        if usize::from(u16_at(data, 12)) != KEY_LEN {
            return Err(Status::INVALID_PARAMETER);
        }
        next.key
            .copy_from_slice(inside(data, header, u32_at(data, 16), KEY_LEN)?);
    } else if !was_on {
        return Err(Status::INVALID_PARAMETER);
    }
    Ok(next)
}

/// `OID_GEN_RECEIVE_HASH` query: the hash-only settings in force, key appended.
pub(crate) fn write_receive_hash(t: &RssTable, out: &mut [u8]) -> usize {
    let header = usize::from(sys::NDIS_SIZEOF_RECEIVE_HASH_PARAMETERS_REVISION_1);
    let on = t.hashes() && !t.steering;
    let total = header + if on { KEY_LEN } else { 0 };
    if out.len() < total {
        return total;
    }
    out[..total].fill(0);
    out[0] = sys::NDIS_OBJECT_TYPE_DEFAULT;
    out[1] = sys::NDIS_RECEIVE_HASH_PARAMETERS_REVISION_1;
    out[2..4].copy_from_slice(&(header as u16).to_le_bytes());
    if on {
        out[4..8].copy_from_slice(&sys::NDIS_RECEIVE_HASH_FLAG_ENABLE_HASH.to_le_bytes());
        let info = sys::NdisHashFunctionToeplitz | t.types.bits();
        out[8..12].copy_from_slice(&info.to_le_bytes());
        out[12..14].copy_from_slice(&(KEY_LEN as u16).to_le_bytes());
        out[16..20].copy_from_slice(&(header as u32).to_le_bytes());
        out[header..total].copy_from_slice(&t.key);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> RssCapabilities {
        let mut c = RssCapabilities {
            hash_types: HashTypes::all(),
            receive_queues: 4,
            interrupt_messages: 9,
            msix: true,
            queue_processors: [0; MAX_QUEUES],
        };
        for q in 0..4 {
            c.queue_processors[q] = q as u16;
        }
        c
    }

    #[test]
    fn capabilities_revisions_follow_the_version() {
        let c = caps();
        let r = |v| {
            let n = c.to_ndis(v);
            (
                n.Header.Revision,
                n.Header.Size,
                n.NumberOfIndirectionTableEntries,
            )
        };
        assert_eq!(r(crate::NdisVersion::V6_20), (1, 16, 0));
        assert_eq!(r(crate::NdisVersion::V6_30), (2, 18, 128));
        assert_eq!(r(crate::NdisVersion::new(6, 60)), (3, 18, 128));
        assert_eq!(r(crate::NdisVersion::V6_89), (3, 18, 128));
        let f = c.to_ndis(crate::NdisVersion::V6_89).CapabilitiesFlags;
        assert_eq!(
            f & sys::NDIS_HASH_FUNCTION_MASK,
            sys::NdisHashFunctionToeplitz
        );
        assert_ne!(f & sys::NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV4, 0);
        assert_ne!(f & sys::NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV6, 0);
        assert_eq!(f & sys::NDIS_RSS_CAPS_HASH_TYPE_UDP_IPV4, 0);
    }

    #[test]
    fn a_processor_without_a_queue_takes_its_number_modulo_the_queues() {
        let c = caps();
        assert_eq!((c.queue_of(2), c.queue_of(5), c.queue_of(7)), (2, 1, 3));
    }

    #[test]
    fn the_query_writes_what_the_set_read() {
        let mut t = RssTable::OFF;
        t.steering = true;
        t.types = HashTypes::all();
        t.len = 8;
        t.key = [7; KEY_LEN];
        for i in 0..8 {
            t.entries[i].processor.number = (i % 4) as u8;
            t.entries[i].queue = (i % 4) as u16;
        }
        let mut out = [0u8; 200];
        let n = write_parameters(&t, crate::NdisVersion::V6_89, &mut out);
        assert_eq!(n, 44 + 32 + 40);
        let mut needed = 0;
        let back = parse_parameters(&out[..n], &RssTable::OFF, &caps(), 4, &mut needed);
        assert_eq!(back, Ok(t.clone()));
        // Processor 3 does not exist on a 3-processor machine: refused.
        let back = parse_parameters(&out[..n], &RssTable::OFF, &caps(), 3, &mut needed);
        assert_eq!(back, Err(Status::INVALID_PARAMETER));
        assert_eq!(
            write_parameters(&t, crate::NdisVersion::V6_89, &mut out[..10]),
            n
        );
    }

    /// A receive DPC that finds the configuration mid-update (the sequence odd) must not wait
    /// for the writer: the OID set that publishes runs at PASSIVE_LEVEL, and when the DPC
    /// preempted it on this very processor the writer cannot run again until the DPC returns
    /// (a hang, then DPC_WATCHDOG_VIOLATION). The view it holds serves until the next DPC.
    #[test]
    #[cfg(not(loom))]
    fn refresh_keeps_its_view_while_a_writer_is_mid_update() {
        let state = std::sync::Arc::new(RssState::new());
        let mut t = RssTable::OFF;
        t.steering = true;
        t.types = HashTypes::all();
        t.len = 1;
        t.key = [7; KEY_LEN];
        state.publish(&t);
        // SAFETY: a host test; nothing depends on the IRQL.
        let irql = unsafe { crate::irql::Dispatch::assume() };
        let mut view = RssView::try_new(&irql).unwrap();
        state.refresh(&mut view);
        assert_eq!(view.table(), &t);
        // The writer of the next configuration, stopped half-way (preempted).
        state.seq.fetch_add(1, Ordering::Relaxed);
        let (sent, got) = std::sync::mpsc::channel();
        let reader = state.clone();
        std::thread::spawn(move || {
            reader.refresh(&mut view);
            let _ = sent.send(view);
        });
        let mut view = got
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("refresh spun waiting for a writer that cannot run");
        assert_eq!(view.table(), &t);
        // Once the writer is done, the next refresh takes the new configuration.
        state.seq.fetch_sub(1, Ordering::Relaxed);
        let mut next = t.clone();
        next.key = [9; KEY_LEN];
        state.publish(&next);
        state.refresh(&mut view);
        assert_eq!(view.table(), &next);
        // The nibble table follows the new key.
        let frame = crate::packet::tcp4(&[], &[1, 2, 3]);
        assert!(next.hash(&frame).is_some());
        assert_eq!(view.hash(&frame), next.hash(&frame));
    }
}
