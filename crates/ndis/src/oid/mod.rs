//! OID requests: the general OIDs every Ethernet miniport answers, answered by the framework
//! from the adapter's [`AdapterInfo`] and counters; the rest go to
//! the driver.
//!
//! Buffers are checked the way NDIS expects: a query whose buffer is too short fails with
//! `NDIS_STATUS_INVALID_LENGTH` (or `BUFFER_TOO_SHORT` for the statistics structure, as the
//! WDK samples do) and `BytesNeeded` set to the full size, writing nothing; a set with a short
//! buffer likewise. Nothing is ever written past `InformationBufferLength`.

mod pending;

pub(crate) use pending::{
    AfterSet, Slot as PendingSlot, abort as abort_pending, cancel as cancel_pending,
    settle as settle_pending,
};
pub use pending::{PendingOid, SetRequest};

use ndis_sys as sys;

use crate::Status;
use crate::irql::Passive;
use crate::miniport::{AdapterInfo, Miniport, NdisAdapter};
use crate::offload::LargeSendOffload;
use crate::power::DevicePowerState;

/// The OIDs the framework answers (reported in the general attributes' supported list, with the
/// driver's [`Miniport::EXTRA_OIDS`]).
pub const FRAMEWORK_OIDS: &[u32] = &[
    sys::OID_GEN_SUPPORTED_LIST,
    sys::OID_GEN_HARDWARE_STATUS,
    sys::OID_GEN_MEDIA_SUPPORTED,
    sys::OID_GEN_MEDIA_IN_USE,
    sys::OID_GEN_MAXIMUM_LOOKAHEAD,
    sys::OID_GEN_MAXIMUM_FRAME_SIZE,
    sys::OID_GEN_LINK_SPEED,
    sys::OID_GEN_TRANSMIT_BUFFER_SPACE,
    sys::OID_GEN_RECEIVE_BUFFER_SPACE,
    sys::OID_GEN_TRANSMIT_BLOCK_SIZE,
    sys::OID_GEN_RECEIVE_BLOCK_SIZE,
    sys::OID_GEN_VENDOR_ID,
    sys::OID_GEN_VENDOR_DESCRIPTION,
    sys::OID_GEN_CURRENT_PACKET_FILTER,
    sys::OID_GEN_CURRENT_LOOKAHEAD,
    sys::OID_GEN_DRIVER_VERSION,
    sys::OID_GEN_MAXIMUM_TOTAL_SIZE,
    sys::OID_GEN_MAC_OPTIONS,
    sys::OID_GEN_MEDIA_CONNECT_STATUS,
    sys::OID_GEN_MAXIMUM_SEND_PACKETS,
    sys::OID_GEN_VENDOR_DRIVER_VERSION,
    sys::OID_GEN_INTERRUPT_MODERATION,
    sys::OID_GEN_XMIT_OK,
    sys::OID_GEN_RCV_OK,
    sys::OID_GEN_XMIT_ERROR,
    sys::OID_GEN_RCV_ERROR,
    sys::OID_GEN_RCV_NO_BUFFER,
    sys::OID_GEN_STATISTICS,
    sys::OID_802_3_PERMANENT_ADDRESS,
    sys::OID_802_3_CURRENT_ADDRESS,
    sys::OID_802_3_MULTICAST_LIST,
    sys::OID_802_3_MAXIMUM_LIST_SIZE,
    sys::OID_PNP_QUERY_POWER,
    sys::OID_PNP_SET_POWER,
];

/// The OIDs the framework answers for a driver that declares checksum offload.
pub const OFFLOAD_OIDS: &[u32] = &[
    sys::OID_TCP_OFFLOAD_PARAMETERS,
    sys::OID_OFFLOAD_ENCAPSULATION,
];

/// The OIDs the framework answers for a driver that declares RSS.
pub const RSS_OIDS: &[u32] = &[
    sys::OID_GEN_RECEIVE_SCALE_CAPABILITIES,
    sys::OID_GEN_RECEIVE_SCALE_PARAMETERS,
    sys::OID_GEN_RECEIVE_HASH,
];

/// Longest supported-OID list reported (the framework's, the offload ones, the driver's).
const MAX_SUPPORTED: usize = 64;

/// The supported-OID list of an adapter of driver `M` described by `info`.
pub(crate) fn supported<M: Miniport>(info: &AdapterInfo) -> ([u32; MAX_SUPPORTED], usize) {
    let offload: &[u32] = if info.offload.is_some() {
        OFFLOAD_OIDS
    } else {
        &[]
    };
    let rss: &[u32] = if info.rss.is_some() { RSS_OIDS } else { &[] };
    let mut oids = [0u32; MAX_SUPPORTED];
    let mut n = 0;
    for oid in FRAMEWORK_OIDS
        .iter()
        .chain(offload)
        .chain(rss)
        .chain(M::EXTRA_OIDS)
    {
        if n < oids.len() {
            oids[n] = *oid;
            n += 1;
        }
    }
    (oids, n)
}

/// The data of a set request. Reading through [`SetData::read`] / [`SetData::read_u32`] records
/// the size a short buffer lacks, which NDIS must be told (`BytesNeeded`) with
/// `NDIS_STATUS_INVALID_LENGTH`.
pub struct SetData<'a> {
    data: &'a [u8],
    needed: &'a mut usize,
}

impl<'a> SetData<'a> {
    pub(crate) fn new(data: &'a [u8], needed: &'a mut usize) -> Self {
        SetData { data, needed }
    }

    /// Every byte the request carries.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The first `n` bytes; `Err(INVALID_LENGTH)` (with `n` needed) when there are fewer.
    pub fn read(&mut self, n: usize) -> Result<&'a [u8], Status> {
        match self.data.get(..n) {
            Some(bytes) => Ok(bytes),
            None => {
                *self.needed = n;
                Err(Status::INVALID_LENGTH)
            }
        }
    }

    /// A ULONG value.
    pub fn read_u32(&mut self) -> Result<u32, Status> {
        self.read(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Where a query answer goes: the request's information buffer, bounds-checked.
pub struct QueryBuffer<'a> {
    buf: &'a mut [u8],
    written: usize,
    needed: usize,
}

impl<'a> QueryBuffer<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        QueryBuffer {
            buf,
            written: 0,
            needed: 0,
        }
    }

    /// Answers with `data`; INVALID_LENGTH (and `BytesNeeded`) if it does not fit.
    pub fn write(&mut self, data: &[u8]) -> Result<(), Status> {
        self.write_or(data, Status::INVALID_LENGTH)
    }

    fn write_or(&mut self, data: &[u8], short: Status) -> Result<(), Status> {
        if data.len() > self.buf.len() {
            self.needed = data.len();
            return Err(short);
        }
        self.buf[..data.len()].copy_from_slice(data);
        self.written = data.len();
        Ok(())
    }

    pub fn write_u32(&mut self, v: u32) -> Result<(), Status> {
        self.write(&v.to_le_bytes())
    }

    /// 64-bit counters: NDIS accepts a 4-byte buffer for them (the low half), as legacy
    /// callers pass one; 8 bytes otherwise.
    pub fn write_counter(&mut self, v: u64) -> Result<(), Status> {
        if self.buf.len() >= 8 {
            self.write(&v.to_le_bytes())
        } else if self.buf.len() >= 4 {
            self.write(&(v as u32).to_le_bytes())
        } else {
            self.needed = 8;
            Err(Status::INVALID_LENGTH)
        }
    }

    pub(crate) fn written(&self) -> usize {
        self.written
    }
    pub(crate) fn needed(&self) -> usize {
        self.needed
    }
}

fn struct_bytes<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: `T` is a plain `repr(C)` NDIS structure without padding bytes that matter to the
    // reader (padding is whatever the zero-initialised value holds).
    unsafe {
        core::slice::from_raw_parts((value as *const T).cast::<u8>(), core::mem::size_of::<T>())
    }
}

/// Answers a query: the framework's OIDs, then the driver's.
pub(crate) fn query<M: Miniport>(
    adapter: &NdisAdapter,
    driver: &M,
    oid: u32,
    out: &mut QueryBuffer<'_>,
    passive: &mut Passive<'_>,
) -> Result<(), Status> {
    let info = adapter.info();
    let s = &adapter.stats;
    match oid {
        sys::OID_GEN_SUPPORTED_LIST => {
            let (oids, n) = supported::<M>(info);
            let mut list = [0u8; 4 * MAX_SUPPORTED];
            for (bytes, oid) in list.chunks_exact_mut(4).zip(&oids[..n]) {
                bytes.copy_from_slice(&oid.to_le_bytes());
            }
            out.write(&list[..4 * n])
        }
        sys::OID_GEN_HARDWARE_STATUS => out.write_u32(sys::NdisHardwareStatusReady),
        sys::OID_GEN_MEDIA_SUPPORTED | sys::OID_GEN_MEDIA_IN_USE => {
            out.write_u32(sys::NdisMedium802_3 as u32)
        }
        sys::OID_GEN_MAXIMUM_LOOKAHEAD | sys::OID_GEN_MAXIMUM_FRAME_SIZE => out.write_u32(info.mtu),
        sys::OID_GEN_CURRENT_LOOKAHEAD => out.write_u32(adapter.lookahead()),
        sys::OID_GEN_MAXIMUM_TOTAL_SIZE
        | sys::OID_GEN_TRANSMIT_BLOCK_SIZE
        | sys::OID_GEN_RECEIVE_BLOCK_SIZE => out.write_u32(info.mtu + 14),
        sys::OID_GEN_LINK_SPEED => {
            // In units of 100 bps.
            let (up, speed) = adapter.link();
            out.write_u32(if up {
                (speed / 100).min(u32::MAX as u64) as u32
            } else {
                0
            })
        }
        sys::OID_GEN_TRANSMIT_BUFFER_SPACE => out.write_u32(info.transmit_buffer_space),
        sys::OID_GEN_RECEIVE_BUFFER_SPACE => out.write_u32(info.receive_buffer_space),
        sys::OID_GEN_VENDOR_ID => {
            let oui = info.permanent_address;
            out.write_u32(u32::from_le_bytes([oui[0], oui[1], oui[2], 0]))
        }
        sys::OID_GEN_VENDOR_DESCRIPTION => {
            let d = info.description.as_bytes();
            let mut buf = [0u8; 128];
            let n = d.len().min(buf.len() - 1);
            buf[..n].copy_from_slice(&d[..n]);
            out.write(&buf[..n + 1])
        }
        sys::OID_GEN_CURRENT_PACKET_FILTER => out.write_u32(adapter.packet_filter()),
        sys::OID_GEN_DRIVER_VERSION => out.write(
            &(((info.ndis_version.0 as u16) << 8) | info.ndis_version.1 as u16).to_le_bytes(),
        ),
        sys::OID_GEN_VENDOR_DRIVER_VERSION => {
            out.write_u32(((info.driver_version.0 as u32) << 16) | info.driver_version.1 as u32)
        }
        sys::OID_GEN_MAC_OPTIONS => out.write_u32(info.mac_options),
        sys::OID_GEN_MEDIA_CONNECT_STATUS => {
            out.write_u32(if adapter.link().0 { 0 } else { 1 }) // NdisMediaStateConnected = 0
        }
        sys::OID_GEN_MAXIMUM_SEND_PACKETS => out.write_u32(1),
        sys::OID_GEN_INTERRUPT_MODERATION => {
            let p = sys::NDIS_INTERRUPT_MODERATION_PARAMETERS {
                Header: sys::NDIS_OBJECT_HEADER {
                    Type: sys::NDIS_OBJECT_TYPE_DEFAULT,
                    Revision: sys::NDIS_INTERRUPT_MODERATION_PARAMETERS_REVISION_1,
                    Size: sys::NDIS_SIZEOF_INTERRUPT_MODERATION_PARAMETERS_REVISION_1,
                },
                Flags: 0,
                InterruptModeration: sys::NdisInterruptModerationNotSupported,
            };
            out.write(struct_bytes(&p))
        }
        sys::OID_GEN_XMIT_OK => out.write_counter(s.snapshot().tx_frames()),
        sys::OID_GEN_RCV_OK => out.write_counter(s.snapshot().rx_frames()),
        sys::OID_GEN_XMIT_ERROR => out.write_counter(s.snapshot().tx_errors),
        sys::OID_GEN_RCV_ERROR => out.write_counter(s.snapshot().rx_errors),
        sys::OID_GEN_RCV_NO_BUFFER => out.write_counter(s.snapshot().rx_discards),
        sys::OID_GEN_STATISTICS => {
            let info = s.snapshot().to_ndis();
            out.write_or(
                struct_bytes(&info),
                Status(sys::NDIS_STATUS_BUFFER_TOO_SHORT),
            )
        }
        sys::OID_802_3_PERMANENT_ADDRESS => out.write(&info.permanent_address),
        sys::OID_802_3_CURRENT_ADDRESS => out.write(&info.current_address),
        sys::OID_802_3_MULTICAST_LIST => {
            let (list, n) = adapter.multicast();
            out.write(list[..n].as_flattened())
        }
        sys::OID_802_3_MAXIMUM_LIST_SIZE => out.write_u32(crate::miniport::MAX_MULTICAST as u32),
        sys::OID_PNP_QUERY_POWER => Ok(()),
        sys::OID_GEN_RECEIVE_SCALE_CAPABILITIES if info.rss.is_some() => {
            let version = crate::NdisVersion::new(info.ndis_version.0, info.ndis_version.1);
            let caps = info
                .rss
                .unwrap_or_else(|| crate::rss::RssCapabilities::new(1, 0, false));
            let c = caps.to_ndis(version);
            out.write(&struct_bytes(&c)[..usize::from(c.Header.Size)])
        }
        sys::OID_GEN_RECEIVE_SCALE_PARAMETERS if info.rss.is_some() => {
            let version = crate::NdisVersion::new(info.ndis_version.0, info.ndis_version.1);
            let mut buf = [0u8; 44 + 4 * crate::rss::TABLE_ENTRIES + crate::rss::KEY_LEN];
            let n = crate::rss::write_parameters(&adapter.rss.snapshot(), version, &mut buf);
            out.write(&buf[..n])
        }
        sys::OID_GEN_RECEIVE_HASH if info.rss.is_some() => {
            let mut buf = [0u8; 20 + crate::rss::KEY_LEN];
            let n = crate::rss::write_receive_hash(&adapter.rss.snapshot(), &mut buf);
            out.write(&buf[..n])
        }
        _ => driver.oid_query(adapter, oid, out, passive),
    }
}

fn read_u32(data: &[u8], needed: &mut usize) -> Result<u32, Status> {
    match data.get(..4) {
        Some(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        None => {
            *needed = 4;
            Err(Status::INVALID_LENGTH)
        }
    }
}

/// Applies a set: the framework's OIDs, then the driver's. Returns bytes read, and what the
/// framework applies to its own state if the driver pended the request and later succeeds it.
pub(crate) fn set<M: Miniport>(
    adapter: &NdisAdapter,
    driver: &M,
    oid: u32,
    data: &[u8],
    needed: &mut usize,
    request: &mut SetRequest<'_>,
) -> (Result<usize, Status>, AfterSet) {
    let mut after = AfterSet::Nothing;
    let r = set_inner(adapter, driver, oid, data, needed, request, &mut after);
    (r, after)
}

fn set_inner<M: Miniport>(
    adapter: &NdisAdapter,
    driver: &M,
    oid: u32,
    data: &[u8],
    needed: &mut usize,
    request: &mut SetRequest<'_>,
    after: &mut AfterSet,
) -> Result<usize, Status> {
    match oid {
        sys::OID_GEN_CURRENT_PACKET_FILTER => {
            let filter = read_u32(data, needed)?;
            if filter & !adapter.info().supported_packet_filters != 0 {
                return Err(Status::NOT_SUPPORTED);
            }
            driver.set_packet_filter(adapter, filter, request)?;
            if request.pended().is_some() {
                *after = AfterSet::PacketFilter(filter);
            } else {
                adapter.set_packet_filter(filter);
            }
            Ok(4)
        }
        sys::OID_GEN_CURRENT_LOOKAHEAD => {
            let lookahead = read_u32(data, needed)?;
            if lookahead > adapter.info().mtu {
                return Err(Status::INVALID_DATA);
            }
            adapter.set_lookahead(lookahead);
            Ok(4)
        }
        sys::OID_802_3_MULTICAST_LIST => {
            if !data.len().is_multiple_of(6) {
                *needed = data.len().next_multiple_of(6);
                return Err(Status::INVALID_LENGTH);
            }
            let n = data.len() / 6;
            if n > crate::miniport::MAX_MULTICAST {
                return Err(Status(sys::NDIS_STATUS_MULTICAST_FULL));
            }
            let mut list = [[0u8; 6]; crate::miniport::MAX_MULTICAST];
            for (i, chunk) in data.chunks_exact(6).enumerate() {
                list[i].copy_from_slice(chunk);
            }
            driver.set_multicast_list(adapter, &list[..n], request)?;
            if request.pended().is_some() {
                *after = AfterSet::Multicast(list, n);
            } else {
                adapter.set_multicast(&list[..n]);
            }
            Ok(data.len())
        }
        sys::OID_GEN_INTERRUPT_MODERATION => Err(Status::INVALID_DATA),
        sys::OID_TCP_OFFLOAD_PARAMETERS if adapter.info().offload.is_some() => {
            let o = adapter.info().offload.unwrap_or_default();
            let next = adapter
                .offload_configured()
                .apply(data, o.hardware, needed)?;
            let lso_hardware = o.lso.map_or(LargeSendOffload::empty(), |c| c.versions);
            let lso = adapter.lso_configured().apply(data, lso_hardware)?;
            adapter.set_offload(next, lso, request.passive());
            Ok(data.len())
        }
        sys::OID_OFFLOAD_ENCAPSULATION if adapter.info().offload.is_some() => {
            let versions = crate::offload::parse_encapsulation(data, needed)?;
            adapter.set_encapsulation(versions, request.passive());
            Ok(usize::from(
                sys::NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1,
            ))
        }
        sys::OID_GEN_RECEIVE_SCALE_PARAMETERS | sys::OID_GEN_RECEIVE_HASH
            if adapter.info().rss.is_some() =>
        {
            let caps = adapter
                .info()
                .rss
                .unwrap_or_else(|| crate::rss::RssCapabilities::new(1, 0, false));
            let current = adapter.rss.snapshot();
            let next = if oid == sys::OID_GEN_RECEIVE_HASH {
                crate::rss::parse_receive_hash(data, &current, &caps, needed)?
            } else {
                let cpus = crate::sync::processor_count();
                crate::rss::parse_parameters(data, &current, &caps, cpus, needed)?
            };
            adapter.rss.publish(&next);
            if let Err(e) = driver.rss_changed(adapter, &next, request.passive_mut()) {
                adapter.rss.publish(&current);
                let _ = driver.rss_changed(adapter, &current, request.passive_mut());
                return Err(e);
            }
            Ok(data.len())
        }
        sys::OID_PNP_SET_POWER => {
            // An NDIS_DEVICE_POWER_STATE: D0 (1) to D3 (4); Unspecified (0) and Maximum (5) are
            // no state a device can be put in.
            let state = read_u32(data, needed)?;
            let state = DevicePowerState::from_raw(state).ok_or(Status::INVALID_DATA)?;
            crate::miniport::set_power(adapter, driver, state, request.passive_mut())?;
            Ok(4)
        }
        // Some callers send the query as a set: the same answer (always success for a state,
        // which guarantees the following OID_PNP_SET_POWER will be honoured).
        sys::OID_PNP_QUERY_POWER => {
            let state = read_u32(data, needed)?;
            DevicePowerState::from_raw(state).ok_or(Status::INVALID_DATA)?;
            Ok(4)
        }
        _ => driver.oid_set(adapter, oid, &mut SetData::new(data, needed), request),
    }
}
