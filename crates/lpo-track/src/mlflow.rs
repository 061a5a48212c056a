//! MLflow as an opt-in sink: one MLflow run per lpo run, fed through the
//! tracking server's REST API (`/api/2.0/mlflow/...`) by one background
//! thread, so a tracker that is down or slow never fails or stalls training.
//!
//! - The run: experiment `experiment` (created when missing), run name
//!   `<label>-<run id>`, tags `lpo.recipe`, `lpo.run_id`, `lpo.label`,
//!   `lpo.version`, the resolved recipe as params (flattened keys), every
//!   scalar of the TensorBoard file as a metric with its step, and at the
//!   end the run's files as artifacts (when the server proxies artifacts,
//!   `mlflow-artifacts:` URIs) and its status.
//! - MLflow's limits: `runs/log-batch` takes at most 1000 metrics, 100
//!   params and 100 tags (1000 items) per request; a param value longer than
//!   6000 characters or a key longer than 250 is cut to that length.
//! - Failure: each request has a 3 s connect and a 10 s overall timeout and
//!   is tried 3 times (0.5 s, then 1 s apart); a server error, timeout or
//!   refused connection after that marks the server down and nothing more is
//!   sent. A request the server refuses (4xx) drops only its items. Either
//!   way the items not logged are written to `mlflow-unsent.jsonl` in the run
//!   directory at the end, and [`MlflowSink::finish`] returns a warning
//!   naming them. `finish` waits at most [`FINISH_WAIT`] for the thread.
//! - Resume: `mlflow.json` in the run directory keeps the MLflow run's id;
//!   a resumed lpo run continues that MLflow run (params are not logged
//!   again; MLflow refuses changed values) and logs the steps it re-trains.
//! - Secrets: never in recipes. `MLFLOW_TRACKING_TOKEN` (bearer) or
//!   `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` (basic), the
//!   variables MLflow's own clients read, authenticate the requests.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The record of the MLflow run a run directory logs to.
pub const RUN_RECORD: &str = "mlflow.json";
/// What could not be logged, one JSON object per line.
pub const UNSENT: &str = "mlflow-unsent.jsonl";
/// The longest [`MlflowSink::finish`] waits for the sender.
pub const FINISH_WAIT: Duration = Duration::from_secs(30);
/// MLflow's per-request limits of `runs/log-batch`.
const MAX_METRICS: usize = 1000;
const MAX_PARAMS: usize = 100;
const MAX_TAGS: usize = 100;
/// MLflow's longest param value and key.
pub const MAX_PARAM_VALUE: usize = 6000;
const MAX_KEY: usize = 250;
const ATTEMPTS: u32 = 3;

/// Where a run logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The tracking server, `http://host:port` or `https://...`.
    pub uri: String,
    /// The experiment's name.
    pub experiment: String,
}

/// What names and describes a run's MLflow run.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// MLflow's run name.
    pub name: String,
    /// Tags (`lpo.run_id`, ...).
    pub tags: Vec<(String, String)>,
    /// The resolved recipe, flattened (`loss.beta` = `0.1`).
    pub params: Vec<(String, String)>,
}

/// One thing to log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Item {
    /// A param.
    Param { key: String, value: String },
    /// A tag.
    Tag { key: String, value: String },
    /// A metric value at a step.
    Metric {
        key: String,
        value: f64,
        step: i64,
        timestamp: i64,
    },
    /// A file of the run directory, uploaded as an artifact.
    Artifact { path: PathBuf },
    /// The run's final status (`FINISHED` or `FAILED`).
    Status { status: String, end_time: i64 },
}

impl Item {
    fn noun(&self) -> &'static str {
        match self {
            Item::Param { .. } => "params",
            Item::Tag { .. } => "tags",
            Item::Metric { .. } => "metric values",
            Item::Artifact { .. } => "artifacts",
            Item::Status { .. } => "status updates",
        }
    }
}

/// The state the training thread and the sender share.
#[derive(Default)]
struct State {
    queue: VecDeque<Item>,
    /// Taken by the sender, not yet confirmed.
    in_flight: Vec<Item>,
    /// Not logged, with why.
    unsent: Vec<(Item, String)>,
    /// Why the server is taken as down (nothing more is sent).
    down: Option<String>,
    finishing: bool,
    done: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic in the sender leaves consistent data: recover it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A run's MLflow sink: queue items with [`MlflowSink::metrics`]; a
/// background thread sends them.
pub struct MlflowSink {
    shared: Arc<Shared>,
    run_dir: PathBuf,
    uri: String,
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl MlflowSink {
    /// Starts the sender for the run in `run_dir`: it finds or creates the
    /// experiment and the run (or continues the one `mlflow.json` records),
    /// then logs `info`'s tags and params. Returns at once.
    pub fn start(target: &Target, info: RunInfo, run_dir: &Path) -> MlflowSink {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let sender = Sender {
            client: Client::new(&target.uri),
            shared: Arc::clone(&shared),
            run_dir: run_dir.to_path_buf(),
            run: None,
        };
        let owned = target.clone();
        let spawned = std::thread::Builder::new()
            .name("mlflow".into())
            .spawn(move || sender.run(&owned, info));
        let sink = MlflowSink {
            shared,
            run_dir: run_dir.to_path_buf(),
            uri: target.uri.clone(),
        };
        if let Err(e) = spawned {
            let mut state = sink.shared.lock();
            state.down = Some(format!("cannot start the sender thread: {e}"));
            state.done = true;
        }
        sink
    }

    /// Queues one step's scalars (`tag`, value).
    pub fn metrics(&self, step: i64, values: &[(&str, f64)]) {
        let timestamp = now_ms();
        let items = values.iter().map(|&(key, value)| Item::Metric {
            key: key.to_string(),
            value,
            step,
            timestamp,
        });
        self.push(items);
    }

    fn push(&self, items: impl IntoIterator<Item = Item>) {
        let mut state = self.shared.lock();
        if state.down.is_some() {
            let why = state.down.clone().unwrap_or_default();
            state
                .unsent
                .extend(items.into_iter().map(|i| (i, why.clone())));
        } else {
            state.queue.extend(items);
        }
        drop(state);
        self.shared.wake.notify_all();
    }

    /// Queues `artifacts` (files of the run directory that exist) and the
    /// final status, waits at most [`FINISH_WAIT`] for the sender, writes
    /// what was not logged to `mlflow-unsent.jsonl` and returns a warning
    /// naming it (`None` when everything was logged).
    pub fn finish(self, complete: bool, artifacts: &[&str]) -> Result<Option<String>> {
        let files = artifacts
            .iter()
            .map(|name| self.run_dir.join(name))
            .filter(|p| p.is_file())
            .map(|path| Item::Artifact { path });
        let status = Item::Status {
            status: if complete { "FINISHED" } else { "FAILED" }.into(),
            end_time: now_ms(),
        };
        self.push(files.chain([status]));
        let deadline = Instant::now() + FINISH_WAIT;
        let mut state = self.shared.lock();
        state.finishing = true;
        self.shared.wake.notify_all();
        while !state.done && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            state = self
                .shared
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let why_late = format!("not sent within {} s", FINISH_WAIT.as_secs());
        let mut unsent = std::mem::take(&mut state.unsent);
        unsent.extend(state.in_flight.drain(..).map(|i| (i, why_late.clone())));
        unsent.extend(state.queue.drain(..).map(|i| (i, why_late.clone())));
        // A sender still waiting on the server gives up its items here.
        state.done = true;
        drop(state);
        self.write_unsent(&unsent)
    }

    fn write_unsent(&self, unsent: &[(Item, String)]) -> Result<Option<String>> {
        let path = self.run_dir.join(UNSENT);
        if unsent.is_empty() {
            return Ok(None);
        }
        let mut text = String::new();
        for (item, why) in unsent {
            let mut line = serde_json::to_value(item)?;
            line["error"] = Value::from(why.as_str());
            text.push_str(&line.to_string());
            text.push('\n');
        }
        append(&path, &text)?;
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for (item, _) in unsent {
            match counts.iter_mut().find(|(n, _)| *n == item.noun()) {
                Some((_, c)) => *c += 1,
                None => counts.push((item.noun(), 1)),
            }
        }
        let what: Vec<String> = counts.iter().map(|(n, c)| format!("{c} {n}")).collect();
        Ok(Some(format!(
            "MLflow at {}: {} not logged ({}); kept in {}",
            self.uri,
            what.join(", "),
            unsent[0].1,
            path.display()
        )))
    }
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("failed to open `{}`", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("failed to write `{}`", path.display()))
}

/// The MLflow run a run directory logs to (`mlflow.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The tracking server.
    pub uri: String,
    /// The experiment's id.
    pub experiment_id: String,
    /// MLflow's run id.
    pub run_id: String,
    /// Where its artifacts go.
    pub artifact_uri: String,
}

/// The background sender.
struct Sender {
    client: Client,
    shared: Arc<Shared>,
    run_dir: PathBuf,
    run: Option<RunRecord>,
}

/// Why a request failed: the server is down (stop sending) or refused this
/// request (drop its items, go on).
#[derive(Debug)]
enum Failure {
    Down(String),
    Refused(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Down(why) | Failure::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Failure {}

impl Sender {
    fn run(mut self, target: &Target, info: RunInfo) {
        match self.open(target, info) {
            Ok(()) => self.send_loop(),
            Err(failure) => self.give_up(failure.to_string()),
        }
        let mut state = self.shared.lock();
        state.done = true;
        drop(state);
        self.shared.wake.notify_all();
    }

    /// Finds or creates the experiment and the run, and queues the tags and
    /// params first.
    fn open(&mut self, target: &Target, info: RunInfo) -> Result<(), Failure> {
        let record_path = self.run_dir.join(RUN_RECORD);
        let previous: Option<RunRecord> = std::fs::read(&record_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|r: &RunRecord| r.uri == target.uri);
        let mut first = Vec::new();
        let record = match previous {
            Some(record) => {
                let body = json!({"run_id": record.run_id, "status": "RUNNING"});
                self.client.post("runs/update", &body)?;
                record
            }
            None => {
                let experiment_id = experiment_id(&self.client, &target.experiment)?;
                let body = json!({
                    "experiment_id": experiment_id,
                    "run_name": info.name,
                    "start_time": now_ms(),
                });
                let created = self.client.post("runs/create", &body)?;
                let run = &created["run"]["info"];
                let record = RunRecord {
                    uri: target.uri.clone(),
                    experiment_id,
                    run_id: run["run_id"].as_str().unwrap_or_default().to_string(),
                    artifact_uri: run["artifact_uri"].as_str().unwrap_or_default().into(),
                };
                let text = serde_json::to_string_pretty(&record).expect("serializes");
                if let Err(e) = std::fs::write(&record_path, text) {
                    eprintln!("warning: failed to write `{}`: {e}", record_path.display());
                }
                first.extend(
                    info.params
                        .into_iter()
                        .map(|(key, value)| param(key, value)),
                );
                record
            }
        };
        first.extend(
            info.tags
                .into_iter()
                .map(|(key, value)| Item::Tag { key, value }),
        );
        self.run = Some(record);
        let mut state = self.shared.lock();
        for item in first.into_iter().rev() {
            state.queue.push_front(item);
        }
        Ok(())
    }

    /// Sends what is queued, in batches, until finishing with an empty queue.
    fn send_loop(&mut self) {
        loop {
            let batch = {
                let mut state = self.shared.lock();
                while state.queue.is_empty() && !state.finishing {
                    state = self
                        .shared
                        .wake
                        .wait_timeout(state, Duration::from_secs(2))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                if state.done || (state.queue.is_empty() && state.finishing) {
                    return;
                }
                let batch = take_batch(&mut state.queue);
                state.in_flight = batch.clone();
                batch
            };
            let sent = self.send(&batch);
            let mut state = self.shared.lock();
            if state.done {
                return; // finish gave up waiting and took the items
            }
            state.in_flight.clear();
            match sent {
                Ok(()) => {}
                Err(Failure::Refused(why)) => {
                    state
                        .unsent
                        .extend(batch.into_iter().map(|i| (i, why.clone())));
                }
                Err(Failure::Down(why)) => {
                    state
                        .unsent
                        .extend(batch.into_iter().map(|i| (i, why.clone())));
                    drop(state);
                    self.give_up(why);
                    return;
                }
            }
        }
    }

    /// Marks the server down: everything queued, and all that comes later,
    /// goes to the unsent record.
    fn give_up(&self, why: String) {
        let mut state = self.shared.lock();
        let queued: Vec<Item> = state.queue.drain(..).collect();
        state
            .unsent
            .extend(queued.into_iter().map(|i| (i, why.clone())));
        state.down = Some(why);
    }

    fn send(&self, batch: &[Item]) -> Result<(), Failure> {
        let run = self.run.as_ref().expect("opened");
        match batch {
            [Item::Artifact { path }] => upload(&self.client, &run.artifact_uri, path),
            [Item::Status { status, end_time }] => self
                .client
                .post(
                    "runs/update",
                    &json!({"run_id": run.run_id, "status": status, "end_time": end_time}),
                )
                .map(|_| ()),
            _ => {
                let (mut metrics, mut params, mut tags) = (Vec::new(), Vec::new(), Vec::new());
                for item in batch {
                    match item {
                        Item::Metric {
                            key,
                            value,
                            step,
                            timestamp,
                        } => metrics.push(metric_json(key, *value, *step, *timestamp)),
                        Item::Param { key, value } => {
                            params.push(json!({"key": key, "value": value}))
                        }
                        Item::Tag { key, value } => tags.push(json!({"key": key, "value": value})),
                        Item::Artifact { .. } | Item::Status { .. } => {
                            unreachable!("sent alone (take_batch)")
                        }
                    }
                }
                let body = json!({"run_id": run.run_id, "metrics": metrics, "params": params, "tags": tags});
                self.client.post("runs/log-batch", &body).map(|_| ())
            }
        }
    }
}

/// The id of the experiment `name`, created when missing.
fn experiment_id(client: &Client, name: &str) -> Result<String, Failure> {
    let found = client.get("experiments/get-by-name", &[("experiment_name", name)]);
    let id = match found {
        Ok(v) => v["experiment"]["experiment_id"].clone(),
        Err(Failure::Refused(why)) if why.contains("RESOURCE_DOES_NOT_EXIST") => {
            client.post("experiments/create", &json!({"name": name}))?["experiment_id"].clone()
        }
        Err(e) => return Err(e),
    };
    id.as_str()
        .map(str::to_string)
        .ok_or_else(|| Failure::Down(format!("no experiment id for `{name}`")))
}

/// Uploads one file through the server's artifact proxy into the run whose
/// artifacts live at `artifact_uri`.
fn upload(client: &Client, artifact_uri: &str, path: &Path) -> Result<(), Failure> {
    let Some(root) = artifact_uri.strip_prefix("mlflow-artifacts:/") else {
        return Err(Failure::Refused(format!(
            "the server stores artifacts at `{artifact_uri}`, which lpo cannot write through it (start it with --serve-artifacts)"
        )));
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::Refused(format!("failed to read `{}`: {e}", path.display())))?;
    let at = format!("{}/{}", root.trim_matches('/'), name.unwrap_or_default());
    client.put_artifact(&at, &bytes)
}

/// Logs a family's report files (report.md, report.html, the plots, ...)
/// as the artifacts of one MLflow run named `report` in `target`'s
/// experiment, tagged `lpo.report` = `family`: a later report of the family
/// replaces them. Returns the MLflow run's id.
pub fn upload_report(target: &Target, family: &str, files: &[PathBuf]) -> Result<String> {
    let client = Client::new(&target.uri);
    let experiment = experiment_id(&client, &target.experiment)?;
    let filter = format!("tags.`lpo.report` = '{}'", family.replace('\'', "\\'"));
    let body = json!({"experiment_ids": [experiment], "filter": filter, "max_results": 1});
    let found = client.post("runs/search", &body)?;
    let info = match found["runs"].get(0) {
        Some(run) => run["info"].clone(),
        None => {
            let tags = json!([{"key": "lpo.report", "value": family}, {"key": "lpo.recipe", "value": family}]);
            let body = json!({"experiment_id": experiment, "run_name": "report", "start_time": now_ms(), "tags": tags});
            client.post("runs/create", &body)?["run"]["info"].clone()
        }
    };
    let run_id = info["run_id"].as_str().unwrap_or_default().to_string();
    let artifact_uri = info["artifact_uri"].as_str().unwrap_or_default();
    for file in files {
        upload(&client, artifact_uri, file)?;
    }
    let body = json!({"run_id": run_id, "status": "FINISHED", "end_time": now_ms()});
    client.post("runs/update", &body)?;
    Ok(run_id)
}

/// A metric as MLflow's JSON takes it: NaN and infinities as strings.
fn metric_json(key: &str, value: f64, step: i64, timestamp: i64) -> Value {
    let value = if value.is_finite() {
        Value::from(value)
    } else if value.is_nan() {
        Value::from("NaN")
    } else if value > 0.0 {
        Value::from("Infinity")
    } else {
        Value::from("-Infinity")
    };
    json!({"key": cut(key, MAX_KEY), "value": value, "step": step, "timestamp": timestamp})
}

/// A param within MLflow's limits.
fn param(key: String, value: String) -> Item {
    Item::Param {
        key: cut(&key, MAX_KEY),
        value: cut(&value, MAX_PARAM_VALUE),
    }
}

/// `text` cut to at most `max` characters (on a character boundary).
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_string(),
        None => text.to_string(),
    }
}

/// The next request's items from the front of `queue`: one artifact or one
/// status alone, else a log-batch within MLflow's limits.
fn take_batch(queue: &mut VecDeque<Item>) -> Vec<Item> {
    if matches!(
        queue.front(),
        Some(Item::Artifact { .. } | Item::Status { .. })
    ) {
        return queue.pop_front().into_iter().collect();
    }
    let (mut metrics, mut params, mut tags) = (0, 0, 0);
    let mut batch = Vec::new();
    while let Some(item) = queue.front() {
        let room = match item {
            Item::Metric { .. } => metrics < MAX_METRICS,
            Item::Param { .. } => params < MAX_PARAMS,
            Item::Tag { .. } => tags < MAX_TAGS,
            Item::Artifact { .. } | Item::Status { .. } => false,
        };
        if !room || metrics + params + tags >= MAX_METRICS {
            break;
        }
        match item {
            Item::Metric { .. } => metrics += 1,
            Item::Param { .. } => params += 1,
            _ => tags += 1,
        }
        batch.extend(queue.pop_front());
    }
    batch
}

/// MLflow's REST API with bounded timeouts and retries.
struct Client {
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
}

impl Client {
    fn new(uri: &str) -> Client {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build();
        Client {
            base: uri.trim_end_matches('/').to_string(),
            agent: config.into(),
            auth: auth_header(),
        }
    }

    fn post(&self, endpoint: &str, body: &Value) -> Result<Value, Failure> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let text = body.to_string();
        self.retry(&url, || {
            self.authorized(self.agent.post(&url))
                .header("Content-Type", "application/json")
                .send(text.as_bytes())
        })
    }

    fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, Failure> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        self.retry(&url, || {
            self.authorized(self.agent.get(&url))
                .query_pairs(query.iter().copied())
                .call()
        })
    }

    fn put_artifact(&self, path: &str, bytes: &[u8]) -> Result<(), Failure> {
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{path}", self.base);
        self.retry(&url, || self.authorized(self.agent.put(&url)).send(bytes))
            .map(|_| ())
    }

    /// `request` with the credentials, if any.
    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(auth) => request.header("Authorization", auth),
            None => request,
        }
    }

    /// Runs `call` up to [`ATTEMPTS`] times while the server fails (no
    /// connection, a timeout, a 5xx or 429); a 4xx refuses at once.
    fn retry(
        &self,
        url: &str,
        call: impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, Failure> {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(500 << (attempt - 1)));
            }
            match call() {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let body = response.body_mut().read_to_string().unwrap_or_default();
                    if (200..300).contains(&status) {
                        return Ok(serde_json::from_str(&body).unwrap_or(Value::Null));
                    }
                    let message = format!("{url}: HTTP {status}: {}", cut(body.trim(), 300));
                    if status == 429 || status >= 500 {
                        last = message;
                        continue;
                    }
                    return Err(Failure::Refused(message));
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(Failure::Down(last))
    }
}

/// The Authorization header from MLflow's own environment variables.
fn auth_header() -> Option<String> {
    auth_from(|name| std::env::var(name).ok())
}

/// The Authorization header from the variables `var` reads: a bearer token
/// (`MLFLOW_TRACKING_TOKEN`) first, else basic auth
/// (`MLFLOW_TRACKING_USERNAME`, `MLFLOW_TRACKING_PASSWORD`).
fn auth_from(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    use base64::Engine;
    if let Some(token) = var("MLFLOW_TRACKING_TOKEN") {
        return Some(format!("Bearer {token}"));
    }
    let user = var("MLFLOW_TRACKING_USERNAME")?;
    let password = var("MLFLOW_TRACKING_PASSWORD").unwrap_or_default();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Some(format!("Basic {encoded}"))
}

/// `GET /api/2.0/mlflow/<endpoint>?<query>` on the server at `uri`, with
/// the same timeouts, retries and credentials as the sink: for reading runs
/// back (tests, scripts).
pub fn rest_get(uri: &str, endpoint: &str, query: &[(&str, &str)]) -> Result<Value> {
    Ok(Client::new(uri).get(endpoint, query)?)
}

/// `POST /api/2.0/mlflow/<endpoint>` with a JSON body, as [`rest_get`].
pub fn rest_post(uri: &str, endpoint: &str, body: &Value) -> Result<Value> {
    Ok(Client::new(uri).post(endpoint, body)?)
}

/// The runs of the experiment named `experiment` (`runs/search`).
pub fn search_runs(uri: &str, experiment: &str) -> Result<Vec<Value>> {
    let found = rest_get(
        uri,
        "experiments/get-by-name",
        &[("experiment_name", experiment)],
    )?;
    let id = found["experiment"]["experiment_id"].clone();
    let runs = rest_post(
        uri,
        "runs/search",
        &json!({"experiment_ids": [id], "max_results": 1000}),
    )?;
    Ok(runs["runs"].as_array().cloned().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_mlflow_s_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(auth_from(env(&[])), None);
        assert_eq!(
            auth_from(env(&[
                ("MLFLOW_TRACKING_TOKEN", "t0k"),
                ("MLFLOW_TRACKING_USERNAME", "u")
            ])),
            Some("Bearer t0k".into())
        );
        // RFC 7617's example: Aladdin / open sesame.
        assert_eq!(
            auth_from(env(&[
                ("MLFLOW_TRACKING_USERNAME", "Aladdin"),
                ("MLFLOW_TRACKING_PASSWORD", "open sesame")
            ])),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into())
        );
    }

    #[test]
    fn batches_keep_mlflow_s_limits() {
        let metric = |i: i64| Item::Metric {
            key: format!("m{i}"),
            value: 1.0,
            step: i,
            timestamp: 0,
        };
        let mut queue: VecDeque<Item> = (0..150)
            .map(|i| param(format!("p{i}"), "v".into()))
            .chain((0..2500).map(metric))
            .chain([Item::Status {
                status: "FINISHED".into(),
                end_time: 0,
            }])
            .collect();
        let mut sizes = Vec::new();
        while !queue.is_empty() {
            let batch = take_batch(&mut queue);
            let params = batch.iter().filter(|i| i.noun() == "params").count();
            let metrics = batch.iter().filter(|i| i.noun() == "metric values").count();
            assert!(params <= MAX_PARAMS && metrics <= MAX_METRICS && batch.len() <= 1000);
            sizes.push(batch.len());
        }
        // 100 params; 50 params + 950 metrics; 1000; 550 metrics; the status.
        assert_eq!(sizes, [100, 1000, 1000, 550, 1]);
    }

    #[test]
    fn long_params_and_keys_are_cut_on_character_boundaries() {
        let Item::Param { key, value } = param("k".repeat(300), "é".repeat(7000)) else {
            unreachable!()
        };
        assert_eq!(key.chars().count(), MAX_KEY);
        assert_eq!(value.chars().count(), MAX_PARAM_VALUE);
        assert_eq!(metric_json("x", f64::NAN, 0, 0)["value"], "NaN");
        assert_eq!(
            metric_json("x", f64::NEG_INFINITY, 0, 0)["value"],
            "-Infinity"
        );
    }
}
