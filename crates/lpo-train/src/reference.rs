//! The frozen reference: supervised fine-tuning on demonstrations (a set
//! share of them wrong, so the reference is good but imperfect), cached by a
//! hash of everything that produced it; or a checkpoint directory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use lpo_data::tokenizer::Tokenize;
use lpo_model::{checkpoint, Config, Mistral};
use lpo_recipe::{LrSchedule, Recipe};
use lpo_results::{content_id, derive_seed, write_atomic, Layout};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind};

use crate::optim::{learning_rate, AdamW};
use crate::sources::{encode_pair, Source, SourceKind, Window};
use crate::Progress;

/// What is known about a reference model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReferenceMeta {
    /// Content identity.
    pub id: String,
    /// `sft` or `checkpoint`.
    pub origin: String,
    /// SFT steps taken (0 for a checkpoint).
    pub sft_steps: u32,
    /// Mean token cross-entropy over the last tenth of SFT (nats).
    pub final_loss: Option<f64>,
    /// Seconds spent producing it.
    pub seconds: f64,
}

/// A loaded reference model.
pub struct Reference {
    /// Its directory (config.json + model.safetensors).
    pub dir: PathBuf,
    /// How it was made.
    pub meta: ReferenceMeta,
    /// Its (frozen) variables.
    pub vs: nn::VarStore,
    /// The model.
    pub model: Mistral,
}

impl Reference {
    /// A trainable copy of the reference's weights: the policy's starting point.
    pub fn policy(&self, device: Device) -> Result<(nn::VarStore, Mistral)> {
        checkpoint::load(&self.dir, device)
    }
}

#[derive(Serialize)]
struct SftIdentity<'a> {
    version: u32,
    /// How this process computes ([`lpo_model::products`]).
    numerics: &'static str,
    model: lpo_recipe::ModelDims,
    sft_steps: u32,
    sft_batch_size: u32,
    sft_learning_rate: f64,
    error_rate: f64,
    sources: Vec<crate::sources::SourceIdentity>,
    seed: u64,
    tokenizer: &'a str,
    /// `data.eval_fraction` when a file source holds records out of SFT.
    #[serde(skip_serializing_if = "Option::is_none")]
    heldout_fraction: Option<f64>,
}

/// What every command that samples from a run's reference starts from.
pub struct Basis {
    /// The loaded sources.
    pub sources: Vec<Source>,
    /// The tokenizer.
    pub tokenizer: std::sync::Arc<dyn Tokenize>,
    /// The reference model, in bf16 on CUDA (as every run samples from it).
    pub reference: Reference,
    /// What scores sampled responses.
    pub rewards: crate::rewards::Rewards,
}

/// A run's sources, tokenizer, reference ([`obtain`]) and reward sources:
/// what `lpo run`, `lpo data preview` and `lpo score` build first, so the
/// lists each samples (and caches under one id) are the same.
pub fn basis(
    recipe: &Recipe,
    layout: &Layout,
    device: Device,
    progress: &mut dyn Progress,
) -> Result<Basis> {
    let sources = crate::sources::load_sources(recipe)?;
    let (tokenizer, tokenizer_id) = crate::sources::tokenizer(recipe)?;
    let mut reference = obtain(
        recipe,
        &sources,
        tokenizer.as_ref(),
        &tokenizer_id,
        layout,
        device,
        progress,
    )?;
    if device.is_cuda() {
        reference.vs.bfloat16();
    }
    let rewards = crate::rewards::Rewards::load(recipe, device)?;
    Ok(Basis {
        sources,
        tokenizer,
        reference,
        rewards,
    })
}

/// The reference a run uses: the configured checkpoint, or the SFT model
/// from the cache (trained now if it is not there; concurrent runs wait for
/// one another instead of training it twice).
pub fn obtain(
    recipe: &Recipe,
    sources: &[Source],
    tokenizer: &dyn Tokenize,
    tokenizer_id: &str,
    layout: &Layout,
    device: Device,
    progress: &mut dyn Progress,
) -> Result<Reference> {
    if let Some(dir) = &recipe.reference.checkpoint {
        return from_checkpoint(Path::new(dir), layout, device);
    }
    // SFT demonstrates training records only (lists::obtain checks the
    // same for a checkpoint reference; `lpo score` scores every record).
    crate::sources::ensure_splits(sources, recipe.data.eval_fraction)?;
    let r = &recipe.reference;
    let id = content_id(
        "reference",
        &SftIdentity {
            // 2: fused AdamW; 3: oneDNN products; 4: demonstrations only
            // from the training part (lpo_tasks::split).
            version: 4,
            numerics: lpo_model::products(),
            model: recipe.model.dims(),
            sft_steps: r.sft_steps,
            sft_batch_size: r.sft_batch_size,
            sft_learning_rate: r.sft_learning_rate,
            error_rate: r.error_rate,
            sources: sources.iter().map(Source::identity).collect(),
            seed: recipe.train.seed,
            tokenizer: tokenizer_id,
            heldout_fraction: sources
                .iter()
                .any(|s| matches!(s.kind, SourceKind::File { .. }))
                .then_some(recipe.data.eval_fraction),
        },
    );
    let dir = layout.reference_dir(&id);
    let lock = layout.cache_lock(&format!("reference-{id}"));
    let read = |dir: &Path| -> Result<ReferenceMeta> {
        let meta_path = dir.join("meta.json");
        let bytes = std::fs::read(&meta_path)
            .with_context(|| format!("reading {}", meta_path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", meta_path.display()))
    };
    let meta = lpo_results::cache::cached(&dir, &lock, read, |dir| {
        let meta = train_sft(recipe, sources, tokenizer, &id, dir, device, progress)?;
        let meta_path = dir.join("meta.json");
        write_atomic(&meta_path, serde_json::to_string_pretty(&meta)?.as_bytes())?;
        Ok(meta)
    })?;
    let (mut vs, model) = checkpoint::load(&dir, device)?;
    vs.freeze();
    Ok(Reference {
        dir,
        meta,
        vs,
        model,
    })
}

/// `config` with the special token ids of `tokenizer`: its bos and pad, and
/// its eos (kept among the config's own end tokens when already there).
pub fn with_special_tokens(config: &Config, tokenizer: &dyn Tokenize) -> Config {
    let mut c = config.clone();
    c.bos_token_id = Some(tokenizer.bos());
    c.pad_token_id = Some(tokenizer.pad());
    if !c.eos_token_id.contains(&tokenizer.eos()) {
        c.eos_token_id = vec![tokenizer.eos()];
    }
    c
}

/// Saves a model as a Hugging Face directory that transformers'
/// `AutoModelForCausalLM` and `AutoTokenizer` load unchanged: weights,
/// config.json and generation_config.json with the tokenizer's special
/// token ids, and the tokenizer's files.
pub fn save_model(
    vs: &nn::VarStore,
    config: &Config,
    tokenizer: &dyn Tokenize,
    dir: &Path,
) -> Result<()> {
    checkpoint::save(vs, &with_special_tokens(config, tokenizer), dir)?;
    save_tokenizer(tokenizer, dir)
}

/// Writes the tokenizer's files (`tokenizer.json`, its config, the chat
/// templates: byte-equal to those it was loaded from) into `dir`, so a
/// checkpoint or adapter directory carries the tokenizer it trained with.
pub fn save_tokenizer(tokenizer: &dyn Tokenize, dir: &Path) -> Result<()> {
    for (name, bytes) in tokenizer.hf_files() {
        write_atomic(&dir.join(name), &bytes)?;
    }
    Ok(())
}

/// A checkpoint's identity: its directory, `config.json` and the SHA-256 of
/// each weight file, so replacing the weights (or the config) in place
/// makes new cache entries instead of reusing lists and log-probabilities
/// of the old model. The digests are remembered by file identity
/// (`lpo_results::file_hash`), so a run hashes only files that changed.
pub fn checkpoint_id(dir: &Path, layout: &Layout) -> Result<String> {
    let config_path = dir.join("config.json");
    let config = std::fs::read(&config_path)
        .with_context(|| format!("failed to read `{}`", config_path.display()))?;
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("failed to read `{}`", dir.display()))?
        .display()
        .to_string();
    let mut weights = Vec::new();
    for file in checkpoint::weight_files(dir)? {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let digest = lpo_results::file_hash::sha256_file_cached(&file, &layout.cache_dir())?;
        weights.push((name.unwrap_or_default(), digest));
    }
    Ok(content_id("checkpoint", &(canonical, config, weights)))
}

fn from_checkpoint(dir: &Path, layout: &Layout, device: Device) -> Result<Reference> {
    let id = checkpoint_id(dir, layout)
        .with_context(|| format!("reference.checkpoint {}", dir.display()))?;
    let (mut vs, model) = checkpoint::load(dir, device)?;
    vs.freeze();
    Ok(Reference {
        dir: dir.to_path_buf(),
        meta: ReferenceMeta {
            id,
            origin: "checkpoint".into(),
            sft_steps: 0,
            final_loss: None,
            seconds: 0.0,
        },
        vs,
        model,
    })
}

/// The reference's SFT demonstrations in the order it sees them: a pure
/// function of the recipe and its sources, so tests can check which prompts
/// SFT shows. Each is (context, prompt, answer).
pub struct Demonstrations<'a> {
    sources: &'a [Source],
    weights: Vec<f64>,
    error_rate: f64,
    rng: StdRng,
}

impl<'a> Demonstrations<'a> {
    /// The demonstrations of `recipe`'s reference SFT over `sources`.
    pub fn new(recipe: &Recipe, sources: &'a [Source]) -> Demonstrations<'a> {
        Demonstrations {
            sources,
            weights: sources.iter().map(|s| s.weight).collect(),
            error_rate: recipe.reference.error_rate,
            rng: StdRng::seed_from_u64(derive_seed(recipe.train.seed, "sft-demonstrations")),
        }
    }
}

impl Iterator for Demonstrations<'_> {
    type Item = (Vec<lpo_data::Message>, String, String);

    /// One demonstration: a prompt of a training part and the answer shown
    /// for it (wrong at `reference.error_rate` for a built-in task).
    fn next(&mut self) -> Option<Self::Item> {
        let rng = &mut self.rng;
        let s = lpo_data::mix::assign(&self.weights, 1, rng)[0];
        Some(match &self.sources[s].kind {
            SourceKind::Task(task) => {
                // Never a validation or test prompt (lpo_tasks::split).
                let example = task.generate_in(lpo_tasks::Part::Train, rng);
                let answer = if rng.random_bool(self.error_rate) {
                    task.corrupt(&example, rng)
                } else {
                    example.solution.clone()
                };
                (Vec::new(), example.prompt, answer)
            }
            SourceKind::File { records, .. } => {
                // Held-out records are never demonstrated.
                let train = self.sources[s].file_split().1;
                let record = &records[train[rng.random_range(0..train.len())]];
                let best = record
                    .responses
                    .iter()
                    .max_by(|a, b| a.reward.total_cmp(&b.reward))
                    .expect("records have responses");
                (
                    record.context.clone(),
                    record.prompt.clone(),
                    best.text.clone(),
                )
            }
        })
    }
}

fn train_sft(
    recipe: &Recipe,
    sources: &[Source],
    tokenizer: &dyn Tokenize,
    id: &str,
    dir: &Path,
    device: Device,
    progress: &mut dyn Progress,
) -> Result<ReferenceMeta> {
    let started = Instant::now();
    let r = &recipe.reference;
    let config = Config::from_dims(&recipe.model.dims());
    let window = Window::new(recipe, config.max_position_embeddings as usize);
    tch::manual_seed(derive_seed(recipe.train.seed, "reference-init") as i64);
    let vs = nn::VarStore::new(device);
    let model = Mistral::new(&vs.root(), &config);
    let mut opt = AdamW::new(&vs, 0.0);
    let mut demonstrations = Demonstrations::new(recipe, sources);
    let warmup = r.sft_steps / 20;
    let tail = (r.sft_steps / 10).max(1);
    let mut tail_losses = Vec::new();
    progress.start("reference SFT", u64::from(r.sft_steps));
    for step in 0..r.sft_steps {
        let mut prompts = Vec::with_capacity(r.sft_batch_size as usize);
        let mut responses = Vec::with_capacity(r.sft_batch_size as usize);
        for _ in 0..r.sft_batch_size {
            let (c, p, a) = demonstrations.next().expect("demonstrations never end");
            let e = encode_pair(tokenizer, &c, &p, Some(&a), &window)?;
            prompts.push(e.prompt);
            responses.push(e.response);
        }
        let out =
            lpo_model::logps::response_logps(&model, &prompts, &responses, 1, tokenizer.pad());
        let loss = -out.sum.sum(Kind::Float) / out.tokens.sum(Kind::Float);
        opt.zero_grad();
        loss.backward();
        let norm = opt.clip_grad_norm(1.0)?;
        let lr = learning_rate(
            r.sft_learning_rate,
            LrSchedule::Cosine,
            warmup,
            step,
            r.sft_steps,
        );
        let diverged = norm.isfinite().logical_and(&loss.isfinite()).logical_not();
        opt.step(lr, Some(&diverged))?;
        let value = loss.double_value(&[]);
        anyhow::ensure!(
            value.is_finite(),
            "reference SFT diverged at step {step} (loss {value})"
        );
        if step + tail >= r.sft_steps {
            tail_losses.push(value);
        }
        progress.update(u64::from(step + 1), &format!("loss {value:.3}"));
    }
    progress.finish();
    save_model(&vs, &config, tokenizer, dir)?;
    Ok(ReferenceMeta {
        id: id.to_string(),
        origin: "sft".into(),
        sft_steps: r.sft_steps,
        final_loss: Some(tail_losses.iter().sum::<f64>() / tail_losses.len().max(1) as f64),
        seconds: started.elapsed().as_secs_f64(),
    })
}
