//! The model-checking build's stand-in (`--cfg loom` only) for the NDIS calls made by the paths
//! the models check: each call is appended to a log, in the order NDIS would receive them, for
//! the model to read once its threads are done. Models add their own notes to the same log.

use alloc::vec::Vec;

use loom::sync::Mutex;
use ndis_sys as sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// `NdisMPauseComplete`.
    PauseComplete,
    /// `NdisMIndicateStatusEx` of `NDIS_STATUS_LINK_STATE`: (connected, transmit speed).
    LinkState(bool, u64),
    /// `NdisMIndicateStatusEx` of another status.
    Status(sys::NDIS_STATUS),
    /// What a model noted itself (e.g. that a send began).
    #[cfg(test)]
    Note(&'static str),
}

loom::lazy_static! {
    /// Reset for every execution of a model.
    static ref LOG: Mutex<Vec<Event>> = Mutex::new(Vec::new());
}

pub(crate) fn record(event: Event) {
    LOG.lock().unwrap().push(event);
}

/// The events so far, in order.
#[cfg(test)]
pub(crate) fn events() -> Vec<Event> {
    LOG.lock().unwrap().clone()
}

/// `NdisMIndicateStatusEx`.
pub(crate) fn indicate_status(indication: &mut sys::NDIS_STATUS_INDICATION) {
    let event = if indication.StatusCode == sys::NDIS_STATUS_LINK_STATE {
        // SAFETY: the framework passes an `NDIS_LINK_STATE` with this code, live across the
        // call (see `NdisAdapter::send_link_indication`).
        let state = unsafe { &*indication.StatusBuffer.cast::<sys::NDIS_LINK_STATE>() };
        Event::LinkState(
            state.MediaConnectState == sys::MediaConnectStateConnected,
            state.XmitLinkSpeed,
        )
    } else {
        Event::Status(indication.StatusCode)
    };
    record(event);
}

/// Runs `f` under loom in every interleaving with at most `LOOM_MAX_PREEMPTIONS` preemptions
/// (default 5). Each execution starts with an empty log.
#[cfg(test)]
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(5);
    }
    builder.check(f);
}
