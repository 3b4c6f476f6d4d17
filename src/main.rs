#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use gitopsd::cli::{Cli, execute};

#[tokio::main]
async fn main() -> ExitCode {
    execute(Cli::parse()).await
}
