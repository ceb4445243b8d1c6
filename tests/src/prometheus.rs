//! Prometheus for the cluster test and `cargo xtask demo --cluster`:
//! release 3.16 built by `cargo xtask setup` from its Go module
//! (`~/.podtrace/bin/prometheus-v0.316.0`). Debian 12's package (2.42, at
//! `/usr/bin/prometheus`, which `tests/e2e/live.rs` scrapes a static target
//! with) is built without the Kubernetes service discovery: its config
//! parser rejects `kubernetes_sd_configs` ("field not found"). Its own
//! config, storage and port; a pid file, stopped by that pid.
//!
//! [`scrape_config_for`] turns the shipped `deploy/prometheus-scrape.yaml`
//! (in-cluster: the pod's service account) into one for a Prometheus
//! outside the cluster: the API server's URL, its token and insecure TLS in
//! each `kubernetes_sd_configs` entry, as the cluster's kubeconfigs have.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    pidfile::{pid_file_process, write_pid_file},
    util::{free_port, http_get, setup_bin, tail},
};

/// The module version `cargo xtask setup` builds (v0.3MM.P: release 3.MM.P).
pub const MODULE_VERSION: &str = "v0.316.0";

/// `~/.podtrace/bin/prometheus-v0.316.0`; panics with what to run when it
/// is missing.
pub fn bin() -> PathBuf {
    setup_bin(
        &format!("prometheus-{MODULE_VERSION}"),
        "it from github.com/prometheus/prometheus",
    )
}

/// A query string's URL encoding (everything but unreserved characters).
pub fn encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `cfg` (the shipped Prometheus config with `scrape_configs`, parsed)
/// pointed at the API server `api_url` with `token` and insecure TLS,
/// scraping every `interval`; as JSON (which Prometheus reads as YAML).
pub fn scrape_config_for(mut cfg: Value, api_url: &str, token: &str, interval: &str) -> String {
    cfg["global"] = serde_json::json!({
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "evaluation_interval": interval,
    });
    let jobs = cfg["scrape_configs"]
        .as_array_mut()
        .expect("the scrape config has scrape_configs");
    let mut sd = 0;
    for job in jobs {
        for k in job["kubernetes_sd_configs"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            k["api_server"] = api_url.into();
            k["authorization"] = serde_json::json!({"credentials": token});
            k["tls_config"] = serde_json::json!({"insecure_skip_verify": true});
            sd += 1;
        }
    }
    assert!(sd > 0, "the scrape config has no kubernetes_sd_configs");
    serde_json::to_string_pretty(&cfg).expect("JSON")
}

/// A running Prometheus.
pub struct Prometheus {
    /// `127.0.0.1:PORT`: its HTTP API.
    pub addr: String,
    pub log: PathBuf,
    pid_file: PathBuf,
    child: Option<Child>,
}

impl Prometheus {
    /// Starts Prometheus with `config` (files in `dir`, pid file
    /// `PIDS/prometheus.pid`); returns once `/-/ready` answers.
    pub fn start(dir: &Path, pids: &Path, config: &str) -> Prometheus {
        std::fs::create_dir_all(dir).expect("create Prometheus's dir");
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config).expect("write prometheus.yml");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("prometheus.log");
        let child = Command::new(bin())
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("prometheus log"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin().display()));
        let pid_file = pids.join("prometheus.pid");
        write_pid_file(&pid_file, child.id());
        let mut p = Prometheus {
            addr,
            log,
            pid_file,
            child: Some(child),
        };
        let t = Instant::now();
        while http_get(&p.addr, "/-/ready").is_none_or(|(s, _)| s != 200) {
            if let Some(st) = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("prometheus exited ({st}):\n{}", tail(&p.log, 30));
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "prometheus not ready after 60 s:\n{}",
                tail(&p.log, 30)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// GET `path` of the HTTP API, as JSON (`status` must be `success`).
    pub fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(&self.addr, path)
            .unwrap_or_else(|| panic!("prometheus at {} does not answer {path}", self.addr));
        assert_eq!(status, 200, "prometheus {path}: {body}");
        let v: Value = serde_json::from_str(&body).expect("prometheus answers JSON");
        assert_eq!(v["status"], "success", "prometheus {path}: {body}");
        v
    }

    /// An instant query's result vector.
    pub fn query(&self, q: &str) -> Vec<Value> {
        let v = self.api(&format!("/api/v1/query?query={}", encode_query(q)));
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// An instant query's single value (panics unless exactly one series).
    pub fn scalar(&self, q: &str) -> f64 {
        let r = self.query(q);
        assert_eq!(r.len(), 1, "query {q}: expected one series, got {r:?}");
        value_of(&r[0]).unwrap_or_else(|| panic!("query {q}: no value in {r:?}"))
    }

    /// The active targets (`/api/v1/targets`).
    pub fn active_targets(&self) -> Vec<Value> {
        self.api("/api/v1/targets")["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Stops it (SIGTERM, SIGKILL after 10 s) by its pid file's pid.
    pub fn stop(&mut self) {
        if let Some(pid) = pid_file_process(&self.pid_file) {
            // SAFETY: plain kill(2) of the process our pid file names.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if self
                    .child
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_some())
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(pid) = pid_file_process(&self.pid_file) {
                // SAFETY: as above.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A result sample's value (`[time, "value"]`).
pub fn value_of(sample: &Value) -> Option<f64> {
    sample["value"][1].as_str()?.parse().ok()
}
