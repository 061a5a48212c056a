//! End-to-end: `lpo doctor` runs the installed libtorch.

use std::process::Command;

fn lpo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lpo"))
}

#[test]
fn doctor_reports_libtorch_and_threads() {
    let out = lpo()
        .arg("doctor")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "doctor failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("libtorch    2.11.0"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("cpu threads ")),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l.starts_with("cuda")), "{stdout}");
}

#[test]
fn doctor_json_is_machine_readable() {
    let out = lpo().args(["doctor", "--json"]).output().unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["libtorch_version"], "2.11.0");
    assert_eq!(report["libtorch_ok"], true);
    assert!(report["cpu_threads"].as_i64().unwrap() >= 1);
}

#[test]
fn doctor_names_the_cpu_products_and_lpo_onednn_0_turns_onednn_off() {
    let products = |vars: &[(&str, &str)]| {
        let out = lpo()
            .args(["doctor", "--json"])
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["cpu_products"].as_str().unwrap().to_string()
    };
    // Whatever this CPU has, the default names a path and its reason.
    let default = products(&[]);
    assert!(
        default.starts_with("oneDNN inner product") || default.starts_with("at::linear"),
        "{default}"
    );
    assert_eq!(
        products(&[("LPO_ONEDNN", "0")]),
        "at::linear (MKL sgemm) (LPO_ONEDNN=0)"
    );
}
