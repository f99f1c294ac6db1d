use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald::config::Settings;
use herald::startup::{Application, open_database};
use tokio_util::sync::CancellationToken;

// herald allocates many small short-lived buffers per request and delivery; mimalloc handles
// that markedly better than the system allocator (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// herald: a self-hosted chat-bot and notification hub.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A herald.toml file (otherwise HERALD_CONFIG, or ./herald.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run herald (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Check the settings and print the values in effect (secrets hidden).
    CheckConfig,
    /// Manage the knowledge base (knowledge search).
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
}

#[derive(Subcommand)]
enum KbCommand {
    /// Import documents from JSON (an array or one object) or NDJSON files into the database of
    /// the configured settings, then into this data directory's search index. Documents with
    /// an existing id replace it.
    Import {
        /// Document files; each document is {"id","title","body"?,"tags"?,"url"?}.
        files: Vec<PathBuf>,
        /// A synonym file (Elasticsearch/Solr syntax) replacing the stored one.
        #[arg(long)]
        synonyms: Option<PathBuf>,
        /// Delete every document that is not in these files (e.g. the sample).
        #[arg(long)]
        replace: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A .env file in the working directory fills in settings the environment does not set.
    let _ = dotenvy::dotenv();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("herald: {error}");
            return ExitCode::from(2);
        }
    };
    herald::telemetry::init(settings.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings).await,
            Command::Migrate => {
                open_database(&settings).await?.close().await;
                println!("migrations applied");
                Ok(())
            }
            Command::Kb {
                command:
                    KbCommand::Import {
                        files,
                        synonyms,
                        replace,
                    },
            } => {
                let request = herald::kb::import::ImportRequest {
                    files,
                    synonyms,
                    replace,
                };
                let report = herald::kb::import::import(&settings, &request).await?;
                println!("{report}");
                Ok(())
            }
            Command::CheckConfig => {
                for (name, value) in settings.describe() {
                    println!("{name:32} {value}");
                }
                for warning in settings.warnings() {
                    println!("warning: {warning}");
                }
                let mut problems = 0;
                for finding in settings.cluster_check() {
                    match finding {
                        herald::config::ClusterFinding::Ok(text) => println!("cluster: ok: {text}"),
                        herald::config::ClusterFinding::Advice(text) => {
                            println!("cluster: note: {text}")
                        }
                        herald::config::ClusterFinding::Problem(text) => {
                            problems += 1;
                            println!("cluster: PROBLEM: {text}")
                        }
                    }
                }
                if problems > 0 {
                    anyhow::bail!(
                        "the settings are valid, but not for a cluster node: {problems} problem(s) above"
                    );
                }
                println!("configuration is valid");
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    match herald::http::serve::raise_open_file_limit() {
        Ok(limit) if limit.after != limit.before => tracing::info!(
            soft_before = limit.before,
            soft = limit.after,
            hard = limit.hard,
            "raised the open-file limit to the hard limit"
        ),
        Ok(limit) => tracing::info!(
            soft = limit.after,
            hard = limit.hard,
            "open-file limit (already at the hard limit)"
        ),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
    let app = Application::build(settings).await?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight work");
        signal.cancel();
    });
    app.run_until_stopped(shutdown).await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
