//! Authenticode signing of a driver image (signature embedded in the PE) and of a catalog (the
//! `.cat` itself is the PKCS#7 SignedData; signing adds the signer). Both are PKCS#7 v1.5
//! SignedData with one RSA/SHA-256 signer and the signer's certificate, without a timestamp: a
//! timestamp needs a network TSA, and test signatures do not need one.

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Any, Null, ObjectIdentifier, OctetString, SetOfVec};
use der::{Decode, Encode};
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use sha2::Sha256;
use spki::AlgorithmIdentifierOwned;

use crate::asn1::{self, HashAlg};
use crate::cert::TestCert;
use crate::{Error, Result};

/// Program name written into the signature's `SpcSpOpusInfo` (shown by Windows as the
/// description).
pub const DEFAULT_DESCRIPTION: &str = "ndis-rs test-signed driver";

/// Builds a PKCS#7 ContentInfo(SignedData) over `content` (one complete DER element of type
/// `content_type`), signed by `cert`. `extra` are signed attributes besides contentType and
/// messageDigest.
pub fn signed_data(
    content_type: ObjectIdentifier,
    content: &[u8],
    cert: &TestCert,
    extra: Vec<x509_cert::attr::Attribute>,
) -> Result<Vec<u8>> {
    let alg = HashAlg::Sha256;
    // PKCS#7 v1.5: for content other than `data`, the digest covers the content's value octets.
    let digest = alg.digest(asn1::der_contents(content)?);
    let mut attrs = SetOfVec::new();
    attrs.insert(asn1::attribute(asn1::ID_CONTENT_TYPE, &content_type)?)?;
    attrs.insert(asn1::attribute(
        asn1::ID_MESSAGE_DIGEST,
        &OctetString::new(digest)?,
    )?)?;
    for a in extra {
        attrs.insert(a)?;
    }
    // The signature covers the attributes encoded as a SET (tag 0x31), not as the [0] IMPLICIT
    // they are stored as.
    let to_sign = attrs.to_der()?;
    let signature = SigningKey::<Sha256>::new(cert.key.clone())
        .try_sign(&to_sign)
        .map_err(|e| Error::msg(format!("RSA signing failed: {e}")))?;
    let tbs = &cert.cert.tbs_certificate;
    let signer = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer.clone(),
            serial_number: tbs.serial_number.clone(),
        }),
        digest_alg: alg.algorithm_identifier(),
        signed_attrs: Some(attrs),
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: asn1::RSA_ENCRYPTION,
            parameters: Some(Any::from(Null)),
        },
        signature: OctetString::new(signature.to_bytes().to_vec())?,
        unsigned_attrs: None,
    };
    let mut digest_algorithms = SetOfVec::new();
    digest_algorithms.insert(alg.algorithm_identifier())?;
    let mut certs = SetOfVec::new();
    certs.insert(CertificateChoices::Certificate(cert.cert.clone()))?;
    let mut signers = SetOfVec::new();
    signers.insert(signer)?;
    let sd = SignedData {
        version: CmsVersion::V1,
        digest_algorithms,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: content_type,
            econtent: Some(Any::from_der(content)?),
        },
        certificates: Some(CertificateSet(certs)),
        crls: None,
        signer_infos: SignerInfos(signers),
    };
    let ci = ContentInfo {
        content_type: asn1::ID_SIGNED_DATA,
        content: Any::encode_from(&sd)?,
    };
    Ok(ci.to_der()?)
}

/// Signs a PE image: returns the image with an embedded Authenticode signature (an existing one
/// is replaced).
pub fn sign_pe(image: &[u8], cert: &TestCert, description: &str) -> Result<Vec<u8>> {
    let unsigned = crate::pe::unsigned_image(image)?;
    let digest = crate::pe::authenticode_digest(&unsigned, HashAlg::Sha256)?;
    let indirect = asn1::pe_indirect_data(HashAlg::Sha256, &digest)?.to_der()?;
    let statement = {
        let purposes = vec![asn1::SPC_INDIVIDUAL_SP_KEY_PURPOSE];
        asn1::attribute(asn1::SPC_STATEMENT_TYPE, &purposes)?
    };
    let opus = x509_cert::attr::Attribute {
        oid: asn1::SPC_SP_OPUS_INFO,
        values: {
            let mut v = SetOfVec::new();
            v.insert(asn1::opus_info(description)?)?;
            v
        },
    };
    let pkcs7 = signed_data(
        asn1::SPC_INDIRECT_DATA,
        &indirect,
        cert,
        vec![statement, opus],
    )?;
    crate::pe::embed_signature(&unsigned, &pkcs7)
}

/// Signs a catalog: keeps its certificate trust list and replaces any signer with `cert`.
pub fn sign_catalog(cat: &[u8], cert: &TestCert) -> Result<Vec<u8>> {
    let sd = read_signed_data(cat)?;
    if sd.encap_content_info.econtent_type != asn1::SZOID_CTL {
        return Err(Error::msg(format!(
            "PKCS#7 content is {}, not a certificate trust list (1.3.6.1.4.1.311.10.1)",
            sd.encap_content_info.econtent_type
        )));
    }
    let ctl = sd
        .encap_content_info
        .econtent
        .ok_or_else(|| Error::msg("catalog has no certificate trust list"))?;
    signed_data(asn1::SZOID_CTL, &ctl.to_der()?, cert, Vec::new())
}

/// Parses a DER ContentInfo holding SignedData.
pub fn read_signed_data(der: &[u8]) -> Result<SignedData> {
    let ci = ContentInfo::from_der(der)
        .map_err(|e| Error::msg(format!("not a DER PKCS#7 ContentInfo: {e}")))?;
    if ci.content_type != asn1::ID_SIGNED_DATA {
        return Err(Error::msg(format!(
            "PKCS#7 content type {} is not SignedData",
            ci.content_type
        )));
    }
    ci.content
        .decode_as::<SignedData>()
        .map_err(|e| Error::msg(format!("malformed SignedData: {e}")))
}

/// What kind of file `sign` was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pe,
    Catalog,
}

pub fn detect(data: &[u8]) -> Option<Kind> {
    if data.starts_with(b"MZ") {
        Some(Kind::Pe)
    } else if data.first() == Some(&0x30) {
        Some(Kind::Catalog)
    } else {
        None
    }
}
