//! The `parley` binary: serve, check-config, doctor, healthcheck, media vad, call.

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
    /// Check every dependency the configuration needs (VAD model, espeak-ng, free ports, data
    /// directory, database, Redis, provider hosts): one verdict a line; exit 1 when something
    /// required is missing, 2 on a bad config.
    Doctor {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Ask the local node's /readyz (on http.listen, or --addr): exit 0 when ready, 1 when
    /// not. For container health checks (no curl needed).
    Healthcheck {
        #[arg(long)]
        config: Option<PathBuf>,
        /// HTTP address to ask instead of the configured http.listen.
        #[arg(long)]
        addr: Option<SocketAddr>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3.0)]
        timeout: f64,
    },
    /// Media diagnostics.
    Media {
        #[command(subcommand)]
        command: MediaCommand,
    },
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
        /// Telephone keys to press once answered (0-9, *, #, A-D), sent as RFC 4733 events
        /// when the far end accepts them, else as in-band tones.
        #[arg(long)]
        dtmf: Option<String>,
        /// Seconds after answer at which --dtmf is sent.
        #[arg(long, default_value_t = 1.0)]
        dtmf_at: f64,
        /// Local SIP address for this call (port 0 picks a free one).
        #[arg(long, default_value = "0.0.0.0:0")]
        bind: SocketAddr,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum MediaCommand {
    /// Run the VAD over a WAV file: one JSON line per 32 ms window ({"t_ms", "p"}), then one
    /// per detected speech segment ({"segment": {"start_ms", "end_ms"}}). Thresholds come from
    /// the config ([media] vad_*), so they can be tuned on your own recordings.
    Vad {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn media_vad(config: &Config, file: &std::path::Path) -> Result<(), String> {
    use parley_media::vad::{analyze_wav, SegmenterConfig, SileroModel};
    use std::io::Write;
    let (lib, model) = config.media.vad_paths().ok_or_else(|| {
        "the VAD model is not available: run scripts/fetch_models.sh or set \
         media.onnxruntime and media.vad_model"
            .to_string()
    })?;
    let mut model = SileroModel::load(&lib, &model).map_err(|e| e.to_string())?;
    let segmenter = SegmenterConfig {
        threshold: config.media.vad_threshold as f32,
        neg_threshold: None,
        min_speech_ms: config.media.vad_min_speech_ms,
        min_silence_ms: config.media.vad_min_silence_ms,
        speech_pad_ms: config.media.vad_pad_ms,
    };
    let (windows, segments) =
        analyze_wav(&mut model, file, segmenter).map_err(|e| format!("{}: {e}", file.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (t_ms, p) in windows {
        let _ = writeln!(out, "{{\"t_ms\": {t_ms}, \"p\": {p:.6}}}");
    }
    for s in segments {
        let _ = writeln!(
            out,
            "{{\"segment\": {{\"start_ms\": {}, \"end_ms\": {}}}}}",
            s.start_ms, s.end_ms
        );
    }
    Ok(())
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
        Commands::Doctor { config } => {
            let config = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("parley: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let findings = runtime.block_on(parley::ops::doctor::examine(&config));
            print!("{}", parley::ops::doctor::render(&findings));
            if parley::ops::doctor::healthy(&findings) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Commands::Healthcheck {
            config,
            addr,
            timeout,
        } => {
            use parley::ops::healthcheck;
            let addr = match addr {
                Some(a) => a,
                None => match load_config(config.as_ref()) {
                    Ok(c) => healthcheck::local_target(c.http.listen),
                    Err(code) => return code,
                },
            };
            if !(timeout.is_finite() && timeout > 0.0) {
                eprintln!("parley: --timeout {timeout} is not a number of seconds");
                return ExitCode::from(2);
            }
            match healthcheck::check(addr, Duration::from_secs_f64(timeout)) {
                Ok(body) => {
                    println!("ready: {body}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("parley: not ready: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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
        Commands::Media {
            command: MediaCommand::Vad { file, config },
        } => {
            let config = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match media_vad(&config, &file) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("parley: {e}");
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
            dtmf,
            dtmf_at,
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
            if let Some(bad) = dtmf.as_deref().and_then(|d| {
                d.chars()
                    .find(|c| !(c.is_ascii_digit() || "*#ABCD".contains(*c)))
            }) {
                eprintln!("parley: --dtmf: {bad:?} is not a telephone key (0-9, *, #, A-D)");
                return ExitCode::from(2);
            }
            if !(dtmf_at.is_finite() && dtmf_at >= 0.0) {
                eprintln!("parley: --dtmf-at {dtmf_at} is not a number of seconds");
                return ExitCode::from(2);
            }
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
                dtmf,
                dtmf_at: Duration::from_secs_f64(dtmf_at),
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
