//! A FIFO of held send lists that stores them in themselves.
//!
//! A transmit ring that is full, or that waits for NDIS to call back with a mapping, has to
//! keep the lists sent meanwhile, in order. Kept in a driver's own array they are bounded by
//! memory allocated at initialize, and a burst longer than that fails lists with
//! `NDIS_STATUS_RESOURCES`, which TCP takes for loss. A list the miniport owns has room of
//! its own for this: its `Next` link and the words NDIS reserves for the miniport
//! (`MiniportReserved`, `Scratch`), so the queue costs no memory per list and never fails.

use super::{Chain, CopyTally, HeldSend, SendNbl};
use core::cell::Cell;
use core::marker::PhantomData;
use ndis_sys as sys;

/// Held send lists in the order pushed, linked through the lists themselves: pushing never
/// allocates and never fails, at any IRQL up to DISPATCH_LEVEL. A driver bounds it, if it
/// wants a bound, with [`len`](Self::len).
///
/// The lists stay held while queued: a pause stays pending and the device does not leave D0
/// until the driver popped and completed each one. Dropping a queue that still has lists
/// leaks them, as dropping a [`HeldSend`] does (NDIS, and the emulator, report each as a send
/// never completed).
pub struct HeldQueue {
    lists: Chain,
    len: usize,
}

// SAFETY: the queued lists are the miniport's until completed, wherever the queue is kept (as
// for `HeldSend`); the queue is reached through `&mut` only.
unsafe impl Send for HeldQueue {}

impl Default for HeldQueue {
    fn default() -> Self {
        Self::new()
    }
}

/// What a queued list keeps of its [`HeldSend`] besides the list itself (the rest, its first
/// frame, frame count and runt flag, is read again from the list when it is popped).
///
/// `MiniportReserved[0]`: the adapter's identity; `MiniportReserved[1]`: the bytes of the
/// frames copied out so far; `Scratch`: their number, with the top bit set if one went to a
/// group address.
const GROUP_BIT: usize = 1 << (usize::BITS - 1);

impl HeldQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        HeldQueue {
            lists: Chain::EMPTY,
            len: 0,
        }
    }

    /// How many lists are queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No list queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes what `held` carries into its list; returns the list.
    fn store(held: HeldSend) -> *mut sys::NET_BUFFER_LIST {
        let nbl = held.list.nbl;
        let (frames, bytes, group) = held.list.copies.get();
        let scratch = (frames & !GROUP_BIT) | if group { GROUP_BIT } else { 0 };
        // SAFETY: a held list is the miniport's until completed; `MiniportReserved` and
        // `Scratch` are the current owner's to use.
        unsafe {
            (*nbl).MiniportReserved = [held.adapter as sys::PVOID, bytes as usize as sys::PVOID];
            (*nbl).Scratch = scratch as sys::PVOID;
        }
        nbl
    }

    /// Queues `held` after the others.
    pub fn push_back(&mut self, held: HeldSend) {
        let nbl = Self::store(held);
        // SAFETY: the list is the miniport's (held) and in no chain: a held list was taken
        // out of its call's chain, and `SendCompletion` links it only when consuming its
        // `HeldSend`, which `store` consumed.
        unsafe { self.lists.push(nbl) };
        self.len += 1;
    }

    /// Queues `held` before the others (a list taken out that could not be sent after all).
    pub fn push_front(&mut self, held: HeldSend) {
        let nbl = Self::store(held);
        // SAFETY: as in `push_back`; `Next` is the owner's link, and `head` a list of this
        // queue or null.
        unsafe { (*nbl).Next = self.lists.head };
        if self.lists.tail.is_null() {
            self.lists.tail = nbl;
        }
        self.lists.head = nbl;
        self.len += 1;
    }

    /// Takes the first list out, as the [`HeldSend`] that was pushed.
    pub fn pop_front(&mut self) -> Option<HeldSend> {
        let nbl = self.lists.head;
        if nbl.is_null() {
            return None;
        }
        // SAFETY: a list of this queue: the miniport's, with what `store` wrote.
        let (next, reserved, scratch) = unsafe {
            (
                (*nbl).Next,
                (*nbl).MiniportReserved,
                (*nbl).Scratch as usize,
            )
        };
        self.lists.head = next;
        if next.is_null() {
            self.lists.tail = core::ptr::null_mut();
        }
        self.len -= 1;
        // SAFETY: as above; the link is the queue's no more.
        unsafe { (*nbl).Next = core::ptr::null_mut() };
        let list = SendNbl::new(nbl, None);
        let list = SendNbl {
            copies: CopyTally {
                frames: Cell::new(scratch & !GROUP_BIT),
                bytes: Cell::new(reserved[1] as usize as u64),
                group: Cell::new(scratch & GROUP_BIT != 0),
            },
            _call: PhantomData,
            ..list
        };
        Some(HeldSend {
            list,
            adapter: reserved[0] as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Lists a test owns: zeroed NET_BUFFER_LISTs without frames, which the queue links.
    fn lists(n: usize) -> Vec<sys::NET_BUFFER_LIST> {
        // SAFETY: NET_BUFFER_LIST is plain data; all zeroes is a list with no NET_BUFFER.
        (0..n).map(|_| unsafe { core::mem::zeroed() }).collect()
    }

    fn held(nbl: &mut sys::NET_BUFFER_LIST, adapter: usize, tally: (usize, u64, bool)) -> HeldSend {
        let list = SendNbl::new(nbl, None);
        list.copies.frames.set(tally.0);
        list.copies.bytes.set(tally.1);
        list.copies.group.set(tally.2);
        HeldSend { list, adapter }
    }

    /// Lists come out in order (front pushes first), each with the adapter and copy tally it
    /// went in with, and the queue is empty (and reusable) once every list came out.
    #[test]
    fn lists_come_out_in_order_with_what_they_carried() {
        let mut nbls = lists(5);
        let ptrs: Vec<*mut sys::NET_BUFFER_LIST> = nbls.iter_mut().map(|n| n as *mut _).collect();
        let mut q = HeldQueue::new();
        assert!(q.pop_front().is_none());
        for round in 0..2 {
            for (i, &p) in ptrs.iter().enumerate().skip(1) {
                // SAFETY: `p` points into `nbls`, alive and not otherwise borrowed.
                let n = unsafe { &mut *p };
                q.push_back(held(n, 100 + i, (i, 1000 * i as u64, i % 2 == 0)));
            }
            let first = ptrs[0];
            // SAFETY: as above.
            q.push_front(held(
                unsafe { &mut *first },
                100,
                (usize::MAX >> 1, u64::MAX, true),
            ));
            assert_eq!(q.len(), 5, "round {round}");
            let mut out = Vec::new();
            while let Some(h) = q.pop_front() {
                out.push((h.list.nbl, h.adapter, h.list.copies.get()));
            }
            assert!(q.is_empty());
            assert_eq!(out[0], (ptrs[0], 100, (usize::MAX >> 1, u64::MAX, true)));
            for (i, &(nbl, adapter, tally)) in out.iter().enumerate().skip(1) {
                assert_eq!(nbl, ptrs[i]);
                assert_eq!(
                    (adapter, tally),
                    (100 + i, (i, 1000 * i as u64, i % 2 == 0))
                );
                // SAFETY: `nbl` points into `nbls`, alive and not otherwise borrowed.
                let next = unsafe { (*nbl).Next };
                assert!(next.is_null(), "a popped list is unlinked");
            }
        }
    }
}
