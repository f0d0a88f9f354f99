//! Registry keywords as values: a keyword's name together with how the INF's `Ndi\params`
//! declares it (an integer range with its default, an enumeration with its values and default,
//! or free text). A driver reads its keywords through these constants ([`Keyword::read`]), and
//! a test of its INF checks each declaration against the same constants, so the two cannot
//! drift apart.

use crate::config::Configuration;
use crate::irql::Passive;

/// One registry keyword and its declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyword {
    /// The registry value name (`*ReceiveBuffers`, `NetworkAddress`, ...).
    pub name: &'static str,
    pub kind: Kind,
}

/// How a keyword is declared (`Ndi\params\<name>`, `type`) and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `type "int"` with `default`, `min` and `max`: read clamped into `min..=max` (the advanced
    /// property page may hold anything), `default` when absent or not a number.
    Int { min: u32, max: u32, default: u32 },
    /// `type "enum"` with one `enum` entry per value and `default` among them: read as the value
    /// when it is one of `values`, `default` otherwise (absent, not a number, not listed).
    Enum {
        values: &'static [u32],
        default: u32,
    },
    /// `type "edit"`: free text, read with its own call (`NetworkAddress` with
    /// [`Configuration::read_network_address`]), not as a number.
    Text,
}

impl Keyword {
    /// An integer keyword; `min <= default <= max` (checked at compile time in a constant).
    pub const fn int(name: &'static str, min: u32, max: u32, default: u32) -> Keyword {
        assert!(
            min <= default && default <= max,
            "default outside min..=max"
        );
        Keyword {
            name,
            kind: Kind::Int { min, max, default },
        }
    }

    /// An enumeration keyword; `default` is one of `values` (checked at compile time in a
    /// constant).
    pub const fn enumeration(name: &'static str, values: &'static [u32], default: u32) -> Keyword {
        let mut i = 0;
        while i < values.len() && values[i] != default {
            i += 1;
        }
        assert!(i < values.len(), "default not among the values");
        Keyword {
            name,
            kind: Kind::Enum { values, default },
        }
    }

    /// A free-text keyword.
    pub const fn text(name: &'static str) -> Keyword {
        Keyword {
            name,
            kind: Kind::Text,
        }
    }

    /// The value a number keyword takes when the registry has none (None for text).
    pub const fn default(&self) -> Option<u32> {
        match self.kind {
            Kind::Int { default, .. } | Kind::Enum { default, .. } => Some(default),
            Kind::Text => None,
        }
    }

    /// The value the driver runs with, as [`Kind`] says: an integer clamped into its range, an
    /// enumeration's value if listed, otherwise the default. A text keyword has no number: it
    /// reads as 0 without looking at the registry (read it with its own call).
    pub fn read(&self, config: &Configuration<'_>, passive: &Passive<'_>) -> u32 {
        match self.kind {
            Kind::Int { min, max, default } => {
                config.read_u32_in(self.name, min..=max, default, passive)
            }
            Kind::Enum { values, default } => config
                .read_u32(self.name, passive)
                .filter(|v| values.contains(v))
                .unwrap_or(default),
            Kind::Text => 0,
        }
    }
}

/// The standardized checksum-offload keywords ([`crate::offload::CHECKSUM_KEYWORDS`]) as
/// [`ChecksumOffload::from_keywords`](crate::offload::ChecksumOffload::from_keywords) reads
/// them: 0 disabled, 1 Tx, 2 Rx, 3 Rx and Tx (the default, also for anything else).
pub const CHECKSUM_OFFLOAD: [Keyword; 5] = {
    const VALUES: &[u32] = &[0, 1, 2, 3];
    let names = crate::offload::CHECKSUM_KEYWORDS;
    [
        Keyword::enumeration(names[0], VALUES, 3),
        Keyword::enumeration(names[1], VALUES, 3),
        Keyword::enumeration(names[2], VALUES, 3),
        Keyword::enumeration(names[3], VALUES, 3),
        Keyword::enumeration(names[4], VALUES, 3),
    ]
};

/// The large-send keywords ([`crate::offload::LSO_KEYWORDS`]) as
/// [`LargeSendOffload::from_keywords`](crate::offload::LargeSendOffload::from_keywords) reads
/// them: 0 disabled, 1 enabled (the default, also for anything else).
pub const LARGE_SEND_OFFLOAD: [Keyword; 2] = {
    const VALUES: &[u32] = &[0, 1];
    let names = crate::offload::LSO_KEYWORDS;
    [
        Keyword::enumeration(names[0], VALUES, 1),
        Keyword::enumeration(names[1], VALUES, 1),
    ]
};

/// The RSS keywords: `*RSS` (0 off, 1 on; default on), `*RssBaseProcNumber` (0..=63),
/// `*MaxRssProcessors` (1..=64, default 16) and `*RssProfile` (1 ClosestProcessor to 5
/// ConservativeScaling, default 1). `*NumRssQueues` is the driver's own (its queue count).
pub const RSS: [Keyword; 4] = [
    Keyword::enumeration("*RSS", &[0, 1], 1),
    Keyword::int("*RssBaseProcNumber", 0, 63, 0),
    Keyword::int("*MaxRssProcessors", 1, 64, 16),
    Keyword::enumeration("*RssProfile", &[1, 2, 3, 4, 5], 1),
];
