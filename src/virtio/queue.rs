//! The split virtqueue, driver side (virtio 1.x, 2.7).
//!
//! The ring lives in [`DeviceMemory`] (descriptor table, available ring, used ring, in one block
//! laid out by [`Layout`]). Everything the driver must be able to trust — which descriptors are
//! free, how a chain is linked, which heads are in flight, how many bytes a chain may receive —
//! lives in driver memory ([`Slot`] storage the caller provides) and is only ever *written* to the
//! ring, never read back from it. What the device writes (used entries, `used.idx`, its flags and
//! `avail_event`) is validated before use; a bad value puts the queue into a sticky fault state
//! that the driver clears by resetting the device and calling [`SplitQueue::reclaim_after_reset`].
//!
//! The used length of a chain without device-writable buffers (a transmit chain) is ignored:
//! the device wrote nothing, so 0 is what it should report (virtio 1.2, 2.7.8), but some devices
//! report the bytes they read, and the driver has no use for the value; it is counted
//! ([`SplitQueue::ignored_used_lengths`]) and returned as 0. For chains the device writes, a
//! length above their capacity stays a device fault.
//!
//! The storage is caller-provided (`S: AsMut<[Slot]>`: an array in tests, a boxed slice in the
//! driver) so the queue needs no allocator and is never built on a small kernel stack.

use ndis::hw::DeviceMemory;

/// `VIRTQ_DESC_F_NEXT`.
const DESC_F_NEXT: u16 = 1;
/// `VIRTQ_DESC_F_WRITE`: the device writes this buffer.
const DESC_F_WRITE: u16 = 2;
/// `VIRTQ_DESC_F_INDIRECT`: the buffer is a table of descriptors (the chain), not data.
const DESC_F_INDIRECT: u16 = 4;
/// `VIRTQ_AVAIL_F_NO_INTERRUPT`.
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `VIRTQ_USED_F_NO_NOTIFY`.
pub const USED_F_NO_NOTIFY: u16 = 1;
/// The spec's largest split queue.
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Why a queue operation failed. The variants from [`QueueError::HeadOutOfRange`] on are device
/// faults: they are sticky until [`SplitQueue::reclaim_after_reset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Size 0, not a power of two, above 32768 or above the slot storage.
    BadSize(u16),
    /// The ring memory is smaller than [`Layout::total`].
    MemoryTooSmall { needed: usize, have: usize },
    /// A chain must have at least one buffer.
    EmptyChain,
    /// Not enough free descriptors for the chain.
    NoSpace { needed: usize, free: u16 },
    /// The spec requires device-readable buffers before device-writable ones.
    ReadableAfterWritable,
    /// A queue of fixed descriptors ([`SplitQueue::use_fixed_descriptors`]) takes chains only
    /// through [`SplitQueue::stage_fixed`], and only there.
    WrongMode,
    /// [`SplitQueue::stage_fixed`] of a descriptor outside the table, or one the device holds.
    DescriptorInUse { idx: u16 },
    /// A chain starting with [`First::Common`] on a queue that names none
    /// ([`SplitQueue::set_common_first`]).
    NoCommonFirst,
    /// The device returned a head outside the descriptor table.
    HeadOutOfRange { head: u32 },
    /// The device returned a head that is not the start of a chain in flight.
    HeadNotInFlight { head: u16 },
    /// The device claims to have written more than the chain's writable buffers hold (only for
    /// chains with writable buffers: see the module docs).
    LengthTooLarge { head: u16, len: u32, capacity: u32 },
    /// `used.idx` moved further than the number of chains in flight.
    UsedIndexJump {
        used_idx: u16,
        last_used: u16,
        in_flight: u16,
    },
}

impl QueueError {
    /// The device misbehaved (as opposed to a driver-side usage error); reset it.
    pub fn is_device_fault(&self) -> bool {
        matches!(
            self,
            Self::HeadOutOfRange { .. }
                | Self::HeadNotInFlight { .. }
                | Self::LengthTooLarge { .. }
                | Self::UsedIndexJump { .. }
        )
    }
}

/// Offsets of the three parts of a split ring of `size` entries in one memory block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub size: u16,
    pub desc: usize,
    pub avail: usize,
    pub used: usize,
    /// Bytes of ring memory to allocate.
    pub total: usize,
}

impl Layout {
    /// Descriptor table 16-aligned (at 0), available ring 2-aligned right after it, used ring
    /// 4-aligned: the modern transport's alignment rules (legacy's 4096 does not apply). The
    /// used ring starts 4 bytes past an 8-byte boundary, so that its entries (after the 4-byte
    /// flags and index) are 8-aligned: one entry is read in one 8-byte access.
    pub const fn new(size: u16) -> Result<Self, QueueError> {
        if size == 0 || !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
            return Err(QueueError::BadSize(size));
        }
        let n = size as usize;
        let avail = 16 * n;
        let used = ((avail + 6 + 2 * n + 3) & !7) + 4;
        Ok(Self {
            size,
            desc: 0,
            avail,
            used,
            total: used + 6 + 8 * n,
        })
    }
}

/// Driver-private state of one descriptor; the caller provides at least `size` of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slot {
    /// Next descriptor in this chain or in the free list.
    next: u16,
    /// For a head in flight: descriptors in its chain (0: not a head in flight).
    chain_len: u16,
    /// For a head in flight: bytes the device may write.
    capacity: u32,
    /// In fixed mode: the descriptor as last written to the ring, its second word marked with
    /// [`WRITTEN`] (all zero: not written since the ring was last zeroed), so that posting the
    /// same buffer again writes only the ring entry. Otherwise the first word is, for a head in
    /// flight, its chain's last descriptor ([`Slot::tail`]) and, in flight or free, whether the
    /// ring descriptor refers to its indirect table ([`RING_TABLE_SHIFT`]); the second says
    /// what that table starts with ([`COMMON_FIRST`]). One field serves both (a mode uses only
    /// its own) so that a slot stays 24 bytes: a separate field made it 32, which cost the
    /// receive path about 11 instructions per packet (measured).
    written: [u64; 2],
}

/// Marks [`Slot::written`]: the top bit of a descriptor's `next` field, which no queue of at
/// most [`MAX_QUEUE_SIZE`] entries uses.
const WRITTEN: u64 = 1 << 63;

impl Slot {
    /// A head's chain's last descriptor (the head itself for a chain of one), so that freeing
    /// the chain links it into the free list without walking it. Not in fixed mode.
    #[inline(always)]
    fn tail(&self) -> u16 {
        self.written[0] as u16
    }

    /// Not in fixed mode (whose switch clears what this kept: `use_fixed_descriptors`).
    #[inline(always)]
    fn set_tail(&mut self, tail: u16) {
        self.written[0] = u64::from(tail);
    }

    pub const EMPTY: Slot = Slot {
        next: 0,
        chain_len: 0,
        capacity: 0,
        written: [0; 2],
    };
}

/// One buffer of a chain, as the device addresses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    pub addr: u64,
    pub len: u32,
    /// The device writes it (receive buffers, the control-queue ack) instead of reading it.
    pub device_writable: bool,
}

impl Buffer {
    /// Bytes the device may write into it.
    fn writable_len(&self) -> u32 {
        if self.device_writable { self.len } else { 0 }
    }
}

/// The first buffer of a device-readable chain ([`SplitQueue::stage_readable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// The queue's common first buffer ([`SplitQueue::set_common_first`]): in an indirect
    /// table that already starts with it, staged without writing it.
    Common,
    /// Any buffer, as (address, length).
    Buffer(u64, u32),
}

/// The driver side of one split virtqueue.
#[derive(Debug)]
pub struct SplitQueue<M: DeviceMemory, S: AsMut<[Slot]>> {
    mem: M,
    slots: S,
    layout: Layout,
    event_idx: bool,
    free_head: u16,
    num_free: u16,
    in_flight: u16,
    /// `avail.idx` after the chains staged so far (the next ring entry to write).
    avail_idx: u16,
    /// `avail.idx` as last written to the ring: chains staged beyond it are not yet visible.
    published_idx: u16,
    /// `avail.idx` when the device was last considered for a notification.
    notified_avail: u16,
    /// Used entries consumed so far (the driver's copy of how far it has read).
    last_used: u16,
    /// `used.idx` as last read and validated: entries up to it are read without reading the
    /// index (and fencing) again.
    seen_used: u16,
    interrupts_enabled: bool,
    fault: Option<QueueError>,
    /// Used entries of device-readable-only chains that reported a non-zero length.
    ignored_lengths: u64,
    /// Chains of one descriptor each, chosen by the caller ([`Self::stage_fixed`]): the free
    /// list is not used.
    fixed: bool,
    /// `VIRTIO_F_INDIRECT_DESC` tables ([`Self::use_indirect_tables`]): device-readable chains
    /// of [`Self::stage_readable`] take one ring descriptor. One table per descriptor of the
    /// ring, [`Self::indirect_entries`] descriptors each: the table of a chain is the one of its
    /// head, which the chain owns while it is in flight.
    indirect: Option<M>,
    /// Descriptors in each indirect table (0: no tables).
    indirect_entries: u16,
    /// The first buffer most device-readable chains start with (a header that never changes,
    /// [`First::Common`]), kept in each indirect table's first entry: a chain that starts with
    /// it does not write it again.
    common_first: Option<(u64, u32)>,
}

/// In [`Slot::written`]`[1]` (not used outside fixed mode): the slot's indirect table starts
/// with the common first buffer ([`First::Common`]). Anything else (0 when the ring is reset)
/// means that what it starts with is not known, and the first entry is written.
const COMMON_FIRST: u64 = 1;

/// In [`Slot::written`]`[0]` above the tail (not in fixed mode): the descriptor's ring entry
/// refers to its indirect table for this many entries (bits 32 to 47; 0: it holds something
/// else), so that a chain of the same length in the same table does not write it again. Every
/// other write of a ring descriptor clears it (`set_tail` of a head, the links of a chain).
const RING_TABLE_SHIFT: u32 = 32;

impl<M: DeviceMemory, S: AsMut<[Slot]>> SplitQueue<M, S> {
    /// A queue of `size` entries in `mem` (at least [`Layout::total`] bytes), zeroed and ready
    /// to be programmed into the device. `event_idx`: whether `VIRTIO_F_EVENT_IDX` was
    /// negotiated.
    pub fn new(mem: M, mut slots: S, size: u16, event_idx: bool) -> Result<Self, QueueError> {
        let layout = Layout::new(size)?;
        if slots.as_mut().len() < usize::from(size) {
            return Err(QueueError::BadSize(size));
        }
        if mem.len() < layout.total {
            return Err(QueueError::MemoryTooSmall {
                needed: layout.total,
                have: mem.len(),
            });
        }
        let mut q = Self {
            mem,
            slots,
            layout,
            event_idx,
            free_head: 0,
            num_free: 0,
            in_flight: 0,
            avail_idx: 0,
            published_idx: 0,
            notified_avail: 0,
            last_used: 0,
            seen_used: 0,
            interrupts_enabled: true,
            fault: None,
            ignored_lengths: 0,
            fixed: false,
            indirect: None,
            indirect_entries: 0,
            common_first: None,
        };
        q.init();
        Ok(q)
    }

    /// From now on the caller names the descriptor of each chain, one buffer each
    /// ([`Self::stage_fixed`]), as a receive ring with one buffer per entry does: descriptor `i`
    /// keeps buffer `i`, so posting it again writes only its available-ring entry. The other
    /// staging calls are refused ([`QueueError::WrongMode`]). Only with nothing in flight.
    pub fn use_fixed_descriptors(&mut self) -> Result<(), QueueError> {
        if self.in_flight != 0 || self.avail_idx != self.published_idx {
            return Err(QueueError::WrongMode);
        }
        // What the slots kept until now (chain tails) describes no descriptor as written.
        for slot in self.slots.as_mut().iter_mut() {
            slot.written = [0; 2];
        }
        self.fixed = true;
        Ok(())
    }

    /// From now on a device-readable chain of 2 to `entries` buffers ([`Self::stage_readable`])
    /// goes in an indirect table in `tables` (`VIRTIO_F_INDIRECT_DESC`, which the caller
    /// negotiated): one ring descriptor per chain, however many buffers it has, so that a
    /// mapped frame in many pieces does not take as many ring entries. `tables` holds one
    /// table of `entries` descriptors per ring descriptor (16-aligned, as the spec requires).
    /// Longer chains, and the other staging calls, still link ring descriptors. Not with fixed
    /// descriptors, and only with nothing in flight. Each table starts with the common first
    /// buffer, if there is one ([`Self::set_common_first`]).
    pub fn use_indirect_tables(&mut self, tables: M, entries: u16) -> Result<(), QueueError> {
        if self.fixed || self.in_flight != 0 || self.avail_idx != self.published_idx {
            return Err(QueueError::WrongMode);
        }
        // A chain is at most the queue size long, in a table too (virtio 1.2, 2.7.5.3.1).
        if entries < 2 || entries > self.layout.size {
            return Err(QueueError::BadSize(entries));
        }
        let needed = 16 * usize::from(entries) * usize::from(self.layout.size);
        if tables.len() < needed || !tables.device_address().is_multiple_of(16) {
            return Err(QueueError::MemoryTooSmall {
                needed,
                have: tables.len(),
            });
        }
        // Nothing is in flight: no slot keeps a tail, and what they say of the ring descriptors
        // and tables is about the tables before these, if any.
        for slot in self.slots.as_mut().iter_mut() {
            slot.written = [0; 2];
        }
        self.indirect = Some(tables);
        self.indirect_entries = entries;
        self.write_common_first();
        Ok(())
    }

    /// Names the buffer most device-readable chains start with ([`First::Common`]): a header
    /// that never changes, written into every indirect table once and then by a chain only
    /// when another first buffer was there. Only with nothing in flight.
    pub fn set_common_first(&mut self, first: (u64, u32)) -> Result<(), QueueError> {
        if self.in_flight != 0 || self.avail_idx != self.published_idx {
            return Err(QueueError::WrongMode);
        }
        self.common_first = Some(first);
        self.write_common_first();
        Ok(())
    }

    /// Writes the common first buffer into every indirect table (if both are there).
    fn write_common_first(&mut self) {
        let (Some(tables), Some(first)) = (&self.indirect, self.common_first) else {
            return;
        };
        let words = descriptor(&readable(first), Some(1));
        let size = usize::from(self.layout.size);
        let stride = 16 * usize::from(self.indirect_entries);
        for (i, slot) in self.slots.as_mut().iter_mut().take(size).enumerate() {
            tables.write_u64_pair(stride * i, words);
            slot.written[1] = COMMON_FIRST;
        }
    }

    /// Ring descriptors a device-readable chain of `buffers` buffers takes
    /// ([`Self::stage_readable`]): one in an indirect table, otherwise one per buffer.
    #[inline(always)]
    pub fn descriptors_for(&self, buffers: usize) -> usize {
        if buffers >= 2 && buffers <= usize::from(self.indirect_entries) {
            1
        } else {
            buffers
        }
    }

    /// Stages buffer `b` as a chain of one under descriptor `idx` (a queue of fixed
    /// descriptors); the descriptor is written only when it does not already describe `b`.
    #[inline(always)]
    pub fn stage_fixed(&mut self, idx: u16, b: &Buffer) -> Result<(), QueueError> {
        if let Some(f) = self.fault {
            return Err(f);
        }
        if !self.fixed {
            return Err(QueueError::WrongMode);
        }
        let table = self.layout.desc;
        let Some(s) = self
            .slots
            .as_mut()
            .get_mut(usize::from(idx))
            .filter(|s| idx < self.layout.size && s.chain_len == 0)
        else {
            return Err(QueueError::DescriptorInUse { idx });
        };
        let words = descriptor(b, None);
        let want = [words[0], words[1] | WRITTEN];
        if s.written != want {
            self.mem
                .write_u64_pair(table + 16 * usize::from(idx), words);
            s.written = want;
        }
        // No `tail`: a fixed descriptor never joins a free list.
        s.chain_len = 1;
        s.capacity = b.writable_len();
        self.num_free -= 1;
        self.in_flight += 1;
        self.enqueue(idx);
        Ok(())
    }

    fn init(&mut self) {
        let size = self.layout.size;
        let slots = self.slots.as_mut();
        for (i, s) in slots.iter_mut().take(usize::from(size)).enumerate() {
            // The last entry's `next` is never followed: `num_free` bounds every walk.
            *s = Slot {
                next: (i as u16).wrapping_add(1),
                ..Slot::EMPTY
            };
        }
        let zero = [0u8; 64];
        let mut off = 0;
        while off < self.layout.total {
            let n = (self.layout.total - off).min(zero.len());
            self.mem.write_bytes(off, &zero[..n]);
            off += n;
        }
        self.free_head = 0;
        self.num_free = size;
        self.in_flight = 0;
        self.avail_idx = 0;
        self.published_idx = 0;
        self.notified_avail = 0;
        self.last_used = 0;
        self.seen_used = 0;
        self.interrupts_enabled = true;
        self.fault = None;
        self.mem.fence();
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }
    pub fn size(&self) -> u16 {
        self.layout.size
    }
    /// Free descriptors (a chain of `n` buffers needs `n`).
    pub fn num_free(&self) -> u16 {
        self.num_free
    }
    /// Chains the device holds.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }
    /// Used entries of chains without device-writable buffers whose non-zero length was ignored
    /// (reported as 0) since the queue was created.
    pub fn ignored_used_lengths(&self) -> u64 {
        self.ignored_lengths
    }
    /// The device fault that stopped the queue, if any.
    pub fn fault(&self) -> Option<QueueError> {
        self.fault
    }
    pub fn memory(&self) -> &M {
        &self.mem
    }
    /// For `queue_desc`.
    pub fn desc_address(&self) -> u64 {
        self.mem.device_address() + self.layout.desc as u64
    }
    /// For `queue_driver` (the available ring).
    pub fn driver_address(&self) -> u64 {
        self.mem.device_address() + self.layout.avail as u64
    }
    /// For `queue_device` (the used ring).
    pub fn device_address(&self) -> u64 {
        self.mem.device_address() + self.layout.used as u64
    }

    fn used_event_offset(&self) -> usize {
        self.layout.avail + 4 + 2 * usize::from(self.layout.size)
    }
    fn avail_event_offset(&self) -> usize {
        self.layout.used + 4 + 8 * usize::from(self.layout.size)
    }
    fn device_used_idx(&self) -> u16 {
        self.mem.read_u16(self.layout.used + 2)
    }

    /// Makes `bufs` available to the device as one chain and publishes it; returns the head,
    /// which [`Self::pop_used`] gives back when the device is done. Call [`Self::should_notify`]
    /// afterwards (once per batch) to know whether to ring the doorbell.
    pub fn add(&mut self, bufs: &[Buffer]) -> Result<u16, QueueError> {
        let head = self.stage(bufs)?;
        self.publish();
        Ok(head)
    }

    /// As [`Self::add`], without publishing: the chain becomes visible to the device at the next
    /// [`Self::publish`], [`Self::should_notify`] or [`Self::pop_used`], so that a batch costs
    /// one barrier and one index write instead of one per chain. Until then the device cannot
    /// return it (a [`Self::reclaim_after_reset`] still hands it back).
    #[inline(always)]
    pub fn stage(&mut self, bufs: &[Buffer]) -> Result<u16, QueueError> {
        match bufs {
            // The hot path (one buffer a chain, as every copied frame and receive buffer is),
            // kept apart from the general loop: straight-line code, inlined into the caller.
            [one] => self.stage_one(one),
            _ => self.stage_slice(bufs),
        }
    }

    /// [`Self::stage`] of a chain of any length.
    fn stage_slice(&mut self, bufs: &[Buffer]) -> Result<u16, QueueError> {
        if let Some(f) = self.fault {
            return Err(f);
        }
        if self.fixed {
            return Err(QueueError::WrongMode);
        }
        let Some((last, rest)) = bufs.split_last() else {
            return Err(QueueError::EmptyChain);
        };
        if bufs.len() > usize::from(self.num_free) {
            return Err(QueueError::NoSpace {
                needed: bufs.len(),
                free: self.num_free,
            });
        }
        if bufs
            .windows(2)
            .any(|w| w[0].device_writable && !w[1].device_writable)
        {
            return Err(QueueError::ReadableAfterWritable);
        }
        let head = self.free_head;
        let mut idx = head;
        let mut capacity = 0u32;
        let slots = self.slots.as_mut();
        // `num_free` covers the chain, so every `next` followed below is a free descriptor.
        for b in rest {
            let s = &mut slots[usize::from(idx)];
            let next = s.next;
            // Its ring descriptor no longer refers to its table.
            s.written[0] = 0;
            capacity = capacity.saturating_add(b.writable_len());
            write_descriptor(&self.mem, self.layout.desc, idx, b, Some(next));
            idx = next;
        }
        let s = &mut slots[usize::from(idx)];
        self.free_head = s.next;
        s.written[0] = 0;
        capacity = capacity.saturating_add(last.writable_len());
        write_descriptor(&self.mem, self.layout.desc, idx, last, None);
        self.commit(head, idx, bufs.len() as u16, capacity);
        Ok(head)
    }

    /// [`Self::stage`] of a chain of one buffer.
    #[inline(always)]
    fn stage_one(&mut self, b: &Buffer) -> Result<u16, QueueError> {
        if let Some(f) = self.fault {
            return Err(f);
        }
        if self.fixed {
            return Err(QueueError::WrongMode);
        }
        if self.num_free == 0 {
            return Err(QueueError::NoSpace { needed: 1, free: 0 });
        }
        let head = self.free_head;
        let s = &mut self.slots.as_mut()[usize::from(head)];
        // `num_free` is not 0: `head` is a free descriptor, `next` the free list's rest.
        self.free_head = s.next;
        s.chain_len = 1;
        s.set_tail(head);
        s.capacity = b.writable_len();
        write_descriptor(&self.mem, self.layout.desc, head, b, None);
        self.num_free -= 1;
        self.in_flight += 1;
        self.enqueue(head);
        Ok(head)
    }

    /// As [`Self::stage`], for a chain the device only reads (a transmit chain): `first`, then
    /// `rest` more buffers that `buffer(i)` gives in order as (address, length), built on the
    /// fly, without an array of them. Nothing writable: no capacity to add up and no order of
    /// readable and writable buffers to check, per buffer, on the mapped send path.
    #[inline(always)]
    pub fn stage_readable(
        &mut self,
        first: First,
        rest: usize,
        buffer: impl Fn(usize) -> (u64, u32),
    ) -> Result<u16, QueueError> {
        if let Some(f) = self.fault {
            return Err(f);
        }
        if self.fixed {
            return Err(QueueError::WrongMode);
        }
        if rest >= 1 && rest < usize::from(self.indirect_entries) {
            return self.stage_indirect(first, rest, buffer);
        }
        let first = match first {
            First::Buffer(addr, len) => (addr, len),
            First::Common => self.common_first.ok_or(QueueError::NoCommonFirst)?,
        };
        if rest >= usize::from(self.num_free) {
            return Err(QueueError::NoSpace {
                needed: rest.saturating_add(1),
                free: self.num_free,
            });
        }
        let len = rest as u16 + 1;
        let table = self.layout.desc;
        let head = self.free_head;
        let slots = self.slots.as_mut();
        // `num_free` covers the chain, so every `next` followed below is a free descriptor;
        // nothing of the queue's state changes until the chain is complete.
        let mut idx = head;
        let mut b = first;
        for i in 0..rest {
            let s = &mut slots[usize::from(idx)];
            let next = s.next;
            // Its ring descriptor no longer refers to its table.
            s.written[0] = 0;
            write_descriptor(&self.mem, table, idx, &readable(b), Some(next));
            idx = next;
            b = buffer(i);
        }
        let s = &mut slots[usize::from(idx)];
        self.free_head = s.next;
        s.written[0] = 0;
        write_descriptor(&self.mem, table, idx, &readable(b), None);
        // `commit`'s bookkeeping, here in line: on this path the call costs more than it does.
        let h = &mut slots[usize::from(head)];
        h.chain_len = len;
        h.set_tail(idx);
        h.capacity = 0;
        self.num_free -= len;
        self.in_flight += 1;
        self.enqueue(head);
        Ok(head)
    }

    /// [`Self::stage_readable`] into the head's indirect table (there is one, and the chain of
    /// `rest + 1` buffers fits it).
    #[inline(always)]
    fn stage_indirect(
        &mut self,
        first: First,
        rest: usize,
        buffer: impl Fn(usize) -> (u64, u32),
    ) -> Result<u16, QueueError> {
        if self.num_free == 0 {
            return Err(QueueError::NoSpace { needed: 1, free: 0 });
        }
        let Some(tables) = &self.indirect else {
            return Err(QueueError::WrongMode);
        };
        let head = self.free_head;
        let s = &mut self.slots.as_mut()[usize::from(head)];
        // The head's table: the chain's until the device hands the head back.
        let table = 16 * usize::from(self.indirect_entries) * usize::from(head);
        // What the table's first entry must become, and its mark (nothing: it is already).
        let write = match first {
            First::Common if s.written[1] == COMMON_FIRST => None,
            First::Common => Some((
                self.common_first.ok_or(QueueError::NoCommonFirst)?,
                COMMON_FIRST,
            )),
            First::Buffer(addr, len) => Some(((addr, len), 0)),
        };
        if let Some((first, mark)) = write {
            // In a table, `next` indexes the table (virtio 1.2, 2.7.5.3).
            tables.write_u64_pair(table, descriptor(&readable(first), Some(1)));
            s.written[1] = mark;
        }
        for i in 1..rest {
            let words = descriptor(&readable(buffer(i - 1)), Some(i as u16 + 1));
            tables.write_u64_pair(table + 16 * i, words);
        }
        let last = descriptor(&readable(buffer(rest - 1)), None);
        tables.write_u64_pair(table + 16 * rest, last);
        // The ring descriptor, unless it already refers to the table for as many entries: then
        // the slot says so, with itself as the tail, as this chain leaves it (anything else
        // there, a link's 0 or a longer chain's tail, differs).
        let refers = u64::from(head) | (u64::from(rest as u16 + 1) << RING_TABLE_SHIFT);
        if s.written[0] != refers {
            let ring = [
                tables.device_address() + table as u64,
                u64::from(16 * (rest as u32 + 1)) | (u64::from(DESC_F_INDIRECT) << 32),
            ];
            self.mem
                .write_u64_pair(self.layout.desc + 16 * usize::from(head), ring);
        }
        // `num_free` is not 0: `head` is a free descriptor, `next` the free list's rest.
        self.free_head = s.next;
        s.chain_len = 1;
        // Its own tail, and what its ring descriptor holds.
        s.written[0] = refers;
        s.capacity = 0;
        self.num_free -= 1;
        self.in_flight += 1;
        self.enqueue(head);
        Ok(head)
    }

    /// Books a chain of `len` descriptors from `head` (written, `free_head` past it) as in
    /// flight and puts it in the next available-ring entry (not yet published).
    fn commit(&mut self, head: u16, tail: u16, len: u16, capacity: u32) {
        let h = &mut self.slots.as_mut()[usize::from(head)];
        h.chain_len = len;
        h.set_tail(tail);
        h.capacity = capacity;
        self.num_free -= len;
        self.in_flight += 1;
        self.enqueue(head);
    }

    /// Puts `head` in the next available-ring entry (not yet published).
    #[inline(always)]
    fn enqueue(&mut self, head: u16) {
        let slot = usize::from(self.avail_idx & (self.layout.size - 1));
        self.mem.write_u16(self.layout.avail + 4 + 2 * slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
    }

    /// Makes the chains staged since the last publish visible to the device (`avail.idx`).
    #[inline(always)]
    pub fn publish(&mut self) {
        if self.published_idx == self.avail_idx {
            return;
        }
        // Descriptors and ring entries must be visible before the index that publishes them.
        self.mem.fence();
        self.published_idx = self.avail_idx;
        self.mem.write_u16(self.layout.avail + 2, self.avail_idx);
    }

    /// Publishes what is staged, then says whether the device wants a notification for the
    /// chains published since the last call (`avail_event` with `EVENT_IDX`, otherwise
    /// `VIRTQ_USED_F_NO_NOTIFY`).
    pub fn should_notify(&mut self) -> bool {
        self.publish();
        // The published index must be visible before the device's suppression state is read,
        // or both sides can decide the other one will act.
        self.mem.fence();
        let old = self.notified_avail;
        let new = self.avail_idx;
        self.notified_avail = new;
        if self.event_idx {
            let event = self.mem.read_u16(self.avail_event_offset());
            need_event(event, new, old)
        } else {
            new != old && self.mem.read_u16(self.layout.used) & USED_F_NO_NOTIFY == 0
        }
    }

    /// The next chain the device has finished, as `(head, bytes written)`, after checking the
    /// device's entry (bytes written is 0 for a chain without writable buffers, whatever the
    /// device reported). `Ok(None)`: nothing pending.
    #[inline(always)]
    pub fn pop_used(&mut self) -> Result<Option<(u16, u32)>, QueueError> {
        let mut popped = None;
        self.pop_each(1, |head, len| popped = Some((head, len)))?;
        Ok(popped)
    }

    /// Hands up to `max` chains the device finished to `f`, oldest first, as `(head, bytes
    /// written)` (checked as [`Self::pop_used`] checks them); returns how many. A device fault
    /// stops the walk: the chains handed over so far are the caller's, and the error follows.
    #[inline(always)]
    pub fn pop_each(
        &mut self,
        max: usize,
        mut f: impl FnMut(u16, u32),
    ) -> Result<usize, QueueError> {
        if let Some(f) = self.fault {
            return Err(f);
        }
        // A chain staged but not published is not the device's: a used entry naming it must
        // not free descriptors an available-ring entry still names (and `in_flight` must count
        // only what the device was given). Publishing first keeps both true; nothing is staged
        // on the usual paths, which publish before they reap.
        self.publish();
        let mut n = 0;
        let result = loop {
            if n == max {
                break Ok(n);
            }
            if self.seen_used == self.last_used {
                let used_idx = self.device_used_idx();
                if used_idx == self.last_used {
                    break Ok(n);
                }
                let pending = used_idx.wrapping_sub(self.last_used);
                if pending > self.in_flight {
                    break Err(self.set_fault(QueueError::UsedIndexJump {
                        used_idx,
                        last_used: self.last_used,
                        in_flight: self.in_flight,
                    }));
                }
                // The entries must not be read before the index that says they are there.
                self.mem.fence();
                self.seen_used = used_idx;
            }
            let slot = usize::from(self.last_used & (self.layout.size - 1));
            // One 8-byte access (the entries are 8-aligned, see `Layout`): `id` then `len`.
            let entry = self.mem.read_u64(self.layout.used + 4 + 8 * slot);
            let (id, len) = (entry as u32, (entry >> 32) as u32);
            if id >= u32::from(self.layout.size) {
                break Err(self.set_fault(QueueError::HeadOutOfRange { head: id }));
            }
            let head = id as u16;
            let s = self.slots.as_mut()[usize::from(head)];
            if s.chain_len == 0 {
                break Err(self.set_fault(QueueError::HeadNotInFlight { head }));
            }
            let len = if s.capacity == 0 && len != 0 {
                // A device-readable chain: nothing was written, whatever the device says.
                self.ignored_lengths += 1;
                0
            } else if len > s.capacity {
                break Err(self.set_fault(QueueError::LengthTooLarge {
                    head,
                    len,
                    capacity: s.capacity,
                }));
            } else {
                len
            };
            self.free_chain(head);
            self.last_used = self.last_used.wrapping_add(1);
            n += 1;
            f(head, len);
        };
        if n > 0 && self.event_idx && self.interrupts_enabled {
            // Ask for an interrupt at the next entry, not the ones just consumed.
            self.mem.write_u16(self.used_event_offset(), self.last_used);
            self.mem.fence();
        }
        result
    }

    fn set_fault(&mut self, e: QueueError) -> QueueError {
        self.fault = Some(e);
        e
    }

    /// Returns `head`'s chain to the free list by the driver's own record of it (never the ring).
    #[inline(always)]
    fn free_chain(&mut self, head: u16) {
        let free_head = self.free_head;
        let slots = self.slots.as_mut();
        let h = &mut slots[usize::from(head)];
        let n = h.chain_len;
        h.chain_len = 0;
        h.capacity = 0;
        if self.fixed {
            // No free list: the descriptor is the caller's to post again.
            self.num_free += 1;
            self.in_flight -= 1;
            return;
        }
        // The chain's own links are intact (`stage` wrote them): only its end changes.
        let tail = h.tail();
        slots[usize::from(tail)].next = free_head;
        self.free_head = head;
        self.num_free += n;
        self.in_flight -= 1;
    }

    /// Asks the device not to interrupt for this queue (while a DPC drains it). Only a hint: the
    /// device may still interrupt.
    pub fn disable_interrupts(&mut self) {
        self.interrupts_enabled = false;
        if self.event_idx {
            // An event one behind what is consumed is never crossed before the 16-bit index
            // wraps, which cannot happen with at most `size` entries outstanding.
            self.mem
                .write_u16(self.used_event_offset(), self.last_used.wrapping_sub(1));
        } else {
            self.mem.write_u16(self.layout.avail, AVAIL_F_NO_INTERRUPT);
        }
    }

    /// Re-enables interrupts and returns whether used entries are already pending: if so, an
    /// interrupt for them may never come, so the caller must drain again (and usually disable
    /// interrupts again) instead of going idle.
    pub fn enable_interrupts(&mut self) -> bool {
        self.interrupts_enabled = true;
        if self.event_idx {
            self.mem.write_u16(self.used_event_offset(), self.last_used);
        } else {
            self.mem.write_u16(self.layout.avail, 0);
        }
        // The re-enable must be visible before `used.idx` is sampled.
        self.mem.fence();
        self.device_used_idx() != self.last_used
    }

    /// After the device was reset (so it no longer touches the ring): hands every chain still in
    /// flight to `reclaim` (by head, to free its buffers), then reinitializes the ring so the
    /// queue can be programmed again. Also clears a device fault.
    pub fn reclaim_after_reset(&mut self, mut reclaim: impl FnMut(u16)) {
        let size = usize::from(self.layout.size);
        for (head, s) in self.slots.as_mut().iter().take(size).enumerate() {
            if s.chain_len != 0 {
                reclaim(head as u16);
            }
        }
        self.init();
    }
}

/// Descriptor `idx` of the table at `table`, describing `b`, linked to `next` if there is one:
/// one 16-byte write (the descriptor is the driver's until its chain is published).
#[inline(always)]
fn write_descriptor<M: DeviceMemory>(
    mem: &M,
    table: usize,
    idx: u16,
    b: &Buffer,
    next: Option<u16>,
) {
    mem.write_u64_pair(table + 16 * usize::from(idx), descriptor(b, next));
}

/// A buffer the device reads, from `(address, length)`.
#[inline(always)]
fn readable((addr, len): (u64, u32)) -> Buffer {
    Buffer {
        addr,
        len,
        device_writable: false,
    }
}

/// The descriptor of `b` as two 8-byte words: `addr`, then `len`, `flags` and `next`
/// (little-endian, so `len` in the low 32 bits, `next` in the top 16).
#[inline(always)]
fn descriptor(b: &Buffer, next: Option<u16>) -> [u64; 2] {
    let mut flags = if b.device_writable { DESC_F_WRITE } else { 0 };
    if next.is_some() {
        flags |= DESC_F_NEXT;
    }
    [
        b.addr,
        u64::from(b.len) | (u64::from(flags) << 32) | (u64::from(next.unwrap_or(0)) << 48),
    ]
}

/// `vring_need_event`: the device asked to be notified when the index passes `event`, and it
/// moved from `old` to `new`.
fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_follows_the_spec_formulas() {
        for size in [1u16, 2, 4, 8, 256, 1024, 32768] {
            let l = Layout::new(size).unwrap();
            let n = usize::from(size);
            assert_eq!(l.desc, 0);
            assert_eq!(l.avail, 16 * n);
            assert!(l.used >= l.avail + 6 + 2 * n && l.used.is_multiple_of(4));
            assert!(l.used - (l.avail + 6 + 2 * n) < 8);
            // The entries (4 bytes in) are 8-aligned.
            assert!((l.used + 4).is_multiple_of(8));
            assert_eq!(l.total, l.used + 6 + 8 * n);
        }
        assert_eq!(Layout::new(1).unwrap().used, 28);
        for bad in [0u16, 3, 6, 100, 65535] {
            assert_eq!(Layout::new(bad), Err(QueueError::BadSize(bad)));
        }
    }

    #[test]
    fn need_event_matches_the_spec_expression() {
        // Notification when `event` lies in [old, new).
        assert!(need_event(5, 6, 5));
        assert!(!need_event(5, 5, 4));
        assert!(need_event(0, 1, 65535));
        assert!(!need_event(7, 6, 0));
        assert!(need_event(3, 6, 0));
        assert!(!need_event(3, 6, 6));
    }
}
