//! Catalog (`.cat`) generation, the inf2cat step: a PKCS#7 SignedData whose content is a
//! certificate trust list naming each package file with its hash: the Authenticode digest for PE
//! images (so the entry stays valid after the image is signed) and a flat hash for everything
//! else. Windows looks the files up by these hashes; the OS attribute and hardware IDs let it
//! choose the catalog for a device. The result is unsigned; [`crate::sign::sign_catalog`] adds the
//! signer.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{EncapsulatedContentInfo, SignedData, SignerInfos};
use der::asn1::{Any, BmpString, Null, OctetString, SetOfVec, UtcTime};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;
use x509_cert::time::Time;

use crate::asn1::{self, CatMemberInfo, CatNameValue, CertificateTrustList, HashAlg};
use crate::inf::Inf;
use crate::{Error, Result};

/// How a member is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    /// Authenticode digest of a PE image.
    PeImage,
    /// Hash of the whole file.
    Flat,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub kind: MemberKind,
    pub hash: HashAlg,
    pub digest: Vec<u8>,
}

impl Member {
    /// Hashes a file's contents the way Windows will when it looks the file up.
    pub fn new(name: &str, data: &[u8], hash: HashAlg) -> Result<Member> {
        let (kind, digest) = if data.starts_with(b"MZ") {
            (
                MemberKind::PeImage,
                crate::pe::authenticode_digest(data, hash)?,
            )
        } else {
            (MemberKind::Flat, hash.digest(data))
        };
        Ok(Member {
            name: name.to_string(),
            kind,
            hash,
            digest,
        })
    }
}

#[derive(Debug, Clone)]
pub struct CatalogOptions {
    pub hash: HashAlg,
    /// inf2cat's `/os:10_x64` is written as `_v100_X64`.
    pub os: String,
    /// Per-member `OSAttr`: `2:10.0` for Windows 10 and later.
    pub os_attr: String,
    pub hardware_ids: Vec<String>,
    pub time: SystemTime,
}

impl Default for CatalogOptions {
    fn default() -> Self {
        CatalogOptions {
            hash: HashAlg::Sha256,
            os: "_v100_X64".into(),
            os_attr: "2:10.0".into(),
            hardware_ids: Vec::new(),
            time: SystemTime::now(),
        }
    }
}

/// Builds the (unsigned) catalog.
pub fn build(members: &[Member], opts: &CatalogOptions) -> Result<Vec<u8>> {
    if members.is_empty() {
        return Err(Error::msg("a catalog needs at least one member"));
    }
    let mut subjects = Vec::new();
    for m in members {
        let tag = crate::cert::hex_upper(&m.digest);
        let (sip, indirect) = match m.kind {
            MemberKind::PeImage => (
                asn1::SIP_PE_IMAGE,
                asn1::pe_indirect_data(m.hash, &m.digest)?,
            ),
            MemberKind::Flat => (
                asn1::SIP_FLAT_FILE,
                asn1::flat_indirect_data(m.hash, &m.digest)?,
            ),
        };
        let mut attrs = SetOfVec::new();
        attrs.insert(asn1::attribute(
            asn1::CAT_NAMEVALUE,
            &CatNameValue::new("File", &m.name)?,
        )?)?;
        attrs.insert(asn1::attribute(
            asn1::CAT_NAMEVALUE,
            &CatNameValue::new("OSAttr", &opts.os_attr)?,
        )?)?;
        attrs.insert(asn1::attribute(
            asn1::CAT_MEMBERINFO,
            &CatMemberInfo {
                subject_guid: BmpString::from_utf8(sip)?,
                cert_version: 0x200,
            },
        )?)?;
        attrs.insert(asn1::attribute(asn1::SPC_INDIRECT_DATA, &indirect)?)?;
        subjects.push(asn1::TrustedSubject {
            identifier: OctetString::new(asn1::utf16le_z(&tag))?,
            attributes: Some(attrs),
        });
    }
    subjects.sort_by(|a, b| a.identifier.as_bytes().cmp(b.identifier.as_bytes()));
    subjects.dedup_by(|a, b| a.identifier == b.identifier);

    let mut extensions = vec![name_value_extension("OS", &opts.os)?];
    for (i, id) in opts.hardware_ids.iter().enumerate() {
        extensions.push(name_value_extension(
            &format!("HWID{}", i + 1),
            &id.to_ascii_lowercase(),
        )?);
    }
    let mut list_id = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut list_id);
    let ctl = CertificateTrustList {
        subject_usage: vec![asn1::SZOID_CATALOG_LIST],
        list_identifier: Some(OctetString::new(list_id.to_vec())?),
        this_update: Time::UtcTime(UtcTime::from_system_time(opts.time)?),
        subject_algorithm: AlgorithmIdentifierOwned {
            oid: asn1::SZOID_CATALOG_LIST_MEMBER,
            parameters: Some(Any::from(Null)),
        },
        trusted_subjects: Some(subjects),
        extensions: Some(extensions),
    };
    let sd = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: asn1::SZOID_CTL,
            econtent: Some(Any::encode_from(&ctl)?),
        },
        certificates: None,
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };
    Ok(ContentInfo {
        content_type: asn1::ID_SIGNED_DATA,
        content: Any::encode_from(&sd)?,
    }
    .to_der()?)
}

fn name_value_extension(name: &str, value: &str) -> Result<Extension> {
    Ok(Extension {
        extn_id: asn1::CAT_NAMEVALUE,
        critical: false,
        extn_value: OctetString::new(CatNameValue::new(name, value)?.to_der()?)?,
    })
}

/// A member as read back from a catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMember {
    pub file: Option<String>,
    pub os_attr: Option<String>,
    /// The identifier decoded as text (upper-case hex of the digest).
    pub tag: String,
    pub indirect_type: String,
    pub sip_guid: Option<String>,
    pub digest_oid: String,
    pub digest: Vec<u8>,
}

/// A catalog as read back: enough to check it lists what it should.
#[derive(Debug, Clone)]
pub struct ParsedCatalog {
    pub members: Vec<ParsedMember>,
    /// Name/value extensions (`OS`, `HWID1`, ...).
    pub attributes: Vec<(String, String)>,
    pub signers: usize,
}

pub fn parse(der: &[u8]) -> Result<ParsedCatalog> {
    let sd = crate::sign::read_signed_data(der)?;
    if sd.encap_content_info.econtent_type != asn1::SZOID_CTL {
        return Err(Error::msg("PKCS#7 content is not a certificate trust list"));
    }
    let ctl: CertificateTrustList = sd
        .encap_content_info
        .econtent
        .ok_or_else(|| Error::msg("catalog has no certificate trust list"))?
        .decode_as()?;
    let mut members = Vec::new();
    for s in ctl.trusted_subjects.unwrap_or_default() {
        let units: Vec<u16> = s
            .identifier
            .as_bytes()
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let mut m = ParsedMember {
            file: None,
            os_attr: None,
            tag: String::from_utf16_lossy(&units),
            indirect_type: String::new(),
            sip_guid: None,
            digest_oid: String::new(),
            digest: Vec::new(),
        };
        for a in s.attributes.iter().flat_map(|a| a.iter()) {
            for v in a.values.iter() {
                if a.oid == asn1::CAT_NAMEVALUE {
                    let nv: CatNameValue = v.decode_as()?;
                    let tag: String = nv.tag.chars().collect();
                    match tag.as_str() {
                        "File" => m.file = Some(nv.value_text()),
                        "OSAttr" => m.os_attr = Some(nv.value_text()),
                        _ => {}
                    }
                } else if a.oid == asn1::CAT_MEMBERINFO {
                    let mi: CatMemberInfo = v.decode_as()?;
                    m.sip_guid = Some(mi.subject_guid.chars().collect());
                } else if a.oid == asn1::SPC_INDIRECT_DATA {
                    let d: asn1::SpcIndirectDataContent = v.decode_as()?;
                    m.indirect_type = d.data.value_type.to_string();
                    m.digest_oid = d.message_digest.digest_algorithm.oid.to_string();
                    m.digest = d.message_digest.digest.as_bytes().to_vec();
                }
            }
        }
        members.push(m);
    }
    let mut attributes = Vec::new();
    for e in ctl.extensions.unwrap_or_default() {
        if e.extn_id == asn1::CAT_NAMEVALUE {
            let nv = CatNameValue::from_der(e.extn_value.as_bytes())?;
            attributes.push((nv.tag.chars().collect(), nv.value_text()));
        }
    }
    Ok(ParsedCatalog {
        members,
        attributes,
        signers: sd.signer_infos.0.len(),
    })
}

/// The hardware IDs an INF's models sections install on (first hardware ID of each device line,
/// without duplicates), which the catalog lists so Windows can match it to a device.
pub fn hardware_ids(inf: &Inf) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for m in inf.entries("Manufacturer") {
        let Some(models) = m.value(0) else { continue };
        let mut names: Vec<String> = m.values[1..]
            .iter()
            .map(|d| format!("{models}.{d}"))
            .collect();
        names.push(models.to_string());
        for name in names {
            for e in inf.entries(&name) {
                if let Some(id) = e.value(1).filter(|s| !s.is_empty())
                    && !ids.iter().any(|x| x.eq_ignore_ascii_case(id))
                {
                    ids.push(id.to_string());
                }
            }
        }
    }
    ids
}

/// The files a catalog for this INF must list: the INF and every file in `[SourceDisksFiles]`,
/// read from the INF's directory (what inf2cat does with `/driver:<dir>`).
pub fn package_files(inf_path: &Path, inf: &Inf) -> Result<Vec<PathBuf>> {
    let dir = inf_path.parent().unwrap_or(Path::new("."));
    let mut files = vec![inf_path.to_path_buf()];
    let mut seen: Vec<String> = Vec::new();
    for s in inf
        .sections
        .iter()
        .filter(|s| s.name.to_ascii_lowercase().starts_with("sourcedisksfiles"))
    {
        for e in &s.entries {
            let Some(name) = e.key.as_deref().filter(|k| !k.is_empty()) else {
                continue;
            };
            if seen.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                continue;
            }
            seen.push(name.to_string());
            let path = dir.join(name);
            if !path.is_file() {
                return Err(Error::at(
                    inf_path,
                    e.line,
                    format!(
                        "{name} is listed in [{}] but {} does not exist",
                        s.name,
                        path.display()
                    ),
                ));
            }
            files.push(path);
        }
    }
    Ok(files)
}

/// Compares a catalog with files on disk: every file must be listed with its current hash.
pub fn verify_files(cat: &ParsedCatalog, files: &[PathBuf]) -> Result<()> {
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let data = crate::read(path)?;
        let found = cat.members.iter().find(|m| {
            m.file
                .as_deref()
                .is_some_and(|f| f.eq_ignore_ascii_case(&name))
        });
        let Some(m) = found else {
            return Err(Error::file(path, "not listed in the catalog"));
        };
        let hash = if m.digest_oid == asn1::ID_SHA1.to_string() {
            HashAlg::Sha1
        } else {
            HashAlg::Sha256
        };
        let now = Member::new(&name, &data, hash)?;
        if now.digest != m.digest {
            return Err(Error::file(
                path,
                "its hash differs from the one in the catalog (file changed after cataloguing?)",
            ));
        }
    }
    Ok(())
}

/// Decodes a catalog from DER, checking only that it is a PKCS#7 SignedData over a CTL.
pub fn is_catalog(der: &[u8]) -> bool {
    ContentInfo::from_der(der)
        .ok()
        .and_then(|ci| ci.content.decode_as::<SignedData>().ok())
        .is_some_and(|sd| sd.encap_content_info.econtent_type == asn1::SZOID_CTL)
}
