//! A Mixtral (sparse mixture-of-experts) checkpoint end to end (issue 31):
//! tests/fixtures/hf/mixtral-chatml (4 experts, top-2, saved by
//! transformers 5.x with qwen2-chatml's tokenizer) trains LoRA adapters on
//! attention, every expert and the router, with the router's
//! load-balancing loss on, and exports merged; the `mixtral-8x7b` preset
//! plans with its published size.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{run_dirs, scratch, text};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn lpo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn recipe(extra: &str) -> String {
    format!(
        r#"
name = "moe"
[reference]
checkpoint = {checkpoint:?}
[model]
router_aux_loss_coef = 0.02
[model.lora]
rank = 4
alpha = 8.0
targets = ["q_proj", "v_proj", "w1", "w2", "w3", "gate"]
[data]
list_size = 2
train_prompts = 0
mix = [{{ path = {data:?}, split = "train", eval_split = "test", format = "trl" }}]
[train]
steps = 4
batch_size = 4
learning_rate = 1e-2
warmup_steps = 1
threads = 1
[eval]
max_new_tokens = 6
{extra}
"#,
        checkpoint = fixtures().join("mixtral-chatml").display().to_string(),
        data = fixtures().join("pairs").display().to_string(),
    )
}

#[test]
fn a_mixtral_lora_run_adapts_experts_and_router_logs_the_router_loss_and_exports() {
    let dir = scratch("mixtral-lora");
    std::fs::write(dir.join("moe.toml"), recipe("")).unwrap();
    let out = lpo(&dir, &["sweep", "moe.toml"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let runs = run_dirs(&dir.join("results/moe"));
    let run = &runs[0];

    // The router's loss is logged per step beside the objective's.
    let parts = std::fs::read_to_string(run.join("loss_parts.csv")).unwrap();
    let mut lines = parts.lines();
    assert_eq!(lines.next(), Some("step,lpo,router_aux"), "{parts}");
    let aux: Vec<f64> = lines
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(aux.len(), 4, "{parts}");
    // E * sum(f * P) is 1 when routing is balanced, at most E = 4.
    assert!(aux.iter().all(|a| (0.9..=4.0).contains(a)), "{aux:?}");

    // PEFT's names: every expert's w1/w2/w3 and the router, under
    // block_sparse_moe, as PEFT writes them for transformers 4.x layouts
    // (which PEFT converts for transformers 5.x's fused experts).
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("checkpoint/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["gate", "q_proj", "v_proj", "w1", "w2", "w3"])
    );
    let weights = std::fs::read(run.join("checkpoint/adapter_model.safetensors")).unwrap();
    let header = String::from_utf8_lossy(&weights[..weights.len().min(64 << 10)]).to_string();
    for name in [
        "base_model.model.model.layers.1.block_sparse_moe.experts.3.w2.lora_A.weight",
        "base_model.model.model.layers.0.block_sparse_moe.gate.lora_B.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
    ] {
        assert!(header.contains(name), "{name} missing");
    }

    let export = dir.join("export");
    let out = lpo(
        &dir,
        &[
            "export",
            run.to_str().unwrap(),
            "--out",
            export.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(export.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(exported["model_type"], "mixtral");
    assert_eq!(exported["architectures"][0], "MixtralForCausalLM");
    assert_eq!(exported["num_local_experts"], 4);
    assert_eq!(exported["num_experts_per_tok"], 2);
    assert!(export.join("tokenizer.json").exists());
}

#[test]
fn the_mixtral_8x7b_preset_plans_46_7b_parameters_and_targets_must_exist() {
    let dir = scratch("mixtral-plan");
    std::fs::write(
        dir.join("big.toml"),
        "name = \"big\"\n[model]\nsize = \"mixtral-8x7b\"\n[model.lora]\nrank = 16\ntargets = [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"w1\", \"w2\", \"w3\"]\n[data]\nmax_response_tokens = 512\nmax_prompt_tokens = 512\n[train]\ndevice = \"cuda\"\nbatch_size = 4\ngrad_accum = 4\n[sweep]\ngrid = { \"model.lora.rank\" = [16, 0] }\n",
    )
    .unwrap();
    let out = lpo(&dir, &["plan", "big.toml", "--format", "json"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let run = &plan["runs"][0];
    let params = run["parameters"].as_u64().unwrap();
    assert_eq!(params, 46_702_792_704, "Mixtral 8x7B's published count");

    // Term by term against an H200's 141 GB: LoRA on a bf16 base fits, full
    // AdamW (f32 master weights and moments, a reference copy) does not.
    let out = lpo(
        &dir,
        &["plan", "big.toml", "--memory", "--gpu-memory", "141"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("run ")).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].contains("46.70B parameters, 12.88B active per token"),
        "{stdout}"
    );
    assert!(
        lines[0].contains("weights 87.44 GiB")
            && lines[0].ends_with("fits the 131.32 GiB (141 GB)"),
        "{stdout}"
    );
    assert!(
        lines[1].contains("AdamW moments 347.96 GiB")
            && lines[1].ends_with("exceeds the 131.32 GiB (141 GB)"),
        "{stdout}"
    );

    // A --gpu-memory that is not a positive number of GB is a usage error.
    for bad in ["-1", "0", "abc", "1e400", "141GB;rm"] {
        let flag = format!("--gpu-memory={bad}");
        let out = lpo(&dir, &["plan", "big.toml", &flag]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains("is not a positive number of GB"),
            "{stderr}"
        );
    }

    // A dense layer's name on a sparse model is a plan error at its line.
    std::fs::write(
        dir.join("dense-target.toml"),
        "name = \"x\"\n[model]\nsize = \"nano\"\nexperts = 4\n[model.lora]\nrank = 4\ntargets = [\"q_proj\", \"down_proj\"]\n",
    )
    .unwrap();
    let out = lpo(&dir, &["plan", "dense-target.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("down_proj") && stderr.contains("dense-target.toml:7:"),
        "{stderr}"
    );
}
