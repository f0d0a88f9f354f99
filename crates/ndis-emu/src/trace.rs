//! The readable event log: registration, grants, every ISR and DPC with its CPU and IRQL. Off by
//! default; golden tests turn it on and compare lines.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    DriverRegistered {
        major: u8,
        minor: u8,
        revision: u8,
    },
    DriverDeregistered,
    AdapterInitialized {
        adapter: usize,
        status: i32,
    },
    AdapterHalted {
        adapter: usize,
    },
    InterruptRegistered {
        adapter: usize,
        grant: String,
    },
    InterruptDeregistered {
        adapter: usize,
    },
    Connected {
        device: usize,
        version: u32,
        what: String,
    },
    Disconnected {
        device: usize,
    },
    Isr {
        cpu: usize,
        irql: u8,
        message: Option<u32>,
        claimed: bool,
        dpcs: String,
    },
    InterruptPended {
        cpu: usize,
        message: Option<u32>,
    },
    Dpc {
        cpu: usize,
        irql: u8,
        message: Option<u32>,
        context: bool,
        more_pending: bool,
    },
    Synchronize {
        cpu: usize,
        irql: u8,
        message: u32,
    },
}

fn msg(m: &Option<u32>) -> String {
    m.map_or("line".to_string(), |m| format!("msg {m}"))
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::DriverRegistered {
                major,
                minor,
                revision,
            } => {
                write!(
                    f,
                    "driver registered: NDIS {major}.{minor}, characteristics revision {revision}"
                )
            }
            Event::DriverDeregistered => write!(f, "driver deregistered"),
            Event::AdapterInitialized { adapter, status } => {
                write!(
                    f,
                    "adapter {adapter} initialize -> {:#010x}",
                    *status as u32
                )
            }
            Event::AdapterHalted { adapter } => write!(f, "adapter {adapter} halted"),
            Event::InterruptRegistered { adapter, grant } => {
                write!(f, "adapter {adapter} interrupt registered: {grant}")
            }
            Event::InterruptDeregistered { adapter } => {
                write!(f, "adapter {adapter} interrupt deregistered")
            }
            Event::Connected {
                device,
                version,
                what,
            } => {
                write!(
                    f,
                    "device {device} IoConnectInterruptEx -> version {version}: {what}"
                )
            }
            Event::Disconnected { device } => write!(f, "device {device} IoDisconnectInterruptEx"),
            Event::Isr {
                cpu,
                irql,
                message,
                claimed,
                dpcs,
            } => write!(
                f,
                "cpu{cpu} irql {irql:>2} ISR {} -> {}{}",
                msg(message),
                if *claimed { "TRUE" } else { "FALSE" },
                if dpcs.is_empty() {
                    String::new()
                } else {
                    format!(", DPC on {dpcs}")
                }
            ),
            Event::InterruptPended { cpu, message } => {
                write!(f, "cpu{cpu} {} pended (IRQL or lock busy)", msg(message))
            }
            Event::Dpc {
                cpu,
                irql,
                message,
                context,
                more_pending,
            } => write!(
                f,
                "cpu{cpu} irql {irql:>2} DPC {}{}{}",
                msg(message),
                if *context { " (driver context)" } else { "" },
                if *more_pending {
                    " -> MoreNblsPending, requeued"
                } else {
                    ""
                }
            ),
            Event::Synchronize { cpu, irql, message } => {
                write!(f, "cpu{cpu} irql {irql:>2} synchronize msg {message}")
            }
        }
    }
}
