//! `wss://` and `https://` from the sync client, through a TLS endpoint in front of `triplite
//! serve` on loopback (as a deployment's load balancer terminates TLS): a client that trusts
//! the deployment's private CA syncs and fetches; one that trusts only Mozilla's authorities,
//! or another private CA, is refused and says why; `caCertificates` holds only certificates.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::engine::{SECRET, user_token};
use common::wire::ServeProcess;
use serde_json::json;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use triplite::client::{Client, ClientOptions, ConnectionStatus, FetchPolicy};
use triplite::{Error, Query, Schema};

const WAIT: Duration = Duration::from_secs(20);
const LATER: i64 = 4_000_000_000;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Accepts TLS on 127.0.0.1 with the fixture's server certificate and relays each connection
/// to `upstream` in plain text. Stops with the value.
struct TlsEndpoint {
    url: String,
    _runtime: tokio::runtime::Runtime,
}

fn tls_endpoint(upstream: SocketAddr) -> TlsEndpoint {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(fixture("server.pem").as_bytes()).map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_slice(fixture("server.key").as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake (the client distrusts the certificate) just ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    TlsEndpoint { url, _runtime: runtime }
}

fn server() -> (ServeProcess, TlsEndpoint) {
    let dir = tempfile::tempdir().unwrap();
    let schema_file = dir.path().join("schema.json");
    std::fs::write(&schema_file, common::engine::schema().to_string()).unwrap();
    let server = ServeProcess::start(&["--storage", "memory", "--schema", schema_file.to_str().unwrap()], &[], SECRET);
    let upstream: SocketAddr = server.url().trim_start_matches("http://").parse().unwrap();
    let endpoint = tls_endpoint(upstream);
    (server, endpoint)
}

fn options(url: &str, ca: Option<String>) -> ClientOptions {
    ClientOptions {
        server_url: Some(url.to_owned()),
        token: Some(user_token("alice", LATER)),
        schema: Some(Schema::from_json(&common::engine::schema()).unwrap()),
        ca_certificates: ca,
        ..ClientOptions::default()
    }
}

#[test]
fn a_client_trusting_the_private_ca_syncs_over_wss_and_fetches_over_https() {
    let (server, endpoint) = server();
    let secure = Client::open(options(&endpoint.url, Some(fixture("ca.pem")))).unwrap();
    assert!(secure.wait_until_ready(WAIT), "wss:// opens: {:?}", secure.status().last_error);
    secure.insert("todos", json!({"id": "t1", "text": "over TLS", "owner": "alice"})).unwrap();
    assert!(secure.wait_for_outbox(WAIT), "the server acknowledged the write sent over wss://");

    // Another client, in plain text straight to the server, has it.
    let plain = Client::open(options(&server.url(), None)).unwrap();
    let query = Query::new("todos");
    let fetched = plain.fetch(&query, FetchPolicy::RemoteFirst).unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0]["text"], "over TLS");

    // `remote-only` is a POST over https:// with the same trust.
    plain.insert("todos", json!({"id": "t2", "text": "plain", "owner": "alice"})).unwrap();
    assert!(plain.wait_for_outbox(WAIT));
    let remote = secure.fetch(&query, FetchPolicy::RemoteOnly).unwrap();
    assert_eq!(remote.len(), 2, "{remote:?}");
}

#[test]
fn a_server_whose_certificate_the_client_does_not_trust_is_refused_and_the_status_says_why() {
    let (_server, endpoint) = server();
    for ca in [None, Some(fixture("other-ca.pem"))] {
        let which = if ca.is_some() { "another private CA" } else { "Mozilla's authorities" };
        let client = Client::open(options(&endpoint.url, ca)).unwrap();
        let deadline = Instant::now() + WAIT;
        let error = loop {
            if let Some(error) = client.status().last_error {
                break error;
            }
            assert!(Instant::now() < deadline, "{which}: no connection error reported");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(error.contains("certificate"), "{which}: {error}");
        assert_ne!(client.status().connection, ConnectionStatus::Open, "{which}");
        match client.fetch(&Query::new("todos"), FetchPolicy::RemoteOnly) {
            Err(Error::Network(message)) => assert!(message.contains("ertificate"), "{which}: {message}"),
            other => panic!("{which}: https:// to an untrusted server answered {other:?}"),
        }
    }
}

#[test]
fn ca_certificates_hold_only_certificates() {
    let refused = |pem: &str| {
        let options = ClientOptions::from_json(&json!({"caCertificates": pem})).unwrap();
        match Client::open(options) {
            Err(Error::InvalidJson { context, .. }) => assert_eq!(context, "options.caCertificates"),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("{pem:.40} was taken as a CA"),
        }
    };
    refused("not pem at all");
    refused(&fixture("server.key"));
    refused("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let both = format!("{}{}", fixture("ca.pem"), fixture("other-ca.pem"));
    assert!(Client::open(ClientOptions::from_json(&json!({"caCertificates": both})).unwrap()).is_ok());
}
