//! End-to-end: runs log to a real MLflow tracking server on 127.0.0.1
//! (`scripts/mlflow-local.sh` installs MLflow with pip into a virtualenv
//! outside the clone when it is missing, and starts the server), read back
//! through MLflow's REST API; a server killed mid-run neither fails nor
//! stalls the run, and the run names what it could not log.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{lpo, scratch, text};
use lpo_track::mlflow::{rest_get, search_runs};

/// A tracking server in `dir`, stopped when dropped.
struct Server {
    dir: PathBuf,
    uri: String,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mlflow-local.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["start", &dir.display().to_string(), &port.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/mlflow-local.sh could not install or start MLflow:\n{}",
            text(&out.stderr)
        );
        Server {
            dir: dir.to_path_buf(),
            uri: format!("http://127.0.0.1:{port}"),
        }
    }

    fn stop(&self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mlflow-local.sh");
        let _ = Command::new("bash")
            .arg(&script)
            .args(["stop", &self.dir.display().to_string()])
            .output();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn recipe(name: &str, steps: u32) -> String {
    common::small_recipe(
        name,
        steps,
        0,
        "",
        r#"grid = { "loss.kind" = ["lpo", "dpo"] }"#,
    )
}

/// The artifact paths of an MLflow run.
fn artifacts(uri: &str, run_id: &str) -> Vec<String> {
    let listed = rest_get(uri, "artifacts/list", &[("run_id", run_id)]).unwrap();
    listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect()
}

/// The value of `column` in each row of a run's metrics.csv.
fn column(run: &Path, column: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = header.iter().position(|c| *c == column).unwrap();
    lines
        .map(|l| l.split(',').nth(at).unwrap().parse().unwrap())
        .collect()
}

/// `run`'s MLflow run among `logged`: named and tagged, with the recipe as
/// params, every step's loss at its step and the run's files as artifacts.
fn check_logged(uri: &str, logged: &[serde_json::Value], run: &Path) {
    let id = run.file_name().unwrap().to_string_lossy().into_owned();
    let found = logged
        .iter()
        .find(|r| {
            r["data"]["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "lpo.run_id" && t["value"] == id.as_str())
        })
        .unwrap_or_else(|| panic!("no MLflow run tagged {id}"));
    let info = &found["info"];
    assert_eq!(info["status"], "FINISHED");
    let label = if info["run_name"].as_str().unwrap().starts_with("lpo-") {
        "lpo"
    } else {
        "dpo"
    };
    assert_eq!(info["run_name"], format!("{label}-{id}"));
    let params = found["data"]["params"].as_array().unwrap();
    let param = |k: &str| {
        params
            .iter()
            .find(|p| p["key"] == k)
            .map(|p| p["value"].as_str().unwrap().to_string())
    };
    assert_eq!(param("loss.kind").as_deref(), Some(label));
    assert_eq!(param("train.steps").as_deref(), Some("6"));
    assert!(params.len() > 40, "{}", params.len());
    // Every step's loss, at its step, as metrics.csv has it (f32 on the way).
    let run_id = info["run_id"].as_str().unwrap();
    let history = rest_get(
        uri,
        "metrics/get-history",
        &[("run_id", run_id), ("metric_key", "train/loss")],
    )
    .unwrap();
    let mut points: Vec<(i64, f64)> = history["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["step"].as_i64().unwrap(), m["value"].as_f64().unwrap()))
        .collect();
    points.sort_by_key(|p| p.0);
    let want = column(run, "loss");
    assert_eq!(points.len(), want.len(), "{points:?}");
    for (i, ((step, got), want)) in points.iter().zip(&want).enumerate() {
        assert_eq!(*step, i as i64);
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }
    let files = artifacts(uri, run_id);
    for file in ["config.toml", "summary.json", "metrics.csv", "eval.csv"] {
        assert!(files.iter().any(|f| f == file), "{files:?}");
    }
}

#[test]
fn a_sweep_logs_each_run_to_mlflow_without_changing_its_files() {
    let dir = scratch("mlflow-sweep");
    let server = Server::start(&dir.join("server"));
    std::fs::write(dir.join("r.toml"), recipe("fam", 6)).unwrap();
    let out = lpo(&dir, &["sweep", "r.toml", "--mlflow", &server.uri]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("not logged"),
        "{}",
        text(&out.stderr)
    );
    let runs = common::run_dirs(&dir.join("results/fam"));
    assert_eq!(runs.len(), 2);

    let logged = search_runs(&server.uri, "fam").unwrap();
    assert_eq!(logged.len(), 2, "{logged:?}");
    for run in &runs {
        check_logged(&server.uri, &logged, run);
    }

    // The report's files go to one MLflow run, `report`, replaced by the
    // next report of the family.
    for _ in 0..2 {
        let out = lpo(&dir, &["report", "r.toml", "--mlflow", &server.uri]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("logged the report to MLflow run"),
            "{}",
            text(&out.stdout)
        );
    }
    let reports: Vec<_> = search_runs(&server.uri, "fam")
        .unwrap()
        .into_iter()
        .filter(|r| r["info"]["run_name"] == "report")
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let run_id = reports[0]["info"]["run_id"].as_str().unwrap();
    let files = artifacts(&server.uri, run_id);
    for file in ["report.md", "report.html", "report.csv"] {
        assert!(files.iter().any(|f| f == file), "{files:?}");
    }

    // Tracking changes no run id and no byte of metrics.csv or eval.csv.
    let plain = scratch("mlflow-sweep-plain");
    std::fs::write(plain.join("r.toml"), recipe("fam", 6)).unwrap();
    let out = lpo(&plain, &["sweep", "r.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plain_runs = common::run_dirs(&plain.join("results/fam"));
    let names = |runs: &[PathBuf]| -> Vec<String> {
        runs.iter()
            .map(|r| r.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(&runs), names(&plain_runs));
    for (a, b) in runs.iter().zip(&plain_runs) {
        for file in ["metrics.csv", "eval.csv"] {
            assert_eq!(
                std::fs::read(a.join(file)).unwrap(),
                std::fs::read(b.join(file)).unwrap(),
                "{file}"
            );
        }
    }
}

#[test]
fn a_server_killed_mid_run_neither_fails_nor_stalls_it() {
    let dir = scratch("mlflow-killed");
    let server = Server::start(&dir.join("server"));
    std::fs::write(dir.join("r.toml"), recipe("fam", 400)).unwrap();
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args([
            "run",
            "r.toml",
            "--index",
            "1",
            "--no-bars",
            "--threads",
            "1",
        ])
        .args(["--mlflow", &server.uri])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once training is under way (its metrics.csv is written every 2 s),
    // the server goes away.
    let run = loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the run never started training"
        );
        let written = common::run_dirs(&dir.join("results/fam"))
            .into_iter()
            .find(|r| r.join("metrics.csv").exists() && r.join("mlflow.json").exists());
        if let Some(run) = written {
            break run;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    server.stop();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "complete", "{summary}");
    assert_eq!(column(&run, "loss").len(), 400);
    // The warning names what was not logged and where it is kept.
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning: MLflow at "))
        .unwrap_or_else(|| panic!("no MLflow warning:\n{stderr}"));
    assert!(
        warning.contains("metric values")
            && warning.contains("not logged")
            && warning.contains("mlflow-unsent.jsonl"),
        "{warning}"
    );
    let unsent = std::fs::read_to_string(run.join("mlflow-unsent.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = unsent
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines
        .iter()
        .any(|l| l["type"] == "metric" && l["key"] == "train/loss"));
    assert!(lines
        .iter()
        .any(|l| l["type"] == "status" && l["status"] == "FINISHED"));
    assert!(lines.iter().all(|l| l["error"].is_string()));
}

/// A bad `--mlflow` (another scheme, credentials, shell metacharacters)
/// exits 2 naming the problem, before anything is written.
#[test]
fn a_bad_mlflow_uri_is_refused_before_anything_is_written() {
    let dir = scratch("mlflow-bad-uri");
    std::fs::write(dir.join("r.toml"), recipe("fam", 2)).unwrap();
    for (uri, message) in [
        ("file:///tmp/mlruns", "over http:// or https://"),
        ("https://me:secret@mlflow.example.org", "holds credentials"),
        ("http://h/$(touch pwned)", "not a URI"),
    ] {
        for args in [
            vec!["sweep", "r.toml", "--mlflow", uri],
            vec!["run", "r.toml", "--index", "0", "--mlflow", uri],
            vec!["report", "r.toml", "--mlflow", uri],
        ] {
            let out = lpo(&dir, &args);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(message), "{args:?}: {stderr}");
        }
    }
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 1, "only r.toml: {entries:?}");
}
