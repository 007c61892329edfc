//! The client's WebSocket: `ws://`, or `wss://` through rustls. The handshake is blocking (with
//! a timeout); after it the socket is non-blocking and registered with the I/O thread's poll,
//! so one thread waits on the server and on the application at once.

use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Connector, Message, WebSocket};

use crate::error::{Error, Result};

/// How long opening a socket (TCP, TLS and the upgrade) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames from the server above this are refused (the server's own limit is far lower).
const MAX_FRAME_BYTES: usize = 64 << 20;

/// What reading found.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Text(String),
    /// The server closed the socket (its close frame's reason, if any).
    Closed(Option<String>),
}

/// An open WebSocket to a sync server.
pub struct Socket {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl Socket {
    /// Opens a WebSocket to `url` (`ws://`, or `wss://` trusting `trust`).
    pub fn dial(url: &str, trust: &Trust) -> Result<Socket> {
        let network = |what: &str, e: &dyn std::fmt::Display| Error::Network(format!("{what}: {e}"));
        let uri: tungstenite::http::Uri = url.parse().map_err(|e| network("bad server URL", &e))?;
        let tls = uri.scheme_str() == Some("wss");
        let host = uri.host().ok_or_else(|| Error::Network("the server URL has no host".into()))?;
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let mut last_error = None;
        let mut stream = None;
        for address in (host, port).to_socket_addrs().map_err(|e| network("cannot resolve the server", &e))? {
            match TcpStream::connect_timeout(&address, DIAL_TIMEOUT) {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let stream = stream.ok_or_else(|| match last_error {
            Some(e) => network("cannot connect to the server", &e),
            None => Error::Network("the server's host has no address".into()),
        })?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(DIAL_TIMEOUT))?;
        stream.set_write_timeout(Some(DIAL_TIMEOUT))?;
        let connector = if tls { Connector::Rustls(trust.tls.clone()) } else { Connector::Plain };
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        let (ws, _response) = tungstenite::client_tls_with_config(url, stream, Some(config), Some(connector))
            .map_err(|e| network("the WebSocket upgrade failed", &e))?;
        let tcp = tcp_of(&ws);
        tcp.set_read_timeout(None)?;
        tcp.set_write_timeout(None)?;
        tcp.set_nonblocking(true)?;
        Ok(Socket { ws })
    }

    /// Registers the socket with a poll: readable and writable, edge-triggered.
    pub fn register(&self, registry: &Registry, token: Token) -> Result<()> {
        let fd = tcp_of(&self.ws).as_raw_fd();
        registry.register(&mut SourceFd(&fd), token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(())
    }

    pub fn deregister(&self, registry: &Registry) {
        let fd = tcp_of(&self.ws).as_raw_fd();
        let _ = registry.deregister(&mut SourceFd(&fd));
    }

    /// Queues a text frame and writes what the socket takes now.
    pub fn send(&mut self, text: String) -> Result<()> {
        match self.ws.write(Message::text(text)) {
            Ok(()) => self.flush(),
            Err(error) => Err(socket_error(error)),
        }
    }

    /// Writes queued frames; what the socket does not take now waits for it to be writable.
    pub fn flush(&mut self) -> Result<()> {
        match self.ws.flush() {
            Ok(()) => Ok(()),
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(error) => Err(socket_error(error)),
        }
    }

    /// Starts the close handshake.
    pub fn close(&mut self, code: u16, reason: String) {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
        let _ = self.ws.close(Some(frame));
        let _ = self.flush();
    }

    /// Reads every frame available now; stops at the first `Closed`.
    pub fn read_available(&mut self, mut take: impl FnMut(Incoming)) {
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) => take(Incoming::Text(text.as_str().to_owned())),
                Ok(Message::Close(frame)) => {
                    let _ = self.flush();
                    return take(Incoming::Closed(frame.map(|f| f.reason.as_str().to_owned())));
                }
                // Pings are answered by tungstenite on the next flush.
                Ok(_) => {
                    let _ = self.flush();
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return take(Incoming::Closed(None));
                }
                Err(error) => {
                    tracing::debug!(%error, "the sync socket failed");
                    return take(Incoming::Closed(None));
                }
            }
        }
    }
}

fn tcp_of(ws: &WebSocket<MaybeTlsStream<TcpStream>>) -> &TcpStream {
    match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp,
        MaybeTlsStream::Rustls(tls) => &tls.sock,
        _ => unreachable!("only plain and rustls streams are opened"),
    }
}

fn socket_error(error: tungstenite::Error) -> Error {
    Error::Network(format!("the sync socket failed: {error}"))
}

/// The certificate authorities a client trusts for `wss://` and `https://`: Mozilla's (as a
/// browser), or only those of a private deployment.
#[derive(Clone)]
pub struct Trust {
    pub(super) tls: Arc<rustls::ClientConfig>,
    pub(super) http: ureq::tls::RootCerts,
}

impl Trust {
    /// Mozilla's root certificates; one configuration for every client of the process.
    pub fn mozilla() -> Trust {
        static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
        let tls = CONFIG
            .get_or_init(|| tls_config(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }))
            .clone();
        Trust { tls, http: ureq::tls::RootCerts::WebPki }
    }

    /// Only the authorities in `pem` (one or more `BEGIN CERTIFICATE` blocks): a server whose
    /// certificate does not chain to one of them is refused, whoever else signed it.
    pub fn from_pem(pem: &str) -> Result<Trust> {
        let bad = |why: String| Error::invalid_json("options.caCertificates", why);
        let mut certificates = Vec::new();
        for item in ureq::tls::parse_pem(pem.as_bytes()) {
            match item.map_err(|e| bad(format!("not PEM: {e}")))? {
                ureq::tls::PemItem::Certificate(certificate) => certificates.push(certificate),
                _ => return Err(bad("only certificates belong here (a private key was given)".into())),
            }
        }
        if certificates.is_empty() {
            return Err(bad("no BEGIN CERTIFICATE block".into()));
        }
        let mut roots = rustls::RootCertStore::empty();
        for certificate in &certificates {
            let der = rustls::pki_types::CertificateDer::from(certificate.der().to_vec());
            roots.add(der).map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
        }
        Ok(Trust { tls: tls_config(roots), http: ureq::tls::RootCerts::new_with_certs(&certificates) })
    }
}

/// TLS with ring, the safe default protocol versions, and `roots`.
fn tls_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}
