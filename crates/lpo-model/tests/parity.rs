//! lpo's log-probabilities against transformers' on the fixtures of
//! tests/fixtures/parity (made by scripts/make_parity_fixtures.py): tiny
//! random-weight Mistral (transformers 5.x layout, sliding window), Llama
//! with llama3, linear and yarn rotary scaling, Llama with tied embeddings,
//! Qwen2 (q/k/v biases, tied embeddings) and Qwen3 (per-head q/k RMSNorm,
//! head_dim apart from hidden/heads, tied embeddings).

use std::path::{Path, PathBuf};

use lpo_model::logps::{response_logps, right_pad};
use lpo_model::{checkpoint, Config, Family, Mistral};
use tch::{nn, Device, Kind};

const TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/fixtures/parity/{name}"))
}

struct Expected {
    sequences: Vec<Vec<i64>>,
    logps: Vec<Vec<f64>>,
    unscaled: Option<Vec<Vec<f64>>>,
}

fn expected(dir: &Path) -> Expected {
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows =
        |key: &str| -> Option<Vec<Vec<f64>>> { serde_json::from_value(v.get(key)?.clone()).ok() };
    Expected {
        sequences: serde_json::from_value(v["sequences"].clone()).unwrap(),
        logps: rows("logps").unwrap(),
        unscaled: rows("logps_unscaled"),
    }
}

/// Per-token log p(token t | tokens < t), t >= 1, of right-padded rows.
fn token_logps(model: &Mistral, rows: &[Vec<i64>]) -> Vec<Vec<f64>> {
    let (tokens, valid) = right_pad(rows, 0, Device::Cpu);
    let lp = tch::no_grad(|| model.forward(&tokens, &valid)).log_softmax(-1, Kind::Double);
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            (1..r.len())
                .map(|t| lp.double_value(&[i as i64, t as i64 - 1, r[t]]))
                .collect()
        })
        .collect()
}

fn max_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f64::max)
}

fn check(name: &str, family: Family, tied: bool, scaling: Option<&str>) {
    let dir = fixture(name);
    let (vs, model) = checkpoint::load(&dir, Device::Cpu).unwrap();
    let c = model.config();
    assert_eq!(c.family, family, "{name}");
    assert_eq!(c.tie_word_embeddings, tied, "{name}");
    assert_eq!(c.rope_scaling.as_ref().map(|r| r.kind()), scaling, "{name}");
    assert_eq!(
        vs.variables().contains_key("lm_head.weight"),
        !tied,
        "{name}"
    );
    // The transformers 4.x layout of the same config reads the same.
    let legacy = std::fs::read_to_string(dir.join("config.4x.json")).unwrap();
    assert_eq!(
        &Config::from_hf_json(&legacy).unwrap(),
        c,
        "{name}: 4.x layout"
    );

    let want = expected(&dir);
    let got = token_logps(&model, &want.sequences);
    let diff = max_diff(&got, &want.logps);
    eprintln!("{name}: max |lpo - transformers| per-token log-prob = {diff:.2e}");
    assert!(
        diff < TOLERANCE,
        "{name}: per-token log-probs differ by {diff}"
    );

    // The training path: prompts computed once, responses continuing them.
    let (prompts, responses): (Vec<_>, Vec<_>) = want
        .sequences
        .iter()
        .map(|r| {
            let cut = (r.len() / 3).max(1);
            (r[..cut].to_vec(), r[cut..].to_vec())
        })
        .unzip();
    let out = tch::no_grad(|| response_logps(&model, &prompts, &responses, 1, 0));
    for (i, (p, r)) in prompts.iter().zip(&want.logps).enumerate() {
        let from = p.len() - 1; // logps[t - 1] scores token t
        let sum: f64 = r[from..].iter().sum();
        let lpo = out.sum.double_value(&[i as i64, 0]);
        assert!(
            (lpo - sum).abs() < TOLERANCE * r.len() as f64,
            "{name}: response {i} sums to {lpo}, transformers {sum}"
        );
    }

    // The sequences reach where the scaling matters: without it, lpo agrees
    // with transformers without it, and both differ from the scaled numbers.
    if let Some(unscaled) = want.unscaled {
        let mut plain = c.clone();
        plain.rope_scaling = None;
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Mistral::new(&vs.root(), &plain);
        checkpoint::load_into(&vs, &dir).unwrap();
        let got = token_logps(&model, &want.sequences);
        let diff = max_diff(&got, &unscaled);
        assert!(
            diff < TOLERANCE,
            "{name} unscaled: log-probs differ by {diff}"
        );
        let effect = max_diff(&unscaled, &want.logps);
        assert!(
            effect > 0.5,
            "{name}: the scaling changes log-probs by only {effect}"
        );
    }
}

#[test]
fn mistral_in_the_transformers_5_layout_matches_transformers() {
    check("mistral", Family::Mistral, false, None);
}

#[test]
fn llama_with_llama3_rope_scaling_matches_transformers() {
    check("llama3", Family::Llama, false, Some("llama3"));
}

#[test]
fn llama_with_linear_rope_scaling_matches_transformers() {
    check("llama_linear", Family::Llama, false, Some("linear"));
}

#[test]
fn llama_with_yarn_rope_scaling_matches_transformers() {
    check("llama_yarn", Family::Llama, false, Some("yarn"));
}

#[test]
fn llama_with_tied_embeddings_matches_transformers() {
    check("llama_tied", Family::Llama, true, None);
}

#[test]
fn qwen2_matches_transformers() {
    check("qwen2", Family::Qwen2, true, None);
}

#[test]
fn qwen3_with_per_head_qk_norm_matches_transformers() {
    check("qwen3", Family::Qwen3, true, None);
    // The q/k norms matter: with their gains set to one the log-probs move.
    let dir = fixture("qwen3");
    let (vs, model) = checkpoint::load(&dir, Device::Cpu).unwrap();
    assert_eq!(
        model.config().head_dim(),
        24,
        "head_dim differs from hidden/heads"
    );
    let want = expected(&dir);
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.ends_with("q_norm.weight") || name.ends_with("k_norm.weight") {
                let _ = t.fill_(1.0);
            }
        }
    });
    let effect = max_diff(&token_logps(&model, &want.sequences), &want.logps);
    assert!(
        effect > 0.1,
        "q/k norm gains change log-probs by only {effect}"
    );
}

fn json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

fn rows<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> T {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn mixtral_matches_transformers_on_both_paths_with_its_router_loss() {
    check("mixtral", Family::Mixtral, false, None);
    let dir = fixture("mixtral");
    let (_, model) = checkpoint::load(&dir, Device::Cpu).unwrap();
    assert_eq!(
        (
            model.config().num_local_experts,
            model.config().num_experts_per_tok
        ),
        (4, 2)
    );
    let v = json(&dir);
    let want = expected(&dir);

    // transformers' `aux_loss` of the padded batch (output_router_logits).
    let (tokens, valid) = right_pad(&want.sequences, 0, Device::Cpu);
    let (_, aux) = tch::no_grad(|| model.forward_with_router_loss(&tokens, &valid));
    let aux = aux
        .expect("a sparse model has a router loss")
        .double_value(&[]);
    let expected_aux = v["router_aux_loss"].as_f64().unwrap();
    assert!(
        (aux - expected_aux).abs() < TOLERANCE,
        "router loss {aux}, transformers {expected_aux}"
    );

    // Shared prompts (K = 2): response sums, and the router loss counting
    // each prompt once per response as the full sequences do.
    let shared = &v["shared"];
    let prompts: Vec<Vec<i64>> = rows(&shared["prompts"]);
    let responses: Vec<Vec<i64>> = rows(&shared["responses"]);
    let sums: Vec<f64> = rows(&shared["sums"]);
    let out = tch::no_grad(|| response_logps(&model, &prompts, &responses, 2, 0));
    for (i, want) in sums.iter().enumerate() {
        let got = out.sum.double_value(&[i as i64 / 2, i as i64 % 2]);
        assert!(
            (got - want).abs() < TOLERANCE * 20.0,
            "row {i}: {got} vs {want}"
        );
    }
    let aux = out.router_aux.expect("a router loss").double_value(&[]);
    let expected_aux = shared["router_aux_loss"].as_f64().unwrap();
    assert!(
        (aux - expected_aux).abs() < TOLERANCE,
        "shared-prefix router loss {aux}, transformers {expected_aux}"
    );

    // transformers 5.x's fused expert tensors load to the same model.
    let (_, fused) = checkpoint::load(&fixture("mixtral_fused"), Device::Cpu).unwrap();
    let diff = max_diff(
        &token_logps(&fused, &want.sequences),
        &token_logps(&model, &want.sequences),
    );
    assert!(diff < 1e-6, "fused layout differs by {diff}");
}
