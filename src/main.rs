use std::process::ExitCode;

use clap::Parser;
use verilimit::config::{Command, Config};

/// mimalloc instead of the system allocator: it gives freed memory back to the system, so
/// resident memory follows live state down after a sweep (bench/README.md, memory scenario).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(Command::Replay(args)) = &config.command {
        return match verilimit::replay::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("verilimit replay: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Healthcheck { url }) = &config.command {
        let url = url
            .clone()
            .unwrap_or_else(|| verilimit::healthcheck::default_url(config.listen));
        return match verilimit::healthcheck::probe(&url).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("verilimit healthcheck: {e}");
                ExitCode::FAILURE
            }
        };
    }
    verilimit::telemetry::init(&config.log);
    tracing::debug!(?config, "configuration");
    match verilimit::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("verilimit: {e}");
            ExitCode::FAILURE
        }
    }
}
