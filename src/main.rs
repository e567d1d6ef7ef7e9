use std::process::ExitCode;

use clap::Parser;
use verilimit::config::{Command, Config};

/// mimalloc instead of the system allocator: it gives freed memory back to the system, so
/// resident memory follows live state down after a sweep (bench/README.md, memory scenario).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `#[tokio::main]`'s runtime, with each worker giving back its own free memory when it
    // next goes idle after a large sweep (`verilimit::memory`).
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(verilimit::memory::on_idle)
        .build()
    {
        Ok(runtime) => runtime.block_on(serve_or_run()),
        Err(e) => {
            eprintln!("verilimit: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_or_run() -> ExitCode {
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
