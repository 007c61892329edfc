//! The C ABI: the committed header matches what cbindgen generates; the shared library exports
//! every function the header declares; C programs (tests/c/) compiled with
//! `-std=c11 -Wall -Wextra -Werror` against the header, linked once statically and once
//! dynamically, pass — under valgrind with zero errors and zero definite leaks when it is
//! installed (CI requires it); the header compiles as C++; and a Python ctypes scenario
//! drives the shared library end to end.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    root().join("include/triplite.h")
}

fn generated_header() -> String {
    let config = cbindgen::Config::from_file(root().join("cbindgen.toml")).unwrap();
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root())
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn header_matches_the_generated_one() {
    let generated = generated_header();
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::write(header_path(), &generated).unwrap();
    }
    let committed = std::fs::read_to_string(header_path()).unwrap_or_default();
    assert!(
        committed == generated,
        "include/triplite.h differs from what cbindgen generates; run `UPDATE_HEADER=1 cargo test --test ffi header`"
    );
}

/// The names of the functions the header declares.
fn declared_functions() -> Vec<String> {
    let header = std::fs::read_to_string(header_path()).unwrap();
    let mut names = Vec::new();
    for line in header.lines() {
        let Some(open) = line.find('(') else { continue };
        if line.starts_with(' ') || line.starts_with('/') || line.starts_with('#') || line.contains("typedef") {
            continue;
        }
        let before = &line[..open];
        let name = before.rsplit([' ', '*']).next().unwrap();
        if name.starts_with("triplite_") {
            names.push(name.to_owned());
        }
    }
    names
}

/// The built libraries. `cargo test` builds every crate type of the library into the `deps`
/// folder beside this test (only `cargo build` copies them up a level).
fn library(kind: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().join(format!("libtriplite.{kind}"));
    assert!(path.exists(), "{} is missing", path.display());
    path
}

#[test]
fn the_shared_library_exports_every_declared_function() {
    use object::{Object, ObjectSymbol};
    let bytes = std::fs::read(library("so")).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    let exported: std::collections::HashSet<String> =
        file.dynamic_symbols().filter(|s| s.is_definition()).filter_map(|s| s.name().ok().map(str::to_owned)).collect();
    let declared = declared_functions();
    let surface = [
        "triplite_version",
        "triplite_string_free",
        "triplite_db_open",
        "triplite_db_close",
        "triplite_db_set_schema",
        "triplite_db_insert",
        "triplite_db_update",
        "triplite_db_delete",
        "triplite_db_transact",
        "triplite_db_fetch",
        "triplite_db_fetch_by_id",
        "triplite_db_subscribe",
        "triplite_db_session",
        "triplite_db_session_from_claims",
        "triplite_session_free",
        "triplite_session_insert",
        "triplite_session_update",
        "triplite_session_delete",
        "triplite_session_fetch",
        "triplite_session_fetch_by_id",
        "triplite_session_subscribe",
        "triplite_subscription_free",
        "triplite_server_start",
        "triplite_server_port",
        "triplite_server_stop",
        "triplite_token_mint_dev",
        "triplite_client_open",
        "triplite_client_close",
        "triplite_client_insert",
        "triplite_client_update",
        "triplite_client_delete",
        "triplite_client_transact",
        "triplite_client_fetch",
        "triplite_client_subscribe",
        "triplite_client_update_token",
        "triplite_client_connect",
        "triplite_client_disconnect",
        "triplite_client_reset",
        "triplite_client_start_session",
        "triplite_client_start_session_with_refresh",
        "triplite_client_end_session",
        "triplite_client_update_session_token",
        "triplite_client_on_event",
        "triplite_client_status",
    ];
    for name in surface {
        assert!(declared.iter().any(|d| d == name), "the header declares {name}: {declared:?}");
    }
    let missing: Vec<&String> = declared.iter().filter(|name| !exported.contains(*name)).collect();
    assert!(missing.is_empty(), "declared but not exported: {missing:?}");
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

fn run(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

/// Compiles tests/c/<name>.c twice (static and shared) and runs both, under valgrind when
/// available, with `env` set.
fn c_program(name: &str, env: &[(&str, String)]) {
    let out = tempfile::tempdir().unwrap();
    let source = root().join(format!("tests/c/{name}.c"));
    let include = root().join("include");
    let compile = |exe: &Path, link: &[String], what: &str| {
        run(
            Command::new("gcc")
                .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-pthread", "-I"])
                .arg(&include)
                .arg(&source)
                .args(link)
                .arg("-o")
                .arg(exe),
            what,
        )
    };
    let static_exe = out.path().join(format!("{name}-static"));
    let static_link = [library("a").display().to_string(), "-lpthread".into(), "-ldl".into(), "-lm".into()];
    compile(&static_exe, &static_link, "gcc (static)");
    let shared_exe = out.path().join(format!("{name}-shared"));
    let lib_dir = library("so").parent().unwrap().display().to_string();
    let shared_link = [format!("-L{lib_dir}"), format!("-Wl,-rpath,{lib_dir}"), "-ltriplite".into()];
    compile(&shared_exe, &shared_link, "gcc (shared)");
    let valgrind = have("valgrind");
    assert!(valgrind || std::env::var_os("CI").is_none(), "CI runs the C tests under valgrind: install it");
    // cargo's LD_LIBRARY_PATH also names target/debug, where a `cargo build` may have left an
    // older libtriplite.so that would win over the rpath: the one just built goes first.
    let mut env = env.to_vec();
    env.push(("LD_LIBRARY_PATH", lib_dir.clone()));
    for exe in [&static_exe, &shared_exe] {
        let report = if valgrind {
            run(
                Command::new("valgrind")
                    .args(["--error-exitcode=1", "--leak-check=full", "--errors-for-leak-kinds=definite", "--quiet"])
                    .arg(exe)
                    .envs(env.iter().map(|(k, v)| (k, v))),
                "valgrind",
            )
        } else {
            run(Command::new(exe).envs(env.iter().map(|(k, v)| (k, v))), "the C test")
        };
        assert!(report.contains("all passed"), "{report}");
    }
}

#[test]
fn c_programs_pass_linked_statically_and_dynamically() {
    c_program("api", &[]);
}

/// An HS256 user token for the C client scenario's server (`jwt_secret` "c-client-secret").
fn c_client_token(sub: &str, exp: i64) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(b"c-client-secret");
    triplite::install_token_crypto();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &serde_json::json!({"sub": sub, "exp": exp}), &key).unwrap()
}

#[test]
fn the_sync_client_works_through_the_c_abi() {
    c_program(
        "client",
        &[
            ("TRIPLITE_ALICE_TOKEN", c_client_token("alice", 4_000_000_000)),
            ("TRIPLITE_BOB_TOKEN", c_client_token("bob", 4_000_000_000)),
            ("TRIPLITE_EXPIRED_TOKEN", c_client_token("alice", 1_000)),
        ],
    );
}

#[test]
fn the_header_compiles_as_cpp() {
    let out = tempfile::tempdir().unwrap();
    let source = out.path().join("header.cpp");
    std::fs::write(&source, "#include \"triplite.h\"\nint main() { return triplite_version() == nullptr; }\n").unwrap();
    run(
        Command::new("g++")
            .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I"])
            .arg(root().join("include"))
            .arg(&source),
        "g++",
    );
}

#[test]
fn python_ctypes_drives_the_todo_scenario_the_embedded_server_and_a_sync_client() {
    let keys = root().join("tests/fixtures/keys");
    let report = run(
        Command::new("python3")
            .arg(root().join("tests/c/scenario.py"))
            .arg(library("so"))
            .arg(header_path())
            .env("TRIPLITE_RSA_PUBLIC", keys.join("rsa_public.pem")),
        "python3 tests/c/scenario.py",
    );
    assert!(report.contains("scenario passed"), "{report}");
}
