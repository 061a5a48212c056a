use super::*;
use lpo_recipe::{load, Overrides};
use proptest::prelude::*;

fn recipe(text: &str) -> Recipe {
    let table: toml::Table = toml::from_str(text).unwrap();
    assert!(
        lpo_recipe::keys::check_table(&table).is_empty(),
        "{:?}",
        lpo_recipe::keys::check_table(&table)
    );
    toml::Value::Table(table).try_into().unwrap()
}

#[test]
fn no_sweep_is_one_run() {
    let p = plan(&Recipe::default()).unwrap();
    assert_eq!(p.runs.len(), 1);
    assert!(p.axes.is_empty());
}

#[test]
fn grid_zip_and_seeds_multiply_in_a_fixed_order() {
    let r = recipe(
        "[sweep]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\"], \"train.learning_rate\" = [1e-4, 1e-3, 1e-2] }\n\
         zip = { \"model.layers\" = [2, 3], \"model.d_model\" = [64, 96] }\nseeds = [1, 2]\n",
    );
    let p = plan(&r).unwrap();
    assert_eq!(p.runs.len(), 2 * 3 * 2 * 2);
    assert_eq!(
        p.axes,
        [
            "loss.kind",
            "train.learning_rate",
            "model.d_model",
            "model.layers",
            "train.seed"
        ]
    );
    // The last axis moves fastest.
    assert_eq!(p.runs[0].recipe.train.seed, 1);
    assert_eq!(p.runs[1].recipe.train.seed, 2);
    assert_eq!(
        (
            p.runs[2].recipe.model.dims().layers,
            p.runs[2].recipe.model.dims().d_model
        ),
        (3, 96)
    );
    let ids: std::collections::HashSet<_> = p.runs.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), p.runs.len());
    assert_eq!(
        plan(&r)
            .unwrap()
            .runs
            .iter()
            .map(|r| &r.id)
            .collect::<Vec<_>>(),
        p.runs.iter().map(|r| &r.id).collect::<Vec<_>>()
    );
}

#[test]
fn exclusions_drop_matching_runs() {
    let r = recipe(
        "[sweep]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\"], \"loss.gamma\" = [0.0, 0.5] }\n\
         exclude = [{ \"loss.kind\" = \"dpo\", \"loss.gamma\" = 0.5 }]\n",
    );
    let p = plan(&r).unwrap();
    // dpo ignores gamma, so (dpo, 0.0) is kept and (dpo, 0.5) excluded.
    assert_eq!((p.runs.len(), p.excluded, p.duplicates), (3, 1, 0));
}

#[test]
fn parameters_a_loss_ignores_do_not_split_runs() {
    let r = recipe("[sweep]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\"], \"loss.coefficient\" = [\"adaptive\", \"uniform\"] }\n");
    let p = plan(&r).unwrap();
    assert_eq!(
        (p.runs.len(), p.duplicates),
        (3, 1),
        "DPO does not read the coefficient"
    );
}

#[test]
fn ids_ignore_cosmetics_and_execution_settings() {
    let a = recipe("name = \"a\"\nlabel = \"x\"\n[train]\ndevice = \"cpu\"\nthreads = 2\n");
    let b = recipe("name = \"b\"\ndescription = \"other\"\n[train]\ndevice = \"cuda\"\n");
    assert_eq!(run_id(&a), run_id(&b));
    let explicit = recipe("[model]\nsize = \"nano\"\nlayers = 2\n[loss]\nbeta = { kind = \"constant\", value = 0.1 }\n");
    assert_eq!(
        run_id(&explicit),
        run_id(&Recipe::default()),
        "a preset and its explicit fields are the same run"
    );
    let different = recipe("[loss]\nbeta = 0.2\n");
    assert_ne!(run_id(&different), run_id(&Recipe::default()));
}

#[test]
fn ids_survive_key_reordering_and_comments_in_files() {
    let dir = std::env::temp_dir().join(format!("lpo-plan-ids-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let one = dir.join("one.toml");
    let two = dir.join("two.toml");
    std::fs::write(&one, "name = \"one\"\n[loss]\nkind = \"lpo\"\nbeta = 0.1\n[train]\nsteps = 50\n[sweep]\ngrid = { \"loss.alpha\" = [0.5, 1.0] }\nseeds = [1, 2]\n").unwrap();
    std::fs::write(
        &two,
        "# reordered, renamed, commented\n[sweep]\nseeds = [1, 2]\ngrid = { \"loss.alpha\" = [0.5, 1.0] } # axis\n\
         [train]\nsteps = 50\n[loss]\nbeta = 0.1\nkind = \"lpo\"\nname_is_not_here = false\n",
    )
    .unwrap();
    assert!(
        load(&two, &Overrides::default()).is_err(),
        "an unknown key is still an error"
    );
    std::fs::write(
        &two,
        "# reordered, renamed, commented\nname = \"two\"\n[sweep]\nseeds = [1, 2]\ngrid = { \"loss.alpha\" = [0.5, 1.0] } # axis\n\
         [train]\nsteps = 50\n[loss]\nbeta = 0.1\nkind = \"lpo\"\n",
    )
    .unwrap();
    let ids = |p: &std::path::Path| {
        plan(&load(p, &Overrides::default()).unwrap().recipe)
            .unwrap()
            .runs
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&one), ids(&two));
}

#[test]
fn invalid_runs_are_reported_together() {
    let r = recipe("[sweep]\ngrid = { \"model.heads\" = [3, 5], \"model.d_model\" = [64] }\n");
    let err = plan(&r).unwrap_err();
    assert_eq!(err.0.len(), 4, "{err}");
    assert!(err.to_string().contains("run [model.d_model=64, model.heads=3]: `model.heads` d_model 64 is not divisible by heads 3"), "{err}");
}

#[test]
fn set_and_get_paths() {
    let mut v = toml::Value::Table(toml::Table::new());
    set_path(&mut v, "a.b.c", Value::Integer(3));
    assert_eq!(get_path(&v, "a.b.c"), Some(&Value::Integer(3)));
    assert_eq!(get_path(&v, "a.x"), None);
}

proptest! {
    #[test]
    fn run_count_is_the_product_of_axis_lengths(grid_a in 1usize..5, grid_b in 1usize..5, zip in 1usize..4, seeds in 0usize..4) {
        let mut r = Recipe::default();
        r.sweep.grid.insert("train.steps".into(), (1..=grid_a).map(|i| Value::Integer(i as i64)).collect());
        r.sweep.grid.insert("train.learning_rate".into(), (1..=grid_b).map(|i| Value::Float(i as f64 * 1e-4)).collect());
        let mut group = lpo_recipe::ZipGroup::new();
        group.insert("loss.beta".into(), (1..=zip).map(|i| Value::Float(i as f64 / 10.0)).collect());
        group.insert("eval.prompts".into(), (1..=zip).map(|i| Value::Integer(i as i64)).collect());
        r.sweep.zip.push(group);
        r.sweep.seeds = (0..seeds as u64).collect();
        let p = plan(&r).unwrap();
        prop_assert_eq!(p.runs.len(), grid_a * grid_b * zip * seeds.max(1));
        let ids: std::collections::HashSet<_> = p.runs.iter().map(|r| r.id.clone()).collect();
        prop_assert_eq!(ids.len(), p.runs.len());
    }
}

#[test]
fn canonical_json_has_sorted_keys() {
    // run_id relies on serde_json's key-ordered maps (no `preserve_order`).
    let text = serde_json::to_string(&canonical(&Recipe::default())).unwrap();
    let top: Vec<&str> = ["\"data\"", "\"eval\"", "\"loss\"", "\"model\"", "\"train\""].into();
    let positions: Vec<usize> = top.iter().map(|k| text.find(k).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn odometer_positions_count_in_mixed_radix() {
    // Every combination of a 2 x 3 x 2 sweep, in order, last axis fastest.
    let axes = [vec![vec![]; 2], vec![vec![]; 3], vec![vec![]; 2]];
    let mut odometer = vec![0, 0, 0];
    for n in 0..12 {
        assert_eq!(position(n, &axes), vec![n / 6, (n / 2) % 3, n % 2], "{n}");
        assert_eq!(position(n, &axes), odometer, "advance agrees at {n}");
        advance(&mut odometer, &axes);
    }
    assert_eq!(odometer, vec![0, 0, 0], "it wraps after the last");
}

#[test]
fn the_default_recipe_keeps_its_run_id() {
    // Written down, not recomputed: a change to the canonical configuration
    // or the id scheme moves every run id and must be deliberate (bump
    // ID_SCHEME and update this).
    assert_eq!(run_id(&Recipe::default()), "f227702ed476");
}

#[test]
fn an_unknown_baseline_label_is_a_plan_error() {
    let sweep = "[sweep]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\"] }\n";
    // The baseline run of the sweep is itself compared with the reference.
    let known = recipe(&format!("[eval]\nbaseline = \"dpo\"\n{sweep}"));
    let p = plan(&known).unwrap();
    let own: Vec<&str> = self_baselines(&p).iter().map(|r| r.id.as_str()).collect();
    assert_eq!(own, [p.runs[1].id.as_str()]);
    // The planner links each run to its baseline run, once for every consumer.
    assert_eq!((p.runs[0].baseline, p.runs[1].baseline), (Some(1), None));
    // Two runs that carry the baseline's label are ambiguous.
    let twice = recipe(
        "[eval]\nbaseline = \"d\"\n[sweep]\nzip = { label = [\"d\", \"d\", \"x\"], \"loss.beta\" = [0.1, 0.2, 0.3] }\n",
    );
    let err = plan(&twice).unwrap_err().to_string();
    assert!(
        err.contains("2 runs with the same data") && err.contains("make labels distinct"),
        "{err}"
    );
    // A run that is its own baseline with nobody comparing with it is an
    // error, not a silent comparison with the reference.
    let lone = recipe("[loss]\nkind = \"dpo\"\n[eval]\nbaseline = \"dpo\"\n");
    let err = plan(&lone).unwrap_err().to_string();
    assert!(
        err.contains("its own label, and no other run compares with it"),
        "{err}"
    );
    let unknown = recipe(&format!("[eval]\nbaseline = \"dpp\"\n{sweep}"));
    let err = plan(&unknown).unwrap_err().to_string();
    assert!(
        err.contains("`eval.baseline` is \"dpp\"") && err.contains("(labels: dpo, lpo)"),
        "{err}"
    );
    // A label of runs with other held-out prompts (another seed) does not count.
    let other_seed = recipe(
        "[eval]\nbaseline = \"dpo\"\n[sweep]\nzip = { \"loss.kind\" = [\"lpo\", \"dpo\"], \"train.seed\" = [1, 2] }\n",
    );
    assert!(plan(&other_seed).is_err());
}

#[test]
fn every_computing_key_of_evaluation_rounds_and_the_supervised_term_moves_the_id() {
    let base = run_id(&Recipe::default());
    for (key, value) in [
        ("loss", "sft_weight = 0.5"),
        (
            "loss",
            "sft_weight = { kind = \"linear\", from = 0.0, to = 1.0 }",
        ),
        ("train", "rounds = 2"),
        ("train", "reference_update = \"round\""),
        ("data", "eval_fraction = 0.2"),
        ("eval", "samples = 4"),
        ("eval", "validation_fraction = 0.25"),
        ("eval", "every = 5"),
        ("train", "moments = \"bf16\""),
        ("model.lora", "rank = 8"),
    ] {
        let r = recipe(&format!("[{key}]\n{value}\n"));
        assert_ne!(run_id(&r), base, "{key}.{value} does not move the run id");
    }
    for kind in ["lpo", "dpo", "listmle", "infonca", "nca"] {
        let a = recipe(&format!("[loss]\nkind = \"{kind}\"\n"));
        let b = recipe(&format!("[loss]\nkind = \"{kind}\"\nsft_weight = 1.0\n"));
        assert_ne!(
            run_id(&a),
            run_id(&b),
            "{kind}: sft_weight left out of the id"
        );
    }
    // LoRA settings count only with adapters on; target order does not.
    let lora = |extra: &str| run_id(&recipe(&format!("[model.lora]\nrank = 4\n{extra}")));
    assert_ne!(lora(""), lora("alpha = 8.0\n"));
    assert_ne!(lora(""), lora("targets = [\"q_proj\"]\n"));
    assert_eq!(
        lora("targets = [\"q_proj\", \"v_proj\"]\n"),
        lora("targets = [\"v_proj\", \"q_proj\"]\n")
    );
    assert_eq!(run_id(&recipe("[model.lora]\nalpha = 8.0\n")), base);
    // A constant schedule is its number.
    let plain = recipe("[loss]\nsft_weight = 0.5\n");
    let constant = recipe("[loss]\nsft_weight = { kind = \"constant\", value = 0.5 }\n");
    assert_eq!(run_id(&plain), run_id(&constant));
}

#[test]
fn keys_outside_run_ids_do_not_move_the_id() {
    let base = run_id(&Recipe::default());
    // A different value for every key the key table puts outside run ids;
    // a new such key must be added here (the test fails otherwise).
    let changes = [
        ("name", "name = \"other\"\n"),
        ("description", "description = \"other\"\n"),
        ("label", "label = \"other\"\n"),
        ("extends", "extends = \"elsewhere.toml\"\n"),
        ("train.device", "[train]\ndevice = \"cpu\"\n"),
        ("train.threads", "[train]\nthreads = 3\n"),
        ("train.checkpoint_every", "[train]\ncheckpoint_every = 7\n"),
        (
            "train.activation_checkpointing",
            "[train]\nactivation_checkpointing = true\n",
        ),
        ("reward.model_batch", "[reward]\nmodel_batch = 16\n"),
        (
            "tracking",
            "[tracking]\nmlflow = \"http://127.0.0.1:5000\"\nexperiment = \"e\"\n",
        ),
        (
            "tracking.mlflow",
            "[tracking]\nmlflow = \"https://mlflow.example.org\"\n",
        ),
        (
            "tracking.experiment",
            "[tracking]\nexperiment = \"other\"\n",
        ),
        (
            "report",
            "[[report.tables]]\nname = \"t\"\nmetric = \"reward\"\ncaption = \"c\"\n",
        ),
        (
            "sweep",
            "[sweep]\nseeds = [5]\nexclude = [{ \"loss.kind\" = \"dpo\" }]\n",
        ),
    ];
    let outside: Vec<&str> = lpo_recipe::keys::outside_run_ids()
        .map(|k| k.path)
        .collect();
    let covered: Vec<&str> = changes.iter().map(|(k, _)| *k).collect();
    assert_eq!(outside, covered, "every key outside run ids is varied here");
    for (key, text) in changes {
        let table: toml::Table = toml::from_str(text).unwrap();
        let r: Recipe = toml::Value::Table(table).try_into().unwrap();
        assert_ne!(r, Recipe::default(), "{key}: the change took effect");
        assert_eq!(run_id(&r), base, "{key} moved the run id");
    }
}

#[test]
fn reward_settings_move_the_id_only_for_the_reward_kinds_in_use() {
    let parse = |text: &str| -> Recipe {
        let table: toml::Table = toml::from_str(text).unwrap();
        toml::Value::Table(table).try_into().unwrap()
    };
    // Task-only: no [reward] setting computes anything.
    let base = run_id(&Recipe::default());
    for text in [
        "[reward]\nmath_style = \"boxed\"\n",
        "[reward]\ncode_timeout = 3.0\n",
        "[reward]\nmodel = \"rm\"\n",
    ] {
        assert_eq!(run_id(&parse(text)), base, "{text}");
    }
    // A math prompt file: math_style counts, the code and model settings do not.
    let mix = "[reference]\ncheckpoint = \"c\"\n[data]\nmix = [{ path = \"p.jsonl\", format = \"gsm8k\", reward = \"math\" }]\n";
    let math = run_id(&parse(mix));
    assert_ne!(math, base);
    assert_ne!(
        run_id(&parse(&format!("{mix}[reward]\nmath_style = \"boxed\"\n"))),
        math
    );
    for extra in [
        "[reward]\ncode_timeout = 3.0\n",
        "[reward]\nmodel = \"rm\"\n",
    ] {
        assert_eq!(run_id(&parse(&format!("{mix}{extra}"))), math, "{extra}");
    }
    // The evaluation key follows the same rule.
    let boxed = parse(&format!("{mix}[reward]\nmath_style = \"boxed\"\n"));
    assert_ne!(eval_key(&boxed), eval_key(&parse(mix)));
    assert_eq!(
        eval_key(&parse("[reward]\nmath_style = \"boxed\"\n")),
        eval_key(&Recipe::default())
    );
}

/// Preference pairs come from the same lists and held-out prompts as the
/// reward form: the form changes the run, not what it is evaluated on.
#[test]
fn the_data_form_changes_the_run_id_but_not_the_evaluation_key() {
    let reward = Recipe::default();
    let pairs = recipe("[data]\nform = \"preference\"\n");
    assert_ne!(run_id(&reward), run_id(&pairs));
    assert_eq!(eval_key(&reward), eval_key(&pairs));
    let other_data = recipe("[data]\nform = \"preference\"\nlist_size = 5\n");
    assert_ne!(eval_key(&reward), eval_key(&other_data));
}

/// A checkpoint directory holding only a config.json (all the planner reads).
fn checkpoint_dir(name: &str, config: &serde_json::Value) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lpo-plan-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    dir
}

#[test]
fn a_checkpoint_gives_the_model_and_contradictions_are_errors() {
    let config = serde_json::json!({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "vocab_size": 96, "hidden_size": 128, "intermediate_size": 256,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}
    });
    let dir = checkpoint_dir("model", &config);
    let with = |extra: &str| {
        recipe(&format!(
            "[reference]\ncheckpoint = \"{}\"\n{extra}",
            dir.display()
        ))
    };
    // The plan's recipe (and so config.toml and the run id) is the checkpoint's model.
    let p = plan(&with("")).unwrap();
    let m = &p.runs[0].recipe.model;
    assert_eq!(m.size, None);
    let d = m.dims();
    assert_eq!(
        (d.layers, d.d_model, d.heads, d.kv_heads, d.d_ff, d.vocab, d.max_len),
        (4, 128, 4, 2, 256, 96, 512)
    );
    assert_eq!((d.rope_theta, d.sliding_window), (500000.0, 0));
    let toml = toml::to_string(&*p.runs[0].recipe).unwrap();
    assert!(
        toml.contains("layers = 4") && !toml.contains("nano"),
        "{toml}"
    );
    // Without data.tokenizer, the checkpoint's own tokenizer.
    let tokenizer = dir.join("tokenizer.json").display().to_string();
    assert_eq!(p.runs[0].recipe.data.tokenizer, Some(tokenizer));
    // Agreeing explicit fields are fine and give the same run.
    let same = plan(&with("[model]\nlayers = 4\nd_model = 128\n")).unwrap();
    assert_eq!(same.runs[0].id, p.runs[0].id);
    // A field or a preset that contradicts the checkpoint is an error naming both.
    let err = plan(&with("[model]\nlayers = 2\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`model.layers` is 2") && err.contains("num_hidden_layers = 4"),
        "{err}"
    );
    let err = plan(&with("[model]\nsize = \"tiny\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`model.size` = \"tiny\" has d_ff 352") && !err.contains("d_model"),
        "{err}"
    );
    assert!(err.contains("rope_theta = 500000"), "{err}");
    // A swept field is checked run by run.
    let err = plan(&with("[sweep]\ngrid = { \"model.d_ff\" = [256, 300] }\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.d_ff=300") && !err.contains("model.d_ff=256"),
        "{err}"
    );
    // An unreadable or foreign checkpoint is an error naming the file.
    std::fs::write(dir.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let err = plan(&with("")).unwrap_err().to_string();
    assert!(err.contains("gpt2") && err.contains("config.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    let err = plan(&with("")).unwrap_err().to_string();
    assert!(err.contains("failed to read"), "{err}");
}

/// Every combination of `r`'s sweep resolved by the planner's memoized path
/// equals the direct path (the TOML with the keys set, deserialized whole):
/// ids, recipes, exclusions and messages.
fn assert_fast_path_is_the_direct_path(r: &Recipe) {
    let (axes, _) = axes_of(&r.sweep);
    let base = base_of(r).unwrap();
    let total: usize = axes.iter().map(Vec::len).product();
    let shared = resolve::Shared::new(&axes, &base, &r.sweep.exclude);
    let show = |run: &Resolved| match run {
        Resolved::Excluded => "excluded".to_string(),
        Resolved::Invalid(found) => format!("{found:?}"),
        Resolved::Run {
            id,
            assignments,
            recipe,
        } => format!("{id} {assignments:?} {recipe:?}"),
    };
    // In two ranges, so a thread's memo starts mid-sweep too.
    let fast: Vec<Resolved> = [0..total / 3, total / 3..total]
        .into_iter()
        .flat_map(|range| shared.resolve_range(range))
        .collect();
    assert_eq!(fast.len(), total);
    let mut odometer = vec![0; axes.len()];
    for (n, run) in fast.iter().enumerate() {
        let assignments: Choice = odometer
            .iter()
            .zip(&axes)
            .flat_map(|(&i, axis)| axis[i].iter().cloned())
            .collect();
        let direct = resolve(assignments, &base, &r.sweep.exclude);
        assert_eq!(show(run), show(&direct), "combination {n}");
        advance(&mut odometer, &axes);
    }
}

#[test]
fn the_memoized_resolution_equals_the_direct_one() {
    for text in [
        // Axes over five sections, a zip across two fields (label is outside
        // ids), seeds, and exclusions on set and unset keys.
        "[sweep]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\"], \"loss.beta\" = [0.1, 0.2], \
         \"train.learning_rate\" = [1e-4, 3e-4], \"eval.prompts\" = [4, 8], \"reference.sft_steps\" = [10, 20] }\n\
         zip = { \"label\" = [\"a\", \"b\"], \"model.layers\" = [2, 3] }\nseeds = [1, 2, 3]\n\
         exclude = [{ \"loss.kind\" = \"dpo\", \"loss.beta\" = 0.2 }, { \"train.threads\" = 0, \"eval.prompts\" = 8 }]\n",
        // Invalid combinations report the same messages.
        "[sweep]\ngrid = { \"model.heads\" = [3, 4, 5], \"model.d_model\" = [64, 96], \"train.steps\" = [1, 2] }\n",
        // A swept table (the data mix) and an exclusion inside it.
        "[sweep]\ngrid = { \"data.mix\" = [[{ task = \"arith\", weight = 1.0 }], [{ task = \"program\", weight = 1.0 }]], \"loss.gamma\" = [0.0, 0.5] }\n\
         exclude = [{ \"data.mix\" = [{ task = \"program\", weight = 1.0 }], \"loss.gamma\" = 0.5 }]\n",
        // Coefficient schedules as swept values, and a loss that ignores some keys (duplicates).
        "[sweep]\ngrid = { \"loss.kind\" = [\"dpo\", \"listmle\"], \"loss.beta\" = [0.1, { kind = \"linear\", from = 0.1, to = 0.5 }] }\n",
    ] {
        assert_fast_path_is_the_direct_path(&recipe(text));
    }
    // The fallbacks (values the key table would refuse, set here directly):
    // a field that does not deserialize, and a filter on a table the sweep
    // sets keys inside.
    let mut r = recipe("[sweep]\ngrid = { \"loss.beta\" = [0.1, 0.2] }\n");
    r.sweep.grid.insert(
        "train.steps".into(),
        vec![Value::String("x".into()), Value::Integer(3)],
    );
    r.sweep.exclude = vec![
        [("train".to_string(), Value::Table(toml::toml! { steps = 3 }))].into(),
        [("loss.beta".to_string(), Value::Float(0.2))].into(),
    ];
    assert_fast_path_is_the_direct_path(&r);
    // A checkpoint reference (its model comes from disk).
    let config = serde_json::json!({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "vocab_size": 96, "hidden_size": 128, "intermediate_size": 256,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 512, "rms_norm_eps": 1e-5
    });
    let dir = checkpoint_dir("memo", &config);
    let r = recipe(&format!(
        "[reference]\ncheckpoint = \"{}\"\n[sweep]\ngrid = {{ \"model.layers\" = [2, 4], \"loss.beta\" = [0.1, 0.2] }}\n",
        dir.display()
    ));
    assert_fast_path_is_the_direct_path(&r);
}

#[test]
fn run_ids_hash_the_canonical_json_text() {
    let r = recipe("[loss]\nkind = \"dpo\"\n[train]\nsteps = 7\n");
    let json = serde_json::to_vec(&canonical(&r)).unwrap();
    assert_eq!(
        run_id(&r),
        lpo_results::sha256_hex(&[ID_SCHEME.as_bytes(), b"\n", &json], 6)
    );
}

#[test]
fn dataset_and_tokenizer_directories_without_what_a_run_reads_are_plan_errors() {
    let dir = std::env::temp_dir().join(format!("lpo-plan-dirs-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("ds")).unwrap();
    std::fs::create_dir_all(dir.join("tok")).unwrap();
    let (ds, tok) = (dir.join("ds"), dir.join("tok"));
    // A dataset directory without `split`: a run would read it as a file.
    let r = recipe(&format!(
        "[data]\ntrain_prompts = 0\nmix = [{{ path = {:?}, format = \"trl\" }}]\n",
        ds.display().to_string()
    ));
    let err = plan(&r).unwrap_err();
    assert_eq!(err.0[0].location, "data.mix[0].path");
    assert!(
        err.0[0]
            .message
            .contains("is a dataset directory: name the split to read (`split`)"),
        "{err}"
    );
    // A tokenizer directory without tokenizer.json.
    let r = recipe(&format!(
        "[data]\ntokenizer = {:?}\n",
        tok.display().to_string()
    ));
    let err = plan(&r).unwrap_err();
    assert_eq!(err.0[0].location, "data.tokenizer");
    assert!(err.0[0].message.contains("has no tokenizer.json"), "{err}");
    std::fs::write(tok.join("tokenizer.json"), "{}").unwrap();
    assert!(plan(&r).is_ok());
}

#[test]
fn a_missing_checkpoint_is_not_told_to_remove_contradicting_keys() {
    let mut r = recipe("[reference]\ncheckpoint = \"/nonexistent/lpo-ckpt\"\n");
    let (message, help) = checkpoint_model(&mut r).unwrap_err();
    assert!(
        message.contains("/nonexistent/lpo-ckpt/config.json"),
        "{message}"
    );
    assert_eq!(help, None);
}
