//! The acceptance list of the code-reward issue, through the public API:
//! an infinite loop, a fork bomb, a 10 GB allocation, a write outside the
//! sandbox directory, a socket connect to 127.0.0.1, `os.system` and a
//! correct solution, run together; each bad one fails with its cause, the
//! correct one passes, and the run completes.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lpo_reward::sandbox::{humaneval_program, Cause, Limits, Sandbox};

const PROMPT: &str = "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n";
const TEST: &str =
    "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(0, 0) == 0\n";

fn program(completion: &str) -> String {
    humaneval_program(PROMPT, completion, TEST, "add")
}

#[test]
fn sandbox_acceptance_list() {
    let limits = Limits {
        wall: Duration::from_secs(3),
        cpu_seconds: 1,
        ..Limits::default()
    };
    let sandbox = Sandbox::new(limits).expect("python3 on PATH");
    eprintln!("{}", sandbox.isolation());

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let outside = PathBuf::from(format!(
        "/tmp/lpo-sandbox-acceptance-{}.txt",
        std::process::id()
    ));
    let shell_target = PathBuf::from(format!(
        "/tmp/lpo-sandbox-acceptance-{}-system.txt",
        std::process::id()
    ));

    let programs = vec![
        program("    while True:\n        pass"),
        program("    import os\n    while True:\n        os.fork()"),
        program("    x = bytearray(10 * 1024**3)\n    return a + b"),
        program(&format!(
            "    open('{}', 'w').write('escaped')\n    return a + b",
            outside.display()
        )),
        program(&format!(
            "    import socket\n    socket.socket().connect(('127.0.0.1', {port}))\n    return a + b"
        )),
        program(&format!(
            "    import os\n    os.system('echo escaped > {}')\n    return a + b",
            shell_target.display()
        )),
        program("    return a + b"),
    ];
    let started = Instant::now();
    let results = sandbox.run_all(&programs, 2);
    let elapsed = started.elapsed();
    for (i, r) in results.iter().enumerate() {
        eprintln!(
            "{i}: passed={} cause={:?} wall={} ms",
            r.passed, r.cause, r.wall_ms
        );
    }

    let cause = |i: usize| results[i].cause.clone();
    assert!(
        matches!(cause(0), Some(Cause::CpuTime | Cause::Timeout)),
        "{:?}",
        results[0]
    );
    assert_eq!(cause(1), Some(Cause::Forbidden("os.fork".into())));
    assert_eq!(cause(2), Some(Cause::Memory));
    assert_eq!(
        cause(3),
        Some(Cause::Forbidden(format!(
            "open for writing outside the sandbox: {}",
            outside.display()
        )))
    );
    assert_eq!(cause(4), Some(Cause::Forbidden("socket.connect".into())));
    assert_eq!(cause(5), Some(Cause::Forbidden("os.system".into())));
    assert!(results[6].passed, "{:?}", results[6]);
    assert_eq!(cause(6), None);
    for r in &results[..6] {
        assert!(!r.passed);
        assert!(!r.detail.is_empty());
    }

    assert!(!outside.exists());
    assert!(!shell_target.exists());
    assert!(listener.accept().is_err(), "the listener got a connection");
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
}
