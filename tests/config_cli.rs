//! `parley check-config FILE` and `parley serve --config FILE` on good and bad configs.
//!
//! A bad config (unknown key, invalid value, invalid PARLEY_* variable) must make both
//! commands exit with status 2 and a message on stderr naming the key, without a panic and
//! without starting to serve.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{parley_bin, poll_until, Launch, Parley};

/// How long a command that should fail at once may run before it counts as "started anyway".
const EXIT_DEADLINE: Duration = Duration::from_secs(15);

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("parley-config-")
                .tempdir()
                .unwrap(),
        }
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Runs parley with `args` and `env`, killing it if it has not exited by the deadline.
/// Variables that keep a wrongly accepted `serve` on loopback and in the scratch dir are set,
/// except where `env` names them or the config file in `args` sets that key itself (an
/// override would hide the very value under test).
fn run_parley(args: &[&str], env: &[(&str, &str)], scratch: &Scratch) -> (Output, bool) {
    let mut cmd = Command::new(parley_bin());
    cmd.args(args)
        .current_dir(scratch.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let sip = format!("127.0.0.1:{}", support::free_sip_port());
    let http = format!("127.0.0.1:{}", support::free_tcp_port());
    let (lo, hi) = support::rtp_port_range();
    let rtp = format!("{lo}-{hi}");
    let data = scratch
        .dir
        .path()
        .join("data")
        .to_string_lossy()
        .into_owned();
    let file_text = args
        .iter()
        .filter(|a| a.ends_with(".toml"))
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect::<String>();
    let safe = [
        ("PARLEY_SIP_LISTEN", "listen", sip.as_str()),
        ("PARLEY_HTTP_LISTEN", "listen", http.as_str()),
        ("PARLEY_MEDIA_RTP_PORTS", "rtp_ports", rtp.as_str()),
        ("PARLEY_DATA_DIR", "data_dir", data.as_str()),
    ];
    for (var, file_key, value) in safe {
        if !env.iter().any(|(name, _)| *name == var) && !file_text.contains(file_key) {
            cmd.env(var, value);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn parley");
    let exited = poll_until(EXIT_DEADLINE, Duration::from_millis(20), || {
        child.try_wait().ok().flatten()
    })
    .is_some();
    if !exited {
        let _ = child.kill();
    }
    (
        child.wait_with_output().expect("collect parley output"),
        exited,
    )
}

fn describe(args: &[&str], env: &[(&str, &str)], out: &Output) -> String {
    format!(
        "parley {} (env {:?}) exited with {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        env,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts exit status 2 and a stderr naming one of `keys`.
fn assert_config_error(args: &[&str], env: &[(&str, &str)], keys: &[&str], scratch: &Scratch) {
    let (out, exited) = run_parley(args, env, scratch);
    let what = describe(args, env, &out);
    assert!(
        exited,
        "still running after {EXIT_DEADLINE:?} instead of rejecting the config\n{what}"
    );
    assert_eq!(out.status.code(), Some(2), "expected exit status 2\n{what}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        keys.iter().any(|k| stderr.contains(k)),
        "stderr does not name the key ({})\n{what}",
        keys.join(" or ")
    );
    assert!(!stderr.contains("panicked"), "parley panicked\n{what}");
}

/// Both commands reject `file` naming `keys`.
fn assert_file_rejected(file: &Path, keys: &[&str], scratch: &Scratch) {
    let file = file.to_str().unwrap();
    assert_config_error(&["check-config", file], &[], keys, scratch);
    assert_config_error(&["serve", "--config", file], &[], keys, scratch);
}

#[test]
fn unknown_key_is_rejected() {
    let s = Scratch::new();
    let f = s.file("unknown.toml", "[sip]\nlisen = \"127.0.0.1:5060\"\n");
    assert_file_rejected(&f, &["sip.lisen"], &s);
}

#[test]
fn unknown_top_level_key_and_section_are_rejected() {
    let s = Scratch::new();
    let f = s.file("top.toml", "dat_dir = \"./data\"\n");
    assert_file_rejected(&f, &["dat_dir"], &s);
    let f = s.file("section.toml", "[sipp]\nlisten = \"127.0.0.1:5060\"\n");
    assert_file_rejected(&f, &["sipp"], &s);
}

#[test]
fn reversed_rtp_range_is_rejected() {
    let s = Scratch::new();
    let f = s.file("rtp.toml", "[media]\nrtp_ports = \"30000-20000\"\n");
    assert_file_rejected(&f, &["media.rtp_ports"], &s);
}

#[test]
fn bad_listen_address_is_rejected() {
    let s = Scratch::new();
    let f = s.file("listen.toml", "[sip]\nlisten = \"nonsense\"\n");
    assert_file_rejected(&f, &["sip.listen"], &s);
}

#[test]
fn negative_max_calls_is_rejected() {
    let s = Scratch::new();
    let f = s.file("max.toml", "[sip]\nmax_calls = -1\n");
    assert_file_rejected(&f, &["sip.max_calls"], &s);
}

#[test]
fn wrong_value_type_is_rejected() {
    let s = Scratch::new();
    let f = s.file("type.toml", "[sip]\nmax_calls = \"many\"\n");
    assert_file_rejected(&f, &["sip.max_calls"], &s);
}

#[test]
fn bad_environment_variable_is_rejected() {
    let s = Scratch::new();
    let valid = s.file("valid.toml", "[sip]\nmax_calls = 10\n");
    let valid = valid.to_str().unwrap();
    let keys = ["PARLEY_SIP_MAX_CALLS", "sip.max_calls"];
    let env = [("PARLEY_SIP_MAX_CALLS", "abc")];
    assert_config_error(&["check-config", valid], &env, &keys, &s);
    assert_config_error(&["serve", "--config", valid], &env, &keys, &s);
    // And with no file at all: serve on defaults plus the environment.
    assert_config_error(&["serve"], &env, &keys, &s);

    let env = [("PARLEY_MEDIA_RTP_PORTS", "20000-")];
    let keys = ["PARLEY_MEDIA_RTP_PORTS", "media.rtp_ports"];
    assert_config_error(&["check-config", valid], &env, &keys, &s);
    assert_config_error(&["serve"], &env, &keys, &s);
}

#[test]
fn valid_file_passes_check_config() {
    let s = Scratch::new();
    let f = s.file(
        "valid.toml",
        "data_dir = \"./data\"\n\
         [sip]\nlisten = \"127.0.0.1:5060\"\nmax_calls = 10\n\
         [media]\nrtp_ports = \"20000-20099\"\n\
         [http]\nlisten = \"127.0.0.1:8080\"\n",
    );
    let f = f.to_str().unwrap();
    let (out, exited) = run_parley(&["check-config", f], &[], &s);
    assert!(
        exited,
        "check-config did not exit\n{}",
        describe(&["check-config", f], &[], &out)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "a valid config must pass\n{}",
        describe(&["check-config", f], &[], &out)
    );
}

#[test]
fn shipped_example_configs_are_valid() {
    // Every TOML config shipped in sip-configs/ must pass check-config.
    let dir = support::repo_root().join("sip-configs");
    let s = Scratch::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let p = path.to_str().unwrap();
        let (out, exited) = run_parley(&["check-config", p], &[], &s);
        let what = describe(&["check-config", p], &[], &out);
        assert!(exited && out.status.code() == Some(0), "{what}");
        checked += 1;
    }
    eprintln!("checked {checked} example config(s) in {}", dir.display());
}

#[test]
fn serve_with_valid_config_file_starts() {
    let s = Scratch::new();
    let f = s.file(
        "serve.toml",
        "[sip]\nmax_calls = 3\nring_ms = 0\n[call]\nmax_duration_s = 60\n",
    );
    let f = f.to_str().unwrap();
    // Listen addresses, RTP ports and data dir come from the harness's PARLEY_* variables.
    let mut parley = Parley::launch(Launch {
        args: &["--config", f],
        ..Launch::default()
    });
    assert!(parley.is_running());
    let (code, body) = parley.get("/healthz").expect("GET /healthz");
    assert_eq!((code, body.trim()), (200, "ok"));
    let metrics = parley.metrics();
    assert_eq!(
        support::metric_value(&metrics, "parley_active_calls"),
        Some(0.0),
        "/metrics must report parley_active_calls 0 when idle:\n{metrics}"
    );
}
