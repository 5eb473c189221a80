//! Test-only node agent for local mode (see design section 4).

use clap::Parser;

/// Runs the pods bound to one Node as host processes, for machines without a container engine.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let Args {} = Args::parse();
}
