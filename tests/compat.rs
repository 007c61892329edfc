//! The published Triplit client and CLI against `triplite serve`: `triplit schema push`,
//! then tests/compat/suite.mjs (two RS256 users as with Clerk, a service token, live
//! subscriptions with includes and `exists`, a denied write, token renewal and expiry, offline
//! convergence, HTTP). Installs the pinned npm packages (`npm ci`) when they are missing.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use triplite::{DevTokenKind, mint_dev_token};

const SECRET: &str = "compat-suite-jwt-secret";

fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

fn keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys")
}

fn run(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `triplite serve` and the log it wrote so far (read as it comes, so the pipe
/// never fills and stalls the server).
struct Server(Child, Option<std::thread::JoinHandle<String>>);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(port: u16) -> Server {
    let public_key = std::fs::read_to_string(keys().join("rsa_public.pem")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_triplite"))
        .args(["serve", "--storage", "memory"])
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("JWT_SECRET", SECRET)
        .env("EXTERNAL_JWT_SECRET", public_key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting triplite serve");
    let mut stderr = child.stderr.take().expect("piped");
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let server = Server(child, Some(log));
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(&format!("http://127.0.0.1:{port}/healthcheck")).call().is_err() {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[test]
fn the_published_client_and_cli_work_against_triplite() {
    let dir = compat_dir();
    if !dir.join("node_modules/@triplit/client").exists() {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir), "npm ci in tests/compat");
    }
    let port = free_port();
    let mut server = start_server(port);
    let service = mint_dev_token(SECRET, DevTokenKind::Secret, "local-project-id").unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let pushed = run(
        Command::new("npx")
            .args(["triplit", "schema", "push"])
            .env("TRIPLIT_DB_URL", &url)
            .env("TRIPLIT_SERVICE_TOKEN", &service)
            .current_dir(&dir),
        "triplit schema push",
    );
    assert!(pushed.contains("Schema pushed"), "{pushed}");
    let suite = Command::new("node")
        .arg("suite.mjs")
        .env("PORT", port.to_string())
        .env("SERVICE_TOKEN", &service)
        .env("RSA_PRIVATE_KEY", keys().join("rsa_private.pem"))
        .current_dir(&dir)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&suite.stdout).into_owned() + &String::from_utf8_lossy(&suite.stderr);
    println!("{report}");
    assert!(suite.status.success(), "the compatibility suite failed:\n{report}");
    assert!(!report.contains("not ok"), "{report}");

    // SIGTERM: a graceful stop.
    let pid = server.0.id().to_string();
    run(Command::new("kill").args(["-TERM", &pid]), "kill -TERM");
    let status = server.0.wait().unwrap();
    let log = server.1.take().expect("read once").join().unwrap();
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status}\n{log}");
    assert!(log.contains("\"message\":\"stopped\""), "{log}");
}
