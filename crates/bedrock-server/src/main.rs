//! The `bedrock` binary: `bedrock serve` runs a server; `put`, `get`, `del`,
//! `scan` and `txn` are gRPC client commands; `bench` load-tests a server.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use bedrock_server::cli::{Cli, Command};
use bedrock_server::{backup, bench, client, cluster, config, serve};

fn main() -> ExitCode {
    let argv = match config::apply(std::env::args_os().collect(), &|name| std::env::var(name).ok()) {
        Ok(argv) => argv,
        Err(err) => {
            eprintln!("bedrock: error: {err}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(err) => {
            if err.use_stderr() && argv.len() != std::env::args_os().count() {
                eprintln!("bedrock: note: some of these values come from the config file");
            }
            err.exit()
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("bedrock: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("bedrock: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await?,
        Command::Bench(args) => bench::run(&cli.endpoints, &client::Access::from_args(&cli.access)?, args).await?,
        Command::Member(cmd) => {
            return cluster::run_member(&cli.endpoints, &client::Access::from_args(&cli.access)?, cmd).await
        }
        Command::Backup { dir } => {
            return backup::run_backup(&cli.endpoints, &client::Access::from_args(&cli.access)?, &dir).await
        }
        Command::Status { output } => {
            return cluster::run_status(&cli.endpoints, &client::Access::from_args(&cli.access)?, &output).await
        }
        command => return client::run(&cli.endpoints, &client::Access::from_args(&cli.access)?, command).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
