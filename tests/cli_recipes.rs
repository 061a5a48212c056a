//! End-to-end: `lpo plan` and `lpo config` on the shipped recipes and on broken ones.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lpo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("LPO_TRAIN__STEPS")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn plan_ids(recipe: &str) -> Vec<String> {
    let out = lpo(&["plan", recipe, "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn shipped_recipes_plan_with_distinct_ids() {
    for (recipe, runs) in [
        ("recipes/quickstart.toml", 3),
        ("recipes/calibrated.toml", 1),
        ("recipes/tuning/quickstart.toml", 36),
        ("recipes/ablation.toml", 27),
        ("recipes/paper/main.toml", 300),
    ] {
        let ids = plan_ids(recipe);
        assert_eq!(ids.len(), runs, "{recipe}");
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{recipe} has repeated ids");
    }
    let table = text(&lpo(&["plan", "recipes/ablation.toml"]).stdout);
    assert!(
        table
            .lines()
            .last()
            .unwrap()
            .starts_with("27 runs in recipe `ablation`"),
        "{table}"
    );
}

#[test]
fn reordering_keys_and_comments_keeps_every_id() {
    let dir = scratch("reorder");
    let original = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/ablation.toml"),
    )
    .unwrap();
    // Same content: sections in another order, comments changed, the name changed.
    let zip_start = original.find("# One column per method").unwrap();
    let (head, zip) = original.split_at(zip_start);
    let reordered = format!(
        "# a different comment\n{}\n{}",
        zip.replace(
            "# One column per method: the axes move together.",
            "# methods"
        ),
        head.replace("name = \"ablation\"", "name = \"ablation-copy\"")
            .replace(
                "extends = \"calibrated.toml\"",
                &format!(
                    "extends = \"{}/recipes/calibrated.toml\"",
                    env!("CARGO_MANIFEST_DIR")
                )
            )
    );
    // Top-level keys must stay above the first table header: move them first.
    let mut top = String::new();
    let mut rest = String::new();
    for line in reordered.lines() {
        if line.starts_with("extends")
            || line.starts_with("name")
            || line.starts_with("description")
        {
            top.push_str(line);
            top.push('\n');
        } else {
            rest.push_str(line);
            rest.push('\n');
        }
    }
    let copy = dir.join("ablation-reordered.toml");
    std::fs::write(&copy, format!("{top}{rest}")).unwrap();
    assert_eq!(
        plan_ids(copy.to_str().unwrap()),
        plan_ids("recipes/ablation.toml")
    );
}

#[test]
fn misspelled_key_exits_2_with_file_line_and_suggestion() {
    let dir = scratch("misspelled");
    let path = dir.join("x.toml");
    std::fs::write(
        &path,
        "name = \"x\"\n\n[train]\nsteps = 10\nlerning_rate = 1e-4\n",
    )
    .unwrap();
    let out = lpo(&["plan", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "unknown key `train.lerning_rate` at {}:5:1; did you mean `learning_rate`?",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn string_where_a_number_belongs_exits_2() {
    let dir = scratch("wrongtype");
    let path = dir.join("x.toml");
    std::fs::write(
        &path,
        "[loss]\nbeta = \"high\"\n[train]\nlearning_rate = \"fast\"\n",
    )
    .unwrap();
    let out = lpo(&["plan", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "`train.learning_rate` must be a number, found string \"fast\" at {}:4:1",
            path.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("`loss.beta` must be a number or a schedule table"),
        "{err}"
    );
    assert!(
        err.contains("2 problems found"),
        "both problems are reported: {err}"
    );
}

#[test]
fn sweep_over_missing_key_exits_2() {
    let dir = scratch("missingaxis");
    let path = dir.join("x.toml");
    std::fs::write(
        &path,
        "[sweep]\ngrid = { \"loss.temperature\" = [0.5, 1.0] }\n",
    )
    .unwrap();
    let out = lpo(&["plan", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "sweep axis `loss.temperature` is not a recipe key that can be swept at {}:2:10",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn set_and_environment_override_and_explain_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args([
            "config",
            "recipes/quickstart.toml",
            "--set",
            "train.learning_rate=0.003",
            "--explain",
            "train.learning_rate",
        ])
        .args([
            "--explain",
            "train.steps",
            "--explain",
            "train.batch_size",
            "--explain",
            "loss.beta",
            "--explain",
            "eval.top_p",
        ])
        .env("LPO_TRAIN__BATCH_SIZE", "16")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("train.learning_rate = 0.003  (set by --set)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("train.steps = 400  (set by recipe file recipes/calibrated.toml)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("train.batch_size = 16  (set by environment variable)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("loss.beta = 0.1  (set by recipe file recipes/base.toml)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("eval.top_p = 1.0  (set by built-in defaults)"),
        "{stdout}"
    );

    let resolved = lpo(&[
        "config",
        "recipes/quickstart.toml",
        "--set",
        "train.steps=7",
    ]);
    let config: toml::Table = toml::from_str(&text(&resolved.stdout)).unwrap();
    assert_eq!(config["train"]["steps"].as_integer(), Some(7));
}

/// SHA-256 of docs/losses.md (revision 2 of the shared loss contract). A
/// change to the contract must change this constant too, on purpose.
const LOSSES_MD_SHA256: &str = "29bfe34442d63ecc0965d56f616997e3662dc3a849a81d5a65504f3d4ec19327";

#[test]
fn loss_contract_copy_matches_the_shared_one_and_its_recorded_hash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ours = std::fs::read_to_string(root.join("docs/losses.md")).unwrap();
    let hash = lpo_results::sha256_hex(&[ours.as_bytes()], 32);
    assert_eq!(
        hash, LOSSES_MD_SHA256,
        "docs/losses.md changed: update LOSSES_MD_SHA256 only together with the shared contract"
    );
    // docs/losses.md is the project's copy of ../shared/docs/losses.md.
    let shared = root.join("../shared/docs/losses.md");
    match std::fs::read_to_string(&shared) {
        Ok(theirs) => assert_eq!(
            ours, theirs,
            "docs/losses.md drifted from ../shared/docs/losses.md"
        ),
        Err(e) => eprintln!(
            "skipped the drift check against {}: {e} (only the recorded hash was checked)",
            shared.display()
        ),
    }
}

#[test]
fn names_that_escape_the_results_directory_exit_2_with_file_line() {
    let dir = scratch("name-escape");
    let outside = dir.join("outside");
    for (i, name) in ["../../outside/x", "/tmp/abs", ""].iter().enumerate() {
        let path = dir.join(format!("r{i}.toml"));
        std::fs::write(&path, format!("name = {name:?}\n[train]\nsteps = 1\n")).unwrap();
        let out = lpo(&["plan", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{name:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("{}:1:", path.display()))
                && err.contains("single file name inside the results directory"),
            "{err}"
        );
    }
    let path = dir.join("t.toml");
    std::fs::write(&path, "[[report.tables]]\nname = \"../..\"\n").unwrap();
    let out = lpo(&["report", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("{}:2:", path.display())),
        "{}",
        text(&out.stderr)
    );
    assert!(!outside.exists());
}

#[test]
fn more_evaluation_prompts_than_a_task_has_exit_2_at_plan_time() {
    // arith's validation part has 2341 distinct prompts and its test part
    // 2196 (docs/data.md); half of the evaluation prompts come from each.
    let out = lpo(&[
        "plan",
        "recipes/quickstart.toml",
        "--set",
        "eval.prompts=14751",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("`eval.prompts` asks for 7376 evaluation arith prompts from the task's validation part, which has 2341 distinct prompts"),
        "{err}"
    );
    assert!(
        err.contains("`eval.prompts` asks for 7375 evaluation arith prompts from the task's test part, which has 2196 distinct prompts"),
        "{err}"
    );
    // Every run of the sweep draws the same prompts: one message per part,
    // not one per run.
    assert_eq!(err.matches("eval.prompts").count(), 2, "{err}");
    // The held-out share is checked the same way.
    let out = lpo(&[
        "plan",
        "recipes/quickstart.toml",
        "--set",
        "data.train_prompts=14000",
        "--set",
        "data.eval_fraction=0.9",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(
        "`data.eval_fraction` asks for 6300 held-out list arith prompts from the task's test part"
    ));
    // Within the limit it plans: 2196 prompts from each part.
    assert!(lpo(&[
        "plan",
        "recipes/quickstart.toml",
        "--set",
        "eval.prompts=4392"
    ])
    .status
    .success());
}

#[test]
fn relative_paths_in_a_recipe_file_resolve_against_that_file_and_set_against_the_working_directory()
{
    let dir = scratch("relative-paths");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(
        dir.join("base.toml"),
        "[data]\ntokenizer = \"tok/tokenizer.json\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sub/r.toml"),
        "extends = \"../base.toml\"\n[data]\nmix = [{ path = \"../data/l.jsonl\", format = \"native\" }]\n",
    )
    .unwrap();
    let recipe = dir.join("sub/r.toml");
    let config = |extra: &[&str]| {
        let mut args = vec!["config", recipe.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = lpo(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let value: toml::Table = toml::from_str(&text(&out.stdout)).unwrap();
        value["data"].as_table().unwrap().clone()
    };
    let data = config(&[]);
    let root = dir.display();
    // The base's tokenizer against the base's directory, the source against sub/.
    assert_eq!(
        data["tokenizer"].as_str(),
        Some(format!("{root}/tok/tokenizer.json").as_str())
    );
    assert_eq!(
        data["mix"][0]["path"].as_str(),
        Some(format!("{root}/data/l.jsonl").as_str())
    );
    // --set is relative to the working directory, untouched.
    let data = config(&["--set", "data.tokenizer=other.json"]);
    assert_eq!(data["tokenizer"].as_str(), Some("other.json"));
}

#[test]
fn report_table_names_from_a_sweep_axis_cannot_leave_the_results_directory() {
    let dir = scratch("table-axis-escape");
    let _ = std::fs::remove_dir_all(dir.join("res"));
    let outside = dir.join("outside");
    let res = dir.join("res");
    let absolute = outside.join("x");
    for (i, name) in [absolute.to_str().unwrap(), "../../../x"]
        .iter()
        .enumerate()
    {
        let path = dir.join(format!("axis{i}.toml"));
        std::fs::write(
            &path,
            format!(
                "name = \"axis{i}\"\n[train]\nsteps = 1\n[sweep]\ngrid = {{ \"report.tables\" = [[{{ name = {name:?} }}]] }}\n"
            ),
        )
        .unwrap();
        let recipe = path.to_str().unwrap();
        let results = res.to_str().unwrap();
        for args in [
            vec!["plan", recipe],
            vec!["sweep", recipe, "--results", results],
            vec!["report", recipe, "--results", results],
        ] {
            let out = lpo(&args);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("`report.tables[0].name` is")
                    && err.contains("single file name inside the results directory"),
                "{args:?}: {err}"
            );
            assert!(!res.exists() && !outside.exists(), "{args:?} wrote");
        }
    }
}

/// The `note: ` lines of a command's stderr.
fn note_lines(stderr: &[u8]) -> Vec<String> {
    text(stderr)
        .lines()
        .filter(|l| l.starts_with("note: "))
        .map(String::from)
        .collect()
}

/// `lpo plan RECIPE --format json EXTRA`: its notes, and its runs' ids and labels.
fn plan_notes(recipe: &str, extra: &[&str]) -> (Vec<String>, Vec<(String, String)>) {
    let mut args = vec!["plan", recipe, "--format", "json"];
    args.extend_from_slice(extra);
    let out = lpo(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = plan["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap().to_string();
            (field("id"), field("label"))
        })
        .collect();
    (note_lines(&out.stderr), runs)
}

/// A recipe of LPO, DPO, ListMLE and NCA on preference pairs, seeds 0 and 1.
fn pairs_recipe(dir: &Path) -> String {
    let path = dir.join("pairs.toml");
    std::fs::write(
        &path,
        "name = \"pairs\"\n[data]\nform = \"preference\"\n[sweep]\nseeds = [0, 1]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\", \"listmle\", \"nca\"] }\n",
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn plan_notes_runs_that_are_mathematically_identical() {
    let dir = scratch("identical-runs");
    let recipe = pairs_recipe(&dir);
    // Runs: lpo, dpo, listmle, nca (the grid), each with seeds 0 and 1.
    let (found, runs) = plan_notes(&recipe, &[]);
    let run = |i: usize| format!("{} ({})", runs[i].0, runs[i].1);
    let expected: Vec<String> = [0, 1]
        .iter()
        .map(|&seed| {
            format!(
                "note: runs {}, {} and {} are all mathematically identical: K = 2 preference pairs (no ties), gamma = 0, margin_weight off (docs/losses.md identities 1 and 2); all run, as separate methods in the report",
                run(seed),
                run(2 + seed),
                run(4 + seed)
            )
        })
        .collect();
    assert_eq!(found, expected);
    // Reward lists of two may tie: LPO is DPO there, ListMLE is not.
    let two = ["--set", "data.form=reward", "--set", "data.list_size=2"];
    let (found, runs) = plan_notes(&recipe, &two);
    assert_eq!(found.len(), 2, "{found:?}");
    let lpo_dpo = format!(
        "note: runs {} (lpo) and {} (dpo) are mathematically identical: K = 2, gamma = 0",
        runs[0].0, runs[2].0
    );
    assert!(
        found[0].starts_with(&lpo_dpo)
            && found[0].ends_with(
                "(docs/losses.md identity 1); both run, as separate methods in the report"
            ),
        "{found:?}"
    );
    // Lists of four, or LPO's anchor on: LPO is not DPO.
    let (found, _) = plan_notes(&recipe, &["--set", "data.form=reward"]);
    assert!(found.is_empty(), "{found:?}");
    let (found, runs) = plan_notes(&recipe, &["--set", "loss.gamma=0.5"]);
    assert_eq!(found.len(), 2, "{found:?}");
    let dpo_listmle = format!("note: runs {} (dpo) and {} (listmle)", runs[2].0, runs[4].0);
    assert!(
        found[0].starts_with(&dpo_listmle) && found[0].contains("(docs/losses.md identity 2)"),
        "{found:?}"
    );
}

#[test]
fn sweep_notes_identical_runs_as_plan_does() {
    let dir = scratch("identical-sweep");
    let _ = std::fs::remove_dir_all(dir.join("res"));
    let recipe = pairs_recipe(&dir);
    // A Slurm dry run: the sweep plans and notes, nothing trains.
    let res = dir.join("res");
    let out = lpo(&[
        "sweep",
        &recipe,
        "--backend",
        "slurm",
        "--dry-run",
        "--results",
        res.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (plan_notes, _) = plan_notes(&recipe, &[]);
    assert_eq!(plan_notes.len(), 2);
    assert_eq!(note_lines(&out.stderr), plan_notes);
    assert!(!res.exists());
}

/// `lpo ARGS` that must finish within 30 s (a read of /dev/zero or a FIFO
/// would not): its output, or a panic naming the hang.
fn lpo_bounded(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("lpo {args:?} did not finish in 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn special_files_as_recipes_and_checkpoint_configs_exit_2_without_hanging() {
    let dir = scratch("special-files");
    let fifo = dir.join("fifo.toml");
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let checkpoint = dir.join("ckpt");
    let _ = std::fs::remove_dir_all(&checkpoint);
    std::fs::create_dir_all(&checkpoint).unwrap();
    std::os::unix::fs::symlink("/dev/zero", checkpoint.join("config.json")).unwrap();
    let cases = [
        (
            "zero.toml",
            "extends = \"/dev/zero\"\n".to_string(),
            "/dev/zero",
        ),
        (
            "fifo-extends.toml",
            format!("extends = {:?}\n", fifo.display().to_string()),
            "fifo.toml",
        ),
        (
            "ckpt.toml",
            format!(
                "[reference]\ncheckpoint = {:?}\n",
                checkpoint.display().to_string()
            ),
            "config.json",
        ),
    ];
    for (name, body, named) in cases {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let out = lpo_bounded(&["plan", path.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains("not a regular file") && stderr.contains(named),
            "{name}: {stderr}"
        );
    }
    let out = lpo_bounded(&["plan", fifo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn silent_overrides_self_baselines_empty_inputs_and_missing_files_exit_2_at_plan_time() {
    let dir = scratch("silently-wrong");
    let cases = [
        (
            "grid-zip.toml",
            "[sweep]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\"] }\nzip = { \"loss.kind\" = [\"dpo\", \"lpo\"], label = [\"a\", \"b\"] }\n",
            "sweeps `loss.kind`, which sweep.grid sweeps already",
        ),
        (
            "own-baseline.toml",
            "label = \"mine\"\n[eval]\nbaseline = \"mine\"\n",
            "its own label, and no other run compares with it",
        ),
        ("empty-label.toml", "label = \"\"\n", "`label` is empty"),
        (
            "seeds.toml",
            "[sweep]\nseeds = [1, 2, 1]\n",
            "lists the seed 1 twice",
        ),
        (
            "exclude-all.toml",
            "[sweep]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\"] }\nexclude = [{ \"loss.kind\" = \"lpo\" }, { \"loss.kind\" = \"dpo\" }]\n",
            "removes every one of the sweep's 2 combinations",
        ),
        ("empty.toml", "# nothing here\n", "the recipe sets no key"),
        (
            "no-data.toml",
            "[data]\nmix = [{ path = \"no/such/file.jsonl\", format = \"native\" }]\n",
            "no/such/file.jsonl does not exist",
        ),
        (
            "eval-split-alone.toml",
            "[data]\nmix = [{ path = \"tests/fixtures/hf/pairs\", eval_split = \"test\", format = \"trl\" }]\n",
            "needs `split` too",
        ),
        (
            "eval-split-is-split.toml",
            "[data]\nmix = [{ path = \"tests/fixtures/hf/pairs\", split = \"train\", eval_split = \"train\", format = \"trl\" }]\n",
            "the training split itself",
        ),
        (
            "no-tokenizer.toml",
            "[data]\ntokenizer = \"absent-tokenizer.json\"\n",
            "absent-tokenizer.json does not exist",
        ),
    ];
    for (name, body, message) in cases {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let out = lpo(&["plan", path.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
    }
}

#[test]
fn extends_through_a_symlinked_directory_resolves_lexically_like_every_path() {
    // real/r.toml reached as link/r.toml: `..` is the link's parent, for
    // `extends` and data paths alike (docs/recipes.md, "Layers").
    let dir = scratch("symlinked-extends");
    let _ = std::fs::remove_dir_all(dir.join("elsewhere"));
    let _ = std::fs::remove_file(dir.join("link"));
    std::fs::create_dir_all(dir.join("elsewhere/real")).unwrap();
    std::fs::write(dir.join("base.toml"), "description = \"beside the link\"\n").unwrap();
    std::fs::write(
        dir.join("elsewhere/base.toml"),
        "description = \"beside the target\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("elsewhere/real/r.toml"),
        "extends = \"../base.toml\"\n[data]\nmix = [{ path = \"../l.jsonl\", format = \"native\" }]\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.join("elsewhere/real"), dir.join("link")).unwrap();
    let recipe = dir.join("link/r.toml");
    let out = lpo(&["config", recipe.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value: toml::Table = toml::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(value["description"].as_str(), Some("beside the link"));
    let root = dir.display();
    assert_eq!(
        value["data"]["mix"][0]["path"].as_str(),
        Some(format!("{root}/l.jsonl").as_str())
    );
}
