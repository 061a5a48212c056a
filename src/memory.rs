//! A run's estimated peak memory ([`lpo_plan::memory`]) against this
//! machine: shown by `lpo plan`, and a run that cannot fit is refused
//! before anything is allocated. `lpo sweep`'s scheduler gets the estimates
//! as plain data ([`Estimates::admission`]).

use lpo_plan::memory::{estimate, human, MemoryEstimate, Placement};
use lpo_plan::Plan;
use lpo_recipe::{DeviceChoice, Recipe};

/// Where `recipe` would train here: `auto` means CUDA when a device is seen.
pub fn placement(recipe: &Recipe) -> Placement {
    match recipe.train.device {
        DeviceChoice::Cpu => Placement::Cpu,
        DeviceChoice::Cuda => Placement::Cuda,
        DeviceChoice::Auto if lpo_torch::cuda_device_count() > 0 => Placement::Cuda,
        DeviceChoice::Auto => Placement::Cpu,
    }
}

/// The memory a run may use on `placement`: host RAM (or the cgroup limit),
/// or the first CUDA device's memory.
pub fn available(placement: Placement) -> Option<u64> {
    match placement {
        Placement::Cpu => lpo_torch::memory::host_limit(),
        Placement::Cuda => lpo_torch::cuda_devices()
            .first()
            .map(|d| d.total_memory)
            .filter(|&m| m > 0),
    }
}

/// Why `recipe` cannot fit here, if its estimate (times `sharing`, the
/// ranks of one run that share this memory) exceeds the memory available.
pub fn problem(recipe: &Recipe, placement: Placement, sharing: u32) -> Option<String> {
    let e = estimate(recipe, placement);
    let limit = available(placement)?;
    let total = e.total().saturating_mul(u64::from(sharing.max(1)));
    let ranks = match sharing {
        0 | 1 => String::new(),
        n => format!(" for {n} ranks on this machine"),
    };
    (total > limit).then(|| {
        format!(
            "estimated peak memory {}{ranks} exceeds the {} this machine has for {} ({}); {HELP}",
            human(total),
            human(limit),
            match placement {
                Placement::Cpu => "the CPU",
                Placement::Cuda => "the GPU",
            },
            breakdown(&e)
        )
    })
}

/// The terms of an estimate, largest first.
pub fn breakdown(e: &MemoryEstimate) -> String {
    let mut terms = [
        ("weights", e.weights),
        ("master weights", e.master),
        ("gradients", e.gradients),
        ("AdamW moments", e.optimizer),
        ("reference", e.reference),
        ("activations", e.activations),
        ("logits", e.logits),
        ("rotary tables", e.rotary),
        ("evaluation", e.evaluation),
        ("runtime", e.runtime),
        ("reward model", e.reward_model),
    ];
    terms.sort_by_key(|t| std::cmp::Reverse(t.1));
    terms
        .iter()
        .filter(|t| t.1 > 0)
        .map(|(name, bytes)| format!("{name} {}", human(*bytes)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every run's estimate, with the placement and the memory available
/// there (each looked up once).
pub struct Estimates {
    runs: Vec<(Placement, MemoryEstimate)>,
    cpu: Option<u64>,
    cuda: Option<u64>,
    /// The CUDA limit is `--gpu-memory`'s, not this machine's.
    cuda_given: bool,
}

impl Estimates {
    /// Estimates the runs of `plan` where they would train here.
    pub fn new(plan: &Plan) -> Estimates {
        let cuda_seen = std::cell::OnceCell::new();
        let runs: Vec<(Placement, MemoryEstimate)> = plan
            .runs
            .iter()
            .map(|run| {
                let place = match run.recipe.train.device {
                    DeviceChoice::Auto => *cuda_seen.get_or_init(|| placement(&run.recipe)),
                    _ => placement(&run.recipe),
                };
                (place, estimate(&run.recipe, place))
            })
            .collect();
        let uses = |p: Placement| runs.iter().any(|r| r.0 == p);
        Estimates {
            cpu: uses(Placement::Cpu)
                .then(|| available(Placement::Cpu))
                .flatten(),
            cuda: uses(Placement::Cuda)
                .then(|| available(Placement::Cuda))
                .flatten(),
            cuda_given: false,
            runs,
        }
    }

    /// The estimates as `lpo sweep`'s scheduler admits runs by them: each
    /// run's placement and peak, and the memory of each placement here.
    pub fn admission(&self) -> lpo_exec::local::Memory {
        lpo_exec::local::Memory {
            peaks: self.runs.iter().map(|(p, e)| (*p, e.total())).collect(),
            cpu: self.cpu,
            cuda: self.cuda,
        }
    }

    /// Checks runs on CUDA against a GPU of `bytes` instead of this
    /// machine's (`lpo plan --gpu-memory`).
    pub fn set_cuda_limit(&mut self, bytes: u64) {
        self.cuda = Some(bytes);
        self.cuda_given = true;
    }

    /// A line per run: its estimate term by term, the parameters it trains,
    /// and whether it fits the memory available (when known).
    pub fn terms(&self, plan: &Plan) -> Vec<String> {
        plan.runs
            .iter()
            .zip(&self.runs)
            .map(|(run, (place, e))| {
                let dims = run.recipe.model.dims();
                let active = match dims.is_moe() {
                    true => format!(
                        ", {} active per token",
                        human_count(dims.active_parameter_count())
                    ),
                    false => String::new(),
                };
                let fit = match self.limit(*place) {
                    Some(limit) if e.total() <= limit => {
                        format!("; fits the {} ({:.0} GB)", human(limit), limit as f64 / 1e9)
                    }
                    Some(limit) => {
                        format!(
                            "; exceeds the {} ({:.0} GB)",
                            human(limit),
                            limit as f64 / 1e9
                        )
                    }
                    None => String::new(),
                };
                format!(
                    "run {} ({}): {} parameters{active}; {} on {}: {}{fit}",
                    run.index,
                    run.id,
                    human_count(dims.parameter_count()),
                    human(e.total()),
                    device_name(*place),
                    breakdown(e)
                )
            })
            .collect()
    }

    /// The memory available on `placement` here, if known.
    pub fn limit(&self, placement: Placement) -> Option<u64> {
        match placement {
            Placement::Cpu => self.cpu,
            Placement::Cuda => self.cuda,
        }
    }

    /// The table cell of run `index`: its estimated peak, and where.
    pub fn cell(&self, index: usize) -> String {
        let (place, e) = &self.runs[index];
        format!("{} {}", human(e.total()), device_name(*place))
    }

    /// Run `index`'s estimate as JSON, each term in bytes.
    pub fn json(&self, index: usize) -> serde_json::Value {
        let (place, e) = &self.runs[index];
        let mut v = serde_json::to_value(e).expect("estimates serialize");
        v["total"] = e.total().into();
        v["device"] = device_name(*place).into();
        v["available"] = self.limit(*place).into();
        v
    }

    /// A line for every run whose estimate exceeds the memory available.
    pub fn oversized(&self, plan: &Plan) -> Vec<String> {
        plan.runs
            .iter()
            .zip(&self.runs)
            .filter_map(|(run, (place, e))| {
                let limit = self.limit(*place).filter(|&l| e.total() > l)?;
                let whose = match (place, self.cuda_given) {
                    (Placement::Cuda, true) => "of the GPU --gpu-memory gives",
                    _ => "available here",
                };
                Some(format!(
                    "run {} ({}): estimated peak memory {} exceeds the {} {whose} ({})",
                    run.id,
                    run.recipe.method_label(),
                    human(e.total()),
                    human(limit),
                    breakdown(e)
                ))
            })
            .collect()
    }
}

/// How tables and JSON name a placement.
fn device_name(place: Placement) -> &'static str {
    match place {
        Placement::Cpu => "cpu",
        Placement::Cuda => "cuda",
    }
}

/// `lpo sweep`: refuses (true) when a run cannot fit here, naming each.
pub fn refuse_sweep(plan: &Plan) -> bool {
    let lines = Estimates::new(plan).oversized(plan);
    for line in &lines {
        eprintln!("error: {line}");
    }
    if !lines.is_empty() {
        eprintln!("{HELP}");
    }
    !lines.is_empty()
}

/// How to make a run fit.
const HELP: &str = "lower the estimate with [model.lora], train.activation_checkpointing = true, train.moments = \"bf16\", a smaller train.batch_size or a larger train.grad_accum, or pass --ignore-memory-estimate";

/// 1234567 -> "1.23M".
pub fn human_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}K", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2}M", n as f64 / 1e6),
        _ => format!("{:.2}B", n as f64 / 1e9),
    }
}
