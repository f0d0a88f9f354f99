//! The Microsoft ASN.1 structures no RustCrypto crate defines: Authenticode's
//! `SpcIndirectDataContent` (what a signature over a PE image or a catalog member actually signs)
//! and the certificate trust list (CTL) that a `.cat` file wraps in PKCS#7 SignedData.
//! Layouts follow the Authenticode PE specification and the catalog layout of `.cat` files that
//! `signtool`/`makecat` produce (a PKCS#7 SignedData wrapping a CTL; see docs/packaging.md).

use der::asn1::{Any, BitString, BmpString, ContextSpecific, Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Reader, Sequence, TagMode, TagNumber};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::{Attribute, Attributes};
use x509_cert::ext::Extension;
use x509_cert::time::Time;

use crate::Result;

const fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

pub const SPC_INDIRECT_DATA: ObjectIdentifier = oid("1.3.6.1.4.1.311.2.1.4");
pub const SPC_STATEMENT_TYPE: ObjectIdentifier = oid("1.3.6.1.4.1.311.2.1.11");
pub const SPC_SP_OPUS_INFO: ObjectIdentifier = oid("1.3.6.1.4.1.311.2.1.12");
pub const SPC_PE_IMAGE_DATA: ObjectIdentifier = oid("1.3.6.1.4.1.311.2.1.15");
pub const SPC_INDIVIDUAL_SP_KEY_PURPOSE: ObjectIdentifier = oid("1.3.6.1.4.1.311.2.1.21");
/// Used by catalogs for members hashed as flat files (the `.inf`).
pub const SPC_CAB_DATA: ObjectIdentifier = oid("1.3.6.1.4.1.311.2.1.25");
pub const SZOID_CTL: ObjectIdentifier = oid("1.3.6.1.4.1.311.10.1");
pub const SZOID_CATALOG_LIST: ObjectIdentifier = oid("1.3.6.1.4.1.311.12.1.1");
pub const SZOID_CATALOG_LIST_MEMBER: ObjectIdentifier = oid("1.3.6.1.4.1.311.12.1.2");
pub const CAT_NAMEVALUE: ObjectIdentifier = oid("1.3.6.1.4.1.311.12.2.1");
pub const CAT_MEMBERINFO: ObjectIdentifier = oid("1.3.6.1.4.1.311.12.2.2");
pub const ID_DATA: ObjectIdentifier = oid("1.2.840.113549.1.7.1");
pub const ID_SIGNED_DATA: ObjectIdentifier = oid("1.2.840.113549.1.7.2");
pub const ID_CONTENT_TYPE: ObjectIdentifier = oid("1.2.840.113549.1.9.3");
pub const ID_MESSAGE_DIGEST: ObjectIdentifier = oid("1.2.840.113549.1.9.4");
pub const ID_SHA1: ObjectIdentifier = oid("1.3.14.3.2.26");
pub const ID_SHA256: ObjectIdentifier = oid("2.16.840.1.101.3.4.2.1");
pub const RSA_ENCRYPTION: ObjectIdentifier = oid("1.2.840.113549.1.1.1");
pub const EKU_CODE_SIGNING: ObjectIdentifier = oid("1.3.6.1.5.5.7.3.3");

/// SIP (subject interface package) GUIDs that tell Windows how a catalog member was hashed.
pub const SIP_PE_IMAGE: &str = "{C689AAB8-8E78-11D0-8C47-00C04FC295EE}";
pub const SIP_FLAT_FILE: &str = "{DE351A42-8E59-11D0-8C47-00C04FC295EE}";
/// Flags of a catalog name/value attribute: NAME_VALUE_ATTR | READONLY | UNICODE... as inf2cat
/// and makecat write them.
pub const NAME_VALUE_FLAGS: u32 = 0x1001_0001;

/// The digest algorithms a member hash or signature may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha256,
}

impl HashAlg {
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            HashAlg::Sha1 => ID_SHA1,
            HashAlg::Sha256 => ID_SHA256,
        }
    }

    /// With an explicit NULL parameter, as signtool and osslsigncode write it.
    pub fn algorithm_identifier(self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: self.oid(),
            parameters: Some(Any::from(Null)),
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
            HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
        }
    }
}

/// `SpcAttributeTypeAndOptionalValue ::= SEQUENCE { type OID, value ANY OPTIONAL }`
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SpcAttributeTypeAndOptionalValue {
    pub value_type: ObjectIdentifier,
    pub value: Option<Any>,
}

/// `DigestInfo ::= SEQUENCE { digestAlgorithm AlgorithmIdentifier, digest OCTET STRING }`
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct DigestInfo {
    pub digest_algorithm: AlgorithmIdentifierOwned,
    pub digest: OctetString,
}

/// `SpcIndirectDataContent ::= SEQUENCE { data SpcAttributeTypeAndOptionalValue, messageDigest
/// DigestInfo }`: what an Authenticode signature signs instead of the file itself.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SpcIndirectDataContent {
    pub data: SpcAttributeTypeAndOptionalValue,
    pub message_digest: DigestInfo,
}

/// `SpcPeImageData ::= SEQUENCE { flags SpcPeImageFlags, file [0] EXPLICIT SpcLink OPTIONAL }`
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SpcPeImageData {
    pub flags: BitString,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub file: Option<Any>,
}

/// The `SpcLink` every signer writes: `file [2] EXPLICIT SpcString`, with the unicode string
/// `<<<Obsolete>>>` (the field is ignored but Windows expects it present).
pub fn obsolete_spc_link() -> Result<Any> {
    let text = ContextSpecific {
        tag_number: TagNumber::N0,
        tag_mode: TagMode::Implicit,
        value: BmpString::from_utf8("<<<Obsolete>>>")?,
    };
    let link = ContextSpecific {
        tag_number: TagNumber::N2,
        tag_mode: TagMode::Explicit,
        value: text,
    };
    Ok(Any::from_der(&link.to_der()?)?)
}

/// `SpcIndirectDataContent` for a PE image with its Authenticode digest.
pub fn pe_indirect_data(alg: HashAlg, digest: &[u8]) -> Result<SpcIndirectDataContent> {
    let image = SpcPeImageData {
        flags: BitString::new(0, Vec::new())?,
        file: Some(obsolete_spc_link()?),
    };
    Ok(SpcIndirectDataContent {
        data: SpcAttributeTypeAndOptionalValue {
            value_type: SPC_PE_IMAGE_DATA,
            value: Some(Any::encode_from(&image)?),
        },
        message_digest: DigestInfo {
            digest_algorithm: alg.algorithm_identifier(),
            digest: OctetString::new(digest)?,
        },
    })
}

/// `SpcIndirectDataContent` for a file hashed whole (an INF in a catalog).
pub fn flat_indirect_data(alg: HashAlg, digest: &[u8]) -> Result<SpcIndirectDataContent> {
    Ok(SpcIndirectDataContent {
        data: SpcAttributeTypeAndOptionalValue {
            value_type: SPC_CAB_DATA,
            value: Some(obsolete_spc_link()?),
        },
        message_digest: DigestInfo {
            digest_algorithm: alg.algorithm_identifier(),
            digest: OctetString::new(digest)?,
        },
    })
}

/// `SpcSpOpusInfo ::= SEQUENCE { programName [0] EXPLICIT SpcString OPTIONAL, moreInfo [1]
/// EXPLICIT SpcLink OPTIONAL }`, here with the program name only.
pub fn opus_info(program_name: &str) -> Result<Any> {
    let name = ContextSpecific {
        tag_number: TagNumber::N0,
        tag_mode: TagMode::Implicit,
        value: BmpString::from_utf8(program_name)?,
    };
    let wrapped = ContextSpecific {
        tag_number: TagNumber::N0,
        tag_mode: TagMode::Explicit,
        value: name,
    };
    let mut inner = Vec::new();
    wrapped.encode_to_vec(&mut inner)?;
    Ok(Any::new(der::Tag::Sequence, inner)?)
}

/// Catalog name/value: `SEQUENCE { tag BMPString, flags INTEGER, value OCTET STRING }`, the value
/// being NUL-terminated UTF-16LE.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CatNameValue {
    pub tag: BmpString,
    pub flags: u32,
    pub value: OctetString,
}

impl CatNameValue {
    pub fn new(tag: &str, value: &str) -> Result<Self> {
        Ok(CatNameValue {
            tag: BmpString::from_utf8(tag)?,
            flags: NAME_VALUE_FLAGS,
            value: OctetString::new(utf16le_z(value))?,
        })
    }

    /// The value as text (without the terminating NUL).
    pub fn value_text(&self) -> String {
        let units: Vec<u16> = self
            .value
            .as_bytes()
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        String::from_utf16_lossy(&units)
    }
}

/// Catalog member info: `SEQUENCE { subjectGuid BMPString, certVersion INTEGER }`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CatMemberInfo {
    pub subject_guid: BmpString,
    pub cert_version: u32,
}

/// `TrustedSubject ::= SEQUENCE { subjectIdentifier OCTET STRING, subjectAttributes Attributes
/// OPTIONAL }`; in a catalog the identifier is the member's hash as NUL-terminated UTF-16LE
/// upper-case hex.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TrustedSubject {
    pub identifier: OctetString,
    pub attributes: Option<Attributes>,
}

/// The CTL of a catalog (`version` is left at its DEFAULT v1 and so not encoded, as makecat does).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CertificateTrustList {
    pub subject_usage: Vec<ObjectIdentifier>,
    pub list_identifier: Option<OctetString>,
    pub this_update: Time,
    pub subject_algorithm: AlgorithmIdentifierOwned,
    pub trusted_subjects: Option<Vec<TrustedSubject>>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub extensions: Option<Vec<Extension>>,
}

/// An attribute with a single value.
pub fn attribute(oid: ObjectIdentifier, value: &impl Encode) -> Result<Attribute> {
    let mut values = der::asn1::SetOfVec::new();
    values.insert(Any::from_der(&value.to_der()?)?)?;
    Ok(Attribute { oid, values })
}

pub fn utf16le_z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// The value octets of a DER TLV (what PKCS#7 hashes for a content that is not `data`).
pub fn der_contents(tlv: &[u8]) -> Result<&[u8]> {
    let mut reader = der::SliceReader::new(tlv)?;
    let header = der::Header::decode(&mut reader)?;
    let start = usize::try_from(reader.position())?;
    let len = usize::try_from(header.length)?;
    tlv.get(start..start + len)
        .ok_or_else(|| crate::Error::msg("truncated DER element"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spc_link_matches_the_authenticode_encoding() {
        let der = obsolete_spc_link().unwrap().to_der().unwrap();
        assert_eq!(&der[..4], &[0xA2, 0x1E, 0x80, 0x1C]);
        assert_eq!(der.len(), 0x20);
        assert_eq!(&der[4..8], &[0x00, b'<', 0x00, b'<']);
    }

    #[test]
    fn pe_indirect_data_round_trips() {
        let d = pe_indirect_data(HashAlg::Sha256, &[7u8; 32]).unwrap();
        let der = d.to_der().unwrap();
        assert_eq!(SpcIndirectDataContent::from_der(&der).unwrap(), d);
        let contents = der_contents(&der).unwrap();
        assert_eq!(contents.len() + 2, der.len());
    }

    #[test]
    fn name_value_text() {
        let nv = CatNameValue::new("OS", "_v100_X64").unwrap();
        assert_eq!(nv.value.as_bytes().len(), 20);
        assert_eq!(nv.value_text(), "_v100_X64");
    }
}
