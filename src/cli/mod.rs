//! The command line: one file per verb. `run` starts the daemon (`crate::daemon`);
//! `check`, `status`, `reconcile`, `test-alert` and `iam-policy` run once and
//! exit with an [`Exit`] status; `completions` and `man` print what clap makes.

mod check;
mod history;
mod iam_policy;
mod reconcile;
mod run;
mod status;
mod switchover;
mod test_alert;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{LogFormat, DEFAULT_CONFIG_PATH};

/// How a verb ends: the one place exit statuses are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything checked or done: status 0.
    Ok,
    /// A check failed, a write failed, a sentinel or EC2 could not be read: status 1.
    Failed,
    /// The command line or the config is wrong (nothing was tried): status 2.
    Usage,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        match e {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Failed => ExitCode::FAILURE,
            Exit::Usage => ExitCode::from(2),
        }
    }
}

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
    /// Per master: the sentinels' view, config-epoch, expected target and each
    /// table's route (from a running daemon's /status, else computed directly).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Read the majority and the route tables and repair what is wrong.
    Reconcile {
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print shell completions (bash, zsh, fish, ...) to stdout.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to stdout.
    Man,
    /// Send a clearly marked test incident to each webhook sink and print each result.
    TestAlert {
        /// Only this sink (by `name`).
        #[arg(long)]
        sink: Option<String>,
    },
    /// Print the least-privilege IAM policy (JSON) for this config: the route
    /// tables' ARNs and only the Describe* actions its features use.
    IamPolicy {
        /// Account id for the tables' ARNs; default: each table's `OwnerId`
        /// from DescribeRouteTables.
        #[arg(long)]
        account: Option<String>,
    },
    /// Planned switchover: pre-check, SENTINEL FAILOVER, wait until the VIP is
    /// verified on the new master; prints old -> new and a timeline (ms).
    /// SENTINEL FAILOVER is sent as $SENTINEL_VIP_OPERATOR_USERNAME /
    /// $SENTINEL_VIP_OPERATOR_PASSWORD when set (ACL rule: docs/operations.md).
    Switchover {
        /// The master to switch (may be omitted when one is configured).
        #[arg(long)]
        master: Option<String>,
        /// How long to wait for the VIP on the new master.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        #[arg(long)]
        json: bool,
    },
    /// The switches this watcher saw (from the journal under `state_dir`), newest first.
    History {
        #[arg(long)]
        json: bool,
        /// Show at most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

/// Parses the command line and runs the verb.
pub fn main() -> ExitCode {
    // One process-level rustls crypto provider, aws-lc-rs, before any client.
    crate::install_crypto_provider();
    let cli = Cli::parse();
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "sentinel-vip", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            return match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let cfg = match crate::daemon::load_config(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Exit::Usage.into();
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
            return Exit::Failed.into();
        }
    };
    let exit = match cli.command {
        Command::Run => rt.block_on(run::run(cli.config.clone(), cfg)),
        Command::Check => rt.block_on(check::run(&cfg, &cli.config.display().to_string())),
        Command::Status { json } => rt.block_on(status::run(&cfg, json)),
        Command::Reconcile { dry_run, json } => rt.block_on(reconcile::run(&cfg, !dry_run, json)),
        Command::TestAlert { sink } => rt.block_on(test_alert::run(&cfg, sink.as_deref())),
        Command::IamPolicy { account } => rt.block_on(iam_policy::run(&cfg, account.as_deref())),
        Command::Switchover {
            master,
            timeout,
            json,
        } => rt.block_on(switchover::run(&cfg, master.as_deref(), timeout, json)),
        Command::History { json, limit } => history::run(&cfg, json, limit),
        Command::Completions { .. } | Command::Man => Exit::Ok,
    };
    exit.into()
}

fn init_logging(format: LogFormat, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet { "error" } else { "info" };
    let filter =
        EnvFilter::try_from_env("SENTINEL_VIP_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // No colour codes in journald or files: only on a terminal, and never with NO_COLOR.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
