//! A classic libpcap capture file (the 24-byte global header and 16-byte record headers), written
//! by hand: the format is fixed since 1998 and a dependency would buy nothing.

use std::io::{self, Write};

/// `LINKTYPE_ETHERNET`.
const LINKTYPE_ETHERNET: u32 = 1;
const SNAPLEN: u32 = 65535;

pub(crate) struct PcapWriter {
    out: Box<dyn Write>,
    /// Virtual time: record n is stamped n microseconds after the epoch, so captures of the same
    /// test are byte-identical from run to run.
    records: u64,
}

impl PcapWriter {
    pub fn new(mut out: Box<dyn Write>) -> io::Result<Self> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        header.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        header.extend_from_slice(&SNAPLEN.to_le_bytes());
        header.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter { out, records: 0 })
    }

    /// Appends one frame. A failing sink is the test's problem, not the device's: the error is
    /// dropped and the capture simply stops growing.
    pub fn record(&mut self, frame: &[u8]) {
        let t = self.records;
        self.records += 1;
        let captured = frame.len().min(SNAPLEN as usize);
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&((t / 1_000_000) as u32).to_le_bytes());
        header[4..8].copy_from_slice(&((t % 1_000_000) as u32).to_le_bytes());
        header[8..12].copy_from_slice(&(captured as u32).to_le_bytes());
        header[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        let _ = self
            .out
            .write_all(&header)
            .and_then(|()| self.out.write_all(&frame[..captured]))
            .and_then(|()| self.out.flush());
    }
}
