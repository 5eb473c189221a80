//! Entry point: parse flags, then run.

use clap::Parser;

/// Kubernetes operator for the event-driven order system.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let Args {} = Args::parse();
}
