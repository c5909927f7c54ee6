//! The `parley` binary: serve, check-config, call.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use parley::call::outbound::{self, OutboundCall};
use parley::config::Config;
use parley::sip::auth::Credentials;

#[derive(Parser)]
#[command(
    name = "parley",
    version,
    about = "Voice-AI engine: SIP calls answered by an AI agent"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Commands {
    /// Run Parley: SIP, media and the HTTP API. Without --config it runs on embedded defaults.
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a config file (and PARLEY_* variables) and exit: 0 when valid, 2 when not.
    CheckConfig { file: PathBuf },
    /// Place an outbound call to a SIP URI, play a WAV when answered, then hang up.
    Call {
        /// Target, e.g. sip:+15551234567@carrier.example.com or sip:bob@127.0.0.1:5070
        uri: String,
        /// WAV to play once the call is answered (any rate; PCM or G.711).
        #[arg(long)]
        wav: Option<PathBuf>,
        /// Hang up this many seconds after answer (default: when the WAV has played).
        #[arg(long)]
        duration: Option<f64>,
        /// Digest username for trunks that challenge with 401/407.
        #[arg(long, env = "PARLEY_CALL_USERNAME")]
        username: Option<String>,
        /// Digest password (prefer the environment variable).
        #[arg(long, env = "PARLEY_CALL_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// User part of our From URI.
        #[arg(long, default_value = "parley")]
        from: String,
        /// Local SIP address for this call (port 0 picks a free one).
        #[arg(long, default_value = "0.0.0.0:0")]
        bind: SocketAddr,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PARLEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Config errors exit with status 2, as documented, so scripts can tell them from failures.
fn load_config(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    Config::load(path.map(|p| p.as_path())).map_err(|e| {
        eprintln!("parley: configuration error: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Commands::CheckConfig { file } => match load_config(Some(&file)) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Commands::Serve { config } => {
            let config = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(cli.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("parley: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(parley::server::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("parley: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Commands::Call {
            uri,
            wav,
            duration,
            username,
            password,
            from,
            bind,
            config,
        } => {
            let config = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(cli.log_format);
            let credentials = match (username, password) {
                (Some(username), Some(password)) => Some(Credentials { username, password }),
                (None, None) => None,
                _ => {
                    eprintln!("parley: --username and --password go together");
                    return ExitCode::from(2);
                }
            };
            let duration = match duration {
                Some(d) if d.is_finite() && d >= 0.0 => Some(Duration::from_secs_f64(d)),
                Some(d) => {
                    eprintln!("parley: --duration {d} is not a number of seconds");
                    return ExitCode::from(2);
                }
                None => None,
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("parley: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = OutboundCall {
                target: uri,
                wav,
                credentials,
                duration,
                bind,
                from_user: from,
            };
            match runtime.block_on(outbound::place_call(&config, opts)) {
                Ok(reason) => {
                    println!("call ended: {reason:?}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("parley: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
