//! The whole sandbox, through [`Sandbox::run`] and friends: each layer
//! against the programs it is there for.

use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::runner::nonce;
use super::uids::{UID_BASE, UID_SLOTS};
use super::*;

fn limits() -> Limits {
    Limits {
        wall: Duration::from_secs(3),
        cpu_seconds: 1,
        memory_bytes: 512 << 20,
        processes: 16,
        output_bytes: 64 << 10,
        file_bytes: 1 << 20,
        open_files: 64,
    }
}

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        let sandbox = Sandbox::new(limits()).expect("python3 is needed for these tests");
        eprintln!("sandbox: {}", sandbox.isolation());
        for note in &sandbox.isolation().notes {
            eprintln!("  note: {note}");
        }
        sandbox
    })
}

const PROMPT: &str = "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n";
const TEST: &str =
    "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n";

fn humaneval(completion: &str) -> String {
    humaneval_program(PROMPT, completion, TEST, "add")
}

fn unique(tag: &str) -> PathBuf {
    PathBuf::from(format!(
        "/tmp/lpo-sandbox-{tag}-{}-{}",
        std::process::id(),
        nonce()
    ))
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// Zombies of sandbox uids left to init: a waiter died before reaping
/// (where lpo is PID 1 of a container, they would pile up in lpo).
fn orphaned_sandbox_zombies() -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .unwrap_or("")
                .to_string()
        };
        let uid: u32 = field("Uid:").parse().unwrap_or(0);
        let sandboxed = (UID_BASE..UID_BASE + UID_SLOTS).contains(&uid);
        if sandboxed && field("State:") == "Z" && field("PPid:") == "1" {
            found.push(status.lines().next().unwrap_or("").to_string());
        }
    }
    found
}

#[test]
fn humaneval_program_layout() {
    let program = humaneval_program(
        "def f():\n",
        "    return 1",
        "def check(c):\n    assert c() == 1\n",
        "f",
    );
    assert_eq!(
        program,
        "def f():\n    return 1\ndef check(c):\n    assert c() == 1\n\ncheck(f)\n"
    );
}

#[test]
fn isolation_is_probed() {
    let isolation = sandbox().isolation();
    assert!(!isolation.python_version.is_empty());
    assert!(isolation.audit_hook, "{isolation:?}");
    if unsafe { libc::geteuid() } == 0 {
        // Root on a Linux that allows namespaces (this container, CI).
        assert!(
            isolation.dedicated_uid && isolation.unprivileged_user,
            "{isolation:?}"
        );
        assert!(isolation.process_limit, "{isolation:?}");
    }
}

/// Where util-linux's `unshare` gets namespaces, so must the sandbox.
#[test]
fn namespaces_are_used_where_the_machine_allows_them() {
    let isolation = sandbox().isolation();
    let root = unsafe { libc::geteuid() } == 0;
    let mut args = vec!["--net", "--pid", "--fork", "--mount"];
    if !root {
        args.insert(0, "--user");
    }
    let works = Command::new("unshare")
        .args(&args)
        .arg("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        eprintln!("skipped: `unshare {}` does not work here", args.join(" "));
        return;
    }
    assert!(isolation.network_namespace, "{isolation:?}");
    assert!(
        isolation.pid_namespace && isolation.private_proc,
        "{isolation:?}"
    );
    assert!(isolation.read_only_filesystem, "{isolation:?}");
    assert!(isolation.user_namespace || root, "{isolation:?}");
}

#[test]
fn correct_solution_passes() {
    let execution = sandbox().run(&humaneval("    return a + b"));
    assert!(execution.passed, "{execution:?}");
    assert_eq!(execution.cause, None);
}

#[test]
fn wrong_solution_fails_with_the_assertion() {
    let execution = sandbox().run(&humaneval("    return a - b"));
    assert_eq!(execution.cause, Some(Cause::Failed), "{execution:?}");
    assert!(
        execution.detail.starts_with("AssertionError"),
        "{execution:?}"
    );
    let execution = sandbox().run(&humaneval("    return a +* b"));
    assert_eq!(execution.cause, Some(Cause::Failed), "{execution:?}");
    assert!(execution.detail.contains("SyntaxError"), "{execution:?}");
}

#[test]
fn early_exit_is_not_a_pass() {
    for exit in ["    raise SystemExit(0)", "    import os; os._exit(0)"] {
        let execution = sandbox().run(&humaneval(exit));
        assert_eq!(
            execution.cause,
            Some(Cause::EarlyExit),
            "{exit}: {execution:?}"
        );
    }
    // A wrong solution that leaves before its tests run.
    let execution = sandbox().run(&humaneval("    return a - b\nimport sys\nsys.exit(0)"));
    assert_eq!(execution.cause, Some(Cause::EarlyExit), "{execution:?}");
}

#[test]
fn busy_loop_hits_the_cpu_or_wall_limit() {
    let execution = sandbox().run(&humaneval("    while True:\n        pass"));
    assert!(
        matches!(execution.cause, Some(Cause::CpuTime | Cause::Timeout)),
        "{execution:?}"
    );
    assert!(execution.wall_ms < 5000, "{execution:?}");
}

#[test]
fn sleeping_loop_times_out() {
    let execution = sandbox().run("import time\nwhile True:\n    time.sleep(1)\n");
    assert_eq!(execution.cause, Some(Cause::Timeout), "{execution:?}");
    assert!((3000..5000).contains(&execution.wall_ms), "{execution:?}");
    // The waiter reaped python: nothing was left to init.
    assert_eq!(orphaned_sandbox_zombies(), Vec::<String>::new());
}

#[test]
fn fork_bomb_is_refused_by_the_hook() {
    let execution = sandbox().run("import os\nwhile True:\n    os.fork()\n");
    assert_eq!(
        execution.cause,
        Some(Cause::Forbidden("os.fork".into())),
        "{execution:?}"
    );
    // Swallowing the exception does not hide it.
    let program = "import os\nfor _ in range(3):\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
    let execution = sandbox().run(program);
    assert_eq!(
        execution.cause,
        Some(Cause::Forbidden("os.fork".into())),
        "{execution:?}"
    );
}

#[test]
fn fork_bomb_without_the_hook_is_contained_by_the_os() {
    let isolation = sandbox().isolation();
    if !isolation.process_limit {
        eprintln!("skipped: no enforceable process limit here ({isolation})");
        return;
    }
    let marker = format!("{}", 100_000_000 + std::process::id());
    // Children leave the process group (setsid) and sleep with a marker
    // in their command line, holding the output pipes open; the parent
    // forks until the limit refuses.
    let program = format!(
        "import os\nwhile True:\n    if os.fork() == 0:\n        os.setsid()\n        os.execv('/bin/sleep', ['sleep', '600', '{marker}'])\n"
    );
    let execution = sandbox().run_unaudited(&program);
    assert_eq!(execution.cause, Some(Cause::Processes), "{execution:?}");
    assert!(execution.wall_ms < 3000, "{execution:?}");
    assert_eq!(processes_with(&marker), Vec::<String>::new());
    // The exponential kind.
    let execution = sandbox().run_unaudited("import os\nwhile True:\n    os.fork()\n");
    assert!(
        matches!(
            execution.cause,
            Some(Cause::Processes | Cause::CpuTime | Cause::Timeout)
        ),
        "{execution:?}"
    );
}

#[test]
fn limits_hold_against_a_program_that_fights_them() {
    let programs: Vec<String> = vec![
        // Ignoring SIGXCPU: the hard limit's SIGKILL a second later.
        "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n".into(),
        // Threads count as processes.
        "import threading, time\nfor _ in range(1000):\n    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n".into(),
        "open('big', 'wb').write(b'x' * (4 << 20))\n".into(),
        // Closed stdio and a flood of refusals on the control channel.
        "import os\nos.close(1)\nos.close(2)\nfor _ in range(100000):\n    try:\n        os.system('true')\n    except PermissionError:\n        pass\n".into(),
    ];
    let results = sandbox().run_all(&programs, 2);
    let causes: Vec<Option<Cause>> = results.iter().map(|e| e.cause.clone()).collect();
    assert!(
        matches!(causes[0], Some(Cause::CpuTime | Cause::Timeout)),
        "{results:?}"
    );
    assert_eq!(causes[1], Some(Cause::Processes), "{results:?}");
    assert_eq!(causes[2], Some(Cause::FileSize), "{results:?}");
    assert_eq!(
        causes[3],
        Some(Cause::Forbidden("os.system".into())),
        "{results:?}"
    );
}

#[test]
fn huge_allocation_is_a_memory_failure() {
    let execution = sandbox().run(&humaneval(
        "    x = bytearray(10 * 1024**3)\n    return a + b",
    ));
    assert_eq!(execution.cause, Some(Cause::Memory), "{execution:?}");
}

#[test]
fn writes_outside_the_sandbox_are_refused() {
    let target = unique("escape");
    let completion = format!(
        "    open({:?}, 'w').write('x')\n    return a + b",
        target.display().to_string()
    );
    let execution = sandbox().run(&humaneval(&completion));
    let expected = format!("open for writing outside the sandbox: {}", target.display());
    assert_eq!(
        execution.cause,
        Some(Cause::Forbidden(expected)),
        "{execution:?}"
    );
    assert!(!target.exists());
    // Through a symlink made inside the sandbox.
    let completion = format!(
        "    import os\n    os.symlink({:?}, 'link')\n    open('link', 'w').write('x')\n    return a + b",
        target.display().to_string()
    );
    let execution = sandbox().run(&humaneval(&completion));
    assert!(
        matches!(&execution.cause, Some(Cause::Forbidden(w)) if w.starts_with("open for writing outside")),
        "{execution:?}"
    );
    assert!(!target.exists());
    // Removing a file outside.
    let victim = unique("victim");
    fs::write(&victim, "keep").unwrap();
    let completion = format!(
        "    import os\n    os.remove({:?})\n    return a + b",
        victim.display().to_string()
    );
    let execution = sandbox().run(&humaneval(&completion));
    assert!(
        matches!(&execution.cause, Some(Cause::Forbidden(w)) if w.starts_with("os.remove outside")),
        "{execution:?}"
    );
    assert!(victim.exists());
    fs::remove_file(&victim).unwrap();
}

#[test]
fn writes_outside_fail_without_the_hook_too() {
    let isolation = sandbox().isolation();
    if !isolation.read_only_filesystem {
        eprintln!("skipped: no read-only filesystem here");
        return;
    }
    let target = unique("escape-os");
    let program = format!("open({:?}, 'w').write('x')\n", target.display().to_string());
    let execution = sandbox().run_unaudited(&program);
    assert_eq!(execution.cause, Some(Cause::Failed), "{execution:?}");
    assert!(
        execution.detail.contains("Read-only file system"),
        "{execution:?}"
    );
    assert!(!target.exists());
}

/// Only stdio and the control pipe reach the program: no descriptor of
/// lpo's, the lock on the run's uid included.
#[test]
fn no_descriptor_of_lpo_reaches_the_program() {
    let program = "import os\nfor fd in os.listdir('/proc/self/fd'):\n    try:\n        target = os.readlink('/proc/self/fd/' + fd)\n    except OSError:\n        continue\n    assert target.startswith('pipe:'), (fd, target)\n";
    // One that exec would not close by itself, as a parent or a library
    // may leave.
    let inherited = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    assert!(inherited > 2);
    let execution = sandbox().run(program);
    unsafe { libc::close(inherited) };
    assert!(execution.passed, "{execution:?}");
}

#[test]
fn writes_inside_the_sandbox_are_allowed() {
    let completion = "    import os, tempfile\n    with open('scratch.txt', 'w') as f:\n        f.write(str(a + b))\n    os.makedirs('sub', exist_ok=True)\n    os.rename('scratch.txt', 'sub/s.txt')\n    with tempfile.NamedTemporaryFile('w') as t:\n        t.write('x')\n    with open('/dev/null', 'w') as n:\n        n.write('x')\n    return int(open('sub/s.txt').read())";
    let execution = sandbox().run(&humaneval(completion));
    assert!(execution.passed, "{execution:?}");
}

#[test]
fn socket_connect_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let program = format!(
        "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))\ns.sendall(b'hi')\n"
    );
    let execution = sandbox().run(&program);
    assert_eq!(
        execution.cause,
        Some(Cause::Forbidden("socket.connect".into())),
        "{execution:?}"
    );
    if sandbox().isolation().network_namespace {
        let execution = sandbox().run_unaudited(&program);
        assert_eq!(execution.cause, Some(Cause::Failed), "{execution:?}");
        assert!(execution.detail.contains("unreachable"), "{execution:?}");
    }
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "the listener got a connection: {accepted:?}"
    );
}

#[test]
fn os_system_is_refused() {
    let target = unique("system");
    let program = format!("import os\nos.system('echo hi > {}')\n", target.display());
    let execution = sandbox().run(&program);
    assert_eq!(
        execution.cause,
        Some(Cause::Forbidden("os.system".into())),
        "{execution:?}"
    );
    assert!(!target.exists());
    let execution = sandbox().run("import subprocess\nsubprocess.run(['true'])\n");
    assert_eq!(
        execution.cause,
        Some(Cause::Forbidden("subprocess.Popen".into())),
        "{execution:?}"
    );
    let execution = sandbox().run("import ctypes\n");
    assert!(
        matches!(&execution.cause, Some(Cause::Forbidden(w)) if w.starts_with("ctypes.")),
        "{execution:?}"
    );
}

#[test]
fn huge_output_is_bounded() {
    let execution = sandbox().run("while True:\n    print('x' * 1000)\n");
    assert_eq!(execution.cause, Some(Cause::Output), "{execution:?}");
    assert!(execution.detail.len() < 4000, "{}", execution.detail.len());
    assert!(execution.wall_ms < 3000, "{execution:?}");
    let execution =
        sandbox().run("import sys\nwhile True:\n    sys.stderr.write('y' * 1000 + '\\n')\n");
    assert_eq!(execution.cause, Some(Cause::Output), "{execution:?}");
    assert!(execution.detail.len() < 4000, "{}", execution.detail.len());
}

#[test]
fn lingering_children_do_not_hold_the_run() {
    // Without the hook: a child that leaves the group and keeps the
    // output pipes open must not keep lpo waiting.
    let marker = format!("{}", 200_000_000 + std::process::id());
    let program = format!(
        "import os\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', '600', '{marker}'])\nprint('parent done')\n"
    );
    let execution = sandbox().run_unaudited(&program);
    assert!(execution.passed, "{execution:?}");
    assert!(execution.wall_ms < 2500, "{execution:?}");
    // The PID namespace, or else the waiter as subreaper (which needs
    // CONFIG_PROC_CHILDREN), killed the child that escaped.
    let isolation = sandbox().isolation();
    if isolation.pid_namespace || Path::new("/proc/thread-self/children").exists() {
        assert_eq!(processes_with(&marker), Vec::<String>::new());
    } else {
        for line in processes_with(&marker) {
            if let Some(pid) = line.split(':').next().and_then(|p| p.parse::<i32>().ok()) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

#[test]
fn run_all_keeps_order_and_completes() {
    let programs: Vec<String> = vec![
        humaneval("    return a + b"),
        humaneval("    return a - b"),
        "while True:\n    pass\n".into(),
        "import os\nos.fork()\n".into(),
        "x = bytearray(10 * 1024**3)\n".into(),
        "import time\ntime.sleep(10)\n".into(),
        "import os\nos.system('true')\n".into(),
        humaneval("    return b + a"),
    ];
    let started = Instant::now();
    let results = sandbox().run_all(&programs, 2);
    assert_eq!(results.len(), programs.len());
    let causes: Vec<Option<&str>> = results
        .iter()
        .map(|e| e.cause.as_ref().map(Cause::label))
        .collect();
    assert_eq!(causes[0], None, "{results:?}");
    assert_eq!(causes[1], Some("failed"));
    assert!(
        matches!(causes[2], Some("cpu_time" | "timeout")),
        "{results:?}"
    );
    assert_eq!(causes[3], Some("forbidden"));
    assert_eq!(causes[4], Some("memory"));
    assert_eq!(causes[5], Some("timeout"));
    assert_eq!(causes[6], Some("forbidden"));
    assert_eq!(causes[7], None, "{results:?}");
    assert!(started.elapsed() < Duration::from_secs(12));
}

#[test]
fn without_namespaces_the_essentials_still_hold() {
    let options = Options {
        namespaces: false,
        ..Options::default()
    };
    let sandbox = Sandbox::with_options(limits(), options).unwrap();
    let isolation = sandbox.isolation();
    assert!(
        !isolation.network_namespace && !isolation.pid_namespace,
        "{isolation:?}"
    );
    assert!(!isolation.read_only_filesystem && !isolation.user_namespace);
    assert!(isolation.audit_hook, "{isolation:?}");
    assert!(sandbox.run(&humaneval("    return a + b")).passed);
    let programs: Vec<String> = vec![
        "import os\nos.fork()\n".into(),
        "import socket\nsocket.create_connection(('127.0.0.1', 9))\n".into(),
        "x = bytearray(10 * 1024**3)\n".into(),
        "import time\ntime.sleep(10)\n".into(),
    ];
    let causes: Vec<Option<Cause>> = sandbox
        .run_all(&programs, 2)
        .into_iter()
        .map(|e| e.cause)
        .collect();
    assert_eq!(causes[0], Some(Cause::Forbidden("os.fork".into())));
    // create_connection resolves first: socket.getaddrinfo is refused.
    assert!(
        matches!(&causes[1], Some(Cause::Forbidden(w)) if w.starts_with("socket.")),
        "{causes:?}"
    );
    assert_eq!(causes[2..], [Some(Cause::Memory), Some(Cause::Timeout)]);
    assert_eq!(orphaned_sandbox_zombies(), Vec::<String>::new());
    if isolation.dedicated_uid {
        // Root without a PID namespace: the processes of the dedicated
        // uid are hunted down, escaped sessions included.
        let marker = format!("{}", 300_000_000 + std::process::id());
        let program = format!(
            "import os\nwhile True:\n    if os.fork() == 0:\n        os.setsid()\n        os.execv('/bin/sleep', ['sleep', '600', '{marker}'])\n"
        );
        let execution = sandbox.run_unaudited(&program);
        assert_eq!(execution.cause, Some(Cause::Processes), "{execution:?}");
        assert_eq!(processes_with(&marker), Vec::<String>::new());
    }
}
