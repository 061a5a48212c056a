//! The sbatch scripts of a Slurm sweep: the sbatch options checked and
//! quoted as an `#SBATCH` line carries them, shell words quoted, and the
//! text of the prepare job's and the run arrays' scripts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::exit;

/// The sbatch options of every job of a sweep (`--partition`, `--account`,
/// `--time`, `--gpus`, `--cpus`, `--mem`, `--sbatch`), and of the run
/// arrays' tasks (`--ntasks`, `--nodes`, `--gpus-per-node`: one run over
/// several ranks).
#[derive(Debug, Clone, Default)]
pub struct SbatchOptions {
    /// `#SBATCH --partition`.
    pub partition: Option<String>,
    /// `#SBATCH --account`.
    pub account: Option<String>,
    /// `#SBATCH --time`, in Slurm's format.
    pub time: Option<String>,
    /// `#SBATCH --gpus`: at most 1 (one device; several ranks take
    /// `gpus_per_node`).
    pub gpus: Option<u32>,
    /// `#SBATCH --ntasks` of a run's task: its ranks, started with `srun`.
    pub ntasks: Option<u32>,
    /// `#SBATCH --nodes` of a run's task.
    pub nodes: Option<u32>,
    /// `#SBATCH --gpus-per-node` of a run's task (one GPU a rank).
    pub gpus_per_node: Option<u32>,
    /// `#SBATCH --cpus-per-task`.
    pub cpus: Option<u32>,
    /// `#SBATCH --mem`.
    pub mem: Option<String>,
    /// Other sbatch options, one each (`--sbatch`).
    pub extra: Vec<String>,
}

impl SbatchOptions {
    /// Why the options cannot go into an sbatch script, one message per
    /// problem, each naming its flag: values an `#SBATCH` line cannot carry
    /// (a newline would end the line and the shell would run the rest), an
    /// `--sbatch` that is not one option, `--gpus` above 1.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (flag, value) in [
            ("--partition", &self.partition),
            ("--account", &self.account),
            ("--time", &self.time),
            ("--mem", &self.mem),
        ] {
            if let Some(why) = value.as_deref().and_then(directive_problem) {
                problems.push(format!("{flag} {}: {why}", shown(value.as_deref())));
            }
        }
        if let Some(gpus) = self.gpus.filter(|&g| g > 1) {
            problems.push(format!(
                "--gpus {gpus}: one process uses one device, so the other GPUs would sit idle; \
                 use --gpus 1, or --ntasks N --gpus-per-node G to share a run among N ranks"
            ));
        }
        problems.extend(self.rank_problems());
        for extra in &self.extra {
            if let Err(why) = sbatch_option(extra) {
                problems.push(format!("--sbatch {}: {why}", shown(Some(extra))));
            }
        }
        problems
    }
}

impl SbatchOptions {
    /// The ranks of one run's task: `--ntasks` (default 1).
    pub fn ranks(&self) -> u32 {
        self.ntasks.unwrap_or(1)
    }

    /// Problems of `--ntasks`, `--nodes` and `--gpus-per-node` together.
    fn rank_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (flag, value) in [
            ("--ntasks", self.ntasks),
            ("--nodes", self.nodes),
            ("--gpus-per-node", self.gpus_per_node),
        ] {
            if value == Some(0) {
                problems.push(format!("{flag} 0: give at least 1"));
            }
        }
        let (ranks, nodes) = (self.ranks(), self.nodes.unwrap_or(1));
        if nodes > ranks && ranks > 0 {
            problems.push(format!(
                "--nodes {nodes}: a run's {ranks} rank(s) (--ntasks) cannot fill {nodes} nodes"
            ));
        }
        if self.gpus.is_some() && self.gpus_per_node.is_some() {
            problems.push("--gpus and --gpus-per-node: give one of them".into());
        }
        if let Some(g) = self.gpus_per_node.filter(|&g| g > 0 && nodes > 0) {
            let per_node = ranks.div_ceil(nodes);
            if g < per_node {
                problems.push(format!(
                    "--gpus-per-node {g}: {per_node} rank(s) on a node need one GPU each"
                ));
            }
        }
        problems
    }
}

/// A flag's value as an error message shows it: quoted, control
/// characters escaped.
fn shown(value: Option<&str>) -> String {
    format!("{:?}", value.unwrap_or_default())
}

/// A shell word: single-quoted unless plainly safe.
pub fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Why `value` cannot be the value of an `#SBATCH` option: empty, or
/// holding a control character (a newline ends the line, and the shell runs
/// what follows as a command), a double quote or a backslash (sbatch's own
/// quoting of them differs between Slurm versions).
fn directive_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".into());
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Some(format!(
            "holds the control character {:?}, which an #SBATCH line cannot carry (a newline would end the line and the shell would run the rest)",
            c
        ));
    }
    if value.contains(['"', '\\']) {
        return Some(
            "holds a double quote or a backslash, which an #SBATCH line cannot carry".into(),
        );
    }
    None
}

/// A checked value as sbatch reads it on an `#SBATCH` line: bare when
/// plainly safe, else double-quoted (sbatch strips the quotes, keeps spaces
/// and quotes inside, and reads an escaped `#` as itself rather than as the
/// start of a comment).
fn directive_word(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('#', "\\#"))
    }
}

/// A path as the value of an `#SBATCH` option: always double-quoted, so
/// spaces are fine; quotes, backslashes and newlines cannot be written.
fn directive_path(path: &Path) -> std::result::Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("`{}` is not UTF-8", path.display()))?;
    if let Some(why) = directive_problem(text) {
        return Err(format!("the path {text:?} {why}"));
    }
    Ok(format!("\"{}\"", text.replace('#', "\\#")))
}

/// The `--output` pattern of the logs in `logs`: Slurm expands `%`
/// sequences in it, so the directory's own `%` are written `%%`.
fn output_pattern(logs: &Path, file: &str) -> std::result::Result<String, String> {
    let dir = path_str(logs).map_err(|e| e.to_string())?;
    directive_path(Path::new(&format!("{}/{file}", dir.replace('%', "%%"))))
}

/// One `--sbatch` option as an `#SBATCH` line carries it: `--name`,
/// `--name=VALUE` or `-X VALUE` (an `#SBATCH` prefix is dropped), the
/// value quoted so that it stays one option.
fn sbatch_option(raw: &str) -> std::result::Result<String, String> {
    if let Some(c) = raw.chars().find(|c| c.is_control()) {
        return Err(format!(
            "holds the control character {c:?}: give one sbatch option per --sbatch, without newlines"
        ));
    }
    let option = raw.trim().trim_start_matches("#SBATCH").trim();
    let end = option
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(option.len());
    let (name, rest) = option.split_at(end);
    let flag = name.trim_start_matches('-');
    let named = name.starts_with('-')
        && name.len() - flag.len() <= 2
        && flag.starts_with(|c: char| c.is_ascii_alphabetic())
        && flag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !named {
        return Err("must be one sbatch option starting with `-`, e.g. --sbatch=--qos=high".into());
    }
    let (separator, value) = match rest.strip_prefix('=') {
        Some(value) => ("=", value),
        None => (" ", rest.trim_start()),
    };
    if rest.is_empty() {
        return Ok(name.to_string());
    }
    if let Some(why) = directive_problem(value) {
        return Err(format!("its value {why}"));
    }
    Ok(format!("{name}{separator}{}", directive_word(value)))
}

/// Slurm's `--array` value for these task ids (ascending): consecutive
/// ids as ranges (`0-3,5,7-8`).
pub fn array_spec<'a>(indices: impl IntoIterator<Item = &'a usize>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indices.into_iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// What goes into every script.
pub struct ScriptContext {
    /// The lpo executable.
    pub exe: PathBuf,
    /// The recipe (absolute).
    pub recipe: PathBuf,
    /// The results root (absolute).
    pub results: PathBuf,
    /// The directory the jobs run in (where the sweep was submitted from).
    pub workdir: PathBuf,
    /// Where Slurm writes the jobs' output.
    pub logs: PathBuf,
    /// `--set` overrides.
    pub sets: Vec<String>,
    /// `--threads`.
    pub threads: Option<u32>,
    /// `--ignore-memory-estimate` (each run otherwise checks its node).
    pub ignore_memory_estimate: bool,
    /// The recipe's name.
    pub name: String,
    /// The Slurm options.
    pub sbatch: SbatchOptions,
}

/// The job a script runs.
pub enum JobKind {
    /// `lpo prepare`.
    Prepare,
    /// An array of runs: each task id (the run's plan index at submission)
    /// with the id of the run it was submitted for.
    Runs(BTreeMap<usize, String>),
}

impl ScriptContext {
    /// The sbatch script of `kind`.
    pub fn script(&self, kind: &JobKind) -> Result<String> {
        let mut s = String::from("#!/bin/bash\n");
        // The name in comments with its control characters escaped: a
        // newline in it must not end the comment.
        let name = self.name.escape_debug();
        let (what, output) = match kind {
            JobKind::Prepare => (
                format!("shared data of `{name}` (lpo prepare)"),
                "prepare-%j.out",
            ),
            JobKind::Runs(tasks) => (
                format!("runs {} of `{name}`", array_spec(tasks.keys())),
                "run-%A_%a.out",
            ),
        };
        s += &format!("# Written by `lpo sweep --backend slurm`: {what}.\n");
        for option in self.directives(kind, output).map_err(anyhow::Error::msg)? {
            s += &format!("#SBATCH {option}\n");
        }
        s += "set -euo pipefail\n";
        if let JobKind::Runs(tasks) = kind {
            s += &task_run_ids(tasks)?;
        }
        // Several ranks a run: srun starts them in the task's allocation,
        // and each joins the group from Slurm's variables.
        // srun does not pass the job's --cpus-per-task on to its tasks
        // (Slurm 22.05 and later): it is repeated.
        let launcher = match (kind, self.sbatch.cpus) {
            (JobKind::Runs(_), Some(cpus)) if self.sbatch.ranks() > 1 => {
                format!("srun --cpus-per-task={cpus} ")
            }
            (JobKind::Runs(_), None) if self.sbatch.ranks() > 1 => "srun ".to_string(),
            _ => String::new(),
        };
        s += &format!("exec {launcher}{}\n", self.command(kind)?.join(" "));
        Ok(s)
    }

    /// Why the scripts cannot be written: the Slurm options' problems and
    /// paths an `#SBATCH` line cannot carry, each naming what it is about.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.sbatch.problems();
        if problems.is_empty() {
            if let Err(why) = self.directives(&JobKind::Prepare, "prepare-%j.out") {
                problems.push(why);
            }
        }
        problems
    }

    /// The `#SBATCH` options of a job writing its output to `output` in the logs.
    fn directives(&self, kind: &JobKind, output: &str) -> std::result::Result<Vec<String>, String> {
        // The job name is cosmetic: anything but plain characters becomes `_`.
        let job_name: String = self
            .name
            .chars()
            .map(|c| match c.is_alphanumeric() || "-_.+,:@".contains(c) {
                true => c,
                false => '_',
            })
            .collect();
        let mut options = vec![
            format!("--job-name=lpo-{job_name}"),
            format!("--chdir={}", directive_path(&self.workdir)?),
            format!("--output={}", output_pattern(&self.logs, output)?),
        ];
        if let JobKind::Runs(tasks) = kind {
            options.push(format!("--array={}", array_spec(tasks.keys())));
            // Preempted or node-failed tasks run again and resume.
            options.push("--requeue".into());
            options.push("--open-mode=append".into());
        }
        options.extend(self.options(kind)?);
        Ok(options)
    }

    /// The job's command line, every word quoted for the shell.
    fn command(&self, kind: &JobKind) -> Result<Vec<String>> {
        let mut command = vec![sh_quote(path_str(&self.exe)?)];
        match kind {
            JobKind::Prepare => command.push("prepare".into()),
            JobKind::Runs(_) => command.push("run".into()),
        }
        command.push(sh_quote(path_str(&self.recipe)?));
        if let JobKind::Runs(_) = kind {
            // The run this task was submitted for, by id (`task_run_ids`).
            command.push("--id \"$id\"".into());
            if self.ignore_memory_estimate {
                command.push("--ignore-memory-estimate".into());
            }
        }
        command.push(format!("--results {}", sh_quote(path_str(&self.results)?)));
        if let Some(threads) = self.threads {
            command.push(format!("--threads {threads}"));
        }
        for set in &self.sets {
            command.push(format!("--set {}", sh_quote(set)));
        }
        command.push("--no-bars".into());
        Ok(command)
    }

    /// The `#SBATCH` options from the Slurm arguments, each value checked
    /// and quoted as sbatch reads it.
    fn options(&self, kind: &JobKind) -> std::result::Result<Vec<String>, String> {
        if let Some(problem) = self.sbatch.problems().into_iter().next() {
            return Err(problem);
        }
        let a = &self.sbatch;
        let mut options = Vec::new();
        let mut add = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                options.push(format!("--{name}={}", directive_word(&v)));
            }
        };
        add("partition", a.partition.clone());
        add("account", a.account.clone());
        add("time", a.time.clone());
        add("gpus", a.gpus.map(|g| g.to_string()));
        if let JobKind::Runs(_) = kind {
            add("ntasks", a.ntasks.map(|n| n.to_string()));
            add("nodes", a.nodes.map(|n| n.to_string()));
            add("gpus-per-node", a.gpus_per_node.map(|g| g.to_string()));
        }

        add("cpus-per-task", a.cpus.map(|c| c.to_string()));
        add("mem", a.mem.clone());
        for extra in &a.extra {
            options.push(sbatch_option(extra)?);
        }
        Ok(options)
    }
}

/// Whether `id` is a run id: 12 lowercase hex digits.
fn is_run_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The lines of an array's script that set `id` to the run its task
/// (`SLURM_ARRAY_TASK_ID`) was submitted for, by plain string match (no
/// arithmetic on the variable); a task id the array does not hold exits 2.
fn task_run_ids(tasks: &BTreeMap<usize, String>) -> Result<String> {
    let mut s = String::from(
        "# The run each task was submitted for, by id: a recipe edited since then\n\
         # cannot make a task run another configuration (`lpo run --id` refuses an\n\
         # id the recipe no longer plans).\n\
         case \"${SLURM_ARRAY_TASK_ID:-}\" in\n",
    );
    for (task, id) in tasks {
        if !is_run_id(id) {
            bail!("run id {id:?} (task {task}) is not 12 hex digits");
        }
        s += &format!("    {task}) id={id} ;;\n");
    }
    s += "    *)\n";
    s += "        echo \"error: array task '${SLURM_ARRAY_TASK_ID:-}' is not one this script was submitted with\" >&2\n";
    s += &format!("        exit {}\n", exit::BAD_INPUT);
    s += "        ;;\n";
    s += "esac\n";
    Ok(s)
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("`{}` is not UTF-8", path.display()))
}

/// An absolute path, without resolving links (the path may not exist yet).
pub(super) fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving `{}`", path.display()))
}

/// Made-up scripts' contexts and run ids for the tests of this module and
/// of `submit`.
#[cfg(test)]
pub(super) mod fixtures {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::{JobKind, SbatchOptions, ScriptContext};

    /// The set of these plan indices.
    pub fn set(items: &[usize]) -> BTreeSet<usize> {
        items.iter().copied().collect()
    }

    /// A made-up run id for plan index `i`: 12 hex digits.
    pub fn id(i: usize) -> String {
        format!("{:012x}", 0xab_cdef_0000 + i)
    }

    /// An array of the runs at these plan indices, with made-up ids.
    pub fn runs(items: &[usize]) -> JobKind {
        JobKind::Runs(items.iter().map(|&i| (i, id(i))).collect())
    }

    /// A context with paths under `root`, overrides and sbatch options.
    pub fn context(root: &str) -> ScriptContext {
        ScriptContext {
            exe: PathBuf::from(format!("{root}/bin/lpo")),
            recipe: PathBuf::from(format!("{root}/recipes/it's.toml")),
            results: PathBuf::from(format!("{root}/results")),
            workdir: PathBuf::from(root),
            logs: PathBuf::from(format!("{root}/results/r/slurm/logs")),
            sets: vec!["train.steps=5".into(), "label=a b".into()],
            threads: Some(2),
            ignore_memory_estimate: false,
            name: "r".into(),
            sbatch: SbatchOptions {
                partition: Some("gpu".into()),
                gpus: Some(1),
                cpus: Some(4),
                mem: Some("16G".into()),
                time: Some("1:00:00".into()),
                extra: vec!["--qos=high".into(), "#SBATCH --exclusive".into()],
                ..SbatchOptions::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::fixtures::{context, id, runs, set};
    use super::*;

    #[test]
    fn array_ranges_compress_consecutive_ids() {
        assert_eq!(array_spec(&set(&[0, 1, 2, 3])), "0-3");
        assert_eq!(array_spec(&set(&[0, 1, 2, 3, 5, 7, 8])), "0-3,5,7-8");
        assert_eq!(array_spec(&set(&[4])), "4");
        assert_eq!(array_spec(&set(&[1, 3, 5])), "1,3,5");
        assert_eq!(array_spec(&set(&[])), "");
    }

    #[test]
    fn scripts_quote_paths_with_spaces_and_quotes() {
        let ctx = context("/data/my results");
        let script = ctx.script(&runs(&[0, 1, 2])).unwrap();
        let expected = [
            "#!/bin/bash",
            "# Written by `lpo sweep --backend slurm`: runs 0-2 of `r`.",
            "#SBATCH --job-name=lpo-r",
            "#SBATCH --chdir=\"/data/my results\"",
            "#SBATCH --output=\"/data/my results/results/r/slurm/logs/run-%A_%a.out\"",
            "#SBATCH --array=0-2",
            "#SBATCH --requeue",
            "#SBATCH --open-mode=append",
            "#SBATCH --partition=gpu",
            "#SBATCH --time=1:00:00",
            "#SBATCH --gpus=1",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --mem=16G",
            "#SBATCH --qos=high",
            "#SBATCH --exclusive",
            "set -euo pipefail",
            "# The run each task was submitted for, by id: a recipe edited since then",
            "# cannot make a task run another configuration (`lpo run --id` refuses an",
            "# id the recipe no longer plans).",
            "case \"${SLURM_ARRAY_TASK_ID:-}\" in",
            "    0) id=00abcdef0000 ;;",
            "    1) id=00abcdef0001 ;;",
            "    2) id=00abcdef0002 ;;",
            "    *)",
            "        echo \"error: array task '${SLURM_ARRAY_TASK_ID:-}' is not one this script was submitted with\" >&2",
            "        exit 2",
            "        ;;",
            "esac",
            "exec '/data/my results/bin/lpo' run '/data/my results/recipes/it'\\''s.toml' \
             --id \"$id\" --results '/data/my results/results' --threads 2 \
             --set train.steps=5 --set 'label=a b' --no-bars",
        ];
        assert_eq!(script, expected.join("\n") + "\n");
        let prepare = ctx.script(&JobKind::Prepare).unwrap();
        assert!(prepare.contains("' prepare '/data/my results/recipes/it'\\''s.toml' --results"));
        assert!(prepare.contains("logs/prepare-%j.out\"\n"));
        assert!(!prepare.contains("--array") && !prepare.contains("--requeue"));
        // The generated command line survives the shell word for word.
        let line = script.lines().last().unwrap().trim_start_matches("exec ");
        let out = Command::new("bash")
            .args(["-c", &format!("id=7; printf '%s\\n' {line}")])
            .output()
            .unwrap();
        let words: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(words[0], "/data/my results/bin/lpo");
        assert_eq!(words[2], "/data/my results/recipes/it's.toml");
        assert_eq!(words[4], "7");
        assert!(words.contains(&"label=a b".to_string()), "{words:?}");
        let quoted = context("/data/\"q\"");
        let err = quoted.script(&JobKind::Prepare).unwrap_err().to_string();
        assert!(err.contains("#SBATCH line"), "{err}");
    }

    /// The arguments sbatch reads from an `#SBATCH` line (Slurm's
    /// `_get_argument`: whitespace separates, single or double quotes group,
    /// a backslash escapes the next character, an unquoted `#` ends the line).
    fn sbatch_arguments(line: &str) -> Vec<String> {
        let mut args = Vec::new();
        let mut chars = line.strip_prefix("#SBATCH").unwrap().chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let (mut arg, mut quote, mut any) = (String::new(), None, false);
            while let Some(c) = chars.next() {
                match (c, quote) {
                    ('\\', _) => arg.extend(chars.next()),
                    (c, Some(q)) if c == q => quote = None,
                    (c, Some(_)) => arg.push(c),
                    ('"' | '\'', None) => quote = Some(c),
                    ('#', None) => {
                        args.extend(any.then_some(arg));
                        return args;
                    }
                    (c, None) if c.is_whitespace() => break,
                    (c, None) => arg.push(c),
                }
                any = true;
            }
            assert!(quote.is_none(), "unmatched quote in {line:?}");
            if !any {
                return args;
            }
            args.push(arg);
        }
    }

    #[test]
    fn slurm_options_are_checked_flag_by_flag() {
        let hostile = |f: fn(&mut SbatchOptions, String)| {
            let mut a = SbatchOptions::default();
            f(&mut a, "gpu\ntouch pwned".into());
            a.problems()
        };
        type Setter = fn(&mut SbatchOptions, String);
        let cases: [(&str, Setter); 5] = [
            ("--partition", |a, v| a.partition = Some(v)),
            ("--account", |a, v| a.account = Some(v)),
            ("--time", |a, v| a.time = Some(v)),
            ("--mem", |a, v| a.mem = Some(v)),
            ("--sbatch", |a, v| a.extra = vec![format!("--qos={v}")]),
        ];
        for (flag, set) in cases {
            let p = hostile(set);
            assert_eq!(p.len(), 1, "{flag}: {p:?}");
            assert!(p[0].starts_with(&format!("{flag} \"")), "{p:?}");
            assert!(p[0].contains("control character '\\n'"), "{p:?}");
        }
        let gpus = SbatchOptions {
            gpus: Some(4),
            ..SbatchOptions::default()
        };
        let p = gpus.problems();
        assert!(
            p[0].contains("one process uses one device") && p[0].contains("--gpus-per-node"),
            "{p:?}"
        );
        let ranks = |ntasks, nodes, gpus_per_node, gpus| SbatchOptions {
            ntasks,
            nodes,
            gpus_per_node,
            gpus,
            ..SbatchOptions::default()
        };
        assert!(ranks(Some(4), Some(2), Some(2), None).problems().is_empty());
        for (bad, says) in [
            (ranks(Some(0), None, None, None), "--ntasks 0"),
            (ranks(Some(2), Some(3), None, None), "cannot fill 3 nodes"),
            (ranks(None, Some(2), None, None), "cannot fill 2 nodes"),
            (
                ranks(Some(4), Some(1), Some(2), None),
                "4 rank(s) on a node need one GPU each",
            ),
            (ranks(Some(2), None, Some(2), Some(1)), "give one of them"),
        ] {
            let p = bad.problems();
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].contains(says), "{p:?}");
        }
        let fine = SbatchOptions {
            partition: Some("gpu,debug".into()),
            account: Some("my lab".into()),
            time: Some("4:00:00".into()),
            mem: Some("16G".into()),
            gpus: Some(1),
            extra: vec!["--constraint=a100".into()],
            ..SbatchOptions::default()
        };
        assert!(fine.problems().is_empty());
        let quoted = SbatchOptions {
            partition: Some("a\"b".into()),
            mem: Some(String::new()),
            ..SbatchOptions::default()
        };
        assert_eq!(quoted.problems().len(), 2, "{:?}", quoted.problems());
    }

    #[test]
    fn a_run_of_several_ranks_starts_them_with_srun_and_prepare_stays_one_task() {
        let mut ctx = context("/data");
        ctx.sbatch.ntasks = Some(2);
        ctx.sbatch.nodes = Some(1);
        ctx.sbatch.gpus_per_node = Some(2);
        ctx.sbatch.gpus = None;
        let array = ctx.script(&runs(&[0, 1])).unwrap();
        assert!(array.contains("#SBATCH --ntasks=2\n"), "{array}");
        assert!(array.contains("#SBATCH --nodes=1\n"), "{array}");
        assert!(array.contains("#SBATCH --gpus-per-node=2\n"), "{array}");
        let last = array.lines().last().unwrap();
        assert!(
            last.starts_with("exec srun --cpus-per-task=4 /data/bin/lpo run "),
            "{last}"
        );
        let prepare = ctx.script(&JobKind::Prepare).unwrap();
        assert!(!prepare.contains("--ntasks"), "{prepare}");
        assert!(!prepare.contains("--gpus-per-node"), "{prepare}");
        assert!(!prepare.contains("srun"), "{prepare}");
        ctx.sbatch.ntasks = Some(1);
        let one = ctx.script(&runs(&[0])).unwrap();
        assert!(
            one.lines()
                .last()
                .unwrap()
                .starts_with("exec /data/bin/lpo run "),
            "{one}"
        );
    }

    #[test]
    fn each_sbatch_flag_is_one_option_as_sbatch_reads_it() {
        for (given, written) in [
            ("--qos=high", "--qos=high"),
            ("#SBATCH --exclusive", "--exclusive"),
            ("--constraint=a100|v100", "--constraint=\"a100|v100\""),
            ("--comment=run #1, it's", "--comment=\"run \\#1, it's\""),
            ("-N 2", "-N 2"),
            ("--qos=high --exclusive", "--qos=\"high --exclusive\""),
        ] {
            let option = sbatch_option(given).unwrap();
            assert_eq!(option, written);
            let args = sbatch_arguments(&format!("#SBATCH {option}"));
            assert!(args.len() <= 2 && args[0].starts_with('-'), "{args:?}");
        }
        assert_eq!(
            sbatch_arguments("#SBATCH --qos=\"high --exclusive\""),
            ["--qos=high --exclusive"]
        );
        assert_eq!(
            sbatch_arguments("#SBATCH --comment=\"run \\#1, it's\""),
            ["--comment=run #1, it's"]
        );
        for bad in [
            "qos=high",
            "--qos=a\nb",
            "---x",
            "--",
            "-",
            "--qos=",
            "--qos=a\"b",
            "--a b\\c",
        ] {
            assert!(sbatch_option(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hostile_names_and_paths_never_run_in_the_shell() {
        let base = std::env::temp_dir().join(format!("lpo-slurm-quote-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("a $(touch pwned) `touch pwned` 'q' #1 50%");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        // The "lpo" of the script prints its arguments, one a line.
        let exe = root.join("bin/lpo");
        std::fs::write(&exe, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
        Command::new("chmod").arg("755").arg(&exe).status().unwrap();
        let mut ctx = context(root.to_str().unwrap());
        ctx.exe = exe;
        ctx.recipe = root.join("r $(touch pwned); touch pwned.toml");
        ctx.name = "r\ntouch pwned $(touch pwned)".into();
        ctx.sbatch.account = Some("my lab #2".into());
        let script = ctx.script(&runs(&[3])).unwrap();
        assert!(
            script.contains("of `r\\ntouch pwned $(touch pwned)`.\n"),
            "{script}"
        );
        let lines: Vec<&str> = script.lines().collect();
        // Every line before the command is a comment, for the shell.
        let body = lines
            .iter()
            .position(|l| *l == "set -euo pipefail")
            .unwrap();
        assert!(lines[..body].iter().all(|l| l.starts_with('#')), "{script}");
        let directives: Vec<Vec<String>> = lines
            .iter()
            .filter(|l| l.starts_with("#SBATCH"))
            .map(|l| sbatch_arguments(l))
            .collect();
        assert!(directives.iter().all(|d| d.len() == 1), "{directives:?}");
        let flat: Vec<&str> = directives.iter().map(|d| d[0].as_str()).collect();
        let root_text = root.to_str().unwrap();
        assert!(
            flat.contains(&"--job-name=lpo-r_touch_pwned___touch_pwned_"),
            "{flat:?}"
        );
        assert!(
            flat.contains(&format!("--chdir={root_text}").as_str()),
            "{flat:?}"
        );
        let output = format!(
            "--output={}/results/r/slurm/logs/run-%A_%a.out",
            root_text.replace('%', "%%")
        );
        assert!(flat.contains(&output.as_str()), "{flat:?}");
        assert!(flat.contains(&"--account=my lab #2"), "{flat:?}");
        let words = run_with_bash(&script, &base.join("job.sbatch"), &root);
        let recipe = ctx.recipe.to_str().unwrap().to_string();
        let results = format!("{root_text}/results");
        let run_id = id(3);
        let expected = [
            "run",
            &recipe,
            "--id",
            &run_id,
            "--results",
            &results,
            "--threads",
            "2",
            "--set",
            "train.steps=5",
            "--set",
            "label=a b",
            "--no-bars",
        ];
        assert_eq!(words, expected);
        for dir in [&base, &root] {
            let names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(names.iter().all(|n| !n.starts_with("pwned")), "{names:?}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// Runs `script` (saved at `path`) with bash in `dir` as array task 3:
    /// the lines it prints.
    fn run_with_bash(script: &str, path: &Path, dir: &Path) -> Vec<String> {
        std::fs::write(path, script).unwrap();
        let out = Command::new("bash")
            .arg(path)
            .current_dir(dir)
            .env("SLURM_ARRAY_TASK_ID", "3")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn each_array_task_runs_the_run_id_it_was_submitted_for_or_nothing() {
        let base = std::env::temp_dir().join(format!("lpo-slurm-ids-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("bin")).unwrap();
        let exe = base.join("bin/lpo");
        std::fs::write(&exe, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
        Command::new("chmod").arg("755").arg(&exe).status().unwrap();
        let mut ctx = context(base.to_str().unwrap());
        ctx.exe = exe;
        let script = ctx.script(&runs(&[0, 3, 4])).unwrap();
        assert!(script.contains("#SBATCH --array=0,3-4\n"), "{script}");
        let path = base.join("runs.sbatch");
        std::fs::write(&path, &script).unwrap();
        let task = |value: Option<&str>| {
            let mut command = Command::new("bash");
            command.arg(&path).current_dir(&base);
            command.env_remove("SLURM_ARRAY_TASK_ID");
            if let Some(v) = value {
                command.env("SLURM_ARRAY_TASK_ID", v);
            }
            command.output().unwrap()
        };
        for t in [0, 3, 4] {
            let out = task(Some(&t.to_string()));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let words = String::from_utf8(out.stdout).unwrap();
            let words: Vec<&str> = words.lines().collect();
            assert_eq!(words[0], "run");
            assert_eq!(words[2..4], ["--id", id(t).as_str()], "{words:?}");
            assert!(!words.contains(&"--index"), "{words:?}");
        }
        // A task id the array was not submitted with runs nothing: exit 2.
        for value in [
            Some("1"),
            Some("03"),
            Some("3 "),
            Some(""),
            Some("*"),
            Some("$(touch pwned)"),
            None,
        ] {
            let out = task(value);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{value:?}: {stderr}");
            assert!(out.stdout.is_empty(), "{value:?} ran lpo");
            assert!(
                stderr.contains("is not one this script was submitted with"),
                "{value:?}: {stderr}"
            );
        }
        assert!(!base.join("pwned").exists());
        // Ids go into the script only as 12 hex digits.
        let bad = JobKind::Runs([(0, "0123'; touch pwned".to_string())].into());
        let err = ctx.script(&bad).unwrap_err().to_string();
        assert!(err.contains("is not 12 hex digits"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn sh_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(sh_quote("train.steps=5"), "train.steps=5");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("$HOME"), "'$HOME'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }
}
