//! `lpo export RUN_DIR --out DIR`: a finished run's policy as a full
//! Hugging Face checkpoint. A LoRA run's adapters (PEFT's layout) are merged
//! into their base (`W + (alpha / r) B A`); a full fine-tuning run's weights
//! are written as they are.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use lpo_data::tokenizer::TOKENIZER_FILE;
use lpo_model::checkpoint;
use lpo_model::lora::{merge_peft, ADAPTER_CONFIG};
use lpo_results::records::{Status, Summary, CHECKPOINT};

/// Options of `lpo export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A run directory (`results/<recipe>/<run id>`).
    pub run: PathBuf,
    /// Where to write the checkpoint (must not exist, or be empty).
    #[arg(long)]
    pub out: PathBuf,
}

/// Writes the run's final policy to `--out`.
pub fn run(args: &ExportArgs) -> Result<ExitCode> {
    let summary = Summary::read(&args.run)?.with_context(|| {
        format!(
            "{} has no summary.json: not a run directory",
            args.run.display()
        )
    })?;
    ensure!(
        summary.status == Status::Complete,
        "run {} is {:?}, not complete: only finished runs are exported",
        summary.run_id,
        summary.status
    );
    let empty = |p: &Path| std::fs::read_dir(p).map(|mut d| d.next().is_none());
    if args.out.exists() && !empty(&args.out).unwrap_or(false) {
        bail!("{} exists and is not empty", args.out.display());
    }
    let dir = args.run.join(CHECKPOINT);
    // Only the files the run sealed are exported.
    lpo_train::checkpoints::verify(&dir)
        .with_context(|| format!("{} is not the checkpoint the run wrote", dir.display()))?;
    let device = tch::Device::Cpu;
    let (vs, model, how) = if dir.join(ADAPTER_CONFIG).exists() {
        let base = adapter_base(&dir, &args.run, &summary)?;
        let (vs, model) = checkpoint::load(&base, device)
            .with_context(|| format!("loading the adapters' base {}", base.display()))?;
        merge_peft(&vs, &dir)?;
        (
            vs,
            model,
            format!("LoRA adapters merged into {}", base.display()),
        )
    } else {
        let (vs, model) = checkpoint::load(&dir, device)?;
        (vs, model, "full weights".to_string())
    };
    checkpoint::save(&vs, model.config(), &args.out)?;
    let copied = copy_tokenizer(&dir, &args.out)?;
    eprintln!(
        "copied the tokenizer the run trained with ({}) from {}",
        copied.join(", "),
        dir.display()
    );
    eprintln!(
        "exported run {} ({how}) to {}",
        summary.run_id,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Copies the tokenizer files of the run's checkpoint `dir` (saved there
/// by the run, byte-equal to the ones it trained with) into `out`, so the
/// export loads with `AutoTokenizer` alone; returns their names.
fn copy_tokenizer(dir: &Path, out: &Path) -> Result<Vec<String>> {
    let files = lpo_data::tokenizer::tokenizer_dir_files(&dir.join(TOKENIZER_FILE))
        .map_err(anyhow::Error::msg)?;
    ensure!(
        files.iter().any(|(name, _)| name == TOKENIZER_FILE),
        "{} has no {TOKENIZER_FILE}: this run was trained by an lpo that did not save its tokenizer \
         beside the checkpoint; train it again to export a complete model",
        dir.display()
    );
    for (name, file) in &files {
        let bytes = lpo_data::chat::read_bounded(file).map_err(anyhow::Error::msg)?;
        lpo_results::write_atomic(&out.join(name), &bytes)?;
    }
    Ok(files.into_iter().map(|(name, _)| name).collect())
}

/// The base model of an adapter checkpoint: the directory its
/// `adapter_config.json` names when it is there, else the run's SFT
/// reference in the `_cache/` of the results root the run directory is in
/// (by the reference id of its summary.json), so a results directory that
/// was copied or moved still exports. A base that is gone (the cache is
/// safe to delete) is an error with the command that rebuilds it.
fn adapter_base(dir: &Path, run_dir: &Path, summary: &Summary) -> Result<PathBuf> {
    let named = named_adapter_base(dir)?;
    if named.join("config.json").exists() {
        return Ok(named);
    }
    // <root>/<recipe>/<run id>: the root's layout holds the reference.
    let root = run_dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let cached = lpo_results::Layout::new(root).reference_dir(&summary.reference);
    if cached.join("config.json").exists() {
        return Ok(cached);
    }
    bail!(
        "the adapters' base model is gone: {} (named in {}) and {} do not exist; \
         the cache is safe to delete and is rebuilt by `lpo prepare RECIPE --results {}` \
         with the recipe named `{}` (for a checkpoint reference, restore the checkpoint), then export again",
        named.display(),
        dir.join(ADAPTER_CONFIG).display(),
        cached.display(),
        root.display(),
        summary.recipe
    )
}

/// The base model directory an adapter checkpoint names.
fn named_adapter_base(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let base = config["base_model_name_or_path"]
        .as_str()
        .with_context(|| format!("{} names no base_model_name_or_path", path.display()))?;
    Ok(PathBuf::from(base))
}
