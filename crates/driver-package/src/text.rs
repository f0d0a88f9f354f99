//! INF text encodings. Windows reads INF files as "ANSI" (in practice ASCII) or as UTF-16LE with a
//! byte-order mark; INX sources come in either (the windows-drivers-rs WDM sample is UTF-16LE, its
//! KMDF samples ASCII) and editors add UTF-8.

use crate::{Error, Result};

/// How an INF text was (or is to be) stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 without a byte-order mark (plain ASCII is a subset).
    Utf8,
    /// UTF-8 with the EF BB BF byte-order mark.
    Utf8Bom,
    /// UTF-16LE with the FF FE byte-order mark.
    Utf16Le,
}

/// Decodes INF bytes into text, recognising the encoding by its byte-order mark.
pub fn decode(bytes: &[u8]) -> Result<(String, Encoding)> {
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        if rest.len() % 2 != 0 {
            return Err(Error::msg(
                "UTF-16LE text with an odd number of bytes (truncated file?)",
            ));
        }
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let text = String::from_utf16(&units)
            .map_err(|_| Error::msg("invalid UTF-16LE text (unpaired surrogate)"))?;
        return Ok((text, Encoding::Utf16Le));
    }
    if bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(Error::msg(
            "UTF-16BE text: Windows reads INF files only as UTF-16LE or ASCII; re-save as UTF-16LE",
        ));
    }
    let (body, enc) = match bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        Some(rest) => (rest, Encoding::Utf8Bom),
        None => (bytes, Encoding::Utf8),
    };
    let text = std::str::from_utf8(body).map_err(|e| {
        Error::msg(format!(
            "neither UTF-16LE (no FF FE mark) nor valid UTF-8: invalid byte at offset {}",
            e.valid_up_to() + (bytes.len() - body.len())
        ))
    })?;
    Ok((text.to_string(), enc))
}

/// Encodes text the way Windows expects an INF: CRLF line ends, and ASCII when the text is pure
/// ASCII, otherwise UTF-16LE with its byte-order mark (the only Unicode form the INF parser
/// documents; UTF-8 would be read as the ANSI code page).
pub fn encode_for_windows(text: &str, forced: Option<Encoding>) -> (Vec<u8>, Encoding) {
    let crlf = to_crlf(text);
    let enc = forced.unwrap_or(if crlf.is_ascii() {
        Encoding::Utf8
    } else {
        Encoding::Utf16Le
    });
    let bytes = match enc {
        Encoding::Utf8 => crlf.into_bytes(),
        Encoding::Utf8Bom => {
            let mut v = vec![0xEF, 0xBB, 0xBF];
            v.extend_from_slice(crlf.as_bytes());
            v
        }
        Encoding::Utf16Le => {
            let mut v = vec![0xFF, 0xFE];
            for u in crlf.encode_utf16() {
                v.extend_from_slice(&u.to_le_bytes());
            }
            v
        }
    };
    (bytes, enc)
}

fn to_crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_each_encoding() {
        let text = "[Version]\r\nSignature=\"$WINDOWS NT$\"\r\n";
        for enc in [Encoding::Utf8, Encoding::Utf8Bom, Encoding::Utf16Le] {
            let (bytes, got) = encode_for_windows(text, Some(enc));
            assert_eq!(got, enc);
            assert_eq!(decode(&bytes).unwrap(), (text.to_string(), enc));
        }
    }

    #[test]
    fn non_ascii_goes_to_utf16_and_lf_to_crlf() {
        let (bytes, enc) = encode_for_windows("a = \"Gerät\"\nb", None);
        assert_eq!(enc, Encoding::Utf16Le);
        assert_eq!(decode(&bytes).unwrap().0, "a = \"Gerät\"\r\nb");
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(decode(&[0xFF, 0xFE, 0x41]).is_err());
        assert!(decode(&[0xFE, 0xFF, 0, 0x41]).is_err());
        assert!(decode(&[0x41, 0xC3]).is_err());
        assert!(decode(&[0xFF, 0xFE, 0x00, 0xD8]).is_err());
    }
}
