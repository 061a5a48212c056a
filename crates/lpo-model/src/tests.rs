use std::cell::Cell;
use std::collections::BTreeMap;

use lpo_recipe::{ModelDims, SizePreset};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tch::{nn, Device, Kind, Tensor};

use crate::generate::{generate, generate_k, sample_rows, Decoding, GenerateOptions};
use crate::logps::{response_logps, response_logps_in, Layout};
use crate::{checkpoint, Config, Mistral};

const PAD: i64 = 0;
const EOS: i64 = 2;

thread_local! {
    /// Overrides the size from which products run on oneDNN (`i64::MAX`:
    /// never) on this test's thread.
    pub(crate) static ONEDNN_MIN_MACS: Cell<Option<i64>> = const { Cell::new(None) };
    /// oneDNN products this test thread ran.
    pub(crate) static ONEDNN_CALLS: Cell<u64> = const { Cell::new(0) };
}

fn nano(seed: i64, window: u32, layers: u32) -> (nn::VarStore, Mistral) {
    let dims = ModelDims {
        sliding_window: window,
        layers,
        ..SizePreset::Nano.dims()
    };
    scaled(seed, &dims)
}

/// A model of `dims` from torch's seed `seed`, its matrices scaled up.
fn scaled(seed: i64, dims: &ModelDims) -> (nn::VarStore, Mistral) {
    scaled_config(seed, &Config::from_dims(dims))
}

/// A model of `config` from torch's seed `seed`, its matrices scaled up.
fn scaled_config(seed: i64, config: &Config) -> (nn::VarStore, Mistral) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Mistral::new(&vs.root(), config);
    // Larger weights than the 0.02 init so logits vary visibly between inputs.
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            if v.dim() == 2 {
                let scaled = &v * 10.0;
                v.copy_(&scaled);
            }
        }
    });
    (vs, model)
}

fn row(tokens: &[i64]) -> Tensor {
    Tensor::from_slice(tokens).view([1, tokens.len() as i64])
}

fn logits_of(model: &Mistral, tokens: &[i64]) -> Tensor {
    let t = row(tokens);
    model.forward(&t, &t.ones_like().to_kind(Kind::Bool))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn parameter_count_matches_the_config_formula() {
    let (vs, _) = nano(0, 0, 2);
    let numel: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
    assert_eq!(numel as u64, SizePreset::Nano.dims().parameter_count());
}

#[test]
fn attention_is_causal() {
    let (_, model) = nano(1, 0, 2);
    let a: Vec<i64> = (0..20).map(|i| 4 + (i * 7) % 50).collect();
    for changed in [5usize, 12, 19] {
        let mut b = a.clone();
        b[changed] = 4 + (b[changed] + 13) % 50;
        let la = logits_of(&model, &a);
        let lb = logits_of(&model, &b);
        let earlier = max_diff(
            &la.narrow(1, 0, changed as i64),
            &lb.narrow(1, 0, changed as i64),
        );
        assert!(earlier < 1e-6, "position < {changed} moved by {earlier}");
        let later = max_diff(
            &la.narrow(1, changed as i64, 1),
            &lb.narrow(1, changed as i64, 1),
        );
        assert!(
            later > 1e-3,
            "the changed position itself must move ({later})"
        );
    }
}

#[test]
fn sliding_window_limits_what_a_position_sees() {
    let window = 4;
    let (_, model) = nano(2, window, 1);
    let a: Vec<i64> = (0..16).map(|i| 4 + (i * 5) % 50).collect();
    let mut b = a.clone();
    b[3] = 40; // a one-block model at position 3 + window sees nothing of position 3
    let la = logits_of(&model, &a);
    let lb = logits_of(&model, &b);
    let inside = max_diff(
        &la.narrow(1, 3 + window as i64 - 1, 1),
        &lb.narrow(1, 3 + window as i64 - 1, 1),
    );
    let outside = max_diff(
        &la.narrow(1, 3 + window as i64, 9),
        &lb.narrow(1, 3 + window as i64, 9),
    );
    assert!(
        inside > 1e-3,
        "position 3 is inside the window of position 6"
    );
    assert!(outside < 1e-6, "beyond the window: {outside}");
}

#[test]
fn left_padding_does_not_change_logits() {
    let (_, model) = nano(3, 0, 2);
    let short = vec![5i64, 9, 11];
    let long: Vec<i64> = (0..9).map(|i| 4 + i).collect();
    let (tokens, valid) =
        crate::generate::left_pad(&[short.clone(), long.clone()], PAD, Device::Cpu);
    let positions = crate::model::positions_of(&valid);
    let mut cache = crate::KvCache::new(&model);
    let batched = model.logits(&model.hidden(&tokens, &positions, &valid, &mut cache));
    let alone = logits_of(&model, &short);
    let padded_rows = batched.get(0).narrow(0, 6, 3).unsqueeze(0);
    assert!(max_diff(&padded_rows, &alone) < 1e-5);
    assert!(max_diff(&batched.get(1).unsqueeze(0), &logits_of(&model, &long)) < 1e-5);
}

/// Greedy decoding by recomputing the whole sequence every step (no cache).
fn greedy_without_cache(
    model: &Mistral,
    prompt: &[i64],
    max_new: usize,
) -> (Vec<i64>, Vec<Tensor>) {
    let mut seq = prompt.to_vec();
    let mut out = Vec::new();
    let mut step_logits = Vec::new();
    for _ in 0..max_new {
        let logits = logits_of(model, &seq).get(0).get(seq.len() as i64 - 1);
        let next = logits.argmax(-1, false).int64_value(&[]);
        step_logits.push(logits);
        if next == EOS {
            break;
        }
        out.push(next);
        seq.push(next);
    }
    (out, step_logits)
}

#[test]
fn kv_cache_generation_equals_full_recomputation() {
    let (_, model) = nano(4, 0, 2);
    let prompts = vec![
        vec![1i64, 7, 8, 9],
        vec![1, 20],
        vec![1, 30, 31, 32, 33, 34, 35],
    ];
    let options = GenerateOptions {
        max_new_tokens: 12,
        eos: EOS,
        pad: PAD,
        decoding: Decoding::Greedy,
    };
    let cached = generate(&model, &prompts, &options, &mut StdRng::seed_from_u64(0));
    for (prompt, got) in prompts.iter().zip(&cached) {
        let (expected, _) = greedy_without_cache(&model, prompt, 12);
        assert_eq!(got, &expected, "prompt {prompt:?}");
    }
    assert!(cached.iter().any(|r| r.len() > 3), "{cached:?}");
}

#[test]
fn kv_cache_generation_respects_the_sliding_window() {
    let (_, model) = nano(5, 3, 2);
    let prompt = vec![1i64, 10, 11, 12, 13, 14];
    let options = GenerateOptions {
        max_new_tokens: 10,
        eos: EOS,
        pad: PAD,
        decoding: Decoding::Greedy,
    };
    let cached = generate(
        &model,
        std::slice::from_ref(&prompt),
        &options,
        &mut StdRng::seed_from_u64(0),
    );
    assert_eq!(cached[0], greedy_without_cache(&model, &prompt, 10).0);
}

#[test]
fn sampling_is_seeded_and_top_p_narrows_to_greedy() {
    let (_, model) = nano(6, 0, 2);
    let prompts = vec![vec![1i64, 5, 6]; 4];
    let sample = |seed, top_p| {
        let options = GenerateOptions {
            max_new_tokens: 8,
            eos: EOS,
            pad: PAD,
            decoding: Decoding::Sample {
                temperature: 1.0,
                top_p,
            },
        };
        generate(&model, &prompts, &options, &mut StdRng::seed_from_u64(seed))
    };
    assert_eq!(sample(1, 1.0), sample(1, 1.0));
    assert_ne!(sample(1, 1.0), sample(2, 1.0));
    let greedy = generate(
        &model,
        &prompts,
        &GenerateOptions {
            max_new_tokens: 8,
            eos: EOS,
            pad: PAD,
            decoding: Decoding::Greedy,
        },
        &mut StdRng::seed_from_u64(0),
    );
    // A nucleus of (almost) zero mass keeps only the most likely token.
    assert_eq!(sample(3, 1e-9), greedy);
}

/// The sampler `sample_rows` replaces, in f64 on the host: inverse CDF over
/// softmax(logits / temperature), in vocabulary order at top-p 1, else over
/// the top-p nucleus in descending order (ties by lower id).
fn reference_sample(logits: &[f64], temperature: f64, top_p: f64, u: f64) -> i64 {
    let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|l| ((l - top) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let probs: Vec<f64> = weights.iter().map(|w| w / total).collect();
    let mut order: Vec<usize> = (0..probs.len()).collect();
    if top_p < 1.0 {
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let mut mass = 0.0;
        let kept = order
            .iter()
            .position(|&i| {
                mass += probs[i];
                mass >= top_p
            })
            .map_or(order.len(), |p| p + 1);
        order.truncate(kept);
    }
    let mass: f64 = order.iter().map(|&i| probs[i]).sum();
    let mut target = u * mass;
    for &i in &order {
        target -= probs[i];
        if target < 0.0 {
            return i as i64;
        }
    }
    *order.last().expect("a token") as i64
}

#[test]
fn sampling_on_the_device_equals_a_reference_implementation() {
    // Fixed pseudo-random logits (not libtorch's generator, which other tests reseed).
    let (rows, vocab) = (200usize, 37usize);
    let logits: Vec<f64> = (0..rows * vocab)
        .map(|i| 3.0 * ((i as f64 * 0.7137).sin() * 43758.5453).fract())
        .collect();
    let mut rng = StdRng::seed_from_u64(11);
    let uniforms: Vec<f64> = (0..rows)
        .map(|_| rand::Rng::random::<f64>(&mut rng))
        .collect();
    let tensor = Tensor::from_slice(&logits)
        .to_kind(Kind::Float)
        .view([rows as i64, vocab as i64]);
    for (temperature, top_p) in [(1.0, 1.0), (0.7, 1.0), (1.0, 0.9), (1.3, 0.5), (1.0, 1e-9)] {
        let got =
            Vec::<i64>::try_from(sample_rows(&tensor, temperature, top_p, &uniforms)).unwrap();
        let f32_logits: Vec<f64> = logits.iter().map(|&l| f64::from(l as f32)).collect();
        let expected: Vec<i64> = (0..rows)
            .map(|r| {
                let row = &f32_logits[r * vocab..(r + 1) * vocab];
                reference_sample(row, temperature, top_p, uniforms[r])
            })
            .collect();
        assert_eq!(got, expected, "temperature {temperature}, top-p {top_p}");
    }
}

#[test]
fn top_p_sampling_follows_the_truncated_distribution() {
    let probs = [0.5f64, 0.3, 0.15, 0.05];
    let n = 20_000;
    let logits = Tensor::from_slice(&probs.map(f64::ln))
        .to_kind(Kind::Float)
        .view([1, 4])
        .repeat([n, 1]);
    let mut rng = StdRng::seed_from_u64(0);
    let uniforms: Vec<f64> = (0..n).map(|_| rand::Rng::random::<f64>(&mut rng)).collect();
    let picked = Vec::<i64>::try_from(sample_rows(&logits, 1.0, 0.8, &uniforms)).unwrap();
    let mut counts = [0usize; 4];
    for p in picked {
        counts[p as usize] += 1;
    }
    // Nucleus {0, 1} with mass 0.8: renormalised 0.625 / 0.375.
    assert_eq!(counts[2] + counts[3], 0);
    let share = counts[0] as f64 / n as f64;
    assert!((share - 0.625).abs() < 0.02, "{share}");
}

#[test]
fn k_samples_per_prompt_equal_generating_from_repeated_prompts() {
    let (_, model) = nano(8, 0, 2);
    let prompts = vec![vec![1i64, 5, 6], vec![1, 9, 10, 11, 12]];
    let repeated: Vec<Vec<i64>> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), 3))
        .collect();
    for decoding in [
        Decoding::Greedy,
        Decoding::Sample {
            temperature: 1.0,
            top_p: 1.0,
        },
        Decoding::Sample {
            temperature: 0.8,
            top_p: 0.9,
        },
    ] {
        let options = GenerateOptions {
            max_new_tokens: 10,
            eos: EOS,
            pad: PAD,
            decoding,
        };
        let shared = generate_k(&model, &prompts, 3, &options, &mut StdRng::seed_from_u64(5));
        let plain = generate(&model, &repeated, &options, &mut StdRng::seed_from_u64(5));
        assert_eq!(shared, plain, "{decoding:?}");
    }
}

#[test]
fn shared_prefix_logps_equal_full_sequence_logps() {
    let (vs, model) = nano(7, 0, 2);
    let prompts = vec![vec![1i64, 4, 5, 6, 7], vec![1, 9]];
    let responses = vec![
        vec![10i64, 11, EOS],
        vec![12, EOS],
        vec![EOS],
        vec![13, 14, 15, 16, EOS],
        vec![],
        vec![17, EOS],
    ];
    let got = response_logps(&model, &prompts, &responses, 3, PAD);
    assert_eq!(got.sum.size(), [2, 3]);
    for (i, response) in responses.iter().enumerate() {
        let prompt = &prompts[i / 3];
        let seq: Vec<i64> = prompt.iter().chain(response).copied().collect();
        let logp = logits_of(&model, &seq).get(0).log_softmax(-1, Kind::Float);
        let expected: f64 = response
            .iter()
            .enumerate()
            .map(|(j, &tok)| {
                logp.get((prompt.len() + j - 1) as i64)
                    .get(tok)
                    .double_value(&[])
            })
            .sum();
        let actual = got
            .sum
            .get((i / 3) as i64)
            .get((i % 3) as i64)
            .double_value(&[]);
        assert!(
            (actual - expected).abs() < 1e-4,
            "response {i}: {actual} vs {expected}"
        );
        let count = got
            .tokens
            .get((i / 3) as i64)
            .get((i % 3) as i64)
            .double_value(&[]);
        assert_eq!(count, response.len() as f64);
    }
    // Gradients reach every parameter through the shared prefix.
    got.sum.sum(Kind::Float).backward();
    for (name, v) in vs.variables() {
        assert!(
            v.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "{name} has no gradient"
        );
    }
}

#[test]
fn safetensors_save_then_load_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, model) = nano(8, 0, 2);
    checkpoint::save(&vs, model.config(), dir.path()).unwrap();
    let (loaded_vs, loaded) = checkpoint::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(loaded.config(), model.config());
    let original = vs.variables();
    for (name, t) in loaded_vs.variables() {
        assert!(t.equal(&original[&name]), "{name} differs");
    }
    let tokens = [1i64, 4, 5, 6];
    assert!(logits_of(&model, &tokens).equal(&logits_of(&loaded, &tokens)));
    // Hugging Face names and metadata.
    let bytes = std::fs::read(dir.path().join(checkpoint::WEIGHTS_FILE)).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
    let names: Vec<String> = meta.tensors().keys().cloned().collect();
    for expected in [
        "model.embed_tokens.weight",
        "model.layers.1.self_attn.k_proj.weight",
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.0.post_attention_layernorm.weight",
        "model.norm.weight",
        "lm_head.weight",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "mistral");
    assert_eq!(config["num_key_value_heads"], 2);
}

#[test]
fn sharded_hugging_face_directories_load_in_bf16_or_f32() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, model) = nano(9, 0, 2);
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&model.config().to_hf_json()).unwrap(),
    )
    .unwrap();
    // Two shards, stored in bf16 as released checkpoints usually are.
    let mut shards = [BTreeMap::new(), BTreeMap::new()];
    let mut weight_map = serde_json::Map::new();
    for (i, (name, t)) in vs.variables().into_iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        weight_map.insert(name.clone(), file.into());
        shards[i % 2].insert(name, t.to_kind(Kind::BFloat16));
    }
    shards[0].insert(
        "model.layers.0.self_attn.rotary_emb.inv_freq".into(),
        Tensor::ones([4], (Kind::Float, Device::Cpu)),
    );
    for (i, shard) in shards.iter().enumerate() {
        let path = dir
            .path()
            .join(format!("model-0000{}-of-00002.safetensors", i + 1));
        checkpoint::write_tensors(&path, shard).unwrap();
    }
    std::fs::write(
        dir.path().join(checkpoint::INDEX_FILE),
        serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
    let (loaded_vs, _) = checkpoint::load(dir.path(), Device::Cpu).unwrap();
    let original = vs.variables();
    for (name, t) in loaded_vs.variables() {
        assert_eq!(t.kind(), Kind::Float);
        let expected = original[&name].to_kind(Kind::BFloat16).to_kind(Kind::Float);
        assert!(t.equal(&expected), "{name}");
    }
    // A missing tensor is named.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = checkpoint::load(dir.path(), Device::Cpu).unwrap_err();
    assert!(
        format!("{err:#}").contains("model-00002-of-00002.safetensors"),
        "{err:#}"
    );
    // A shard index may not point outside the directory or at a device.
    for bad in ["/dev/zero", "../model-00001-of-00002.safetensors"] {
        let mut map = weight_map.clone();
        map.insert("a.checked.first".into(), bad.into());
        std::fs::write(
            dir.path().join(checkpoint::INDEX_FILE),
            serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
        )
        .unwrap();
        let err = format!(
            "{:#}",
            checkpoint::load(dir.path(), Device::Cpu).unwrap_err()
        );
        assert!(
            err.contains(&format!("shard `{bad}` is not a file name inside")),
            "{err}"
        );
    }
}

#[test]
fn wrong_shapes_and_foreign_configs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, model) = nano(10, 0, 2);
    checkpoint::save(&vs, model.config(), dir.path()).unwrap();
    let mut other = model.config().clone();
    other.intermediate_size += 8;
    std::fs::write(
        dir.path().join("config.json"),
        other.to_hf_json().to_string(),
    )
    .unwrap();
    let err = format!(
        "{:#}",
        checkpoint::load(dir.path(), Device::Cpu).unwrap_err()
    );
    assert!(err.contains("has shape"), "{err}");
    let mut json = model.config().to_hf_json();
    json["model_type"] = "gpt2".into();
    std::fs::write(dir.path().join("config.json"), json.to_string()).unwrap();
    let err = format!(
        "{:#}",
        checkpoint::load(dir.path(), Device::Cpu).unwrap_err()
    );
    assert!(err.contains("gpt2"), "{err}");
}

/// Gradients of a weighted sum of response log-probabilities (plus, with
/// `router`, 3 times a sparse model's router loss, which then ends the
/// returned log-probabilities), by name.
fn logps_gradients(
    vs: &nn::VarStore,
    (checkpointed, router): (bool, bool),
    layout: Layout,
    model: &Mistral,
) -> (Tensor, BTreeMap<String, Tensor>) {
    let prompts = vec![vec![1, 5, 9, 7], vec![1, 12]];
    // K = 3, one empty response and uneven lengths (padding).
    let responses = vec![
        vec![4, 4, 2],
        vec![6],
        vec![],
        vec![8, 9, 10, 11, 2],
        vec![3, 2],
        vec![7, 7],
    ];
    let weights = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 1.5, -0.25, 1.0]).view([2, 3]);
    for (_, mut t) in vs.variables() {
        t.zero_grad();
    }
    let sum = if checkpointed {
        let (out, recompute) =
            crate::logps::checkpointed_response_logps(model, &prompts, &responses, 3, 0, layout);
        (&out.sum * &weights).sum(Kind::Float).backward();
        recompute.backward();
        out.sum
    } else {
        let out = response_logps_in(model, &prompts, &responses, 3, 0, layout);
        let mut loss = (&out.sum * &weights).sum(Kind::Float);
        match out.router_aux.filter(|_| router) {
            Some(aux) => {
                loss += &aux * 3.0;
                loss.backward();
                Tensor::cat(&[out.sum.flatten(0, -1), aux.view([1])], 0)
            }
            None => {
                loss.backward();
                out.sum
            }
        }
    };
    let grads = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.grad().copy()))
        .collect();
    (sum.detach(), grads)
}

/// Asserts two runs' log-probabilities and gradients agree to `tol`
/// relative, and that every parameter received a gradient.
fn assert_same_gradients(
    a: &(Tensor, BTreeMap<String, Tensor>),
    b: &(Tensor, BTreeMap<String, Tensor>),
    tol: f64,
) {
    let scale = a.0.abs().max().double_value(&[]).max(1e-3);
    let diff = max_diff(&a.0, &b.0);
    assert!(diff / scale < tol, "log-probs: {diff} of {scale}");
    assert_eq!(a.1.len(), b.1.len());
    for (name, g) in &a.1 {
        let scale = g.abs().max().double_value(&[]).max(1e-3);
        let diff = max_diff(g, &b.1[name]);
        assert!(diff / scale < tol, "{name}: {diff} of {scale}");
        assert!(
            g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "{name} has a gradient"
        );
    }
}

#[test]
fn activation_checkpointing_gives_the_same_log_probs_and_gradients() {
    for window in [0, 3] {
        let (vs, model) = nano(11, window, 3);
        for layout in [Layout::Padded, Layout::Packed] {
            let plain = logps_gradients(&vs, (false, false), layout, &model);
            let ckpt = logps_gradients(&vs, (true, false), layout, &model);
            assert!(max_diff(&plain.0, &ckpt.0) < 1e-6);
            assert_same_gradients(&plain, &ckpt, 1e-5);
        }
    }
}

/// The packed layout computes the padded one's log-probabilities and
/// gradients (sliding window, grouped heads, q/k norms, biases, a sparse
/// model with its router loss, LoRA adapters), and never embeds a padding
/// token.
#[test]
fn packed_lists_give_the_log_probs_and_gradients_of_padded_ones() {
    let family = |family| {
        let mut config = Config::from_dims(&SizePreset::Nano.dims());
        config.family = family;
        config
    };
    let models = [
        nano(13, 0, 2),
        nano(14, 3, 2),
        scaled_config(15, &family(crate::Family::Qwen3)),
        scaled_config(18, &family(crate::Family::Qwen2)),
        moe_nano(16, 2),
    ];
    let (_base_vs, base) = nano(17, 0, 2);
    let lora_vs = nn::VarStore::new(Device::Cpu);
    let spec = crate::lora::LoraSpec::from_recipe(&lpo_recipe::LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec![
            lpo_recipe::LoraTarget::QProj,
            lpo_recipe::LoraTarget::VProj,
            lpo_recipe::LoraTarget::DownProj,
        ],
    })
    .unwrap();
    let adapted = base.with_adapters(&lora_vs.root(), &spec);
    // B starts at zero; random values let every adapter matrix get a
    // gradient. (At 10x this scale down_proj's A gradient cancels to 7e-5
    // relative in f32; in f64 both layouts agree to 1e-13.)
    tch::no_grad(|| {
        for (_, mut v) in lora_vs.variables() {
            let r = v.randn_like() * 0.1;
            v.copy_(&r);
        }
    });
    for (vs, model) in &models {
        let padded = logps_gradients(vs, (false, true), Layout::Padded, model);
        let packed = logps_gradients(vs, (false, true), Layout::Packed, model);
        assert_same_gradients(&padded, &packed, 1e-5);
    }
    // Packed passes never embed a padding token: with the padding token's
    // embedding NaN they still give the padded layout's numbers, finite.
    let (vs, model) = &models[0];
    let padded = logps_gradients(vs, (false, true), Layout::Padded, model);
    tch::no_grad(|| {
        let mut row = vs.variables()["model.embed_tokens.weight"].get(PAD);
        let _ = row.fill_(f64::NAN);
    });
    let packed = logps_gradients(vs, (false, true), Layout::Packed, model);
    assert_same_gradients(&padded, &packed, 1e-5);
    let padded = logps_gradients(&lora_vs, (false, false), Layout::Padded, &adapted);
    let packed = logps_gradients(&lora_vs, (false, false), Layout::Packed, &adapted);
    assert_same_gradients(&padded, &packed, 1e-5);
}

#[test]
fn packing_keeps_real_tokens_in_row_order() {
    // Rows of width 4: right-padded lengths 2, 0, 3 from offset 5 of the
    // packed sequence; left-padded 1, 4 from 0.
    let right = crate::model::Packing::new(&[2, 0, 3], 4, false, 5, Device::Cpu);
    let left = crate::model::Packing::new(&[1, 4], 4, true, 0, Device::Cpu);
    let x = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 4, 1]);
    let values = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
    assert_eq!(values(&right.pack(&x)), [0.0, 1.0, 8.0, 9.0, 10.0]);
    let y = Tensor::arange(8, (Kind::Float, Device::Cpu)).view([2, 4, 1]);
    assert_eq!(values(&left.pack(&y)), [3.0, 4.0, 5.0, 6.0, 7.0]);
    // Unpacked from the sequence [left's 5 tokens, right's 5]: padding holds
    // a copy of its row's first token (right's row 1 has none: the pass's
    // first).
    let sequence = Tensor::cat(&[left.pack(&y), right.pack(&x)], 0).unsqueeze(0);
    assert_eq!(
        values(&right.unpack(&sequence)),
        [0., 1., 0., 0., 0., 0., 0., 0., 8., 9., 10., 8.]
    );
    assert_eq!(
        values(&left.unpack(&sequence)),
        [3., 3., 3., 3., 4., 5., 6., 7.]
    );
    assert_eq!((right.len(), left.len()), (5, 5));
    // Full prompts (a pass without padding unpacks as a view) with ragged
    // responses agree; a batch with no padding at all is not packed (the
    // padded passes, to the bit).
    let (_vs, model) = nano(20, 0, 2);
    let prompts = vec![vec![1, 5, 9], vec![1, 6, 7]];
    let full: Vec<Vec<i64>> = (0..4).map(|r| vec![4 + r, 9, 2]).collect();
    let ragged: Vec<Vec<i64>> = (0..4).map(|r| vec![4 + r; 1 + r as usize]).collect();
    for (responses, tol) in [(&ragged, 1e-5), (&full, 0.0)] {
        let [padded, packed] = [Layout::Padded, Layout::Packed]
            .map(|layout| response_logps_in(&model, &prompts, responses, 2, PAD, layout).sum);
        assert!(max_diff(&padded, &packed) <= tol * padded.abs().max().double_value(&[]));
    }
    // A batch of empty responses packs nothing and scores 0 in both layouts.
    let (_vs, model) = nano(19, 0, 1);
    let prompts = vec![vec![1, 5], vec![1, 6, 7]];
    let empty = vec![vec![]; 4];
    for layout in [Layout::Padded, Layout::Packed] {
        let out = response_logps_in(&model, &prompts, &empty, 2, PAD, layout);
        assert_eq!(out.sum.abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(out.tokens.sum(Kind::Float).double_value(&[]), 0.0);
    }
}

/// Log-probabilities and gradients of 8 prompts of 40 tokens with K = 4
/// responses of up to 30, once with products of over 2^20 multiply-adds on
/// oneDNN (Zen 5's threshold, whatever this CPU's) and once all on
/// at::linear.
#[test]
fn onednn_products_give_the_log_probs_and_gradients_of_at_linear() {
    if !lpo_torch::linear::onednn_preferred() {
        eprintln!("skipped: no oneDNN or no AVX-512 here");
        return;
    }
    let (vs, model) = nano(12, 0, 2);
    let prompts: Vec<Vec<i64>> = (0..8)
        .map(|b| (0..40).map(|i| 3 + (b * 13 + i * 7) % 60).collect())
        .collect();
    let responses: Vec<Vec<i64>> = (0..32)
        .map(|r| (0..30 - r % 5).map(|i| 3 + (r * 11 + i * 5) % 60).collect())
        .collect();
    let run = |at_linear_only: bool| {
        let min_macs = if at_linear_only { i64::MAX } else { 1 << 20 };
        ONEDNN_MIN_MACS.with(|c| c.set(Some(min_macs)));
        for (_, mut t) in vs.variables() {
            t.zero_grad();
        }
        let out = response_logps(&model, &prompts, &responses, 4, PAD);
        out.sum.sum(Kind::Float).backward();
        let grads: BTreeMap<String, Tensor> = vs
            .variables()
            .into_iter()
            .map(|(name, t)| (name, t.grad().copy()))
            .collect();
        (out.sum.detach(), grads)
    };
    let before = ONEDNN_CALLS.with(Cell::get);
    let (sum, grads) = run(false);
    assert!(ONEDNN_CALLS.with(Cell::get) > before, "oneDNN ran");
    let calls = ONEDNN_CALLS.with(Cell::get);
    let (reference_sum, reference) = run(true);
    assert_eq!(
        ONEDNN_CALLS.with(Cell::get),
        calls,
        "the reference ran without oneDNN"
    );
    let scale = reference_sum.abs().max().double_value(&[]);
    assert!(max_diff(&sum, &reference_sum) / scale < 1e-5);
    for (name, g) in &reference {
        let scale = g.abs().max().double_value(&[]).max(1e-3);
        let diff = max_diff(g, &grads[name]);
        assert!(diff / scale < 1e-4, "{name}: {diff} of {scale}");
    }
}

/// A nano decoder whose blocks are sparse: 4 experts, top 2.
fn moe_nano(seed: i64, layers: u32) -> (nn::VarStore, Mistral) {
    let dims = ModelDims {
        layers,
        experts: 4,
        experts_per_token: 2,
        ..SizePreset::Nano.dims()
    };
    scaled(seed, &dims)
}

#[test]
fn a_sparse_model_has_the_parameters_of_its_formula_and_transformers_names() {
    let (vs, model) = moe_nano(0, 2);
    let numel: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
    let dims = ModelDims {
        experts: 4,
        experts_per_token: 2,
        ..SizePreset::Nano.dims()
    };
    assert_eq!(numel as u64, dims.parameter_count());
    assert!(dims.active_parameter_count() < dims.parameter_count());
    let names = vs.variables();
    for name in [
        "model.layers.1.block_sparse_moe.gate.weight",
        "model.layers.0.block_sparse_moe.experts.3.w2.weight",
    ] {
        assert!(names.contains_key(name), "{name}");
    }
    assert!(names.keys().all(|n| !n.contains(".mlp.")));
    assert_eq!(model.config().family, crate::Family::Mixtral);
}

/// transformers' sparse block written plainly in float64: every token
/// through every expert, weighted by its renormalised top-k router
/// probabilities (zero for the others).
fn naive_moe(x: &Tensor, vs: &nn::VarStore, layer: i64, top_k: i64) -> Tensor {
    let v = vs.variables();
    let w = |name: &str| {
        v[&format!("model.layers.{layer}.block_sparse_moe.{name}.weight")].to_kind(Kind::Double)
    };
    let x = x.to_kind(Kind::Double).reshape([-1, x.size()[2]]); // [N, D]
    let probs = x.matmul(&w("gate").tr()).softmax(-1, Kind::Double); // [N, E]
    let (top, chosen) = probs.topk(top_k, -1, true, true);
    let weights = probs.zeros_like().scatter(
        1,
        &chosen,
        &(&top / top.sum_dim_intlist(-1, true, Kind::Double)),
    );
    let experts = probs.size()[1];
    let mut out = x.zeros_like();
    for j in 0..experts {
        let e = |n: &str| w(&format!("experts.{j}.{n}"));
        let y = (x.matmul(&e("w1").tr()).silu() * x.matmul(&e("w3").tr())).matmul(&e("w2").tr());
        out += y * weights.select(1, j).unsqueeze(1);
    }
    out
}

#[test]
fn grouped_routing_equals_every_token_through_every_expert_with_gradients() {
    let (vs, model) = moe_nano(3, 1);
    let crate::model::FeedForward::Sparse(moe) = model.blocks[0].feed_forward() else {
        panic!("a sparse block");
    };
    let x = (Tensor::randn([3, 7, 64], (Kind::Float, Device::Cpu)) * 2.0).set_requires_grad(true);
    let (y, logits) = moe.forward(&x);
    assert_eq!(logits.size(), [21, 4]);
    let want = naive_moe(&x, &vs, 0, 2);
    let diff = max_diff(&y.to_kind(Kind::Double).reshape([-1, 64]), &want);
    assert!(diff < 1e-4, "forward differs by {diff}");
    // Gradients of a weighted sum agree too (the router's through the
    // renormalised weights, each expert's through its tokens).
    let r = Tensor::randn([21, 64], (Kind::Double, Device::Cpu));
    (y.to_kind(Kind::Double).reshape([-1, 64]) * &r)
        .sum(Kind::Double)
        .backward();
    let grads: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n.contains("block_sparse_moe"))
        .map(|(n, t)| (n, t.grad().copy()))
        .collect();
    let x_grad = x.grad().copy();
    for (_, mut t) in vs.variables() {
        if t.grad().defined() {
            t.zero_grad();
        }
    }
    let x2 = x.detach().set_requires_grad(true);
    let naive = naive_moe(&x2, &vs, 0, 2);
    (naive * &r).sum(Kind::Double).backward();
    assert!(
        max_diff(
            &x_grad.to_kind(Kind::Double),
            &x2.grad().to_kind(Kind::Double)
        ) < 1e-3
    );
    for (name, t) in vs.variables() {
        if !name.contains("block_sparse_moe") {
            continue;
        }
        let g = &grads[&name];
        let scale = g.abs().max().double_value(&[]).max(1e-3);
        let diff = max_diff(g, &t.grad());
        assert!(diff / scale < 1e-4, "{name}: {diff} of {scale}");
    }
}

#[test]
fn a_sparse_model_generates_with_its_cache_as_without_and_shares_prefixes() {
    let (_, model) = moe_nano(4, 2);
    let prompts = vec![vec![1i64, 7, 8, 9], vec![1, 20, 21]];
    let options = GenerateOptions {
        max_new_tokens: 10,
        eos: EOS,
        pad: PAD,
        decoding: Decoding::Greedy,
    };
    let cached = generate(&model, &prompts, &options, &mut StdRng::seed_from_u64(0));
    for (prompt, got) in prompts.iter().zip(&cached) {
        assert_eq!(
            got,
            &greedy_without_cache(&model, prompt, 10).0,
            "{prompt:?}"
        );
    }

    // Shared prompts (K = 2, an empty response): the sums and the router
    // loss of the full sequences, each prompt counted once per response.
    let responses = vec![
        vec![10i64, 11, EOS],
        vec![],
        vec![12, EOS],
        vec![13, 14, 15, 16, EOS],
    ];
    let got = response_logps(&model, &prompts, &responses, 2, PAD);
    let rows: Vec<Vec<i64>> = responses
        .iter()
        .enumerate()
        .map(|(i, r)| prompts[i / 2].iter().chain(r).copied().collect())
        .collect();
    let (tokens, valid) = crate::logps::right_pad(&rows, PAD, Device::Cpu);
    let (logits, aux) = model.forward_with_router_loss(&tokens, &valid);
    let logp = logits.log_softmax(-1, Kind::Float);
    for (i, r) in responses.iter().enumerate() {
        let p = prompts[i / 2].len() as i64;
        let want: f64 = (0..r.len() as i64)
            .map(|j| logp.double_value(&[i as i64, p + j - 1, r[j as usize]]))
            .sum();
        let have = got.sum.double_value(&[i as i64 / 2, i as i64 % 2]);
        assert!((have - want).abs() < 1e-4, "row {i}: {have} vs {want}");
    }
    let (aux, shared) = (
        aux.unwrap().double_value(&[]),
        got.router_aux.unwrap().double_value(&[]),
    );
    assert!((aux - shared).abs() < 1e-5, "{aux} vs {shared}");
}

#[test]
fn activation_checkpointing_gives_a_sparse_model_the_same_gradients() {
    let (vs, model) = moe_nano(11, 3);
    let (plain_sum, plain) = logps_gradients(&vs, (false, false), Layout::Padded, &model);
    let (ckpt_sum, ckpt) = logps_gradients(&vs, (true, false), Layout::Padded, &model);
    assert!(max_diff(&plain_sum, &ckpt_sum) < 1e-6);
    for (name, g) in &plain {
        let scale = g.abs().max().double_value(&[]).max(1e-3);
        let diff = max_diff(g, &ckpt[name]);
        assert!(diff / scale < 1e-5, "{name}: {diff} of {scale}");
    }
}
