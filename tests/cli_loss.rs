//! End-to-end: `lpo loss` reproduces hand-computed values and rejects bad input.

use std::process::{Command, Output};

fn lpo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn dpo_pair_matches_hand_computation() {
    // s = 0.1 * ([-10, -12] - [-11, -11]) = [0.1, -0.1]; loss = softplus(-0.2) = ln(1 + e^-0.2).
    let report = json(&lpo(&[
        "loss",
        "--loss",
        "dpo",
        "--input",
        "tests/fixtures/loss_dpo_pair.json",
    ]));
    let expected = (1.0f64 + (-0.2f64).exp()).ln();
    assert!((report["loss"].as_f64().unwrap() - 0.598_138_869_381_591_8).abs() < 1e-12);
    assert!((report["loss"].as_f64().unwrap() - expected).abs() < 1e-12);
    // d/d lp_w = -beta * sigma(-0.2), d/d lp_l = +beta * sigma(-0.2).
    let g = 0.1 / (1.0 + 0.2f64.exp());
    let grad = &report["grad_policy_logps"][0];
    assert!(
        (grad[0].as_f64().unwrap() + g).abs() < 1e-12
            && (grad[1].as_f64().unwrap() - g).abs() < 1e-12,
        "{grad}"
    );
}

#[test]
fn lpo_k4_list_matches_hand_computation() {
    // beta = 1: s = [1, 0, -1, -2], r = [4, 1, 3, 2] (a fifth, masked entry is padding).
    // p = softmax(r); W = {0, 2, 3}; c_i = p_i / (p_0 + p_2 + p_3);
    // L = c_0 ln(1 + e^-1 + e^-2 + e^-3) + c_2 ln(1 + e^1 + e^-1) + c_3 ln(1 + e^2) = 0.82880201924550...
    let report = json(&lpo(&[
        "loss",
        "--loss",
        "lpo",
        "--set",
        "loss.beta=1",
        "--input",
        "tests/fixtures/loss_lpo_k4.json",
    ]));
    assert!(
        (report["loss"].as_f64().unwrap() - 0.828_802_019_245_503_7).abs() < 1e-12,
        "{report}"
    );
    assert_eq!(
        report["grad_policy_logps"][0][4].as_f64(),
        Some(0.0),
        "padding gets no gradient"
    );
    let linear = json(&lpo(&[
        "loss",
        "--loss",
        "lpo",
        "--set",
        "loss.alpha={ kind = \"linear\", from = 2.0, to = 0.5 }",
        "--step",
        "5",
        "--steps",
        "10",
        "--input",
        "tests/fixtures/loss_lpo_k4.json",
    ]));
    assert_eq!(linear["params"]["alpha"].as_f64(), Some(1.25));
}

#[test]
fn malformed_input_is_rejected_clearly() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("loss-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "ragged.json",
            r#"{"policy_logps": [[1, 2], [1]], "reference_logps": [[1, 2], [1, 2]], "rewards": [[1, 0], [1, 0]]}"#,
            "ragged: row 1 has 1 entries",
        ),
        (
            "nan.json",
            r#"{"policy_logps": [[1, NaN]], "reference_logps": [[1, 2]], "rewards": [[1, 0]]}"#,
            "not valid JSON",
        ),
        (
            "nonnumber.json",
            r#"{"policy_logps": [[1, "x"]], "reference_logps": [[1, 2]], "rewards": [[1, 0]]}"#,
            "`policy_logps`[0][1] is \"x\", not a number",
        ),
        (
            "short.json",
            r#"{"policy_logps": [[1, 2]], "reference_logps": [[1, 2]], "rewards": [[1, 0]], "mask": [[true, false]]}"#,
            "row 0 has 1 valid response(s)",
        ),
    ];
    for (name, body, message) in cases {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let out = lpo(&["loss", "--loss", "lpo", "--input", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{name} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message) && err.contains(name), "{name}: {err}");
    }
    let out = lpo(&[
        "loss",
        "--loss",
        "lpo",
        "--set",
        "loss.alpha=-1",
        "--input",
        "tests/fixtures/loss_lpo_k4.json",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("`loss.alpha` is -1, but must be > 0"));
}
