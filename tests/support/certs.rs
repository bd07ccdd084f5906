//! Certificates made on the spot (rcgen, ECDSA P-256): no private key is
//! committed. Shared by the TLS tests of the layer and of the program.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use socketserver::layer::tls::crypto_provider;
use socketserver::layer::tls::rustls::{self, ClientConfig};

/// A certificate authority: what signs, and its certificate's PEM.
pub struct Authority {
    pub issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// A self-signed root authority named `name`.
pub fn authority(name: &str) -> Authority {
    let key = KeyPair::generate().unwrap();
    let params = authority_params(name);
    let pem = params.self_signed(&key).unwrap().pem();
    Authority {
        issuer: Issuer::new(params, key),
        pem,
    }
}

/// An intermediate authority named `name`, signed by `parent`.
pub fn intermediate(parent: &Authority, name: &str) -> Authority {
    let key = KeyPair::generate().unwrap();
    let params = authority_params(name);
    let pem = params.signed_by(&key, &parent.issuer).unwrap().pem();
    Authority {
        issuer: Issuer::new(params, key),
        pem,
    }
}

/// What makes a certificate an authority's: a CA that signs certificates
/// and revocation lists.
fn authority_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A client configuration trusting the authorities in `ca_pem` and
/// offering only `versions`.
pub fn client_with_versions(
    ca_pem: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in socketserver::layer::tls::load_certificate_chain(ca_pem).unwrap() {
        roots.add(cert).unwrap();
    }
    Arc::new(
        ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
