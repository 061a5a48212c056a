//! One run over several ranks: `lpo run --nproc N` starts N local ranks of
//! itself, and `lpo run` joins a group described by torchrun's environment
//! variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
//! `MASTER_PORT`) or by those of a multi-task `srun` step (`SLURM_PROCID`,
//! `SLURM_STEP_NUM_TASKS` or `SLURM_NTASKS`, `SLURM_LOCALID`, the first node
//! of `SLURM_JOB_NODELIST`).

use std::ffi::OsString;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lpo_torch::dist::{Group, Rendezvous};

/// The group this process joins, from its environment: torchrun's variables
/// first, then a Slurm step's; `None` for one process (no variables, or a
/// world of 1).
pub fn rendezvous_from_env() -> Result<Option<Rendezvous>> {
    rendezvous_from(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
}

/// [`rendezvous_from_env`] with the variables `var` gives.
fn rendezvous_from(var: impl Fn(&str) -> Option<String>) -> Result<Option<Rendezvous>> {
    let number = |name: &str| -> Result<Option<usize>> {
        var(name)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .with_context(|| format!("{name}={v:?} is not a whole number"))
            })
            .transpose()
    };
    if let Some(world) = number("WORLD_SIZE")? {
        if world <= 1 {
            return Ok(None);
        }
        let rank = number("RANK")?.context("WORLD_SIZE is set but RANK is not")?;
        let port = var("MASTER_PORT").context("WORLD_SIZE is set but MASTER_PORT is not")?;
        // torchrun's agent serves the store itself (as torch's env://
        // rendezvous does, lpo then connects to it, keys under a prefix of
        // this attempt's).
        let agent_store =
            (var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True")).then(|| {
                let attempt = var("TORCHELASTIC_RESTART_COUNT").unwrap_or_else(|| "0".into());
                format!("/worker/lpo/attempt-{attempt}/")
            });
        return checked(Rendezvous {
            host: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
            port: parse_port("MASTER_PORT", &port)?,
            rank,
            world,
            local_rank: number("LOCAL_RANK")?.unwrap_or(rank),
            agent_store,
        });
    }
    // A Slurm step of several tasks (srun); a batch script alone is one task.
    let tasks = match number("SLURM_STEP_NUM_TASKS")? {
        Some(n) => Some(n),
        None => number("SLURM_NTASKS")?,
    };
    let (Some(world), Some(_step)) = (tasks, var("SLURM_STEP_ID")) else {
        return Ok(None);
    };
    if world <= 1 {
        return Ok(None);
    }
    let rank = number("SLURM_PROCID")?.context("SLURM_NTASKS is set but SLURM_PROCID is not")?;
    let host = match var("MASTER_ADDR") {
        Some(host) => host,
        None => first_host(
            &var("SLURM_JOB_NODELIST")
                .or_else(|| var("SLURM_NODELIST"))
                .context("SLURM_NTASKS is set but SLURM_JOB_NODELIST is not")?,
        )?,
    };
    let port = match var("MASTER_PORT") {
        Some(port) => parse_port("MASTER_PORT", &port)?,
        // Every task of the step derives the same port from the job id,
        // below Linux's ephemeral ports (32768 and up).
        None => {
            let job = number("SLURM_JOB_ID")?.context("SLURM_JOB_ID is not set")?;
            20_000 + (job % 10_000) as u16
        }
    };
    checked(Rendezvous {
        host,
        port,
        rank,
        world,
        local_rank: number("SLURM_LOCALID")?.unwrap_or(0),
        agent_store: None,
    })
}

fn checked(at: Rendezvous) -> Result<Option<Rendezvous>> {
    if at.rank >= at.world {
        bail!("rank {} is not below the world size {}", at.rank, at.world);
    }
    Ok(Some(at))
}

fn parse_port(name: &str, value: &str) -> Result<u16> {
    match value.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => bail!("{name}={value:?} is not a TCP port (1-65535)"),
    }
}

/// The first host of a Slurm node list: `node[03-05,07],gpu1` → `node03`,
/// `n[1-2]-ib` → `n1-ib` (each bracket's first value in its place).
pub fn first_host(list: &str) -> Result<String> {
    let list = list.trim();
    let bad = || format!("cannot read the node list {list:?}");
    let mut host = String::new();
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            ',' => break,
            '[' => {
                let inner: String = chars.by_ref().take_while(|&c| c != ']').collect();
                let first = inner.split([',', '-']).next().unwrap_or_default();
                if first.is_empty() || !first.chars().all(|c| c.is_ascii_digit()) {
                    bail!("{}", bad());
                }
                host.push_str(first);
            }
            ']' => bail!("{}", bad()),
            c => host.push(c),
        }
    }
    if host.is_empty() {
        bail!("{}", bad());
    }
    Ok(host)
}

/// `lpo run --nproc N`, unless this process is already a rank of a group
/// (exit 2): [`local`]. After a rank fails the others get a minute to fail
/// by themselves (a rank in a collective with a dead one fails at once; one
/// still waiting for it to join would wait the whole timeout).
pub fn nproc(nproc: u32, at: Option<&Rendezvous>) -> Result<ExitCode> {
    if let Some(at) = at {
        eprintln!(
            "error: --nproc {nproc}, but this process is already rank {} of a group of {} \
             (RANK/WORLD_SIZE or a Slurm step): start one rank per process there",
            at.rank, at.world
        );
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    }
    local(nproc, Duration::from_secs(60))
}

/// Joins the group `at` describes (none without one), every wait bounded
/// by `timeout` seconds; on CUDA, says that Gloo sums through the host.
pub fn join(at: Option<&Rendezvous>, timeout: u64, device: tch::Device) -> Result<Option<Group>> {
    let Some(at) = at else {
        return Ok(None);
    };
    let group = Group::connect(at, Duration::from_secs(timeout), 1)?;
    if device.is_cuda() {
        eprintln!(
            "rank {}: gradients are summed by Gloo through host copies (NCCL is not wired)",
            at.rank
        );
    }
    Ok(Some(group))
}

/// `lpo run --nproc N`: starts this command N times without `--nproc`, as
/// ranks 0..N of a group on 127.0.0.1, and waits for them. When a rank
/// fails, the others get `grace` to fail too (they name the rank that
/// stopped answering) before they are killed. The exit status is the first
/// failed rank's, else 0.
fn local(nproc: u32, grace: Duration) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the lpo executable")?;
    let args = without_nproc(std::env::args_os().skip(1));
    let port = lpo_torch::dist::free_local_port()?;
    let mut children: Vec<Option<Child>> = Vec::new();
    for rank in 0..nproc {
        let child = Command::new(&exe)
            .args(&args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .spawn()
            .with_context(|| format!("starting rank {rank} ({})", exe.display()))?;
        children.push(Some(child));
    }
    let mut failed: Option<(usize, u8)> = None;
    let mut deadline: Option<Instant> = None;
    while children.iter().any(Option::is_some) {
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            let Some(status) = child
                .try_wait()
                .with_context(|| format!("waiting for rank {rank}"))?
            else {
                continue;
            };
            *slot = None;
            if status.success() {
                continue;
            }
            let code = match status.code() {
                Some(code) => u8::try_from(code).unwrap_or(1),
                None => {
                    use std::os::unix::process::ExitStatusExt;
                    let signal = status.signal().unwrap_or(0);
                    eprintln!("lpo run --nproc: rank {rank} was killed by signal {signal}");
                    crate::exit::FAILED
                }
            };
            if failed.is_none() {
                failed = Some((rank, code));
                deadline = Some(Instant::now() + grace);
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            for (rank, child) in children.iter_mut().enumerate() {
                if let Some(mut child) = child.take() {
                    eprintln!(
                        "lpo run --nproc: rank {rank} did not stop within {} s of rank {}'s failure; killing it",
                        grace.as_secs(),
                        failed.map_or(0, |f| f.0)
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(match failed {
        None => ExitCode::SUCCESS,
        Some((_, code)) => ExitCode::from(code),
    })
}

/// `args` without `--nproc N` / `--nproc=N`.
fn without_nproc(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if arg == "--nproc" {
            skip_value = true;
        } else if !arg.to_string_lossy().starts_with("--nproc=") {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Option<Rendezvous>> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        rendezvous_from(|name| vars.get(name).cloned())
    }

    #[test]
    fn torchrun_variables_describe_the_group() {
        let at = from(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node7"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            at,
            Rendezvous {
                host: "node7".into(),
                port: 29500,
                rank: 3,
                world: 4,
                local_rank: 1,
                agent_store: None,
            }
        );
        let agent = from(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "3"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(agent.agent_store.as_deref(), Some("/worker/lpo/attempt-3/"));
        assert_eq!(from(&[("WORLD_SIZE", "1"), ("RANK", "0")]).unwrap(), None);
        assert_eq!(from(&[]).unwrap(), None);
        for bad in [
            vec![("WORLD_SIZE", "2"), ("MASTER_PORT", "1")],
            vec![("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_PORT", "1")],
            vec![("WORLD_SIZE", "two"), ("RANK", "0"), ("MASTER_PORT", "1")],
            vec![("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "70000")],
            vec![("WORLD_SIZE", "2"), ("RANK", "0")],
        ] {
            assert!(from(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_multi_task_slurm_step_describes_the_group_and_a_batch_script_does_not() {
        let step = [
            ("SLURM_NTASKS", "2"),
            ("SLURM_STEP_ID", "0"),
            ("SLURM_PROCID", "1"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[07-09]"),
            ("SLURM_JOB_ID", "123456"),
        ];
        let at = from(&step).unwrap().unwrap();
        assert_eq!((at.rank, at.world, at.local_rank), (1, 2, 1));
        assert_eq!(at.host, "gpu07");
        assert_eq!(at.port, 20_000 + (123_456 % 10_000) as u16);
        // The batch script itself (no step) is one process.
        assert_eq!(from(&step[..1]).unwrap(), None);
        let one = [("SLURM_NTASKS", "1"), ("SLURM_STEP_ID", "0")];
        assert_eq!(from(&one).unwrap(), None);
        // A one-task step inside an allocation of several tasks.
        let mut single = step.to_vec();
        single.push(("SLURM_STEP_NUM_TASKS", "1"));
        assert_eq!(from(&single).unwrap(), None);
    }

    #[test]
    fn the_first_host_of_a_node_list() {
        for (list, host) in [
            ("node1", "node1"),
            ("a,b", "a"),
            ("node[03-05,07],gpu1", "node03"),
            ("n[1,4]", "n1"),
            ("gpu-a[009]", "gpu-a009"),
            ("n[1-2]-ib,x", "n1-ib"),
            ("rack[2-3]n[07-08]", "rack2n07"),
        ] {
            assert_eq!(first_host(list).unwrap(), host, "{list}");
        }
        for bad in ["", "[", ",x", "n[]", "n[a-b]", "n]"] {
            assert!(first_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nproc_and_its_value_leave_the_ranks_arguments() {
        let args = ["run", "r.toml", "--nproc", "2", "--id", "x", "--nproc=3"];
        let out = without_nproc(args.iter().map(OsString::from));
        assert_eq!(out, ["run", "r.toml", "--id", "x"].map(OsString::from));
    }
}
