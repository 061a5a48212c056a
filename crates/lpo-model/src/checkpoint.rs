//! Checkpoints as Hugging Face directories: `config.json` (and
//! `generation_config.json`) plus safetensors weights (one file, or shards
//! listed by `model.safetensors.index.json`), tensor names as in
//! `MistralForCausalLM`, `LlamaForCausalLM`, `Qwen2ForCausalLM`,
//! `Qwen3ForCausalLM` and `MixtralForCausalLM` (whose experts are read in
//! transformers 4.x's per-expert layout or 5.x's fused one, and written in
//! the per-expert layout 5.x's `save_pretrained` also writes).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use lpo_results::{temporary_sibling, write_atomic};
use safetensors::tensor::{Dtype, View};
use tch::{nn, Device, Kind, Tensor};

use crate::{Config, Mistral};

/// File name of a single-file checkpoint.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of a sharded checkpoint's index.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Host copy of one tensor, ready to serialize.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn to_host(t: &Tensor) -> Result<HostTensor> {
    let (dtype, kind) = match t.kind() {
        Kind::Float => (Dtype::F32, Kind::Float),
        Kind::BFloat16 => (Dtype::BF16, Kind::BFloat16),
        Kind::Half => (Dtype::F16, Kind::Half),
        Kind::Double => (Dtype::F64, Kind::Double),
        Kind::Int64 => (Dtype::I64, Kind::Int64),
        other => bail!("cannot save tensors of kind {other:?}"),
    };
    let t = t.to_device(Device::Cpu).to_kind(kind).contiguous();
    let numel = t.numel();
    let mut bytes = vec![0u8; numel * kind.elt_size_in_bytes()];
    t.copy_data_u8(&mut bytes, numel);
    Ok(HostTensor {
        dtype,
        shape: t.size().iter().map(|&d| d as usize).collect(),
        bytes,
    })
}

/// Writes named tensors to a safetensors file (with `format = pt` metadata),
/// atomically: a temporary file in the same directory, then a rename.
pub fn write_tensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let host: Vec<(String, HostTensor)> = tensors
        .iter()
        .map(|(name, t)| Ok((name.clone(), to_host(t)?)))
        .collect::<Result<_>>()?;
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let tmp = temporary_sibling(path);
    safetensors::tensor::serialize_to_file(
        host.iter().map(|(n, t)| (n.as_str(), t)),
        &metadata,
        &tmp,
    )
    .with_context(|| format!("writing {}", tmp.display()))?;
    lpo_results::publish(&tmp, path)
}

/// Reads every tensor of a safetensors file onto `device`.
pub fn read_tensors(path: &Path, device: Device) -> Result<BTreeMap<String, Tensor>> {
    let tensors = Tensor::read_safetensors(path)
        .with_context(|| format!("reading safetensors {}", path.display()))?;
    Ok(tensors
        .into_iter()
        .map(|(n, t)| (n, t.to_device(device)))
        .collect())
}

/// File name of the generation defaults (special tokens) beside a checkpoint.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// Saves a model's variables and configuration as a Hugging Face directory:
/// the weights, `config.json` and `generation_config.json` (the config's
/// special token ids, so `generate()` stops at the end token).
pub fn save(vs: &nn::VarStore, config: &Config, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tensors: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    write_tensors(&dir.join(WEIGHTS_FILE), &tensors)?;
    let json = serde_json::to_string_pretty(&config.to_hf_json())? + "\n";
    write_atomic(&dir.join("config.json"), json.as_bytes())?;
    let json = serde_json::to_string_pretty(&config.generation_json())? + "\n";
    write_atomic(&dir.join(GENERATION_CONFIG_FILE), json.as_bytes())
}

/// The weight files of a checkpoint directory (the shards of its index, or
/// its one `model.safetensors`), sorted.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX_FILE);
    if index.exists() {
        let text = lpo_results::read_config_text(&index)?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", index.display()))?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .with_context(|| format!("{}: no `weight_map` object", index.display()))?;
        let mut files = Vec::new();
        for name in map.values().filter_map(|f| f.as_str()) {
            // A shard is a file of this directory, never a path elsewhere
            // (`../x`, `/dev/zero`).
            let plain = Path::new(name).file_name().is_some_and(|n| n == name);
            ensure!(
                plain && !name.starts_with('.'),
                "{}: shard `{name}` is not a file name inside the checkpoint directory",
                index.display()
            );
            let path = dir.join(name);
            ensure!(
                path.is_file(),
                "{}: shard {} is missing or not a regular file",
                index.display(),
                path.display()
            );
            files.push(path);
        }
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let single = dir.join(WEIGHTS_FILE);
    ensure!(
        single.exists(),
        "{}: neither {WEIGHTS_FILE} nor {INDEX_FILE}",
        dir.display()
    );
    // A link to /dev/zero or a FIFO would never finish reading or hashing.
    ensure!(
        single.is_file(),
        "{} is not a regular file",
        single.display()
    );
    Ok(vec![single])
}

/// Copies a checkpoint's weights into `vs`, converting to each variable's kind.
/// Every variable must be present with its shape; unused tensors (e.g.
/// `rotary_emb.inv_freq`) are ignored.
pub fn load_into(vs: &nn::VarStore, dir: &Path) -> Result<()> {
    let mut variables = vs.variables();
    let mut missing: Vec<String> = variables.keys().cloned().collect();
    for file in weight_files(dir)? {
        let mut tensors = Vec::new();
        for (name, t) in read_tensors(&file, Device::Cpu)? {
            tensors
                .extend(unfuse_experts(name, t).with_context(|| format!("in {}", file.display()))?);
        }
        for (name, src) in tensors {
            let Some(var) = variables.get_mut(&name) else {
                continue;
            };
            ensure!(
                var.size() == src.size(),
                "{}: tensor {name} has shape {:?}, the model needs {:?}",
                file.display(),
                src.size(),
                var.size()
            );
            tch::no_grad(|| var.copy_(&src.to_kind(var.kind()).to_device(var.device())));
            missing.retain(|m| m != &name);
        }
    }
    missing.sort();
    ensure!(
        missing.is_empty(),
        "{}: checkpoint lacks {} tensors, e.g. {}",
        dir.display(),
        missing.len(),
        missing[..missing.len().min(3)].join(", ")
    );
    Ok(())
}

/// transformers 5.x's fused Mixtral tensors as the per-expert ones lpo (and
/// transformers 4.x, and 5.x's `save_pretrained`) names: `mlp.gate.weight`
/// is `block_sparse_moe.gate.weight`; `mlp.experts.gate_up_proj` `[E, 2F, D]`
/// holds each expert's `w1` (its first F rows) and `w3`;
/// `mlp.experts.down_proj` `[E, D, F]` each expert's `w2`. Other names pass
/// unchanged; a fused tensor of another shape is an error naming it.
fn unfuse_experts(name: String, t: Tensor) -> Result<Vec<(String, Tensor)>> {
    let split = |suffix: &str| {
        name.strip_suffix(suffix)
            .map(|layer| format!("{layer}.block_sparse_moe"))
    };
    if let Some(moe) = split(".mlp.gate.weight") {
        return Ok(vec![(format!("{moe}.gate.weight"), t)]);
    }
    let fused = [".mlp.experts.gate_up_proj", ".mlp.experts.down_proj"];
    if fused.iter().any(|s| name.ends_with(s)) {
        ensure!(
            t.dim() == 3,
            "fused expert tensor {name} has shape {:?}, not [experts, out, in]",
            t.size()
        );
    }
    if let Some(moe) = split(".mlp.experts.gate_up_proj") {
        ensure!(
            t.size()[1] % 2 == 0,
            "fused expert tensor {name} has shape {:?}: its rows must be each expert's w1 then w3, an even count",
            t.size()
        );
        let f = t.size()[1] / 2;
        return Ok((0..t.size()[0])
            .flat_map(|j| {
                let expert = t.get(j);
                [
                    (
                        format!("{moe}.experts.{j}.w1.weight"),
                        expert.narrow(0, 0, f),
                    ),
                    (
                        format!("{moe}.experts.{j}.w3.weight"),
                        expert.narrow(0, f, f),
                    ),
                ]
            })
            .collect());
    }
    if let Some(moe) = split(".mlp.experts.down_proj") {
        return Ok((0..t.size()[0])
            .map(|j| (format!("{moe}.experts.{j}.w2.weight"), t.get(j)))
            .collect());
    }
    Ok(vec![(name, t)])
}

/// Loads a checkpoint directory: its `config.json` and weights, on `device`.
pub fn load(dir: &Path, device: Device) -> Result<(nn::VarStore, Mistral)> {
    let config = Config::read(dir)?;
    ensure!(
        lpo_hf::Head::read(dir)? == lpo_hf::Head::CausalLm,
        "{} is a {} (a reward model), not a causal language model",
        dir.display(),
        config.family.classifier_architecture()
    );
    let vs = nn::VarStore::new(device);
    let model = Mistral::new(&vs.root(), &config);
    load_into(&vs, dir)?;
    Ok((vs, model))
}

#[cfg(test)]
mod tests {
    use super::unfuse_experts;
    use tch::{Kind, Tensor};

    #[test]
    fn fused_experts_of_the_wrong_shape_are_errors_naming_the_tensor() {
        let name = |s: &str| format!("model.layers.0.mlp.experts.{s}");
        let zeros = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, tch::Device::Cpu));
        for (tensor, shape, why) in [
            ("gate_up_proj", vec![4, 7, 8], "an even count"),
            ("gate_up_proj", vec![14, 8], "not [experts, out, in]"),
            ("down_proj", vec![8, 4], "not [experts, out, in]"),
        ] {
            let err = unfuse_experts(name(tensor), zeros(&shape))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&name(tensor)) && err.contains(why), "{err}");
        }
        let split = unfuse_experts(name("gate_up_proj"), zeros(&[4, 6, 8])).unwrap();
        assert_eq!(split.len(), 8);
        assert_eq!(
            split[1].0,
            "model.layers.0.block_sparse_moe.experts.0.w3.weight"
        );
        assert_eq!(split[1].1.size(), [3, 8]);
    }
}
