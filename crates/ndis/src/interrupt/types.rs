//! The values the interrupt layer speaks in: message ids, processor sets, the grant, ISR outcomes.

use ndis_sys as sys;

/// Index into the granted message table (0..MessageCount).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u32);

/// Where an interrupt came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The line (line-based grant).
    Line,
    /// One message of a message-based grant.
    Message(MessageId),
}

/// A set of processors within one processor group (`GROUP_AFFINITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessorSet {
    group: u16,
    mask: usize,
}

impl ProcessorSet {
    pub const EMPTY: Self = Self { group: 0, mask: 0 };

    /// Processor `number` of `group`. Numbers at or beyond 64 give the empty set.
    pub const fn single(group: u16, number: u32) -> Self {
        let mask = if number < usize::BITS {
            1usize << number
        } else {
            0
        };
        Self { group, mask }
    }

    pub const fn from_mask(group: u16, mask: usize) -> Self {
        Self { group, mask }
    }

    pub const fn group(self) -> u16 {
        self.group
    }

    pub const fn mask(self) -> usize {
        self.mask
    }

    pub const fn is_empty(self) -> bool {
        self.mask == 0
    }

    pub const fn contains(self, group: u16, number: u32) -> bool {
        self.group == group && number < usize::BITS && self.mask & (1 << number) != 0
    }

    /// The union with `other`; `None` when they lie in different groups (one
    /// `NdisMQueueDpcEx` call serves one group).
    pub const fn union(self, other: Self) -> Option<Self> {
        if self.mask == 0 {
            Some(other)
        } else if other.mask == 0 || self.group == other.group {
            Some(Self {
                group: self.group,
                mask: self.mask | other.mask,
            })
        } else {
            None
        }
    }

    pub(crate) fn to_raw(self) -> sys::GROUP_AFFINITY {
        sys::GROUP_AFFINITY {
            Mask: self.mask,
            Group: self.group,
            Reserved: [0; 3],
        }
    }
}

/// `KINTERRUPT_MODE` of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerMode {
    LevelSensitive,
    Latched,
    Other(i32),
}

/// `KINTERRUPT_POLARITY` of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    Unknown,
    ActiveHigh,
    ActiveLow,
    ActiveBoth,
    Other(i32),
}

/// One granted message, as NDIS describes it in the message table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageInfo {
    pub id: MessageId,
    pub vector: u32,
    pub irql: u8,
    /// The processors this message may interrupt. The table carries no group number: it is the
    /// group of the interrupt's processors, group 0 on machines with one group.
    pub affinity: ProcessorSet,
    pub mode: TriggerMode,
    pub polarity: Polarity,
    pub address: u64,
    pub data: u32,
}

impl MessageInfo {
    pub(crate) fn from_raw(id: u32, e: &sys::IO_INTERRUPT_MESSAGE_INFO_ENTRY) -> Self {
        MessageInfo {
            id: MessageId(id),
            vector: e.Vector,
            irql: e.Irql,
            affinity: ProcessorSet::from_mask(0, e.TargetProcessorSet),
            mode: match e.Mode {
                sys::LevelSensitive => TriggerMode::LevelSensitive,
                sys::Latched => TriggerMode::Latched,
                m => TriggerMode::Other(m),
            },
            polarity: match e.Polarity {
                sys::InterruptPolarityUnknown => Polarity::Unknown,
                sys::InterruptActiveHigh => Polarity::ActiveHigh,
                sys::InterruptActiveLow => Polarity::ActiveLow,
                sys::InterruptActiveBoth => Polarity::ActiveBoth,
                p => Polarity::Other(p),
            },
            address: e.MessageAddress as u64,
            data: e.MessageData,
        }
    }
}

/// What NDIS granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant<'a> {
    /// Line-based (also when the driver offered MSI: NDIS may always fall back).
    Line,
    /// Message-based: the messages actually allocated (often fewer than the device asked for).
    Messages(&'a [MessageInfo]),
}

impl Grant<'_> {
    /// 0 for a line-based grant.
    pub fn message_count(&self) -> u32 {
        match self {
            Grant::Line => 0,
            Grant::Messages(m) => m.len() as u32,
        }
    }
}

/// What an ISR (for one queue) reports. Replaces the raw BOOLEAN return and the two out-pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsrOutcome {
    /// Not raised by this device (shared line): NDIS tries the next ISR.
    NotMine,
    /// Raised by this device; nothing left for a DPC.
    Handled,
    /// Raised by this device; run the DPC on this processor.
    QueueDpc,
    /// Raised by this device; run the DPC on these processors (NdisMQueueDpcEx).
    QueueDpcOn(ProcessorSet),
}

impl IsrOutcome {
    /// Combines the outcomes of the queues one interrupt serves.
    pub(crate) fn combine(self, other: Self) -> Self {
        use IsrOutcome::*;
        match (self, other) {
            (NotMine, x) | (x, NotMine) => x,
            (Handled, x) | (x, Handled) => x,
            (QueueDpc, _) | (_, QueueDpc) => QueueDpc,
            (QueueDpcOn(a), QueueDpcOn(b)) => match a.union(b) {
                Some(u) => QueueDpcOn(u),
                // Different groups: the current processor's default DPC reaches every queue.
                None => QueueDpc,
            },
        }
    }
}

/// The mapping policy of queues onto granted messages: queue `q` is served by message `q % k`
/// (k = messages granted), so with at least as many messages as queues each queue has its own
/// message and with fewer, messages are shared round-robin (message `m` serves queues
/// `m, m + k, m + 2k, ..`). A line-based grant serves every queue. Drivers that prefer to run
/// fewer queues when fewer messages arrive (NetKVM's choice) size their queue list from
/// [`Grant::message_count`] before enabling the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueMap {
    queues: usize,
    messages: u32,
}

impl QueueMap {
    pub const fn new(queues: usize, messages: u32) -> Self {
        Self { queues, messages }
    }

    /// The message serving `queue` (None for a line-based grant).
    pub const fn message_of(&self, queue: usize) -> Option<MessageId> {
        if self.messages == 0 {
            None
        } else {
            Some(MessageId((queue % self.messages as usize) as u32))
        }
    }

    /// The queues `source` serves, in increasing order.
    pub fn queues_of(&self, source: Source) -> impl Iterator<Item = usize> + use<> {
        let (start, step) = match source {
            Source::Line => (0, 1),
            Source::Message(MessageId(m)) => (m as usize, self.messages.max(1) as usize),
        };
        let end = if matches!(source, Source::Message(_)) && self.messages == 0 {
            0
        } else {
            self.queues
        };
        (start..end).step_by(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn one_message_per_queue_when_enough_were_granted() {
        let map = QueueMap::new(4, 10);
        for q in 0..4 {
            assert_eq!(map.message_of(q), Some(MessageId(q as u32)));
            assert_eq!(
                map.queues_of(Source::Message(MessageId(q as u32)))
                    .collect::<Vec<_>>(),
                [q]
            );
        }
        assert_eq!(
            map.queues_of(Source::Message(MessageId(7))).count(),
            0,
            "spare messages serve nothing"
        );
    }

    #[test]
    fn fewer_messages_are_shared_round_robin() {
        let map = QueueMap::new(5, 2);
        assert_eq!(
            map.queues_of(Source::Message(MessageId(0)))
                .collect::<Vec<_>>(),
            [0, 2, 4]
        );
        assert_eq!(
            map.queues_of(Source::Message(MessageId(1)))
                .collect::<Vec<_>>(),
            [1, 3]
        );
        assert_eq!(map.message_of(3), Some(MessageId(1)));
    }

    #[test]
    fn a_line_serves_every_queue() {
        let map = QueueMap::new(3, 0);
        assert_eq!(map.queues_of(Source::Line).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(map.message_of(1), None);
    }

    #[test]
    fn outcomes_combine_to_the_strongest_request() {
        use IsrOutcome::*;
        let a = ProcessorSet::single(0, 1);
        let b = ProcessorSet::single(0, 3);
        assert_eq!(NotMine.combine(NotMine), NotMine);
        assert_eq!(NotMine.combine(Handled), Handled);
        assert_eq!(Handled.combine(QueueDpcOn(a)), QueueDpcOn(a));
        assert_eq!(
            QueueDpcOn(a).combine(QueueDpcOn(b)),
            QueueDpcOn(ProcessorSet::from_mask(0, 0b1010))
        );
        assert_eq!(QueueDpcOn(a).combine(QueueDpc), QueueDpc);
        assert_eq!(
            QueueDpcOn(a).combine(QueueDpcOn(ProcessorSet::single(1, 0))),
            QueueDpc
        );
    }

    #[test]
    fn processor_sets() {
        assert!(ProcessorSet::single(0, 64).is_empty());
        assert!(ProcessorSet::single(2, 5).contains(2, 5));
        assert!(!ProcessorSet::single(2, 5).contains(0, 5));
    }
}
