use std::process::ExitCode;

use clap::Parser;
use verilimit::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
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
