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

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat, DEFAULT_CONFIG_PATH};

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

/// The log filter of every verb but `run` (which logs at `info`).
const QUIET_LOG: &str = "error,sentinel_vip=warn";

#[derive(Parser)]
#[command(
    name = "sentinel-vip",
    version,
    about = "Moves a Redis VIP's VPC route on Sentinel failover and alerts once per incident",
    after_help = "Logging (stderr): SENTINEL_VIP_LOG=<filter> (e.g. debug, or info,sentinel_vip=debug); default `info` for run, `error,sentinel_vip=warn` for the other verbs, whose results go to stdout. NO_COLOR turns colours off."
)]
struct Cli {
    /// Config file.
    #[arg(long, short, global = true, env = "SENTINEL_VIP_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Read the sentinel password from PATH instead of where
    /// `sentinel_auth.password_env`/`password_file` say (check, status,
    /// reconcile, switchover; `run` always reads the config's). The service's
    /// `/run/credentials/...` exists only while it runs: from a shell, point
    /// this at the credential's source, or at /dev/stdin, e.g.
    /// `systemd-creds decrypt /etc/credstore.encrypted/sentinel-password - |
    /// sentinel-vip status --sentinel-password-file /dev/stdin`.
    #[arg(
        long,
        global = true,
        env = "SENTINEL_VIP_SENTINEL_PASSWORD_FILE",
        value_name = "PATH"
    )]
    sentinel_password_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (SIGTERM/SIGINT stop it, SIGHUP reloads the config).
    Run,
    /// Validate the config against the sentinels and EC2; non-zero exit on failure
    /// (1: a check failed, 2: the config is invalid). A secret the config names
    /// that cannot be read here (webhook `*_env` variables, the sentinel
    /// password) is a failed check.
    Check {
        /// Only the config and its secrets, no network (for `ExecReload=`
        /// before the SIGHUP: a config that would not load is refused).
        #[arg(long)]
        offline: bool,
    },
    /// Per master: the sentinels' view, config-epoch, expected target and each
    /// carrier's state (route tables, secondary IP, Elastic IP, DNS record;
    /// from a running daemon's /status, else computed directly).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Read the majority and every carrier (route tables, secondary IP, Elastic
    /// IP, DNS record) and repair what is wrong.
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
    /// tables' ARNs, the secondary-IP / Elastic IP / Route 53 actions of the
    /// carriers it uses (Route 53 on that zone only), and only the Describe*
    /// actions its features use.
    IamPolicy {
        /// Account id for the route tables' ARNs (other carriers' ENI and
        /// Elastic IP resources stay `*`); default: each table's `OwnerId` from
        /// DescribeRouteTables.
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
    // Only `run` reads every secret up front; the other verbs read the ones
    // they use (see `config::SecretSource`).
    let loaded = match cli.command {
        Command::Run => crate::daemon::load_config(&cli.config),
        _ => crate::daemon::parse_config(&cli.config),
    };
    let mut cfg = match loaded {
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
    let password = cli.sentinel_password_file.as_deref();
    let exit = match cli.command {
        Command::Run => rt.block_on(run::run(cli.config.clone(), cfg)),
        Command::Check { offline } => {
            let path = cli.config.display().to_string();
            let password = sentinel_password(&mut cfg, password);
            if offline {
                check::offline(&cfg, &path, password)
            } else {
                rt.block_on(check::run(&cfg, &path, password))
            }
        }
        Command::Status { json } => rt.block_on(status::run(&mut cfg, json, password)),
        Command::Reconcile { dry_run, json } => match sentinel_password(&mut cfg, password) {
            Ok(()) => rt.block_on(reconcile::run(&cfg, !dry_run, json)),
            Err(e) => {
                eprintln!("error: {e}");
                Exit::Usage
            }
        },
        Command::TestAlert { sink } => rt.block_on(test_alert::run(&cfg, sink.as_deref())),
        Command::IamPolicy { account } => rt.block_on(iam_policy::run(&cfg, account.as_deref())),
        Command::Switchover {
            master,
            timeout,
            json,
        } => match sentinel_password(&mut cfg, password) {
            Ok(()) => rt.block_on(switchover::run(&cfg, master.as_deref(), timeout, json)),
            Err(e) => {
                eprintln!("error: {e}");
                Exit::Usage
            }
        },
        Command::History { json, limit } => history::run(&cfg, json, limit),
        Command::Completions { .. } | Command::Man => Exit::Ok,
    };
    exit.into()
}

/// Reads the sentinel password for a verb that talks to the sentinels: from
/// `--sentinel-password-file` when given, else where the config names it.
/// The error says how to give it from a shell.
pub(super) fn sentinel_password(cfg: &mut Config, over: Option<&Path>) -> Result<(), String> {
    cfg.resolve_sentinel_password(over).map_err(|e| match over {
        Some(p) => format!("--sentinel-password-file {}: {e}", p.display()),
        None => format!(
            "{e}; outside the service give the same password with --sentinel-password-file PATH \
             (or SENTINEL_VIP_SENTINEL_PASSWORD_FILE=PATH; PATH may be /dev/stdin)"
        ),
    })
}

fn init_logging(format: LogFormat, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    // The one-shot verbs print their result on stdout: their log (stderr)
    // shows our own warnings and only errors from the libraries.
    let default = if quiet { QUIET_LOG } else { "info" };
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
