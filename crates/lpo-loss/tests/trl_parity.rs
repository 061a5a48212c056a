//! lpo's pairwise losses against TRL's own: `fixtures/trl_losses.json` holds
//! what TRL 1.16.0's `DPOTrainer` computed (its losses per pair, the batch
//! loss, the logged rewards and the gradient of the loss with respect to the
//! policy log-probabilities) on seeded pairs, made by
//! `scripts/make_trl_loss_fixtures.py` (docs/trl-losses.md). Each pair is a
//! list of K = 2 (rewards 1 and 0) with its token counts; lpo must give the
//! same numbers to 1e-12 in f64 and 1e-6 in f32.

use lpo_loss::{compute, LossInput, LossParams};
use lpo_recipe::{LossConfig, LossKind, Objective, Part};
use serde_json::Value;
use tch::{Kind, Tensor};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/trl_losses.json"
    );
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("failed to read `{path}`: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The lpo objective TRL's `loss_type` list (with its `loss_weights`) is,
/// and the parameters it reads; `None` for what lpo does not implement.
fn params(case: &Value) -> Option<LossParams> {
    let p = &case["params"];
    if p["f_divergence_type"] != "reverse_kl"
        || p["use_weighting"] == true
        || !p["ld_alpha"].is_null()
    {
        return None; // f-divergences, WPO and LD-DPO are not lpo kinds
    }
    let types = p["loss_type"].as_array().unwrap();
    let weights = match p["loss_weights"].as_array() {
        Some(w) => w.iter().map(|w| w.as_f64().unwrap()).collect(),
        None => vec![1.0; types.len()],
    };
    let mut parts = Vec::new();
    for (t, weight) in types.iter().zip(weights) {
        let name = match t.as_str().unwrap() {
            "sigmoid" => "dpo",
            other => other,
        };
        parts.push(Part {
            kind: LossKind::from_name(name)?,
            weight,
        });
    }
    let mut config = LossConfig {
        kind: match parts.as_slice() {
            [one] if p["loss_weights"].is_null() => Objective::One(one.kind),
            _ => Objective::Weighted(parts.clone()),
        },
        ..LossConfig::default()
    };
    let label_smoothing = p["label_smoothing"].as_f64().unwrap();
    match parts[0].kind {
        LossKind::ExoPair => config.exo_epsilon = label_smoothing,
        _ => config.label_smoothing = label_smoothing,
    }
    config.beta = lpo_recipe::Coef::Value(p["beta"].as_f64().unwrap());
    config.discopop_tau = p["discopop_tau"].as_f64().unwrap();
    Some(LossParams::at_step(&config, 0, 1))
}

struct Outcome {
    per_pair: Vec<f64>,
    parts: Vec<f64>,
    loss: f64,
    chosen_reward: f64,
    rejected_reward: f64,
    grad_chosen: Vec<f64>,
    grad_rejected: Vec<f64>,
}

/// lpo's loss on the case's pairs as lists of two.
fn lpo_on(case: &Value, params: &LossParams, kind: Kind) -> Outcome {
    let inputs = &case["inputs"];
    let column = |name: &str| Tensor::from_slice(&numbers(&inputs[name])).to_kind(kind);
    let pair = |a: &str, b: &str| Tensor::stack(&[column(a), column(b)], 1); // [B, 2]
    let policy = pair("policy_chosen_logps", "policy_rejected_logps").set_requires_grad(true);
    let reference = pair("ref_chosen_logps", "ref_rejected_logps");
    let counts = pair("chosen_tokens", "rejected_tokens");
    let b = policy.size()[0];
    let rewards = Tensor::from_slice(&[1.0f64, 0.0])
        .to_kind(kind)
        .unsqueeze(0)
        .repeat([b, 1]);
    let mask = rewards.ones_like().to_kind(Kind::Bool);
    let out = compute(
        params,
        &LossInput {
            policy_logps: &policy,
            reference_logps: &reference,
            rewards: &rewards,
            mask: &mask,
            token_counts: Some(&counts),
        },
    );
    out.loss.backward();
    let grad = policy.grad().to_kind(Kind::Double);
    let to_vec = |t: Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap();
    let stats = out.stats();
    Outcome {
        per_pair: to_vec(out.per_prompt.detach()),
        parts: to_vec(out.parts.shallow_clone()),
        loss: out.loss.double_value(&[]),
        chosen_reward: stats.chosen_reward,
        rejected_reward: stats.rejected_reward,
        grad_chosen: to_vec(grad.select(1, 0)),
        grad_rejected: to_vec(grad.select(1, 1)),
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Where lpo and TRL differ on `case`, if anywhere.
fn differences(case: &Value, params: &LossParams) -> Vec<String> {
    let (kind, tol) = match case["dtype"].as_str().unwrap() {
        "float32" => (Kind::Float, 1e-6),
        _ => (Kind::Double, 1e-12),
    };
    let got = lpo_on(case, params, kind);
    let want = &case["outputs"];
    let mut wrong = Vec::new();
    let mut check = |what: &str, got: &[f64], want: &[f64]| {
        if got.len() != want.len() || got.iter().zip(want).any(|(g, w)| !close(*g, *w, tol)) {
            wrong.push(format!("{what}: lpo {got:?}, TRL {want:?}"));
        }
    };
    // Each part's per-pair losses as TRL computed them (a batch-coupled
    // kind's terms belong to ranks, not pairs: every pair's prompt carries
    // TRL's mean), and the weighted sum lpo's per-prompt loss must be.
    let trl_types = case["params"]["loss_type"].as_array().unwrap();
    let mut per_pair = vec![0.0; got.per_pair.len()];
    let mut part_means = Vec::new();
    for (t, part) in trl_types.iter().zip(&params.parts) {
        let losses = numbers(&want["losses"][t.as_str().unwrap()]);
        let losses = if part.kind.spec().batch {
            vec![mean(&losses); losses.len()]
        } else {
            losses
        };
        for (sum, l) in per_pair.iter_mut().zip(&losses) {
            *sum += part.weight * l;
        }
        part_means.push(mean(&losses));
    }
    check("per-pair loss", &got.per_pair, &per_pair);
    check("each part's loss", &got.parts, &part_means);
    check("loss", &[got.loss], &[want["loss"].as_f64().unwrap()]);
    check(
        "chosen reward",
        &[got.chosen_reward],
        &[mean(&numbers(&want["chosen_rewards"]))],
    );
    check(
        "rejected reward",
        &[got.rejected_reward],
        &[mean(&numbers(&want["rejected_rewards"]))],
    );
    check(
        "d loss / d chosen",
        &got.grad_chosen,
        &numbers(&want["grad_policy_chosen_logps"]),
    );
    check(
        "d loss / d rejected",
        &got.grad_rejected,
        &numbers(&want["grad_policy_rejected_logps"]),
    );
    wrong
}

#[test]
fn every_trl_loss_type_lpo_implements_equals_trls_own_outputs() {
    let fixture = fixture();
    let mut compared = std::collections::BTreeSet::new();
    let mut combined = std::collections::BTreeSet::new();
    let mut wrong = Vec::new();
    for case in fixture["cases"].as_array().unwrap() {
        if case["trainer"] != "DPOTrainer" {
            continue;
        }
        let Some(params) = params(case) else { continue };
        if let [part] = params.parts.as_slice() {
            compared.insert(part.kind.as_str());
        } else {
            combined.insert(case["name"].as_str().unwrap().to_string());
        }
        for problem in differences(case, &params) {
            wrong.push(format!("{}: {problem}", case["name"].as_str().unwrap()));
        }
    }
    assert!(
        wrong.is_empty(),
        "lpo differs from TRL:\n{}",
        wrong.join("\n")
    );
    // Every pairwise kind lpo declares with TRL as its source is compared.
    let declared: std::collections::BTreeSet<&str> = lpo_recipe::LOSSES
        .iter()
        .filter(|s| s.source.contains("TRL's") && s.reference) // DPOTrainer's
        .map(|s| s.name)
        .collect();
    assert_eq!(
        compared, declared,
        "kinds with a TRL source but no TRL case, or the reverse"
    );
    // Weighted combinations (TRL's loss_weights): MPO, RPO and ipo + hinge.
    assert_eq!(
        combined.into_iter().collect::<Vec<_>>(),
        ["dpo/ipo+hinge", "dpo/mpo", "dpo/rpo"]
    );
}

/// lpo's reference-free kinds against TRL's CPOTrainer (`loss_type =
/// "simpo"` with `cpo_alpha = 0` and no label smoothing: the SimPO paper's
/// loss) and ORPOTrainer. For ORPO, TRL's NLL covers the prompt's tokens too
/// and is token-weighted over the batch, so only its odds-ratio part and the
/// rewards are compared (TRL computes them in f32): lpo's per-pair loss is
/// the chosen response's per-token NLL, `-u_c`, plus TRL's `-losses`.
#[test]
fn simpo_and_orpo_equal_trls_cpo_and_orpo_trainers() {
    let fixture = fixture();
    let mut compared = Vec::new();
    let mut wrong = Vec::new();
    for case in fixture["cases"].as_array().unwrap() {
        let p = &case["params"];
        let name = case["name"].as_str().unwrap();
        let (kind, tol): (LossKind, f64) = match case["trainer"].as_str().unwrap() {
            "CPOTrainer"
                if p["loss_type"] == "simpo"
                    && p["cpo_alpha"] == 0.0
                    && p["label_smoothing"] == 0.0
                    && p["alpha"] == 0.0 =>
            {
                (LossKind::Simpo, 1e-12)
            }
            "ORPOTrainer" => (LossKind::Orpo, 1e-6),
            _ => continue,
        };
        let mut config = LossConfig {
            kind: kind.into(),
            ..LossConfig::default()
        };
        config.beta = lpo_recipe::Coef::Value(p["beta"].as_f64().unwrap());
        if let Some(gamma) = p["simpo_gamma"].as_f64() {
            config.simpo_gamma = gamma;
        }
        let params = LossParams::at_step(&config, 0, 1);
        let dtype = match case["dtype"].as_str().unwrap() {
            "float32" => Kind::Float,
            _ => Kind::Double,
        };
        let tol = if dtype == Kind::Float {
            tol.max(1e-6)
        } else {
            tol
        };
        // No reference: the inputs' reference log-probabilities are unused.
        let mut inputs = case.clone();
        for side in ["ref_chosen_logps", "ref_rejected_logps"] {
            inputs["inputs"][side] = inputs["inputs"]["policy_chosen_logps"].clone();
        }
        let got = lpo_on(&inputs, &params, dtype);
        let want = &case["outputs"];
        let per_token = |logps: &str, tokens: &str| -> Vec<f64> {
            let (l, n) = (
                numbers(&case["inputs"][logps]),
                numbers(&case["inputs"][tokens]),
            );
            l.iter().zip(&n).map(|(l, n)| l / n.max(1.0)).collect()
        };
        let u_c = per_token("policy_chosen_logps", "chosen_tokens");
        let trl: Vec<f64> = numbers(&want["losses"]);
        let expected: Vec<f64> = match kind {
            LossKind::Orpo => trl.iter().zip(&u_c).map(|(l, u)| -u - l).collect(),
            _ => trl.clone(),
        };
        let mut check = |what: &str, got: &[f64], want: &[f64]| {
            if got.iter().zip(want).any(|(g, w)| !close(*g, *w, tol)) {
                wrong.push(format!("{name}: {what}: lpo {got:?}, TRL {want:?}"));
            }
        };
        check("per-pair loss", &got.per_pair, &expected);
        check(
            "chosen reward",
            &[got.chosen_reward],
            &[mean(&numbers(&want["chosen_rewards"]))],
        );
        check(
            "rejected reward",
            &[got.rejected_reward],
            &[mean(&numbers(&want["rejected_rewards"]))],
        );
        if kind == LossKind::Simpo {
            check("loss", &[got.loss], &[want["loss"].as_f64().unwrap()]);
            check(
                "d loss / d chosen",
                &got.grad_chosen,
                &numbers(&want["grad_policy_chosen_logps"]),
            );
            check(
                "d loss / d rejected",
                &got.grad_rejected,
                &numbers(&want["grad_policy_rejected_logps"]),
            );
        }
        compared.push(name.to_string());
    }
    assert!(
        wrong.is_empty(),
        "lpo differs from TRL:\n{}",
        wrong.join("\n")
    );
    assert!(compared.len() >= 5, "{compared:?}");
    for kind in ["cpo/simpo", "orpo/"] {
        assert!(
            compared.iter().any(|c| c.starts_with(kind)),
            "no {kind} case: {compared:?}"
        );
    }
}
