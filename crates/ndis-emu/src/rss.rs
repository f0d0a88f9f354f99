//! Receive side scaling as TCP/IP and NDIS see it: the capabilities a miniport reports in its
//! general attributes (header checked per version), the configuration TCP/IP sets when it binds
//! (`OID_GEN_RECEIVE_SCALE_PARAMETERS` with a random 40-byte key, IPv4, TCP/IPv4, IPv6 and
//! TCP/IPv6, a 128-entry table over the processors), and a checker run on every indication
//! while RSS is on: the list carries the hash an independent Toeplitz (written here, not taken
//! from the framework) computes over the frame, with the hash type and function; the
//! indication runs on the processor the table names for that hash; and a TCP flow's segments
//! come up in sequence-number order.

use std::collections::HashMap;

use ndis_sys as sys;

/// What the adapter reported (`NDIS_RECEIVE_SCALE_CAPABILITIES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssCapabilities {
    pub revision: u8,
    pub flags: u32,
    pub interrupt_messages: u32,
    pub receive_queues: u32,
    /// Revision 2 and later.
    pub table_entries: u16,
}

/// The RSS parameters the emulator last set successfully (what the checker holds the miniport
/// to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssConfig {
    pub key: [u8; 40],
    /// `NDIS_HASH_*` types.
    pub types: u32,
    /// Processor numbers (group 0), a power of two of them.
    pub table: Vec<u8>,
}

/// What the checker saw since the configuration was set (or the report was taken).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RssReport {
    /// Lists checked while RSS was on.
    pub checked: u64,
    /// Lists that carried a hash (the rest: no IP frame).
    pub hashed: u64,
    /// Indications per processor.
    pub per_cpu: Vec<u64>,
    /// Wrong hash value, type or function.
    pub wrong_hash: u64,
    /// Indicated on another processor than the table names.
    pub wrong_cpu: u64,
    /// A TCP segment indicated after a later one of its flow.
    pub out_of_order: u64,
    /// The first problems, described.
    pub problems: Vec<String>,
}

#[derive(Default)]
pub(crate) struct AdapterRss {
    pub caps: Option<RssCapabilities>,
    pub config: Option<RssConfig>,
    pub report: RssReport,
    /// Per TCP flow (4-tuple bytes): the next sequence number expected at least.
    flows: HashMap<Vec<u8>, u32>,
}

#[derive(Default)]
pub(crate) struct RssState {
    pub adapters: HashMap<usize, AdapterRss>,
}

/// Checks and parses `NDIS_RECEIVE_SCALE_CAPABILITIES` (None: a bad header, as NDIS refuses).
/// # Safety
/// `p` is null or points to at least the header the driver claims.
pub(crate) unsafe fn parse_capabilities(
    p: *const u8,
    registered_minor: u8,
) -> Result<Option<RssCapabilities>, String> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's structure, its header first.
    let h = unsafe { *(p as *const sys::NDIS_OBJECT_HEADER) };
    let (revision, size) = (h.Revision, h.Size);
    let want = if registered_minor >= 60 {
        (3, sys::NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_3)
    } else if registered_minor >= 30 {
        (2, sys::NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_2)
    } else {
        (1, sys::NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_1)
    };
    if h.Type != sys::NDIS_OBJECT_TYPE_RSS_CAPABILITIES || revision != want.0 || size < want.1 {
        return Err(format!(
            "RSS capabilities header {:#x}/{}/{}: NDIS 6.{registered_minor} expects 0x88/{}/{}",
            h.Type, revision, size, want.0, want.1
        ));
    }
    // SAFETY: the header says the structure is at least this long.
    let c = unsafe { *(p as *const sys::NDIS_RECEIVE_SCALE_CAPABILITIES) };
    Ok(Some(RssCapabilities {
        revision,
        flags: c.CapabilitiesFlags,
        interrupt_messages: c.NumberOfInterruptMessages,
        receive_queues: c.NumberOfReceiveQueues,
        table_entries: if revision >= 2 {
            c.NumberOfIndirectionTableEntries
        } else {
            0
        },
    }))
}

/// `NDIS_RECEIVE_SCALE_PARAMETERS` (revision 2: `PROCESSOR_NUMBER` entries) with the table and
/// the key after it, as TCP/IP builds it.
pub fn receive_scale_parameters(flags: u16, types: u32, table: &[u8], key: &[u8]) -> Vec<u8> {
    let header = usize::from(sys::NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_2);
    let mut b = vec![0u8; header + 4 * table.len() + key.len()];
    b[0] = sys::NDIS_OBJECT_TYPE_RSS_PARAMETERS;
    b[1] = sys::NDIS_RECEIVE_SCALE_PARAMETERS_REVISION_2;
    b[2..4].copy_from_slice(&(header as u16).to_le_bytes());
    b[4..6].copy_from_slice(&flags.to_le_bytes());
    let info = if types == 0 {
        0
    } else {
        sys::NdisHashFunctionToeplitz | types
    };
    b[8..12].copy_from_slice(&info.to_le_bytes());
    b[12..14].copy_from_slice(&((4 * table.len()) as u16).to_le_bytes());
    b[16..20].copy_from_slice(&(header as u32).to_le_bytes());
    b[20..22].copy_from_slice(&(key.len() as u16).to_le_bytes());
    b[24..28].copy_from_slice(&((header + 4 * table.len()) as u32).to_le_bytes());
    for (i, &cpu) in table.iter().enumerate() {
        b[header + 4 * i + 2] = cpu;
    }
    b[header + 4 * table.len()..].copy_from_slice(key);
    b
}

/// The Toeplitz hash, bit by bit as "RSS Hashing Functions" describes it: for every set bit of
/// the input, XOR in the 32 key bits starting at that bit's position.
pub fn toeplitz(key: &[u8; 40], input: &[u8]) -> u32 {
    let bit_of_key = |i: usize| -> u32 {
        if i / 8 < key.len() {
            u32::from((key[i / 8] >> (7 - (i % 8))) & 1)
        } else {
            0
        }
    };
    let mut hash = 0u32;
    for i in 0..input.len() * 8 {
        if (input[i / 8] >> (7 - (i % 8))) & 1 == 1 {
            let mut k = 0u32;
            for j in 0..32 {
                k = (k << 1) | bit_of_key(i + j);
            }
            hash ^= k;
        }
    }
    hash
}

/// The hash a miniport must report for `frame` under `types` (value, `NDIS_HASH_*` type), the
/// frame parsed with `etherparse`; None for a frame RSS does not hash. A TCP segment (no
/// fragment, TCP directly after the IP header) gets the 4-tuple when its TCP type is on;
/// otherwise the addresses when the IP version's type is on.
pub fn expected_hash(
    key: &[u8; 40],
    types: u32,
    frame: &[u8],
) -> Option<(u32, u32, Option<Vec<u8>>)> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let (mut input, tcp_type, ip_type, fragment) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let mut i = h.source().to_vec();
            i.extend_from_slice(&h.destination());
            (
                i,
                sys::NDIS_HASH_TCP_IPV4,
                sys::NDIS_HASH_IPV4,
                h.is_fragmenting_payload(),
            )
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let mut i = h.source().to_vec();
            i.extend_from_slice(&h.destination());
            let direct = h.next_header() == etherparse::IpNumber::TCP;
            (i, sys::NDIS_HASH_TCP_IPV6, sys::NDIS_HASH_IPV6, !direct)
        }
        _ => return None,
    };
    if let Some(TransportSlice::Tcp(tcp)) = &p.transport
        && !fragment
        && types & tcp_type != 0
    {
        input.extend_from_slice(&tcp.source_port().to_be_bytes());
        input.extend_from_slice(&tcp.destination_port().to_be_bytes());
        let flow = input.clone();
        return Some((toeplitz(key, &input), tcp_type, Some(flow)));
    }
    if types & ip_type == 0 {
        return None;
    }
    Some((toeplitz(key, &input), ip_type, None))
}

fn tcp_sequence(frame: &[u8]) -> Option<(u32, u32)> {
    use etherparse::{SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            Some((t.sequence_number(), t.payload().len().max(1) as u32))
        }
        _ => None,
    }
}

impl AdapterRss {
    fn problem(&mut self, what: String) {
        if self.report.problems.len() < 16 {
            self.report.problems.push(what);
        }
    }

    /// One indicated list, on processor `cpu`, with its frame and hash slots.
    pub(crate) fn check(&mut self, cpu: usize, frame: &[u8], value: usize, info: usize) {
        let Some(config) = self.config.clone() else {
            return;
        };
        self.report.checked += 1;
        if self.report.per_cpu.len() <= cpu {
            self.report.per_cpu.resize(cpu + 1, 0);
        }
        self.report.per_cpu[cpu] += 1;
        let expected = expected_hash(&config.key, config.types, frame);
        let (got_value, got_info) = (value as u32, info as u32);
        let Some((hash, kind, flow)) = expected else {
            if got_info != 0 {
                self.report.wrong_hash += 1;
                self.problem(format!(
                    "a frame RSS does not hash carries hash info {got_info:#x}"
                ));
            }
            return;
        };
        self.report.hashed += 1;
        let want_info = sys::NdisHashFunctionToeplitz | kind;
        if got_value != hash || got_info != want_info {
            self.report.wrong_hash += 1;
            self.problem(format!(
                "hash {got_value:#010x} info {got_info:#x}, expected {hash:#010x} info {want_info:#x}"
            ));
        }
        let target = usize::from(config.table[hash as usize & (config.table.len() - 1)]);
        if cpu != target {
            self.report.wrong_cpu += 1;
            self.problem(format!(
                "hash {hash:#010x} indicated on cpu {cpu}, the table names cpu {target}"
            ));
        }
        if let (Some(flow), Some((seq, len))) = (flow, tcp_sequence(frame)) {
            if let Some(&next) = self.flows.get(&flow)
                && (seq.wrapping_sub(next) as i32) < 0
            {
                self.report.out_of_order += 1;
                self.problem(format!(
                    "TCP segment {seq} of a flow indicated after segment {}",
                    next.wrapping_sub(1)
                ));
            }
            let next = seq.wrapping_add(len);
            let later = self
                .flows
                .get(&flow)
                .is_none_or(|&n| (next.wrapping_sub(n) as i32) > 0);
            if later {
                self.flows.insert(flow, next);
            }
        }
    }
}

/// The configuration a successful `OID_GEN_RECEIVE_SCALE_PARAMETERS` set leaves (the
/// miniport accepted it), read independently of the miniport: None when it disables RSS.
pub(crate) fn apply_set(previous: Option<&RssConfig>, data: &[u8]) -> Option<RssConfig> {
    let u16_at = |at: usize| u16::from_le_bytes([data[at], data[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
    if data.len() < 28 {
        return previous.cloned();
    }
    let flags = u16_at(4);
    if flags & sys::NDIS_RSS_PARAM_FLAG_DISABLE_RSS != 0 {
        return None;
    }
    let mut c = previous.cloned().unwrap_or(RssConfig {
        key: [0; 40],
        types: 0,
        table: vec![0],
    });
    if flags & sys::NDIS_RSS_PARAM_FLAG_HASH_INFO_UNCHANGED == 0 {
        let info = u32_at(8);
        if info & sys::NDIS_HASH_FUNCTION_MASK == 0 {
            return None;
        }
        c.types = info & sys::NDIS_HASH_TYPE_MASK;
    }
    if flags & sys::NDIS_RSS_PARAM_FLAG_ITABLE_UNCHANGED == 0 {
        let (size, offset) = (usize::from(u16_at(12)), u32_at(16) as usize);
        let width = if data[1] >= 2 { 4 } else { 1 };
        c.table = data[offset..offset + size]
            .chunks_exact(width)
            .map(|e| if width == 4 { e[2] } else { e[0] })
            .collect();
    }
    if flags & sys::NDIS_RSS_PARAM_FLAG_HASH_KEY_UNCHANGED == 0 {
        let offset = u32_at(24) as usize;
        c.key.copy_from_slice(&data[offset..offset + 40]);
    }
    (c.types != 0).then_some(c)
}

impl AdapterRss {
    pub(crate) fn set(&mut self, config: Option<RssConfig>) {
        self.config = config;
        self.flows.clear();
    }
}
