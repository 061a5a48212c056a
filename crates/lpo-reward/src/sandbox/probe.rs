//! What the machine allows: the interpreter and the layers a run gets, found
//! once by running a probe program with every layer wanted (best effort),
//! and the [`Isolation`] report of what actually held.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::child::{
    step_name, Plan, L_DROP, L_MNT, L_NET, L_PID, L_USER, S_DROP, S_MNT, S_NET, S_PID, S_PROC,
    S_USER,
};
use super::classify::parse_records;
use super::python::{python_candidates, resolve_python};
use super::runner::{nonce, Ran};
use super::uids::RunAs;
use super::{Isolation, Limits, Options, Sandbox};

/// The interpreter and the layers every run will require.
pub(super) struct Chosen {
    pub(super) python: PathBuf,
    pub(super) plan: Plan,
    pub(super) isolation: Isolation,
}

/// Probes the candidate interpreters in order: the first that runs (as
/// root: as the sandbox uid) is chosen, with notes on those passed over. As
/// root, when none can run as the sandbox uid, the first keeps root's uid.
pub(super) fn choose(limits: &Limits, options: &Options) -> Result<Chosen> {
    let explicit = options.python.is_some();
    let candidates = match &options.python {
        Some(path) => vec![resolve_python(path)?],
        None => python_candidates()?,
    };
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        // Said here, not hidden by the fallback to root's uid below.
        RunAs::new(true).context("as root, every run needs a dedicated uid")?;
    }
    let wanted = wanted(root, options.namespaces);
    let site = options.site_packages;
    let must_drop = root && !explicit;
    let (mut found, mut skipped) = first_usable(&candidates, limits, site, wanted, must_drop);
    let mut notes = Vec::new();
    if let (Some((python, _)), false) = (&found, skipped.is_empty()) {
        notes.push(format!(
            "using {} ({})",
            python.display(),
            skipped.join("; ")
        ));
    }
    if found.is_none() && root {
        found = keep_root(
            &candidates[0],
            limits,
            site,
            wanted,
            &mut skipped,
            &mut notes,
        );
    }
    let Some((python, probed)) = found else {
        bail!(
            "python3 could not be started in the sandbox: {}",
            skipped.join("; ")
        );
    };
    let isolation = probed.isolation(&python, wanted, notes);
    Ok(Chosen {
        python,
        plan: probed.plan,
        isolation,
    })
}

/// The first candidate that runs in the sandbox (as the sandbox uid if
/// `must_drop`), and why those before it were passed over.
fn first_usable(
    candidates: &[PathBuf],
    limits: &Limits,
    site: bool,
    wanted: Plan,
    must_drop: bool,
) -> (Option<(PathBuf, Probed)>, Vec<String>) {
    let mut skipped = Vec::new();
    for python in candidates {
        match probe(python, limits, site, wanted) {
            Ok(p) if p.dropped || !must_drop => return (Some((python.clone(), p)), skipped),
            Ok(_) => skipped.push(format!(
                "{}: could not drop to the sandbox uid",
                python.display()
            )),
            Err(e) => skipped.push(format!("{e:#}")),
        }
    }
    (None, skipped)
}

/// Every layer the caller can have: namespaces unless refused, a user
/// namespace for non-root callers, a dedicated uid for root.
fn wanted(root: bool, namespaces: bool) -> Plan {
    Plan {
        user_ns: !root && namespaces,
        net_ns: namespaces,
        pid_ns: namespaces,
        mount_ns: namespaces,
        private_proc: namespaces,
        drop_uid: root,
        best_effort: true,
    }
}

/// No interpreter the sandbox uid can run: `python` keeps root's uid (and
/// the notes say so).
fn keep_root(
    python: &Path,
    limits: &Limits,
    site: bool,
    wanted: Plan,
    skipped: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Option<(PathBuf, Probed)> {
    let plan = Plan {
        drop_uid: false,
        ..wanted
    };
    match probe(python, limits, site, plan) {
        Ok(p) => {
            notes.push(format!(
                "no python3 runnable by an unprivileged uid ({}); {} runs as root",
                skipped.join("; "),
                python.display()
            ));
            Some((python.to_path_buf(), p))
        }
        Err(e) => {
            skipped.push(format!("{e:#}"));
            None
        }
    }
}

/// The probe program (run without the hook): facts the parent compares with
/// its own.
fn probe_program(outside: &Path) -> String {
    format!(
        r#"
import os, sys, socket, resource
def ns(name):
    try:
        return os.readlink("/proc/self/ns/" + name)
    except OSError:
        return "?"
print("version=" + sys.version.split()[0])
print("executable=" + sys.executable)
print("pid=%d" % os.getpid())
print("uid=%d" % os.getuid())
for name in ("net", "pid", "user", "mnt"):
    print("ns_%s=%s" % (name, ns(name)))
with open("/proc/self/status") as f:
    for line in f:
        key, _, value = line.partition(":")
        if key in ("CapEff", "NoNewPrivs"):
            print("%s=%s" % (key, value.strip()))
print("nproc=%d" % resource.getrlimit(resource.RLIMIT_NPROC)[0])
print("procs=%d" % sum(1 for e in os.listdir("/proc") if e.isdigit()))
s = socket.socket()
s.settimeout(1)
try:
    s.connect(("127.0.0.1", 9))
    print("loopback=connected")
except OSError as e:
    print("loopback=%s" % e.errno)
target = {outside:?}
try:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    os.unlink(target)
    print("outside=written")
except OSError as e:
    print("outside=%s" % e.errno)
"#,
        outside = outside.display().to_string()
    )
}

/// What one probe run found.
struct Probed {
    plan: Plan,
    dropped: bool,
    mask: u8,
    facts: Vec<(String, String)>,
    /// Layers that failed in the probe: (step, errno).
    skipped: Vec<(u8, i32)>,
    sandbox_uid: u32,
}

fn probe(python: &Path, limits: &Limits, site: bool, wanted: Plan) -> Result<Probed> {
    let probe_sandbox = Sandbox {
        python: python.to_path_buf(),
        limits: Limits {
            wall: Duration::from_secs(20),
            ..limits.clone()
        },
        site_packages: site,
        plan: wanted,
        isolation: Isolation::empty(),
    };
    let start = Instant::now();
    // Beside the run's directory, in the temp directory.
    let outside = fs::canonicalize(std::env::temp_dir())
        .unwrap_or_else(|_| PathBuf::from("/tmp"))
        .join(format!("lpo-sandbox-probe-{}", nonce()));
    let ran = probe_sandbox.run_once(&probe_program(&outside), false, start);
    let _ = fs::remove_file(&outside);
    let Ran { finished, uid } = ran?;
    let records = parse_records(&finished.ctl);
    let mask = records.waiter | records.init;
    let facts: Vec<(String, String)> = String::from_utf8_lossy(&finished.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    if !finished.exited_zero() || !facts.iter().any(|(k, _)| k == "version") {
        let execution = finished.classify(limits, start);
        bail!("the probe failed: {}", execution.detail);
    }
    let mut plan = Plan::from_mask(mask);
    // The private /proc needs both namespaces; keep the plan consistent.
    plan.private_proc &= plan.pid_ns && plan.mount_ns;
    Ok(Probed {
        plan,
        dropped: mask & L_DROP != 0,
        mask,
        facts,
        skipped: records.skipped,
        sandbox_uid: uid,
    })
}

impl Probed {
    fn fact(&self, key: &str) -> &str {
        self.facts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Whether the program's namespace `name` differs from lpo's.
    fn differs(&self, name: &str) -> bool {
        let ours = fs::read_link(format!("/proc/self/ns/{name}")).ok();
        let theirs = self.fact(&format!("ns_{name}"));
        ours.is_some_and(|o| o.as_os_str().as_bytes() != theirs.as_bytes()) && theirs != "?"
    }

    /// Each layer counts only if the probe program saw it hold.
    fn isolation(&self, python: &Path, wanted: Plan, notes: Vec<String>) -> Isolation {
        let cap_eff = u64::from_str_radix(self.fact("CapEff"), 16).unwrap_or(u64::MAX);
        let uid: u32 = self.fact("uid").parse().unwrap_or(0);
        let unprivileged = cap_eff == 0 && uid != 0;
        let dedicated = self.mask & L_DROP != 0 && uid == self.sandbox_uid;
        let user_ns = self.mask & L_USER != 0 && self.differs("user");
        let network = self.mask & L_NET != 0
            && self.differs("net")
            && self.fact("loopback") != "connected"
            && self.fact("loopback") != libc::ECONNREFUSED.to_string();
        let procs = self.fact("procs").parse::<u32>();
        let mut isolation = Isolation {
            python: python.display().to_string(),
            python_version: self.fact("version").to_string(),
            unprivileged_user: unprivileged,
            dedicated_uid: dedicated,
            user_namespace: user_ns,
            network_namespace: network,
            pid_namespace: self.mask & L_PID != 0 && self.fact("pid") == "1",
            private_proc: self.plan.private_proc && procs.is_ok_and(|n| n <= 2),
            read_only_filesystem: self.mask & L_MNT != 0
                && self.fact("outside") == libc::EROFS.to_string(),
            process_limit: unprivileged && (dedicated || user_ns),
            no_new_privs: self.fact("NoNewPrivs") == "1",
            audit_hook: false,
            notes,
        };
        self.note_missing(wanted, &mut isolation);
        isolation
    }

    /// Notes on the layers wanted but missing (with the error the child
    /// reported), the process limit, and the network.
    fn note_missing(&self, wanted: Plan, isolation: &mut Isolation) {
        let layers = [
            (wanted.user_ns, isolation.user_namespace, S_USER),
            (wanted.net_ns, isolation.network_namespace, S_NET),
            (wanted.pid_ns, isolation.pid_namespace, S_PID),
            (wanted.private_proc, isolation.private_proc, S_PROC),
            (wanted.mount_ns, isolation.read_only_filesystem, S_MNT),
            (wanted.drop_uid, isolation.dedicated_uid, S_DROP),
        ];
        let notes = &mut isolation.notes;
        for (want, have, step) in layers {
            if want && !have {
                let name = step_name(step);
                notes.push(match self.skipped.iter().find(|s| s.0 == step) {
                    Some(&(_, errno)) => format!(
                        "{name}: not available here ({})",
                        io::Error::from_raw_os_error(errno)
                    ),
                    None => format!("{name}: not available here"),
                });
            }
        }
        if !isolation.process_limit && wanted.drop_uid {
            notes.push("RLIMIT_NPROC is not enforced for root: no process limit".into());
        } else if !isolation.process_limit {
            notes.push(
                "RLIMIT_NPROC counts all of the caller's processes: the process limit is \
                 approximate (the caller's count at start plus the limit)"
                    .into(),
            );
        }
        if !isolation.network_namespace {
            notes.push("no network namespace: only the audit hook keeps sockets shut".into());
        }
    }
}

impl Isolation {
    /// Nothing known yet (the probe's own sandbox).
    fn empty() -> Isolation {
        Isolation {
            python: String::new(),
            python_version: String::new(),
            unprivileged_user: false,
            dedicated_uid: false,
            user_namespace: false,
            network_namespace: false,
            pid_namespace: false,
            private_proc: false,
            read_only_filesystem: false,
            process_limit: false,
            no_new_privs: false,
            audit_hook: false,
            notes: Vec::new(),
        }
    }
}
