//! `driver-package` on hostile INF/INX input: the text decoder (UTF-8, UTF-8 with BOM,
//! UTF-16LE with BOM, and whatever else the bytes are), the INF reader, the NIC checker at
//! both stages and the stamper.
//!
//! Properties: undecodable bytes are refused with a message, never a panic; text decodes back
//! from its own encoding byte-exact (encode, decode, encode is a fixed point, and the
//! encoding is kept); every line the reader, the checker and the stamper report lies in the
//! file; every finding and error says something; a stamped INF decodes, carries the
//! `DriverVer` and `CatalogFile` it was stamped with, in the encoding asked for, and stamps
//! again to the same bytes.
#![no_main]

use driver_package::check::{self, CheckOptions, Stage};
use driver_package::inf::Inf;
use driver_package::stamp::{self, DriverDate, DriverVersion, StampOptions};
use driver_package::text::{self, Encoding};
use libfuzzer_sys::fuzz_target;

fn utf16le(text: &str) -> Vec<u8> {
    let mut b = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        b.extend_from_slice(&u.to_le_bytes());
    }
    b
}

fn lines_ok(inf: &Inf) {
    let n = inf.lines.max(1);
    for s in &inf.sections {
        assert!(
            (1..=n).contains(&s.line),
            "section {} at line {} of {n}",
            s.name,
            s.line
        );
        for e in &s.entries {
            assert!((1..=n).contains(&e.line), "entry at line {} of {n}", e.line);
        }
    }
    for e in &inf.syntax_errors {
        assert!(
            (1..=n).contains(&e.line) && !e.message.is_empty(),
            "{e:?} of {n}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&how, body)) = data.split_first() else {
        return;
    };
    // The bytes as they are, or the body (as text) in each encoding an INX comes in.
    let bytes = match how % 4 {
        0 => body.to_vec(),
        1 => String::from_utf8_lossy(body).into_owned().into_bytes(),
        2 => [
            &[0xEF, 0xBB, 0xBF][..],
            String::from_utf8_lossy(body).as_bytes(),
        ]
        .concat(),
        _ => utf16le(&String::from_utf8_lossy(body)),
    };
    let (text, encoding) = match text::decode(&bytes) {
        Ok(d) => d,
        Err(e) => {
            assert!(how % 4 == 0, "text we encoded was refused: {e}");
            assert!(!e.to_string().is_empty());
            return;
        }
    };

    // Encoding round trip.
    for forced in [None, Some(Encoding::Utf8Bom), Some(Encoding::Utf16Le)] {
        let (b1, e1) = text::encode_for_windows(&text, forced);
        if let Some(f) = forced {
            assert_eq!(e1, f);
        }
        let (t1, d1) = text::decode(&b1).expect("our own encoding decodes");
        if e1 != Encoding::Utf8 || !t1.starts_with('\u{FEFF}') {
            assert_eq!(d1, e1, "encoding not kept");
        }
        let (b2, _) = text::encode_for_windows(&t1, Some(e1));
        assert_eq!(b1, b2, "encode/decode/encode is not byte-exact");
    }

    let inf = Inf::parse(&text);
    lines_ok(&inf);
    for stage in [Stage::Inx, Stage::Inf] {
        let opts = CheckOptions {
            stage,
            msi: how & 4 != 0,
            arch: "amd64".into(),
        };
        for f in check::check(&text, &opts) {
            assert!(
                (1..=inf.lines.max(1)).contains(&f.line) && !f.message.is_empty(),
                "finding {f:?} outside {} lines",
                inf.lines
            );
        }
    }

    let opts = StampOptions {
        date: DriverDate::parse("05/19/2026").unwrap(),
        version: DriverVersion::parse("1.2.3.4").unwrap(),
        arch: "amd64".into(),
        catalog: "vionet.cat".into(),
        encoding: [None, Some(Encoding::Utf8), Some(Encoding::Utf16Le)][usize::from(how >> 3) % 3],
        min_windows: None,
    };
    match stamp::stamp(&bytes, &opts) {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(s) => {
            assert_eq!(s.input_encoding, encoding);
            if let Some(e) = opts.encoding {
                assert_eq!(s.output_encoding, e);
            }
            let (t, e) = text::decode(&s.bytes).expect("a stamped INF decodes");
            assert_eq!(t.replace("\r\n", "\n"), s.text.replace("\r\n", "\n"));
            if !t.starts_with('\u{FEFF}') {
                assert_eq!(e, s.output_encoding);
            }
            let stamped = Inf::parse(&t);
            lines_ok(&stamped);
            let version = stamped
                .sections_named("Version")
                .flat_map(|s| s.all("DriverVer"))
                .last()
                .unwrap_or_else(|| {
                    let at: Vec<(usize, &str)> = t
                        .lines()
                        .enumerate()
                        .filter(|(_, l)| l.contains("DriverVer ="))
                        .map(|(i, l)| (i + 1, l))
                        .collect();
                    let sections: Vec<(usize, &str)> = stamped
                        .sections
                        .iter()
                        .map(|s| (s.line, s.name.as_str()))
                        .collect();
                    panic!("a stamped INF without DriverVer in [Version]: {at:?} in {sections:?}")
                });
            assert_eq!(version.values, ["05/19/2026", "1.2.3.4"], "DriverVer");
            assert!(
                stamped
                    .sections_named("Version")
                    .flat_map(|s| s.all("CatalogFile"))
                    .any(|e| e.values == ["vionet.cat"]),
                "CatalogFile"
            );
            let again = stamp::stamp(&s.bytes, &opts).expect("a stamped INF stamps again");
            assert_eq!(again.bytes, s.bytes, "stamping is not idempotent");
        }
    }
});
