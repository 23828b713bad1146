//! The `sentinel-vip` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sentinel_vip::config::{LogFormat, DEFAULT_CONFIG_PATH};
use sentinel_vip::{cli::check, daemon};

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
}

fn main() -> ExitCode {
    // One process-level rustls crypto provider, aws-lc-rs, before any client.
    sentinel_vip::install_crypto_provider();
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
            let results = rt.block_on(sentinel_vip::daemon::alerts::test_alert(
                &cfg,
                sink.as_deref(),
            ));
            if results.is_empty() {
                eprintln!("error: no sink named {:?}", sink.unwrap_or_default());
                return ExitCode::from(2);
            }
            let mut failed = false;
            for (name, r) in results {
                match r {
                    sentinel_vip::act::sinks::Delivery::Sent { status, attempts } => {
                        println!("ok    {name}: HTTP {status} after {attempts} attempt(s)")
                    }
                    sentinel_vip::act::sinks::Delivery::Failed { why, attempts } => {
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
        Command::Status { json } => rt.block_on(async {
            if let Some(s) = sentinel_vip::cli::oneshot::daemon_status(&cfg).await {
                if json {
                    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                } else {
                    sentinel_vip::cli::oneshot::print_daemon_status(&s);
                }
                return ExitCode::SUCCESS;
            }
            oneshot(&cfg, false, json).await
        }),
        Command::Reconcile { dry_run, json } => rt.block_on(oneshot(&cfg, !dry_run, json)),
        Command::Completions { .. } | Command::Man => ExitCode::SUCCESS,
        Command::IamPolicy { account } => rt.block_on(iam_policy(&cfg, account.as_deref())),
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

async fn oneshot(cfg: &sentinel_vip::config::Config, write: bool, json: bool) -> ExitCode {
    match sentinel_vip::cli::oneshot::reconcile(cfg, write).await {
        Ok(views) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&views).unwrap_or_default()
                );
            } else {
                sentinel_vip::cli::oneshot::print(&views);
            }
            let failed = views.iter().any(|v| {
                v.problem.is_some()
                    || v.tables
                        .iter()
                        .any(|t| t.result.as_deref().is_some_and(|r| r != "written"))
            });
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn iam_policy(cfg: &sentinel_vip::config::Config, account: Option<&str>) -> ExitCode {
    use std::collections::BTreeSet;
    if let Some(a) = account {
        if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
            eprintln!("error: --account {a:?}: an AWS account id is 12 digits");
            return ExitCode::from(2);
        }
    }
    let ec2 = sentinel_vip::act::ec2::Ec2::for_config(cfg).await;
    let Some(region) = ec2.region().map(str::to_owned) else {
        eprintln!("error: no region: set aws.region (or AWS_REGION)");
        return ExitCode::from(2);
    };
    let tables: BTreeSet<_> = cfg
        .masters
        .values()
        .flat_map(|m| m.route_tables.iter().cloned())
        .collect();
    let owners = match account {
        Some(a) => tables.into_iter().map(|t| (t, a.to_owned())).collect(),
        None => {
            let mut owners = std::collections::BTreeMap::new();
            let mut failed = false;
            for (t, r) in ec2.table_owners(&tables).await {
                match r {
                    Ok(owner) => {
                        owners.insert(t, owner);
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("error: {e}");
                    }
                }
            }
            if failed {
                eprintln!("error: cannot read every route table's owner; pass --account ID to print the policy without EC2");
                return ExitCode::FAILURE;
            }
            owners
        }
    };
    let p = sentinel_vip::cli::iam_policy::policies(cfg, &region, &owners);
    println!(
        "{}",
        serde_json::to_string_pretty(&p.to_json()).unwrap_or_default()
    );
    ExitCode::SUCCESS
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
