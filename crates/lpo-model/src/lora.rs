//! LoRA adapters (Hu et al. 2021) in PEFT's layout: a targeted linear layer
//! computes `x W^T + (alpha / r) dropout(x) A^T B^T` with `A: [r, in]`
//! (Kaiming-uniform, as PEFT) and `B: [out, r]` (zeros), so an adapted model
//! starts equal to its base. Adapters are saved as PEFT's
//! `adapter_model.safetensors` (`base_model.model.<module>.lora_A.weight`)
//! and `adapter_config.json`, which `peft.PeftModel.from_pretrained` loads,
//! and can be merged into the base weights (`W + (alpha / r) B A`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use tch::{nn, Kind, Tensor};

use crate::checkpoint::{read_tensors, write_tensors};
use crate::linear::linear;

/// PEFT's prefix of adapter tensor names.
const PEFT_PREFIX: &str = "base_model.model.";
/// The adapter weights file.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The adapter configuration file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// Which layers get adapters, and their shape.
#[derive(Debug, Clone)]
pub struct LoraSpec {
    /// Rank r.
    pub rank: i64,
    /// Scale numerator (adapters are scaled by `alpha / rank`).
    pub alpha: f64,
    /// Dropout probability on the adapter input while training.
    pub dropout: f64,
    /// Module names (`q_proj`, `v_proj`, ...).
    pub targets: Vec<String>,
    /// Whether dropout is active; shared by every adapter of a model.
    pub(crate) training: Arc<AtomicBool>,
}

impl LoraSpec {
    /// A spec from a recipe's `[model.lora]` (`None` when the rank is 0).
    pub fn from_recipe(lora: &lpo_recipe::LoraConfig) -> Option<LoraSpec> {
        (!lora.is_off()).then(|| LoraSpec {
            rank: i64::from(lora.rank),
            alpha: lora.alpha,
            dropout: lora.dropout,
            targets: lora
                .targets
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
            training: Arc::new(AtomicBool::new(false)),
        })
    }

    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// The same adapters with their own dropout switch, always off: for a
    /// copy of the policy that only samples or scores (an on-policy round's
    /// starting point), whatever the training policy's switch says.
    pub fn inference_copy(&self) -> LoraSpec {
        LoraSpec {
            training: Arc::new(AtomicBool::new(false)),
            ..self.clone()
        }
    }

    /// Turns dropout on (training) or off (scoring, sampling, evaluation).
    pub fn set_training(&self, on: bool) {
        self.training.store(on, Ordering::Relaxed);
    }
}

/// One layer's adapter.
#[derive(Debug)]
pub struct Adapter {
    /// `[r, in]`.
    a: Tensor,
    /// `[out, r]`.
    b: Tensor,
    scale: f64,
    dropout: f64,
    training: Arc<AtomicBool>,
}

impl Adapter {
    /// Creates `lora_A.weight` and `lora_B.weight` under `vs`.
    pub(crate) fn new(vs: &nn::Path, input: i64, output: i64, spec: &LoraSpec) -> Adapter {
        // PEFT: kaiming_uniform_(a = sqrt(5)) gives U(-1/sqrt(in), 1/sqrt(in)).
        let bound = 1.0 / (input as f64).sqrt();
        let uniform = nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Adapter {
            a: (vs / "lora_A").var("weight", &[spec.rank, input], uniform),
            b: (vs / "lora_B").var("weight", &[output, spec.rank], nn::Init::Const(0.0)),
            scale: spec.scale(),
            dropout: spec.dropout,
            training: spec.training.clone(),
        }
    }

    /// `[.., in] -> [.., out]`: the adapter's addition to the layer's output.
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        // Adapters may be kept in f32 beside a bf16 base.
        let h = x.to_kind(self.a.kind());
        let train = self.training.load(Ordering::Relaxed) && self.dropout > 0.0;
        let h = if train {
            h.dropout(self.dropout, true)
        } else {
            h
        };
        let y = linear(&linear(&h, &self.a, None), &self.b, None) * self.scale;
        y.to_kind(x.kind())
    }
}

/// Writes `vs` (a model's adapter variables) in PEFT's layout into `dir`:
/// `adapter_model.safetensors` and `adapter_config.json` naming `base` as
/// the base model.
pub fn save_peft(vs: &nn::VarStore, spec: &LoraSpec, base: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tensors: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (format!("{PEFT_PREFIX}{name}"), t.to_kind(Kind::Float)))
        .collect();
    write_tensors(&dir.join(ADAPTER_WEIGHTS), &tensors)?;
    let mut targets = spec.targets.clone();
    targets.sort();
    // PEFT writes an integral alpha as an integer.
    let alpha = match spec.alpha.fract() == 0.0 && spec.alpha.abs() < 1e15 {
        true => serde_json::json!(spec.alpha as i64),
        false => serde_json::json!(spec.alpha),
    };
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": spec.rank,
        "lora_alpha": alpha,
        "lora_dropout": spec.dropout,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "use_rslora": false,
        "use_dora": false,
    });
    let path = dir.join(ADAPTER_CONFIG);
    lpo_results::write_atomic(&path, serde_json::to_string_pretty(&config)?.as_bytes())
}

/// Loads PEFT adapter weights from `dir` into `vs` (every variable must be
/// present with its shape).
pub fn load_peft(vs: &nn::VarStore, dir: &Path) -> Result<()> {
    let path = dir.join(ADAPTER_WEIGHTS);
    let mut tensors = read_tensors(&path, tch::Device::Cpu)?;
    for (name, mut var) in vs.variables() {
        let src = tensors
            .remove(&format!("{PEFT_PREFIX}{name}"))
            .with_context(|| format!("{} lacks {PEFT_PREFIX}{name}", path.display()))?;
        ensure!(
            src.size() == var.size(),
            "{}: {name} has shape {:?}, the adapter needs {:?}",
            path.display(),
            src.size(),
            var.size()
        );
        tch::no_grad(|| var.copy_(&src.to_kind(var.kind()).to_device(var.device())));
    }
    Ok(())
}

/// Merges the PEFT adapters of `dir` into a base model's variables `base`:
/// `W += (alpha / r) B A` for every adapted layer, in f32.
pub fn merge_peft(base: &nn::VarStore, dir: &Path) -> Result<()> {
    let config_path = dir.join(ADAPTER_CONFIG);
    let text = lpo_results::read_config_text(&config_path)?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", config_path.display()))?;
    let (r, alpha) = (config["r"].as_f64(), config["lora_alpha"].as_f64());
    let (Some(r), Some(alpha)) = (r, alpha) else {
        anyhow::bail!("{} lacks r or lora_alpha", config_path.display());
    };
    let tensors = read_tensors(&dir.join(ADAPTER_WEIGHTS), tch::Device::Cpu)?;
    let mut variables = base.variables();
    for (name, a) in &tensors {
        let Some(module) = name
            .strip_prefix(PEFT_PREFIX)
            .and_then(|n| n.strip_suffix(".lora_A.weight"))
        else {
            continue;
        };
        let b = tensors
            .get(&format!("{PEFT_PREFIX}{module}.lora_B.weight"))
            .with_context(|| format!("{}: {module} has lora_A but no lora_B", dir.display()))?;
        let weight = variables
            .get_mut(&format!("{module}.weight"))
            .with_context(|| format!("the base model has no {module}.weight to merge into"))?;
        let delta = b.to_kind(Kind::Float).matmul(&a.to_kind(Kind::Float)) * (alpha / r);
        ensure!(
            delta.size() == weight.size(),
            "{module}: adapter gives {:?}, the weight is {:?}",
            delta.size(),
            weight.size()
        );
        tch::no_grad(|| {
            let merged = weight.to_kind(Kind::Float) + delta.to_device(weight.device());
            weight.copy_(&merged.to_kind(weight.kind()));
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logps::response_logps;
    use crate::{Config, Mistral};
    use lpo_recipe::{LoraConfig, LoraTarget, SizePreset};
    use tch::Device;

    fn base() -> (nn::VarStore, Mistral) {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Mistral::new(&vs.root(), &Config::from_dims(&SizePreset::Nano.dims()));
        (vs, model)
    }

    fn spec(targets: &[LoraTarget]) -> LoraSpec {
        LoraSpec::from_recipe(&LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            targets: targets.to_vec(),
        })
        .unwrap()
    }

    fn logps(model: &Mistral) -> Tensor {
        let prompts = vec![vec![1, 5, 9], vec![1, 7]];
        let responses = vec![vec![4, 4, 2], vec![6], vec![8, 9, 2], vec![3]];
        response_logps(model, &prompts, &responses, 2, 0).sum
    }

    const ALL: [LoraTarget; 7] = [
        LoraTarget::QProj,
        LoraTarget::KProj,
        LoraTarget::VProj,
        LoraTarget::OProj,
        LoraTarget::GateProj,
        LoraTarget::UpProj,
        LoraTarget::DownProj,
    ];

    /// Random non-zero B so adapters change the outputs.
    fn perturb(vs: &nn::VarStore) {
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                if name.contains("lora_B") {
                    t.copy_(&(t.randn_like() * 0.5));
                }
            }
        });
    }

    #[test]
    fn an_adapted_model_starts_equal_to_its_base_and_shares_its_weights() {
        let (base_vs, base) = base();
        let adapters = nn::VarStore::new(Device::Cpu);
        let policy = base.with_adapters(&adapters.root(), &spec(&ALL));
        assert!(
            (logps(&base) - logps(&policy))
                .abs()
                .max()
                .double_value(&[])
                < 1e-6
        );
        // 2 layers x 7 targets x (A, B); the base holds no adapter variables.
        assert_eq!(adapters.variables().len(), 2 * 7 * 2);
        assert!(base_vs.variables().keys().all(|k| !k.contains("lora")));
        perturb(&adapters);
        assert!(
            (logps(&base) - logps(&policy))
                .abs()
                .max()
                .double_value(&[])
                > 1e-3
        );
    }

    #[test]
    fn merged_weights_give_the_logps_of_base_plus_adapters() {
        let (base_vs, base) = base();
        let adapters = nn::VarStore::new(Device::Cpu);
        let spec = spec(&[LoraTarget::QProj, LoraTarget::VProj, LoraTarget::DownProj]);
        let policy = base.with_adapters(&adapters.root(), &spec);
        perturb(&adapters);
        let dir = tempfile::tempdir().unwrap();
        save_peft(&adapters, &spec, "base-dir", dir.path()).unwrap();
        let adapted = logps(&policy);
        // Reload into fresh adapters: the same outputs.
        let again = nn::VarStore::new(Device::Cpu);
        let reloaded = base.with_adapters(&again.root(), &spec);
        load_peft(&again, dir.path()).unwrap();
        assert!((logps(&reloaded) - &adapted).abs().max().double_value(&[]) < 1e-6);
        // Merge into a copy of the base.
        let merged_vs = nn::VarStore::new(Device::Cpu);
        let merged = Mistral::new(&merged_vs.root(), base.config());
        let mut copy = merged_vs.variables();
        tch::no_grad(|| {
            for (name, t) in base_vs.variables() {
                copy.get_mut(&name).unwrap().copy_(&t);
            }
        });
        merge_peft(&merged_vs, dir.path()).unwrap();
        let diff = (logps(&merged) - &adapted).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn adapters_on_experts_and_router_merge_to_the_adapted_model() {
        tch::manual_seed(6);
        let base_vs = nn::VarStore::new(Device::Cpu);
        let dims = lpo_recipe::ModelDims {
            experts: 4,
            experts_per_token: 2,
            ..SizePreset::Nano.dims()
        };
        let base = Mistral::new(&base_vs.root(), &Config::from_dims(&dims));
        let adapters = nn::VarStore::new(Device::Cpu);
        let targets = [
            LoraTarget::VProj,
            LoraTarget::W1,
            LoraTarget::W2,
            LoraTarget::W3,
            LoraTarget::Gate,
        ];
        let spec = spec(&targets);
        let policy = base.with_adapters(&adapters.root(), &spec);
        // 2 layers x (v_proj + router + 4 experts x 3) x (A, B).
        assert_eq!(adapters.variables().len(), 2 * (2 + 4 * 3) * 2);
        assert!(
            (logps(&base) - logps(&policy))
                .abs()
                .max()
                .double_value(&[])
                < 1e-6
        );
        perturb(&adapters);
        let adapted = logps(&policy);
        assert!((logps(&base) - &adapted).abs().max().double_value(&[]) > 1e-3);
        let dir = tempfile::tempdir().unwrap();
        save_peft(&adapters, &spec, "base-dir", dir.path()).unwrap();
        merge_peft(&base_vs, dir.path()).unwrap();
        let diff = (logps(&base) - &adapted).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn peft_files_name_every_adapter_as_peft_does() {
        let (_, base) = base();
        let adapters = nn::VarStore::new(Device::Cpu);
        let spec = spec(&[LoraTarget::QProj, LoraTarget::VProj]);
        let _policy = base.with_adapters(&adapters.root(), &spec);
        let dir = tempfile::tempdir().unwrap();
        save_peft(&adapters, &spec, "base-dir", dir.path()).unwrap();
        let saved = read_tensors(&dir.path().join(ADAPTER_WEIGHTS), tch::Device::Cpu).unwrap();
        let shapes: BTreeMap<String, Vec<i64>> =
            saved.iter().map(|(k, t)| (k.clone(), t.size())).collect();
        // Written once by scripts/make_peft_fixture.py with peft (see there).
        let fixture: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/peft/nano_q_v_r4.json"
        )))
        .unwrap();
        let expected: BTreeMap<String, Vec<i64>> =
            serde_json::from_value(fixture["tensors"].clone()).unwrap();
        assert_eq!(shapes, expected);
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(ADAPTER_CONFIG)).unwrap(),
        )
        .unwrap();
        for key in [
            "peft_type",
            "r",
            "lora_alpha",
            "target_modules",
            "task_type",
            "bias",
        ] {
            assert_eq!(config[key], fixture["config"][key], "{key}");
        }
    }
}
