//! The `sentinel-vip` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sentinel_vip::config::{LogFormat, DEFAULT_CONFIG_PATH};
use sentinel_vip::{check, daemon};

#[derive(Parser)]
#[command(
    name = "sentinel-vip",
    version,
    about = "Moves a Redis VIP's VPC route on Sentinel failover and alerts once per incident"
)]
struct Cli {
    /// Config file.
    #[arg(long, short, global = true, env = "SENTINEL_VIP_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (SIGTERM/SIGINT stop it, SIGHUP reloads the config).
    Run,
    /// Validate the config against the sentinels and EC2; non-zero exit on failure.
    Check,
    /// Send a clearly marked test incident to each webhook sink and print each result.
    TestAlert {
        /// Only this sink (by `name`).
        #[arg(long)]
        sink: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match daemon::load_config(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cfg.log.format, !matches!(cli.command, Command::Run));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Run => match rt.block_on(daemon::run(cli.config.clone(), cfg)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::TestAlert { sink } => {
            if cfg.alerts.webhooks.is_empty() {
                eprintln!("error: no alerts.webhooks configured");
                return ExitCode::from(2);
            }
            let results = rt.block_on(sentinel_vip::alerts::test_alert(&cfg, sink.as_deref()));
            if results.is_empty() {
                eprintln!("error: no sink named {:?}", sink.unwrap_or_default());
                return ExitCode::from(2);
            }
            let mut failed = false;
            for (name, r) in results {
                match r {
                    sentinel_vip::alerts::sink::Delivery::Sent { status, attempts } => {
                        println!("ok    {name}: HTTP {status} after {attempts} attempt(s)")
                    }
                    sentinel_vip::alerts::sink::Delivery::Failed { why, attempts } => {
                        failed = true;
                        println!("FAIL  {name}: {why} after {attempts} attempt(s)")
                    }
                }
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Check => {
            let failed = rt.block_on(check::run(&cfg, &cli.config.display().to_string()));
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_logging(format: LogFormat, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet { "error" } else { "info" };
    let filter =
        EnvFilter::try_from_env("SENTINEL_VIP_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
