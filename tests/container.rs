//! The container image, tested without a Docker daemon: the Dockerfile may only call the
//! project's own scripts, and those scripts and the image's run-time settings are exercised
//! here on the machine CI runs on.
//!
//! - every RUN of the Dockerfile is a script of `scripts/` (so nothing the image does is
//!   untested shell), the bases are pinned, the health check is `parley healthcheck`, and the
//!   documented stop grace covers the drain;
//! - the dependency layer (`stub_workspace.sh`) resolves to exactly the workspace's
//!   dependencies, and each stage's Debian packages exist (apt's simulation);
//! - Parley started with the image's environment answers `parley healthcheck`, and stops
//!   answering it when it stops;
//! - the binary's permitted CAP_SYS_NICE (`runtime_user.sh`'s setcap) gives an unprivileged
//!   process's media workers nice -10, and where the capability is withheld the binary still
//!   starts, at the default priority.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

fn dockerfile_text() -> String {
    std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap()
}

#[test]
fn every_step_of_the_dockerfile_is_a_project_script() {
    let instructions = instructions();
    // Where the run stage copies scripts to: /usr/local/lib/parley/<name> is scripts/container/<name>.
    let copied_to_lib = |name: &str| {
        instructions.iter().any(|(k, rest)| {
            k == "COPY"
                && rest.contains(&format!("scripts/container/{name}"))
                && rest.ends_with("/usr/local/lib/parley/")
        })
    };
    let runs: Vec<&String> = instructions
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, r)| r)
        .collect();
    assert!(runs.len() >= 5, "{runs:?}");
    for run in runs {
        // Any way of chaining a second command counts as a step of its own.
        for step in run.split(['&', ';', '|']).filter(|s| !s.trim().is_empty()) {
            // Leading VAR=value assignments are the step's environment.
            let program = step
                .split_whitespace()
                .find(|w| !w.contains('='))
                .unwrap_or_else(|| panic!("empty step in RUN {run}"));
            let script = if let Some(name) = program.strip_prefix("/usr/local/lib/parley/") {
                assert!(
                    copied_to_lib(name),
                    "{name} is not copied from scripts/container/"
                );
                repo_root().join("scripts/container").join(name)
            } else {
                assert!(
                    program.starts_with("scripts/"),
                    "RUN {run}: {program} is not one of the project's scripts"
                );
                repo_root().join(program)
            };
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&script)
                    .unwrap_or_else(|e| panic!("{}: {e}", script.display()))
                    .permissions(),
            );
            assert!(mode & 0o111 != 0, "{} is not executable", script.display());
            let syntax = Command::new("bash")
                .arg("-n")
                .arg(&script)
                .status()
                .unwrap();
            assert!(syntax.success(), "{} has a syntax error", script.display());
        }
    }
}

#[test]
fn the_image_is_pinned_checks_its_health_and_stops_within_its_drain() {
    let instructions = instructions();
    let arg = |name: &str| {
        instructions
            .iter()
            .find_map(|(k, rest)| {
                (k == "ARG")
                    .then(|| rest.strip_prefix(&format!("{name}=")))
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no ARG {name}"))
            .to_string()
    };
    // An exact Rust release and an exact Debian point release, never a moving tag.
    let rust = arg("RUST_IMAGE");
    let tag = rust.strip_prefix("rust:").unwrap();
    assert_eq!(
        tag.split('-').next().unwrap().split('.').count(),
        3,
        "{rust} is not an exact Rust release"
    );
    let debian = arg("RUNTIME_IMAGE");
    let tag = debian.strip_prefix("debian:").unwrap();
    assert!(
        tag.split('-').next().unwrap().contains('.'),
        "{debian} is not a Debian point release"
    );
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(froms.len(), 2);
    assert!(froms[0].starts_with("${RUST_IMAGE} AS build"));
    assert_eq!(froms[1], "${RUNTIME_IMAGE}");

    let get = |keyword: &str| {
        instructions
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, r)| r.clone())
            .collect::<Vec<_>>()
    };
    let health = get("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(
        health[0].ends_with(r#"CMD ["parley", "healthcheck"]"#),
        "{health:?}"
    );
    assert_eq!(get("STOPSIGNAL"), ["SIGTERM"]);

    // The stop grace it documents covers the longest stop: the drain, the records written
    // after the BYEs, the open connections.
    let drain = parley::config::Config::default().call.drain_s;
    let longest = parley::drain::longest_stop(drain).as_secs();
    let text = dockerfile_text();
    let grace: u64 = text
        .split("--stop-timeout ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the Dockerfile documents --stop-timeout");
    assert!(
        grace >= longest,
        "--stop-timeout {grace} < the longest stop, {longest} s"
    );
    assert!(text.contains(&format!("stop_grace_period: {grace}s")));
    // So do the fleet kit's supervisors.
    let compose = std::fs::read_to_string(repo_root().join("deploy/docker-compose.yml")).unwrap();
    let unit = std::fs::read_to_string(repo_root().join("deploy/systemd/parley.service")).unwrap();
    let seconds_after = |text: &str, key: &str| -> u64 {
        text.split(key)
            .nth(1)
            .and_then(|t| t.trim_start().split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} seconds"))
    };
    assert!(seconds_after(&compose, "stop_grace_period:") >= longest);
    assert!(seconds_after(&unit, "TimeoutStopSec=") >= longest);
    assert!(text.contains("--cap-add SYS_NICE"));

    // The model files the image points Parley at are the ones the fetch script makes, at the
    // version it pins: a new ONNX Runtime must change every place that names the file.
    let env = image_env();
    let fetch = std::fs::read_to_string(repo_root().join("scripts/fetch_models.sh")).unwrap();
    let version = fetch
        .lines()
        .find_map(|l| l.strip_prefix("ORT_VERSION=\""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("ORT_VERSION in fetch_models.sh");
    let lib = format!("libonnxruntime.so.{version}");
    for (var, file) in [
        ("PARLEY_MEDIA_ONNXRUNTIME", lib.as_str()),
        ("PARLEY_MEDIA_VAD_MODEL", "silero_vad.onnx"),
    ] {
        let path = &env.iter().find(|(k, _)| k == var).unwrap().1;
        assert_eq!(path, &format!("/opt/parley/models/{file}"), "{var}");
        assert!(
            get("COPY").iter().any(|c| c.contains(path.as_str())),
            "{path} is not copied into the image"
        );
    }
    assert!(parley::config::DEFAULT_ONNXRUNTIME.ends_with(&lib));
    let run = std::fs::read_to_string(repo_root().join("scripts/run.sh")).unwrap();
    assert!(
        run.contains(&lib),
        "scripts/run.sh names another ONNX Runtime"
    );
}

/// The image's `ENV` settings.
fn image_env() -> Vec<(String, String)> {
    instructions()
        .into_iter()
        .filter(|(k, _)| k == "ENV")
        .flat_map(|(_, rest)| {
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The registry packages (name and version) a workspace resolves to, from `cargo metadata`.
fn resolved_packages(dir: &Path) -> BTreeSet<String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["source"].is_null())
        .map(|p| format!("{} {}", p["name"], p["version"]))
        .collect()
}

#[test]
fn the_dependency_layer_builds_exactly_the_workspaces_dependencies() {
    // What the Dockerfile copies before the stub step: the manifests and the lock file only.
    let stage = tempfile::tempdir().unwrap();
    for file in ["Cargo.toml", "Cargo.lock", "media/Cargo.toml"] {
        let to = stage.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo_root().join(file), &to).unwrap();
    }
    let out = Command::new(repo_root().join("scripts/container/stub_workspace.sh"))
        .arg(stage.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stubbed = resolved_packages(stage.path());
    let real = resolved_packages(&repo_root());
    assert!(stubbed.len() > 100, "{stubbed:?}");
    assert_eq!(
        stubbed, real,
        "the dependency layer would build another set"
    );
    // It stubbed sources, so `cargo build` there compiles dependencies and nothing of ours.
    assert!(stage.path().join("src/main.rs").is_file());
    // and nothing the real tree lacks (it would survive `COPY . .` as a target of its own).
    assert!(!stage.path().join("media/src/main.rs").exists());
    assert!(stage.path().join("media/src/lib.rs").is_file());
}

#[test]
fn each_stage_installs_packages_that_exist() {
    let name = "each_stage_installs_packages_that_exist";
    let apt = Command::new("apt-get")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !require(name, "apt-get (a Debian machine)", apt) {
        return;
    }
    for stage in ["build", "runtime"] {
        let out = Command::new(repo_root().join("scripts/container/packages.sh"))
            .arg(stage)
            .env("PARLEY_APT_SIMULATE", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{stage}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `parley healthcheck` with `env`: (exit code, output).
fn healthcheck(env: &[(String, String)]) -> (i32, String) {
    let out = Command::new(parley_bin())
        .arg("healthcheck")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_images_health_check_follows_the_nodes_readiness() {
    let name = "the_images_health_check_follows_the_nodes_readiness";
    let models = repo_root().join(".cache/models");
    if !require(
        name,
        "the VAD model (scripts/fetch_models.sh)",
        models.join("silero_vad.onnx").is_file(),
    ) {
        return;
    }
    // The image's environment, on this machine: its model paths mapped to the fetched cache,
    // its wildcard HTTP address kept (the health check must find the node through loopback)
    // with a free port.
    let http = free_tcp_port();
    let env: Vec<(String, String)> = image_env()
        .into_iter()
        .filter(|(k, _)| k != "PARLEY_DATA_DIR" && k != "PARLEY_SIP_LISTEN")
        .map(|(k, v)| match k.as_str() {
            "PARLEY_HTTP_LISTEN" => {
                assert!(v.starts_with("0.0.0.0:"), "{v}");
                (k, format!("0.0.0.0:{http}"))
            }
            _ => {
                let mapped = v.replace("/opt/parley/models", models.to_str().unwrap());
                (k, mapped)
            }
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut parley = Parley::launch(Launch {
        env: &borrowed,
        http_listen: Some(format!("127.0.0.1:{http}").parse().unwrap()),
        ..Launch::default()
    });
    assert!(parley.logs().contains("vad=true"), "{}", parley.logs());
    let (code, out) = healthcheck(&env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ready"), "{out}");

    parley.stop(Duration::from_secs(40));
    let (code, out) = healthcheck(&env);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not ready"), "{out}");
}

/// The nice value of each media worker thread of `pid`.
fn media_worker_nices(pid: u32) -> Vec<i64> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("parley-media") {
            continue;
        }
        // Having set its priority, the worker holds CAP_SYS_NICE no more.
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for set in ["CapEff:", "CapPrm:"] {
            let caps = status
                .lines()
                .find_map(|l| l.strip_prefix(set))
                .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
                .unwrap();
            assert_eq!(
                caps & (1 << 23),
                0,
                "{} keeps CAP_SYS_NICE in {set}",
                comm.trim()
            );
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name; nice is field 19 of stat(5).
        let after = stat.rsplit_once(") ").map(|(_, a)| a).unwrap_or("");
        if let Some(nice) = after.split_whitespace().nth(16) {
            out.push(nice.parse().unwrap());
        }
    }
    out
}

#[test]
fn a_permitted_cap_sys_nice_gives_an_unprivileged_node_its_worker_priority() {
    let name = "a_permitted_cap_sys_nice_gives_an_unprivileged_node_its_worker_priority";
    let tools = ["setcap", "setpriv"]
        .iter()
        .all(|t| system_binary(t).is_some());
    let root = unsafe { libc::geteuid() } == 0;
    if !require(
        name,
        "root with setcap and setpriv (libcap2-bin, util-linux)",
        tools && root,
    ) {
        return;
    }
    // The binary as runtime_user.sh leaves it in the image: world-executable, cap_sys_nice+p.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let bin = dir.path().join("parley");
    std::fs::copy(parley_bin(), &bin).unwrap();
    let setcap = Command::new("setcap")
        .arg("cap_sys_nice+p")
        .arg(&bin)
        .output()
        .unwrap();
    if !require(
        name,
        "file capabilities on the temporary directory's file system",
        setcap.status.success(),
    ) {
        return;
    }
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let bin = bin.to_str().unwrap();
    let data = data.to_str().unwrap();

    // As `nobody`, given the capability (docker run --cap-add SYS_NICE): nice -10.
    let as_nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ];
    let start = |extra: &[&str]| {
        let mut command: Vec<&str> = extra.to_vec();
        command.extend_from_slice(&as_nobody);
        command.extend_from_slice(&[bin, "serve"]);
        Parley::launch(Launch {
            command: Some(&command),
            env: &[
                ("PARLEY_DATA_DIR", data),
                ("PARLEY_MEDIA_VAD", "false"),
                ("PARLEY_MEDIA_WORKERS", "2"),
            ],
            ..Launch::default()
        })
    };
    let parley = start(&[]);
    let nices = media_worker_nices(parley.pid().unwrap());
    assert_eq!(nices, [-10, -10], "{}", parley.logs());
    drop(parley);

    // Where the capability is withheld (no --cap-add): it still starts, at the default
    // priority, and says why.
    let parley = start(&["setpriv", "--bounding-set=-sys_nice", "--"]);
    let nices = media_worker_nices(parley.pid().unwrap());
    assert_eq!(nices, [0, 0], "{}", parley.logs());
    let logs = parley.logs();
    assert!(logs.contains("CAP_SYS_NICE"), "{logs}");
}
