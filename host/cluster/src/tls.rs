//! TLS between the processes of a cluster: when certificates are given, every
//! connection (sessions, data streams, clients) is mutual TLS: each side proves itself
//! with a certificate signed by the cluster's CA, so only processes holding one can
//! register, exchange data or submit jobs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// The files of a process's TLS identity.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Its certificate (PEM), signed by the CA; it must name the host others reach it
    /// at (an IP address or a DNS name).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The cluster's CA certificate (PEM): peers must present a certificate it signed.
    pub ca: PathBuf,
}

/// A loaded TLS identity and the CA it trusts.
#[derive(Debug, Clone)]
pub struct Tls {
    identity: Identity,
    ca: Certificate,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

impl Tls {
    /// Reads `files`.
    pub fn load(files: &TlsFiles) -> Result<Tls, String> {
        Ok(Tls {
            identity: Identity::from_pem(read(&files.cert)?, read(&files.key)?),
            ca: Certificate::from_pem(read(&files.ca)?),
        })
    }

    /// The server side: its identity, and peers must present a certificate of the CA.
    pub(crate) fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }

    fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
    }
}

/// An endpoint for `address` (`host:port`): `https` with `tls`, plain HTTP/2 without.
pub(crate) fn endpoint(address: &str, tls: Option<&Tls>) -> Result<Endpoint, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| format!("bad address '{address}': {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    match tls {
        Some(tls) => endpoint
            .tls_config(tls.client())
            .map_err(|e| format!("TLS to {address}: {e}")),
        None => Ok(endpoint),
    }
}
