//! OID requests as NDIS issues them: one at a time per adapter, at PASSIVE_LEVEL, completed
//! inline or later through `NdisMOidRequestComplete`. The information buffer has guard bytes
//! after it; completion checks the lengths the driver reported and that it wrote nothing past the
//! buffer.

use ndis_sys as sys;

use crate::bugcheck::{self, rule};
use crate::machine::{self, Callback, on_cpu};
use crate::ndis::adapter_of_handle;
use crate::{AdapterId, Emulator};

const GUARD: usize = 16;
const GUARD_BYTE: u8 = 0xAB;

/// What a completed OID request reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidResult {
    pub status: sys::NDIS_STATUS,
    /// Query: the bytes the driver wrote (`BytesWritten` of them).
    pub data: Vec<u8>,
    /// Set: `BytesRead`.
    pub bytes_read: u32,
    pub bytes_needed: u32,
}

pub(crate) struct PendingOid {
    adapter: usize,
    request: Box<sys::NDIS_OID_REQUEST>,
    buffer: Box<[u8]>,
    length: usize,
    pub(crate) result: Option<OidResult>,
}

impl PendingOid {
    fn finish(&mut self, status: sys::NDIS_STATUS) -> OidResult {
        let r = &self.request;
        let query = r.RequestType != sys::NdisRequestSetInformation;
        // SAFETY: the DATA member matching RequestType is the one the emulator filled.
        let (written_or_read, needed) = unsafe {
            if query {
                (
                    r.DATA.QUERY_INFORMATION.BytesWritten,
                    r.DATA.QUERY_INFORMATION.BytesNeeded,
                )
            } else {
                (
                    r.DATA.SET_INFORMATION.BytesRead,
                    r.DATA.SET_INFORMATION.BytesNeeded,
                )
            }
        };
        let oid = oid_of(r);
        if self.buffer[self.length..].iter().any(|&b| b != GUARD_BYTE) {
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::OID_REQUEST, oid as usize, self.length, 0],
                format!(
                    "OID {oid:#010x}: the driver wrote past the end of the {}-byte information buffer",
                    self.length
                ),
            );
        }
        let short = status == sys::NDIS_STATUS_INVALID_LENGTH
            || status == sys::NDIS_STATUS_BUFFER_TOO_SHORT;
        if short && needed as usize <= self.length {
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    rule::OID_REQUEST,
                    oid as usize,
                    self.length,
                    needed as usize,
                ],
                format!(
                    "OID {oid:#010x}: status {status:#010x} (buffer too short) but BytesNeeded = {needed} does not exceed \
                     the {}-byte buffer: report the size the request needs",
                    self.length
                ),
            );
        }
        if status == sys::NDIS_STATUS_SUCCESS && written_or_read as usize > self.length {
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    rule::OID_REQUEST,
                    oid as usize,
                    self.length,
                    written_or_read as usize,
                ],
                format!(
                    "OID {oid:#010x}: BytesWritten/BytesRead = {written_or_read} exceeds the {}-byte buffer",
                    self.length
                ),
            );
        }
        let data = if query && status == sys::NDIS_STATUS_SUCCESS {
            self.buffer[..written_or_read as usize].to_vec()
        } else {
            Vec::new()
        };
        OidResult {
            status,
            data,
            bytes_read: if query { 0 } else { written_or_read },
            bytes_needed: needed,
        }
    }
}

fn oid_of(r: &sys::NDIS_OID_REQUEST) -> u32 {
    // SAFETY: every member of the DATA union starts with the OID.
    unsafe { r.DATA.QUERY_INFORMATION.Oid }
}

pub(crate) unsafe fn ndis_m_oid_request_complete(
    handle: sys::NDIS_HANDLE,
    request: *mut sys::NDIS_OID_REQUEST,
    status: sys::NDIS_STATUS,
) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, "NdisMOidRequestComplete");
    let a = adapter_of_handle(&st, handle, "NdisMOidRequestComplete");
    let matches = st.oid.as_ref().is_some_and(|p| {
        p.adapter == a && p.result.is_none() && std::ptr::eq(&*p.request, request.cast_const())
    });
    if !matches || status == sys::NDIS_STATUS_PENDING {
        drop(st);
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [
                rule::OID_REQUEST,
                request as usize,
                status as u32 as usize,
                0,
            ],
            format!(
                "NdisMOidRequestComplete({request:p}, {status:#010x}) on adapter {a}: not the request pending on this \
                 adapter, completed twice, or completed with NDIS_STATUS_PENDING"
            ),
        );
    }
    let pending = st.oid.as_mut().unwrap();
    let result = pending.finish(status);
    pending.result = Some(result);
}

impl Emulator {
    fn oid_request(
        &self,
        adapter: AdapterId,
        kind: sys::NDIS_REQUEST_TYPE,
        oid: u32,
        input: &[u8],
        length: usize,
    ) -> OidResult {
        let (handler, context, cpu, request) = {
            let mut st = self.machine.st();
            assert!(
                st.oid.as_ref().is_none_or(|p| p.result.is_some()),
                "an OID request is still pending: NDIS issues one at a time"
            );
            let driver = st.ndis.driver.as_ref().expect("driver");
            let handler = driver
                .chars
                .OidRequestHandler
                .expect("checked at registration");
            let revision2 = driver.chars.MinorNdisVersion >= 50;
            let context = st.ndis.adapters[adapter.0].context.unwrap_or(0);
            let mut buffer = vec![GUARD_BYTE; length + GUARD].into_boxed_slice();
            if kind == sys::NdisRequestSetInformation {
                buffer[..input.len()].copy_from_slice(input);
            } else {
                buffer[..length].fill(crate::memory::UNINITIALIZED_FILL);
                // A query that carries input (OID_PNP_QUERY_POWER's device state).
                buffer[..input.len()].copy_from_slice(input);
            }
            // SAFETY: all-zero is a valid request (plain data and null pointers).
            let mut request: Box<sys::NDIS_OID_REQUEST> = Box::new(unsafe { std::mem::zeroed() });
            request.Header = sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_OID_REQUEST,
                Revision: if revision2 {
                    sys::NDIS_OID_REQUEST_REVISION_2
                } else {
                    sys::NDIS_OID_REQUEST_REVISION_1
                },
                Size: if revision2 {
                    sys::NDIS_SIZEOF_OID_REQUEST_REVISION_2
                } else {
                    sys::NDIS_SIZEOF_OID_REQUEST_REVISION_1
                },
            };
            request.RequestType = kind;
            request.PortNumber = sys::NDIS_DEFAULT_PORT_NUMBER;
            request.RequestId = (0x4F49_0000 + adapter.0) as sys::PVOID;
            let data = buffer.as_mut_ptr().cast();
            if kind == sys::NdisRequestSetInformation {
                request.DATA.SET_INFORMATION = sys::NDIS_OID_REQUEST_SET {
                    Oid: oid,
                    InformationBuffer: data,
                    InformationBufferLength: length as u32,
                    BytesRead: 0,
                    BytesNeeded: 0,
                };
            } else {
                request.DATA.QUERY_INFORMATION = sys::NDIS_OID_REQUEST_QUERY {
                    Oid: oid,
                    InformationBuffer: data,
                    InformationBufferLength: length as u32,
                    BytesWritten: 0,
                    BytesNeeded: 0,
                };
            }
            let mut pending = PendingOid {
                adapter: adapter.0,
                request,
                buffer,
                length,
                result: None,
            };
            let raw: *mut sys::NDIS_OID_REQUEST = &mut *pending.request;
            st.oid = Some(pending);
            (handler, context, st.cpu, raw)
        };
        let status = on_cpu(
            &self.machine,
            cpu,
            sys::PASSIVE_LEVEL,
            Callback::Oid(adapter.0),
            || {
                // SAFETY: the driver's OID handler with its adapter context and a request that stays
                // valid until it is completed.
                unsafe { handler(context as sys::NDIS_HANDLE, request) }
            },
        );
        machine::run_dpcs(&self.machine);
        let mut st = self.machine.st();
        let pending = st.oid.as_mut().unwrap();
        if status != sys::NDIS_STATUS_PENDING {
            if pending.result.is_some() {
                drop(st);
                bugcheck::raise(
                    bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [rule::OID_REQUEST, oid as usize, status as u32 as usize, 0],
                    format!(
                        "OID {oid:#010x}: completed with NdisMOidRequestComplete and also returned {status:#010x}"
                    ),
                );
            }
            let result = pending.finish(status);
            pending.result = Some(result);
        }
        match &pending.result {
            Some(r) => r.clone(),
            None => OidResult {
                status: sys::NDIS_STATUS_PENDING,
                data: Vec::new(),
                bytes_read: 0,
                bytes_needed: 0,
            },
        }
    }

    /// `OID_*` query with a `length`-byte buffer. A result with `NDIS_STATUS_PENDING` means the
    /// driver has not completed it yet: see [`Emulator::oid_completion`].
    pub fn oid_query(&self, adapter: AdapterId, oid: u32, length: usize) -> OidResult {
        self.oid_request(adapter, sys::NdisRequestQueryInformation, oid, &[], length)
    }

    /// A query whose information buffer (`length` bytes) starts with `input`, as
    /// `OID_PNP_QUERY_POWER` carries the state it asks about.
    pub fn oid_query_with(
        &self,
        adapter: AdapterId,
        oid: u32,
        input: &[u8],
        length: usize,
    ) -> OidResult {
        assert!(input.len() <= length);
        self.oid_request(
            adapter,
            sys::NdisRequestQueryInformation,
            oid,
            input,
            length,
        )
    }

    /// `OID_*` set with `data` as the information buffer.
    pub fn oid_set(&self, adapter: AdapterId, oid: u32, data: &[u8]) -> OidResult {
        let r = self.oid_request(
            adapter,
            sys::NdisRequestSetInformation,
            oid,
            data,
            data.len(),
        );
        // The RSS checker follows what the miniport accepted.
        if oid == sys::OID_GEN_RECEIVE_SCALE_PARAMETERS && r.status == sys::NDIS_STATUS_SUCCESS {
            let mut st = self.machine.st();
            let entry = st.rss.adapters.entry(adapter.0).or_default();
            let next = crate::rss::apply_set(entry.config.as_ref(), data);
            entry.set(next);
        }
        r
    }

    /// Cancels the request still pending (as NDIS does when its `Timeout` expires or its issuer
    /// goes away): `MiniportCancelOidRequest` with its `RequestId`, at PASSIVE_LEVEL. The driver
    /// must then complete it (`NDIS_STATUS_REQUEST_ABORTED`); see [`Emulator::oid_completion`].
    /// Panics when no request is pending or the driver has no cancel handler.
    pub fn cancel_oid(&self) {
        let (cancel, context, cpu, id, adapter) = {
            let st = self.machine.st();
            let pending = st
                .oid
                .as_ref()
                .filter(|p| p.result.is_none())
                .expect("no OID request is pending");
            let driver = st.ndis.driver.as_ref().expect("driver");
            let cancel = driver
                .chars
                .CancelOidRequestHandler
                .expect("the driver registered no MiniportCancelOidRequest");
            let context = st.ndis.adapters[pending.adapter].context.unwrap_or(0);
            (
                cancel,
                context,
                st.cpu,
                pending.request.RequestId as usize,
                pending.adapter,
            )
        };
        on_cpu(
            &self.machine,
            cpu,
            sys::PASSIVE_LEVEL,
            Callback::Oid(adapter),
            || {
                // SAFETY: the driver's cancel handler with its adapter context and the pending
                // request's id.
                unsafe { cancel(context as sys::NDIS_HANDLE, id as sys::PVOID) }
            },
        );
        machine::run_dpcs(&self.machine);
    }

    /// The result of the last request once the driver completed it (None while still pending).
    pub fn oid_completion(&self) -> Option<OidResult> {
        machine::run_dpcs(&self.machine);
        self.machine
            .st()
            .oid
            .as_ref()
            .and_then(|p| p.result.clone())
    }
}
