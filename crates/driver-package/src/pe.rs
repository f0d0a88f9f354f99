//! The PE side of Authenticode: the image digest (computed by the `authenticode` crate over a PE
//! parsed with `object`) and the insertion of a signature into the certificate table, with the
//! checksum fixed afterwards because Windows refuses a driver whose checksum is wrong.

use std::ops::Range;

use authenticode::{PeOffsetError, PeOffsets, PeTrait};
use object::LittleEndian as LE;
use object::pe::{IMAGE_DIRECTORY_ENTRY_SECURITY, ImageDataDirectory};
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile64};

use crate::asn1::HashAlg;
use crate::{Error, Result};

/// WIN_CERTIFICATE revision 2.0 and type PKCS#7 SignedData.
const WIN_CERT_REVISION_2_0: u16 = 0x0200;
const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;

/// Where, in the file, the fields Authenticode leaves out of the digest are.
#[derive(Debug, Clone)]
pub struct Layout {
    pub offsets: PeOffsets,
    /// File offset of the security data directory entry (8 bytes: offset, size).
    pub security_dir: usize,
    pub sections: Vec<Range<usize>>,
    /// The current certificate table (file offset range), if any.
    pub cert_table: Option<Range<usize>>,
}

impl Layout {
    pub fn parse(data: &[u8]) -> Result<Layout> {
        let pe =
            PeFile64::parse(data).map_err(|e| Error::msg(format!("not a PE32+ image: {e}")))?;
        let base = data.as_ptr() as usize;
        let offset_of = |bytes: &[u8]| (bytes.as_ptr() as usize).wrapping_sub(base);
        let oh = pe.nt_headers().optional_header();
        let oh_offset = offset_of(object::pod::bytes_of(oh));
        let dirs_offset = oh_offset + std::mem::size_of_val(oh);
        let dir_size = std::mem::size_of::<ImageDataDirectory>();
        if pe.data_directories().len() <= IMAGE_DIRECTORY_ENTRY_SECURITY {
            return Err(Error::msg(
                "image has no security data directory entry to hold a signature",
            ));
        }
        let security_dir = dirs_offset + dir_size * IMAGE_DIRECTORY_ENTRY_SECURITY;
        let offsets = PeOffsets {
            check_sum: oh_offset + 64,
            after_check_sum: oh_offset + 68,
            security_data_dir: security_dir,
            after_security_data_dir: security_dir + dir_size,
            after_header: oh.size_of_headers() as usize,
        };
        let mut sections = Vec::new();
        for s in pe.section_table().iter() {
            let start = s.pointer_to_raw_data.get(LE) as usize;
            let size = s.size_of_raw_data.get(LE) as usize;
            let end = start
                .checked_add(size)
                .filter(|&e| e <= data.len())
                .ok_or_else(|| {
                    Error::msg("a section's raw data lies beyond the end of the file")
                })?;
            sections.push(start..end);
        }
        let cert_table = match pe.data_directory(IMAGE_DIRECTORY_ENTRY_SECURITY) {
            Some(d) if d.size.get(LE) != 0 => {
                let start = d.virtual_address.get(LE) as usize;
                let end = start + d.size.get(LE) as usize;
                if end > data.len() {
                    return Err(Error::msg(
                        "the certificate table lies beyond the end of the file",
                    ));
                }
                Some(start..end)
            }
            _ => None,
        };
        Ok(Layout {
            offsets,
            security_dir,
            sections,
            cert_table,
        })
    }
}

/// `authenticode`'s view of an image, backed by our own `object`-based layout (the crate's own
/// `object` integration pins a different `object` major version than the workspace).
struct Image<'a> {
    data: &'a [u8],
    layout: &'a Layout,
}

impl PeTrait for Image<'_> {
    fn data(&self) -> &[u8] {
        self.data
    }

    fn num_sections(&self) -> usize {
        self.layout.sections.len()
    }

    fn section_data_range(&self, index: usize) -> Result<Range<usize>, PeOffsetError> {
        index
            .checked_sub(1)
            .and_then(|i| self.layout.sections.get(i))
            .cloned()
            .ok_or(PeOffsetError)
    }

    fn certificate_table_range(&self) -> Result<Option<Range<usize>>, PeOffsetError> {
        Ok(self.layout.cert_table.clone())
    }

    fn offsets(&self) -> Result<PeOffsets, PeOffsetError> {
        Ok(self.layout.offsets.clone())
    }
}

/// The Authenticode digest of a PE image (independent of any signature it carries).
pub fn authenticode_digest(data: &[u8], alg: HashAlg) -> Result<Vec<u8>> {
    let layout = Layout::parse(data)?;
    let image = Image {
        data,
        layout: &layout,
    };
    let fail = |_| Error::msg("PE offsets out of range while computing the Authenticode digest");
    Ok(match alg {
        HashAlg::Sha1 => {
            let mut h = <sha1::Sha1 as sha2::Digest>::new();
            authenticode::authenticode_digest(&image, &mut h).map_err(fail)?;
            sha2::Digest::finalize(h).to_vec()
        }
        HashAlg::Sha256 => {
            let mut h = <sha2::Sha256 as sha2::Digest>::new();
            authenticode::authenticode_digest(&image, &mut h).map_err(fail)?;
            sha2::Digest::finalize(h).to_vec()
        }
    })
}

/// Returns the image without its signature, padded to 8 bytes: the form that is hashed and then
/// signed. A signature not at the end of the file (which no signer produces) is refused rather
/// than guessed around.
pub fn unsigned_image(data: &[u8]) -> Result<Vec<u8>> {
    let layout = Layout::parse(data)?;
    let mut out = data.to_vec();
    if let Some(table) = &layout.cert_table {
        if table.end != data.len() {
            return Err(Error::msg(
                "the existing certificate table is not at the end of the file",
            ));
        }
        out.truncate(table.start);
        out[layout.security_dir..layout.security_dir + 8].fill(0);
    }
    // The certificate table must start 8-byte aligned, and the padding is part of the hash.
    out.resize(out.len().next_multiple_of(8), 0);
    Ok(out)
}

/// Appends a WIN_CERTIFICATE holding `pkcs7` to an image from [`unsigned_image`], points the
/// security directory at it and recomputes the checksum.
pub fn embed_signature(unsigned: &[u8], pkcs7: &[u8]) -> Result<Vec<u8>> {
    let layout = Layout::parse(unsigned)?;
    if layout.cert_table.is_some() || !unsigned.len().is_multiple_of(8) {
        return Err(Error::msg("image is not prepared for signing"));
    }
    let len = (8 + pkcs7.len()).next_multiple_of(8);
    let (start, len32) = match (u32::try_from(unsigned.len()), u32::try_from(len)) {
        (Ok(s), Ok(l)) => (s, l),
        _ => return Err(Error::msg("image too large for a certificate table")),
    };
    let mut out = unsigned.to_vec();
    out.extend_from_slice(&len32.to_le_bytes());
    out.extend_from_slice(&WIN_CERT_REVISION_2_0.to_le_bytes());
    out.extend_from_slice(&WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_le_bytes());
    out.extend_from_slice(pkcs7);
    out.resize(unsigned.len() + len, 0);
    out[layout.security_dir..layout.security_dir + 4].copy_from_slice(&start.to_le_bytes());
    out[layout.security_dir + 4..layout.security_dir + 8].copy_from_slice(&len32.to_le_bytes());
    let sum = pe_check::pe_checksum(&out).map_err(|e| Error::msg(e.to_string()))?;
    out[layout.offsets.check_sum..layout.offsets.after_check_sum]
        .copy_from_slice(&sum.to_le_bytes());
    Ok(out)
}

/// The PKCS#7 blob of the first WIN_CERTIFICATE, if the image is signed.
pub fn embedded_signature(data: &[u8]) -> Result<Option<Vec<u8>>> {
    let layout = Layout::parse(data)?;
    let Some(table) = layout.cert_table else {
        return Ok(None);
    };
    let entry = &data[table];
    let hdr = entry
        .get(..8)
        .ok_or_else(|| Error::msg("certificate table shorter than a WIN_CERTIFICATE header"))?;
    let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    let kind = u16::from_le_bytes([hdr[6], hdr[7]]);
    if kind != WIN_CERT_TYPE_PKCS_SIGNED_DATA || len < 8 || len > entry.len() {
        return Err(Error::msg("malformed WIN_CERTIFICATE"));
    }
    // dwLength includes the alignment padding; the DER element knows its own length.
    let body = &entry[8..len];
    let header_len = {
        use der::{Decode, Reader};
        let mut r = der::SliceReader::new(body)?;
        let h = der::Header::decode(&mut r)?;
        usize::try_from(r.position())? + usize::try_from(h.length)?
    };
    Ok(Some(
        body.get(..header_len)
            .ok_or_else(|| Error::msg("truncated PKCS#7 in WIN_CERTIFICATE"))?
            .to_vec(),
    ))
}

/// Whether `data` parses as a PE image whose Authenticode digest can be computed.
pub fn is_pe(data: &[u8]) -> bool {
    Layout::parse(data).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Layout::parse(b"MZ").is_err());
        assert!(authenticode_digest(&[0u8; 512], HashAlg::Sha256).is_err());
        assert!(unsigned_image(b"").is_err());
    }

    #[test]
    fn data_directory_layout_type_is_what_object_uses() {
        assert_eq!(std::mem::size_of::<ImageDataDirectory>(), 8);
        // The 64-bit optional header (without data directories) is 112 bytes.
        assert_eq!(
            std::mem::size_of::<
                <object::pe::ImageNtHeaders64 as ImageNtHeaders>::ImageOptionalHeader,
            >(),
            112
        );
    }
}
