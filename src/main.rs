//! The `syslog2ban` command line: a thin layer over the library. Exit codes: 0 success,
//! 1 runtime failure (or the daemon refused a control command), 2 invalid configuration or
//! usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use syslog2ban::config;
use syslog2ban::control::{
    self,
    protocol::{Request, Response},
};
use syslog2ban::daemon::{self, RunOptions};

// The `regex` command, apart for its size.
#[path = "cli/regex.rs"]
mod regex_cmd;
use regex_cmd::{regex_command, resolve_filter};

pub(crate) const DEFAULT_CONFIG: &str = "/etc/syslog2ban";

#[derive(Parser)]
#[command(
    name = "syslog2ban",
    version,
    about = "A central syslog sink that bans attackers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// Config file, or a directory holding syslog2ban.toml and conf.d/.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Decide bans but apply none (log them instead).
        #[arg(long)]
        dry_run: bool,
        /// Log line format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate the configuration; print every error with file, key and line.
    Check {
        /// Config file, or a directory holding syslog2ban.toml and conf.d/.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Remove a collector taken out of the cluster for good from the engine (its heartbeat):
    /// it leaves every collector's `status`, and bans stop going out in the older form for
    /// it if it was of an earlier version. Uses this configuration's `[cluster]`.
    ForgetCollector {
        /// The collector's `node` name.
        node: String,
        /// Config file, or a directory holding syslog2ban.toml and conf.d/.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Translate a fail2ban configuration (jail.conf, jail.d, jail.local) into syslog2ban
    /// jails that use its filter files; lists what could not be carried over.
    ImportFail2ban {
        /// The fail2ban configuration directory.
        #[arg(default_value = "/etc/fail2ban")]
        dir: PathBuf,
        /// Write the config here (e.g. /etc/syslog2ban/conf.d/zz-fail2ban.toml, which
        /// sorts after the shipped jails it overrides) instead of
        /// printing it.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Test a filter against log lines, like fail2ban-regex.
    Regex {
        /// File of log lines (syslog file format or raw messages), or - for stdin.
        log: PathBuf,
        /// A jail name from the config's conf.d, a path to a jail .toml file, or a fail2ban
        /// filter file with optional options: `filter.d/sshd.conf[mode=aggressive]`.
        filter: String,
        /// Config used to find jails by name (default: /etc/syslog2ban, else ./conf.d).
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON object per input line.
        #[arg(long)]
        json: bool,
        /// Also print the matched lines.
        #[arg(long)]
        show_matched: bool,
        /// Also print the lines that did not match.
        #[arg(long)]
        show_missed: bool,
    },
    /// Show listeners, jails and targets, or one jail in detail.
    Status {
        /// A jail name: show its counts and banned addresses.
        jail: Option<String>,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// List every active ban.
    Banned {
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Say where each active ban is enforced, and where not: the local table is read now,
    /// remote targets as their last reconcile left them. Exits 1 if a ban is missing.
    Verify {
        /// Only this address (default: every active ban).
        address: Option<String>,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Ban an address by hand in a jail (its bantime applies).
    Ban {
        /// Jail name.
        jail: String,
        /// IPv4 or IPv6 address.
        address: String,
        /// Ban it even if it is in the jail's ignoreip.
        #[arg(long)]
        force: bool,
        /// Where to apply the ban instead of the jail's placement: local, origin, all,
        /// group:NAME or target:NAME (repeatable).
        #[arg(long = "place", value_name = "RULE")]
        place: Vec<String>,
        /// The attacked host (a name or address in some target's `origins`), for an
        /// `origin` placement.
        #[arg(long, value_name = "HOST")]
        origin: Option<String>,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Lift every ban of an address, or all bans.
    Unban {
        /// IPv4 or IPv6 address.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        address: Option<String>,
        /// Lift every ban.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Show a jail's maxretry, findtime or bantime as the daemon uses it now.
    Get {
        /// Jail name.
        jail: String,
        /// maxretry, findtime or bantime.
        key: String,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Change a jail's maxretry, findtime or bantime now, keeping its failure counts and bans.
    /// Until the next reload or restart, unless --persist.
    Set {
        /// Jail name.
        jail: String,
        /// maxretry, findtime or bantime.
        key: String,
        /// The value as the config file would have it: 3, 10m, 1h 30m, -1 (bantime: permanent).
        value: String,
        /// Also write it to conf.d/zz-set.toml (which sorts last), so reloads and restarts keep it.
        #[arg(long)]
        persist: bool,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Re-read the configuration (like SIGHUP); a broken config is refused and the running one kept.
    Reload {
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Print shell completions.
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write it and one page per command into a directory.
    Manpage {
        /// Write syslog2ban.1 and syslog2ban-COMMAND.1 here instead of printing syslog2ban.1.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Options shared by the commands that talk to a running daemon.
#[derive(clap::Args)]
struct ClientOptions {
    /// Control socket of the daemon (default: the `[control] socket` of the configuration,
    /// else /run/syslog2ban/syslog2ban.sock).
    #[arg(long, conflicts_with = "config")]
    socket: Option<PathBuf>,
    /// Configuration whose `[control] socket` to use (default: /etc/syslog2ban when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("syslog2ban: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            config,
            dry_run,
            log_format,
        } => {
            // Before any thread exists: take the sockets systemd passed (LISTEN_FDS).
            let inherited = syslog2ban::input::activation::init();
            init_logging(log_format);
            // A bug that one message reaches is logged (throttled) and costs that message.
            syslog2ban::fault::install_panic_hook();
            if inherited > 0 {
                tracing::info!(sockets = inherited, "Sockets passed by the service manager");
            }
            let config_path = config;
            let config = match config::load(&config_path) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(ExitCode::from(2));
                }
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let options = RunOptions {
                dry_run,
                config_path,
                kill_stage: None,
            };
            runtime.block_on(daemon::run(config, options, shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ImportFail2ban { dir, output } => {
            let imported = syslog2ban::fail2ban::import::import(&dir)?;
            if let Some(path) = &output {
                let shadowed = syslog2ban::fail2ban::import::shadowing_files(path, &imported.jails);
                if !shadowed.is_empty() {
                    for (file, jail) in &shadowed {
                        eprintln!(
                            "syslog2ban: {} is read after {} and would override the imported [jail.{jail}]",
                            file.display(),
                            path.display()
                        );
                    }
                    bail!(
                        "nothing written: conf.d files are merged in name order, so name the \
                         output to sort after them, e.g. conf.d/zz-fail2ban.toml"
                    );
                }
            }
            match &output {
                Some(path) => std::fs::write(path, &imported.toml)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{}", imported.toml),
            }
            eprintln!(
                "imported {} jail(s): {}",
                imported.jails.len(),
                imported.jails.join(", ")
            );
            if let Some(backend) = imported.backend {
                eprintln!("fail2ban's banaction: set `backend = \"{backend}\"` in [ban] of syslog2ban.toml");
            }
            if !imported.unmapped.is_empty() {
                eprintln!("not carried over ({}), review:", imported.unmapped.len());
                for line in &imported.unmapped {
                    eprintln!("  - {line}");
                }
            }
            if let Some(path) = output {
                eprintln!(
                    "wrote {}; validate with: syslog2ban check --config <dir with syslog2ban.toml>",
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ForgetCollector { node, config } => {
            let loaded = match config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(ExitCode::from(2));
                }
            };
            let Some(cluster) = loaded.cluster else {
                bail!(
                    "{}: no [cluster] section: there is no engine to forget a collector on",
                    config.display()
                );
            };
            let ours = cluster.node.to_string() == node;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let removed = runtime
                .block_on(syslog2ban::cluster::forget(cluster, &node))
                .context("the cluster engine")?;
            if removed {
                println!("forgot collector {node}");
            } else {
                println!("no collector {node} on the engine (nothing to forget)");
            }
            if ours {
                eprintln!("syslog2ban: {node} is this configuration's own node: while it runs, it writes its heartbeat again within a second");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => match config::load(&config) {
            Ok(c) => {
                println!(
                    "OK: {} file(s), {} listener(s), {} enabled jail(s): {}",
                    c.files.len(),
                    c.listeners.len(),
                    c.jails.len(),
                    c.jails
                        .iter()
                        .map(|j| j.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                if !c.targets.is_empty() {
                    println!(
                        "{} remote target(s): {}",
                        c.targets.len(),
                        c.targets
                            .iter()
                            .map(|t| format!("{} ({}@{}:{})", t.name, t.user, t.address, t.port))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                // Only what the file says: `check` does not reach the engine (the running
                // daemon's `status` says whether it does).
                if let Some(cluster) = &c.cluster {
                    println!("{}", cluster.summary());
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                eprintln!("{errors}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Regex {
            log,
            filter,
            config,
            json,
            show_matched,
            show_missed,
        } => {
            let mut filter = resolve_filter(&filter, config.as_deref())?;
            regex_command(&log, &mut filter, json, show_matched, show_missed)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { jail, client } => {
            let request = match jail {
                Some(jail) => Request::JailStatus { jail },
                None => Request::Status,
            };
            client_command(&client, &request)
        }
        Command::Banned { client } => client_command(&client, &Request::Banned),
        Command::Verify { address, client } => {
            client_command(&client, &Request::Verify { address })
        }
        Command::Ban {
            jail,
            address,
            force,
            place,
            origin,
            client,
        } => client_command(
            &client,
            &Request::Ban {
                jail,
                address,
                force,
                place,
                origin,
            },
        ),
        Command::Unban {
            address,
            all,
            client,
        } => {
            let request = match (all, address) {
                (true, _) => Request::UnbanAll,
                (false, Some(address)) => Request::Unban { address },
                (false, None) => bail!("give an address or --all"),
            };
            client_command(&client, &request)
        }
        Command::Reload { client } => client_command(&client, &Request::Reload),
        Command::Get { jail, key, client } => client_command(&client, &Request::Get { jail, key }),
        Command::Set {
            jail,
            key,
            value,
            persist,
            client,
        } => client_command(
            &client,
            &Request::Set {
                jail,
                key,
                value,
                persist,
            },
        ),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "syslog2ban",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpage { dir } => {
            // No `help` command page: every page the top page names is one `--dir` writes.
            let command = Cli::command().disable_help_subcommand(true);
            match dir {
                Some(dir) => clap_mangen::generate_to(command, &dir)
                    .with_context(|| format!("writing man pages to {}", dir.display()))?,
                None => clap_mangen::Man::new(command).render(&mut std::io::stdout())?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

impl ClientOptions {
    /// `--socket`, else the socket `--config` (or the default config, when present) names,
    /// else the default: the same place the daemon binds with the same configuration.
    fn socket(&self) -> Result<PathBuf> {
        if let Some(socket) = &self.socket {
            return Ok(socket.clone());
        }
        let config = match &self.config {
            Some(config) => config.clone(),
            None if config::locate(Path::new(DEFAULT_CONFIG)).0.is_file() => {
                PathBuf::from(DEFAULT_CONFIG)
            }
            None => return Ok(PathBuf::from(config::DEFAULT_CONTROL_SOCKET)),
        };
        config::control_socket(&config).map_err(|errors| {
            anyhow::anyhow!(
                "cannot read the control socket from {}:\n{errors}\n(--socket PATH names it directly)",
                config.display()
            )
        })
    }
}

/// Sends one request and prints the answer; exit 1 when the daemon reports an error.
fn client_command(client: &ClientOptions, request: &Request) -> Result<ExitCode> {
    let response = control::call(&client.socket()?, request)?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
    } else {
        match &response {
            Response::Error { message } => eprintln!("syslog2ban: {message}"),
            other => print!("{}", control::text::render(other)),
        }
    }
    Ok(match response {
        Response::Error { .. } => ExitCode::from(1),
        Response::Verified { bans }
            if bans
                .iter()
                .flat_map(|b| &b.places)
                .any(|p| p.enforced == Some(false)) =>
        {
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    })
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(syslog2ban::log_output::LogOutput)
        .with_timer(syslog2ban::log_output::LineTime)
        .with_ansi(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        // Without a SIGTERM handler, Ctrl-C still works.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
