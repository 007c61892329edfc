//! The `triplite` command line.

use clap::Parser;

/// triplite: an embedded database with sync, drop-in compatible with Triplit.
#[derive(Parser)]
#[command(name = "triplite", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!(
        "triplite {}: the `dev` and `serve` commands arrive with the sync server; see --help.",
        env!("CARGO_PKG_VERSION")
    );
}
