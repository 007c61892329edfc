//! The real Triplit server (`@triplit/server` from npm, pinned in benches/triplit-harness) on
//! loopback, for tests and benches that compare with it. The harness is copied to
//! `target/triplit-harness/` and `npm ci`-ed there on first use, so the source tree holds no
//! `node_modules`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `target/triplit-harness`, installed (once per process: tests run on parallel threads).
pub fn harness() -> PathBuf {
    static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(install).clone()
}

fn install() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let harness = root.join("target/triplit-harness");
    let source = root.join("benches/triplit-harness");
    std::fs::create_dir_all(&harness).unwrap();
    // The scripts are copied every time (cheap), so an edit reaches the next run.
    for entry in std::fs::read_dir(&source).expect("benches/triplit-harness") {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), harness.join(entry.file_name())).unwrap();
        }
    }
    if !harness.join("node_modules/@triplit/server").exists() {
        let status =
            Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&harness).status().unwrap();
        assert!(status.success(), "npm ci in the Triplit harness");
    }
    harness
}

/// A running `@triplit/server`, killed on drop.
pub struct RealTriplit {
    child: Child,
    pub port: u16,
}

impl RealTriplit {
    /// Serves `schema` (Triplit's JSON form) in memory, verifying tokens with `jwt_secret`.
    pub fn start(schema: &serde_json::Value, jwt_secret: &str, dir: &Path) -> RealTriplit {
        Self::start_on(schema, jwt_secret, dir, None)
    }

    /// [`RealTriplit::start`] on Triplit's SQLite storage in `sqlite_file`, or in memory.
    pub fn start_on(
        schema: &serde_json::Value,
        jwt_secret: &str,
        dir: &Path,
        sqlite_file: Option<&Path>,
    ) -> RealTriplit {
        let harness = harness();
        let schema_file = dir.join("triplit-schema.json");
        std::fs::write(&schema_file, schema.to_string()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new("node")
            .arg("server.mjs")
            .env("PORT", port.to_string())
            .env("JWT_SECRET", jwt_secret)
            .env("STORAGE", if sqlite_file.is_some() { "sqlite" } else { "memory" })
            .env("LOCAL_DATABASE_URL", sqlite_file.unwrap_or(Path::new("")))
            .env("SCHEMA_FILE", &schema_file)
            .current_dir(&harness)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node server.mjs");
        let stdout = child.stdout.take().unwrap();
        let (ready, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("READY") {
                    let _ = ready.send(());
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(60)).expect("the real Triplit server starts");
        RealTriplit { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's process (node itself), for its memory figures.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RealTriplit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
