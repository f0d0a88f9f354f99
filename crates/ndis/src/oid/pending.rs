//! Set requests a driver completes later (`NDIS_STATUS_PENDING`, then `NdisMOidRequestComplete`),
//! for devices that answer a command through an interrupt instead of a register read: the OID
//! handler must not busy-wait for them.
//!
//! A set handler ([`Miniport::set_packet_filter`](crate::miniport::Miniport::set_packet_filter),
//! [`set_multicast_list`](crate::miniport::Miniport::set_multicast_list),
//! [`oid_set`](crate::miniport::Miniport::oid_set)) calls [`SetRequest::pend`], starts the
//! device command, and returns `Ok`; the framework returns `NDIS_STATUS_PENDING` to NDIS. The
//! driver completes the [`PendingOid`] when the device answers (usually from a DPC), once: the
//! framework then applies what the set changes in its own state (the packet filter, the
//! multicast list) if it succeeded, fills `BytesRead`, and calls `NdisMOidRequestComplete`. A
//! completion that comes before the handler returned (the device answered on another processor)
//! is returned to NDIS directly. A [`PendingOid`] dropped without completing fails the request
//! (`NDIS_STATUS_FAILURE`). `MiniportCancelOidRequest` completes it with
//! `NDIS_STATUS_REQUEST_ABORTED`, whatever became of the `PendingOid` (one leaked with
//! `mem::forget` too): NDIS cancels a request its `Timeout` expired for, so a device that never
//! answers, or a driver that loses the request, delays the OID but never hangs it. The driver's
//! later completion is then ignored.

use ndis_sys as sys;

use crate::Status;
use crate::heap::Shared;
use crate::irql::{AtMostDispatch, Passive};
use crate::miniport::{MAX_MULTICAST, NdisAdapter};

/// What the framework applies to its own state when a pended set succeeds.
#[derive(Clone, Copy)]
pub(crate) enum AfterSet {
    Nothing,
    PacketFilter(u32),
    Multicast([[u8; 6]; MAX_MULTICAST], usize),
}

impl AfterSet {
    pub(crate) fn apply(self, adapter: &NdisAdapter) {
        match self {
            AfterSet::Nothing => {}
            AfterSet::PacketFilter(f) => adapter.set_packet_filter(f),
            AfterSet::Multicast(list, n) => adapter.set_multicast(&list[..n]),
        }
    }
}

/// The adapter's one pended set (NDIS sends a miniport one OID request at a time). One per
/// adapter, written twice per pended request: the multicast list it may carry is not boxed.
#[derive(Default)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Slot {
    #[default]
    Empty,
    /// `pend` was called; the handler has not returned yet.
    Pending { generation: u64 },
    /// Completed before the handler returned.
    Early {
        generation: u64,
        result: Result<(), Status>,
    },
    /// Returned PENDING to NDIS.
    Outstanding {
        generation: u64,
        request: Request,
        after: AfterSet,
        read: usize,
    },
}

/// `*mut NDIS_OID_REQUEST`, owned by the miniport until completed.
#[derive(Clone, Copy)]
pub(crate) struct Request(pub(crate) *mut sys::NDIS_OID_REQUEST);

// SAFETY: NDIS lets the miniport complete a request on any processor; the pointer is only
// dereferenced by the completion, once.
unsafe impl Send for Request {}

/// The context of a set handler: its PASSIVE_LEVEL token, and the way to pend the request.
pub struct SetRequest<'a> {
    passive: Passive<'a>,
    adapter: &'a Shared<NdisAdapter>,
    pended: Option<u64>,
}

impl<'a> SetRequest<'a> {
    pub(crate) fn new(passive: Passive<'a>, adapter: &'a Shared<NdisAdapter>) -> Self {
        SetRequest {
            passive,
            adapter,
            pended: None,
        }
    }

    pub fn passive(&self) -> &Passive<'a> {
        &self.passive
    }

    /// The token, for a scope that raises the IRQL.
    pub fn passive_mut(&mut self) -> &mut Passive<'a> {
        &mut self.passive
    }

    /// Completes this request later: the handler returns `Ok` (NDIS is told PENDING) and the
    /// driver completes the returned [`PendingOid`] when the device answers. Once per request.
    pub fn pend(&mut self) -> PendingOid {
        assert!(self.pended.is_none(), "a request is pended once");
        let generation = self.adapter.next_oid_generation();
        self.adapter
            .pending_oid
            .with_unchecked(|s| *s = Slot::Pending { generation });
        self.pended = Some(generation);
        PendingOid {
            adapter: self.adapter.clone(),
            generation,
            done: false,
            _not_sync: core::marker::PhantomData,
        }
    }

    pub(crate) fn pended(&self) -> Option<u64> {
        self.pended
    }
}

/// A set request the driver pended with [`SetRequest::pend`]: complete it exactly once with
/// [`complete`](Self::complete) (dropping it fails the request).
pub struct PendingOid {
    adapter: Shared<NdisAdapter>,
    generation: u64,
    done: bool,
    /// Not `Sync`: it cannot sit in a `static` (`Once`), where code at any IRQL could reach
    /// it; it moves to whoever completes it (a DPC), under the driver's own lock.
    _not_sync: core::marker::PhantomData<core::cell::Cell<()>>,
}

impl core::fmt::Debug for PendingOid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PendingOid")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl PendingOid {
    /// The device answered: `Ok(())` succeeds the set, `Err` fails it with that status (a
    /// SUCCESS or PENDING status becomes `NDIS_STATUS_FAILURE`).
    pub fn complete<C: AtMostDispatch>(mut self, result: Result<(), Status>, _irql: &C) {
        self.done = true;
        self.finish(result);
    }

    /// Whether NDIS cancelled the request (`MiniportCancelOidRequest`): completing it does
    /// nothing then, and work still to do for it can be dropped.
    pub fn is_cancelled<C: AtMostDispatch>(&self, _irql: &C) -> bool {
        let generation = self.generation;
        self.adapter.pending_oid.with_unchecked(|slot| {
            !matches!(*slot,
                Slot::Pending { generation: g }
                | Slot::Early { generation: g, .. }
                | Slot::Outstanding { generation: g, .. } if g == generation)
        })
    }

    fn finish(&self, result: Result<(), Status>) {
        let result = result.map_err(|s| {
            if s.is_success() || s.0 == sys::NDIS_STATUS_PENDING {
                Status::FAILURE
            } else {
                s
            }
        });
        let generation = self.generation;
        let outstanding = self.adapter.pending_oid.with_unchecked(|slot| match *slot {
            Slot::Pending { generation: g } if g == generation => {
                *slot = Slot::Early { generation, result };
                None
            }
            Slot::Outstanding {
                generation: g,
                request,
                after,
                read,
            } if g == generation => {
                *slot = Slot::Empty;
                Some((request, after, read))
            }
            // Cancelled, or the handler failed after pending: nothing to complete.
            _ => None,
        });
        if let Some((request, after, read)) = outstanding {
            complete_outstanding(&self.adapter, request, after, read, result);
        }
    }
}

impl Drop for PendingOid {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Err(Status::FAILURE));
        }
    }
}

/// Completes a request NDIS was told PENDING for.
pub(crate) fn complete_outstanding(
    adapter: &NdisAdapter,
    request: Request,
    after: AfterSet,
    read: usize,
    result: Result<(), Status>,
) {
    let status = match result {
        Ok(()) => {
            after.apply(adapter);
            sys::NDIS_STATUS_SUCCESS
        }
        Err(s) => s.0,
    };
    // SAFETY: the request NDIS handed the miniport and was told PENDING for, not yet completed
    // (taken out of the slot exactly once); the set member is the one in use.
    unsafe {
        let s = &mut (*request.0).DATA.SET_INFORMATION;
        s.BytesRead = if result.is_ok() { read as u32 } else { 0 };
    }
    adapter.while_live(|| {
        // SAFETY: as above; IRQL <= DISPATCH_LEVEL (the completer's token); the adapter is
        // not halted (NDIS does not halt with a request outstanding, and `while_live` checks).
        unsafe { sys::NdisMOidRequestComplete(adapter.handle().as_raw(), request.0, status) }
    });
}

/// After the handler returned `result` for a request it pended with `generation`: the status
/// to return to NDIS (PENDING, or the result if it already came or the handler failed).
pub(crate) fn settle(
    adapter: &NdisAdapter,
    generation: u64,
    request: *mut sys::NDIS_OID_REQUEST,
    after: AfterSet,
    handler: Result<usize, Status>,
) -> sys::NDIS_STATUS {
    adapter.pending_oid.with_unchecked(|slot| {
        let mine = matches!(*slot,
            Slot::Pending { generation: g } | Slot::Early { generation: g, .. } if g == generation);
        if !mine {
            return sys::NDIS_STATUS_FAILURE; // cannot happen: requests are serialized
        }
        let early = match *slot {
            Slot::Early { result, .. } => Some(result),
            _ => None,
        };
        match (handler, early) {
            (Err(e), _) => {
                *slot = Slot::Empty;
                if e.is_success() || e.0 == sys::NDIS_STATUS_PENDING {
                    sys::NDIS_STATUS_FAILURE
                } else {
                    e.0
                }
            }
            (Ok(read), Some(result)) => {
                *slot = Slot::Empty;
                match result {
                    Ok(()) => {
                        after.apply(adapter);
                        // SAFETY: the request of this call, not yet completed.
                        unsafe { (*request).DATA.SET_INFORMATION.BytesRead = read as u32 };
                        sys::NDIS_STATUS_SUCCESS
                    }
                    Err(e) => e.0,
                }
            }
            (Ok(read), None) => {
                *slot = Slot::Outstanding {
                    generation,
                    request: Request(request),
                    after,
                    read,
                };
                sys::NDIS_STATUS_PENDING
            }
        }
    })
}

/// Completes the outstanding request, whatever it is, with `status` (the device that would have
/// answered it is gone). A later completion by the driver finds nothing to complete.
pub(crate) fn abort(adapter: &NdisAdapter, status: Status) {
    let taken = adapter.pending_oid.with_unchecked(|slot| {
        if let Slot::Outstanding {
            request,
            after,
            read,
            ..
        } = *slot
        {
            *slot = Slot::Empty;
            return Some((request, after, read));
        }
        None
    });
    if let Some((request, after, read)) = taken {
        complete_outstanding(adapter, request, after, read, Err(status));
    }
}

/// `MiniportCancelOidRequest`: aborts the outstanding request with `request_id`, if any.
pub(crate) fn cancel(adapter: &NdisAdapter, request_id: sys::PVOID) {
    let taken = adapter.pending_oid.with_unchecked(|slot| {
        if let Slot::Outstanding {
            request,
            after,
            read,
            ..
        } = *slot
        {
            // SAFETY: the outstanding request, valid until completed.
            if unsafe { (*request.0).RequestId } == request_id {
                *slot = Slot::Empty;
                return Some((request, after, read));
            }
        }
        None
    });
    if let Some((request, after, read)) = taken {
        complete_outstanding(adapter, request, after, read, Err(Status::REQUEST_ABORTED));
    }
}
