//! Dialing the connector: `ws://` or `wss://` (rustls with the webpki roots plus
//! any extra roots the deployment names), with the upgrade `Authorization` header.
//! The TCP connect under it races the resolved addresses (Happy Eyeballs, in the
//! crate's private `dial` module).
//!
//! Public here is only what fills [`TenantSpec::tls`](crate::spec::TenantSpec::tls):
//! [`client_config`] and [`load_pem_roots`], and their [`TlsError`]; the dialing
//! itself is the tenant task's.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::secret::Secret;

/// An open WebSocket to the connector.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Errors of TLS set-up (reading extra roots).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A CA file could not be opened, or holds malformed PEM.
    #[error("cannot read CA file {path}: {message}")]
    CaFile {
        /// The file, as given.
        path: String,
        /// The reader's error.
        message: String,
    },
    /// A CA file was read but holds no certificate: trusting nothing extra
    /// silently would hide the mistake.
    #[error("CA file {path} holds no usable certificate")]
    NoCertificate {
        /// The file, as given.
        path: String,
    },
    /// rustls refused an extra root or the protocol versions.
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

/// Reads every PEM certificate of a file (extra trust roots, e.g. a test CA).
pub fn load_pem_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::CaFile {
            path: shown.clone(),
            message: e.to_string(),
        })?
        .collect();
    let certs = certs.map_err(|e| TlsError::CaFile {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: shown });
    }
    Ok(certs)
}

/// A rustls client config trusting the webpki roots plus `extra_roots`. The ring
/// provider is named explicitly, so no process-wide default has to be installed.
pub fn client_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| TlsError::Setup(format!("extra root rejected: {e}")))?;
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The TLS configuration of tenant `id` trusting `extra_roots` besides the
/// webpki roots ([`client_config`]). While a configuration made for the same id
/// and the same extra roots (byte for byte) is still in use, that one is handed
/// out again, so the spec of an unchanged tenant, loaded or made again, compares
/// equal to the running one ([`crate::spec::TenantSpec::differences`] compares
/// `tls` by identity). Each tenant id gets a configuration of its own: no TLS
/// session cache is shared between tenants.
pub(crate) fn tenant_client_config(
    id: &str,
    extra_roots: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, TlsError> {
    type Key = (String, Vec<Vec<u8>>);
    /// What was handed out, and the map's size after the last clean-up.
    type Given = (HashMap<Key, Weak<ClientConfig>>, usize);
    static GIVEN: OnceLock<Mutex<Given>> = OnceLock::new();
    let key: Key = (
        id.to_string(),
        extra_roots.iter().map(|c| c.as_ref().to_vec()).collect(),
    );
    let mut given = GIVEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(config) = given.0.get(&key).and_then(Weak::upgrade) {
        return Ok(config);
    }
    let config = client_config(extra_roots)?;
    let (map, cleaned) = &mut *given;
    map.insert(key, Arc::downgrade(&config));
    // Forget the configurations nobody uses any more, now and then.
    if map.len() > 2 * *cleaned + 64 {
        map.retain(|_, c| c.strong_count() > 0);
        *cleaned = map.len();
    }
    Ok(config)
}

/// How to dial: TLS trust, upgrade timeout and the largest message accepted.
#[derive(Clone)]
pub(crate) struct DialOptions {
    /// Used for `wss://`; ignored for `ws://`.
    pub tls: Arc<ClientConfig>,
    /// TCP + TLS + upgrade must finish within this.
    pub timeout: Duration,
    /// Larger incoming messages fail the connection (bounds host memory).
    pub max_message_bytes: usize,
}

impl std::fmt::Debug for DialOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialOptions")
            .field("timeout", &self.timeout)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

/// Why a dial failed; the text never contains the token.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DialError(pub(crate) String);

/// Checks that a dial URL can be dialed at all (a config error otherwise).
pub(crate) fn check_url(url: &str) -> Result<(), DialError> {
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(DialError(format!(
            "dial URL {url:?} is not ws:// or wss:// (set the base URL to http(s):// or ws(s)://)"
        )));
    }
    url.into_client_request()
        .map(|_| ())
        .map_err(|e| DialError(format!("dial URL {url:?} is invalid: {e}")))
}

/// Opens the WebSocket, presenting `authorization` (the full header value).
pub(crate) async fn dial(
    url: &str,
    authorization: Option<&Secret>,
    options: &DialOptions,
) -> Result<Socket, DialError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| DialError(format!("invalid dial URL: {e}")))?;
    if let Some(auth) = authorization {
        let mut value = HeaderValue::from_str(auth.expose())
            .map_err(|_| DialError("authorization is not a valid header value".into()))?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let config = socket_config(options.max_message_bytes);
    let connector = Connector::Rustls(options.tls.clone());
    let connect = async {
        let (host, port) = host_and_port(&request)?;
        let stream = crate::dial::connect(&host, port)
            .await
            .map_err(|e| DialError(e.to_string()))?;
        // Frames are small and latency matters: no Nagle (as before).
        stream
            .set_nodelay(true)
            .map_err(|e| DialError(format!("cannot set TCP_NODELAY: {e}")))?;
        tokio_tungstenite::client_async_tls_with_config(
            request,
            stream,
            Some(config),
            Some(connector),
        )
        .await
        .map_err(|e| DialError(describe(&e)))
    };
    match tokio::time::timeout(options.timeout, connect).await {
        Err(_) => Err(DialError(format!(
            "no upgrade within {} ms",
            options.timeout.as_millis()
        ))),
        Ok(Err(e)) => Err(e),
        Ok(Ok((socket, _response))) => Ok(socket),
    }
}

/// The host to resolve (an IPv6 literal without its brackets) and the port, the
/// scheme's default unless the URL names one.
fn host_and_port(request: &Request) -> Result<(String, u16), DialError> {
    let uri = request.uri();
    let host = uri
        .host()
        .ok_or_else(|| DialError("dial URL has no host".into()))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = match (uri.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some("wss")) => 443,
        (None, Some("ws")) => 80,
        (None, _) => return Err(DialError("dial URL is not ws:// or wss://".into())),
    };
    Ok((host.to_string(), port))
}

/// The WebSocket settings of both ends we run (this link and the emulator).
///
/// tungstenite's default 128 KiB read and write buffers are per connection, and
/// every read zero-fills the whole read chunk before the socket read (measured:
/// 13 % of the CPU of the latency benchmark went to that memset). Relay frames are
/// small, and a large one still grows the buffer as needed; with 10,000 tenants
/// the defaults alone would also dominate resident memory.
fn socket_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 << 10)
        .write_buffer_size(16 << 10)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

/// A short description of a WebSocket error (the HTTP status of a rejected upgrade).
pub(crate) fn describe(e: &WsError) -> String {
    match e {
        WsError::Http(response) => format!("upgrade rejected: HTTP {}", response.status()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> Result<(String, u16), DialError> {
        host_and_port(&url.into_client_request().unwrap())
    }

    #[test]
    fn the_host_and_port_to_resolve() {
        assert_eq!(
            split("ws://relay.example/x").unwrap(),
            ("relay.example".into(), 80)
        );
        assert_eq!(
            split("wss://relay.example/x").unwrap(),
            ("relay.example".into(), 443)
        );
        assert_eq!(
            split("wss://127.0.0.1:8443/x").unwrap(),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(split("ws://[::1]:9000/x").unwrap(), ("::1".into(), 9000));
    }
}
