//! Load harness for billing leases (not a test of behaviour; `#[ignore]`d, run by
//! `scripts/bench_leases.sh`): 50 concurrent HTTP clients each loop reserve → renew →
//! release against a release Parley, on SQLite (default) or on PostgreSQL
//! (`LEASE_LOAD_DATABASE_URL`). Prints one JSON line: operations per second, latency
//! percentiles, errors, and whether the books balance afterwards.
//!
//! `LEASE_LOAD_CLIENTS` (default 50), `LEASE_LOAD_SECONDS` (default 10).

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a load benchmark: scripts/bench_leases.sh"]
fn lease_operations_per_second() {
    let clients = env_u64("LEASE_LOAD_CLIENTS", 50) as usize;
    let seconds = env_u64("LEASE_LOAD_SECONDS", 10);
    let db = std::env::var("LEASE_LOAD_DATABASE_URL").unwrap_or_default();
    let p = Parley::start(&[("PARLEY_DATABASE_URL", &db), ("PARLEY_LOG", "warn")]);
    let root = p.printed_admin_key();
    let (_, acc) = p.api(
        "POST",
        "/v1/accounts",
        &root,
        &[],
        Some(r#"{"name":"load"}"#),
    );
    let acc = acc["id"].as_str().unwrap().to_string();
    p.api(
        "PUT",
        &format!("/v1/accounts/{acc}/plan"),
        &root,
        &[],
        Some(r#"{"rate_per_minute":600000,"increment_s":1}"#),
    );
    // Enough money that no grant is ever cut.
    p.api(
        "POST",
        &format!("/v1/accounts/{acc}/topups"),
        &root,
        &[],
        Some(r#"{"amount":1000000000000}"#),
    );
    let (_, key) = p.api(
        "POST",
        &format!("/v1/accounts/{acc}/keys"),
        &root,
        &[],
        Some(r#"{"scope":"write"}"#),
    );
    let key = key["key"].as_str().unwrap().to_string();
    let base = format!("http://{}", p.http_addr);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = rt.block_on(async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(clients)
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..clients {
            let (http, base, key, ops, errors) = (
                http.clone(),
                base.clone(),
                key.clone(),
                ops.clone(),
                errors.clone(),
            );
            tasks.spawn(async move {
                let mut lat = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let timed = |path: String, body: String, idem: String| {
                        let req = http
                            .post(format!("{base}{path}"))
                            .bearer_auth(&key)
                            .header("Idempotency-Key", idem)
                            .body(body);
                        async move {
                            let t = Instant::now();
                            let r = req.send().await;
                            let ok = matches!(&r, Ok(r) if r.status().is_success());
                            let json: serde_json::Value = match r {
                                Ok(r) => r.json().await.unwrap_or_default(),
                                Err(_) => Default::default(),
                            };
                            (ok, json, t.elapsed())
                        }
                    };
                    let (ok, g, t) = timed(
                        "/v1/leases".into(),
                        r#"{"seconds":30}"#.into(),
                        format!("{c}-{n}-r"),
                    )
                    .await;
                    lat.push(t);
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let id = g["id"].as_str().unwrap_or_default().to_string();
                    let (ok1, _, t1) = timed(
                        format!("/v1/leases/{id}/renew"),
                        r#"{"used_seconds":20,"seconds":30}"#.into(),
                        format!("{c}-{n}-n"),
                    )
                    .await;
                    let (ok2, _, t2) = timed(
                        format!("/v1/leases/{id}/release"),
                        r#"{"used_seconds":35}"#.into(),
                        format!("{c}-{n}-x"),
                    )
                    .await;
                    lat.extend([t1, t2]);
                    errors.fetch_add(u64::from(!ok1) + u64::from(!ok2), Ordering::Relaxed);
                    ops.fetch_add(3, Ordering::Relaxed);
                }
                lat
            });
        }
        let mut all = Vec::new();
        while let Some(l) = tasks.join_next().await {
            all.extend(l.unwrap());
        }
        all
    });
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let (_, bal) = p.api(
        "GET",
        &format!("/v1/accounts/{acc}/balance"),
        &root,
        &[],
        None,
    );
    let result = serde_json::json!({
        "backend": if db.is_empty() { "sqlite" } else { "postgres" },
        "clients": clients,
        "seconds": seconds,
        "operations": ops.load(Ordering::Relaxed),
        "ops_per_second": ops.load(Ordering::Relaxed) as f64 / seconds as f64,
        "errors": errors.load(Ordering::Relaxed),
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
        "reserved_after": bal["reserved"],
    });
    println!("{result}");
}
