//! lpo's event files read back by a reader written here from the formats'
//! definitions (TFRecord framing with CRC-32C computed bit by bit, the
//! protobuf wire format decoded by hand), compared with what TensorBoard's
//! own `EventAccumulator` read from the committed fixture
//! (`scripts/make_tb_fixture.py`), and a resumed run's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lpo_results::records::{Headline, HeldoutHeadline};
use lpo_results::{CurveRow, MetricsRow};
use lpo_track::{accumulate, RunEvents, TB_DIR};

const FIXTURE_NAME: &str = "events.out.tfevents.1700000000.fixture.1.0";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tensorboard")
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit.
fn crc32c_bitwise(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn masked(data: &[u8]) -> u32 {
    let crc = crc32c_bitwise(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The records of a TFRecord file; panics on any CRC mismatch or a cut record.
fn records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        assert_eq!(crc, masked(len_bytes), "length CRC at byte {at}");
        let data = &bytes[at + 12..at + 12 + len];
        let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
        assert_eq!(crc, masked(data), "data CRC at byte {at}");
        out.push(data);
        at += 16 + len;
    }
    out
}

fn varint(data: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = data[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    value
}

/// The fields of a protobuf message: (field number, wire type, raw bytes).
fn fields(data: &[u8]) -> Vec<(u64, u64, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let key = varint(data, &mut at);
        let (field, wire) = (key >> 3, key & 7);
        let start = at;
        let raw = match wire {
            0 => {
                varint(data, &mut at);
                &data[start..at]
            }
            1 => {
                at += 8;
                &data[start..at]
            }
            2 => {
                let len = varint(data, &mut at) as usize;
                at += len;
                &data[at - len..at]
            }
            5 => {
                at += 4;
                &data[start..at]
            }
            other => panic!("wire type {other}"),
        };
        out.push((field, wire, raw));
    }
    out
}

type Scalars = BTreeMap<String, Vec<(i64, f32)>>;

/// The file version and the scalars of an event file, decoded by hand.
fn decode_file(path: &Path) -> (String, Scalars) {
    let bytes = std::fs::read(path).unwrap();
    let mut version = String::new();
    let mut scalars = Scalars::new();
    for record in records(&bytes) {
        let mut step = 0i64;
        let mut values = Vec::new();
        for (field, wire, raw) in fields(record) {
            match (field, wire) {
                (2, 0) => step = varint(raw, &mut 0) as i64,
                (3, 2) => version = String::from_utf8(raw.to_vec()).unwrap(),
                (5, 2) => {
                    for (f, _, value) in fields(raw).into_iter().filter(|f| f.0 == 1) {
                        assert_eq!(f, 1);
                        let mut tag = String::new();
                        let mut simple = None;
                        for (vf, vw, vraw) in fields(value) {
                            match (vf, vw) {
                                (1, 2) => tag = String::from_utf8(vraw.to_vec()).unwrap(),
                                (2, 5) => {
                                    simple = Some(f32::from_le_bytes(vraw.try_into().unwrap()))
                                }
                                _ => {}
                            }
                        }
                        values.push((tag, simple.expect("a simple_value")));
                    }
                }
                _ => {}
            }
        }
        for (tag, value) in values {
            scalars.entry(tag).or_default().push((step, value));
        }
    }
    (version, scalars)
}

fn metrics_row(step: u32, shift: f64) -> MetricsRow {
    let x = f64::from(step);
    MetricsRow {
        step,
        round: 0,
        loss: 0.7 - 0.01 * x + shift,
        beta: 0.1,
        alpha: 0.0,
        gamma: 1.0 + 0.5 * x,
        lr: 1e-4 * (1.0 - x / 20.0),
        chosen_logp: -10.0 + 0.1 * x,
        rejected_logp: -11.0 - 0.2 * x,
        chosen_reward: 0.01 * x,
        rejected_reward: -0.02 * x,
        ranking_accuracy: if step == 0 { 0.0 } else { 0.75 },
        sft_weight: 0.0,
        sft_loss: 1.5 - 0.01 * x,
        grad_norm: 2.0 + shift,
        tokens: 1000 + u64::from(step),
        parts: Vec::new(),
    }
}

fn curve_row(step: u32) -> CurveRow {
    let x = f64::from(step);
    CurveRow {
        step,
        chosen_logp: -9.0 + 0.05 * x,
        rejected_logp: -9.5 - 0.05 * x,
        chosen_reward: 0.02 * x,
        rejected_reward: -0.01 * x,
        margin: 0.03 * x,
        ranking_accuracy: 0.5 + 0.01 * x,
    }
}

/// The fixture's run: steps 0..=4, curves at 0, 2 and 4, and the headline
/// at step 5, every wall time 1.7e9 + the event's index.
fn write_fixture_run(run_dir: &Path) -> PathBuf {
    let mut tick = 1_700_000_000.0 - 1.0;
    let clock = Box::new(move || {
        tick += 1.0;
        tick
    });
    let metrics: Vec<MetricsRow> = (0..3).map(|s| metrics_row(s, 0.0)).collect();
    let curves = vec![curve_row(0), curve_row(2)];
    let mut events =
        RunEvents::start_with(run_dir, &metrics, &curves, clock, Some(FIXTURE_NAME)).unwrap();
    events.metrics(&metrics_row(3, 0.0)).unwrap();
    events.metrics(&metrics_row(4, 0.0)).unwrap();
    events.curve(&curve_row(4)).unwrap();
    let headline = Headline {
        baseline: "reference".into(),
        prompts: 8,
        samples: 1,
        wins: 5,
        ties: 1,
        losses: 2,
        win_rate: 5.0 / 7.0,
        policy_reward: 6.5,
        baseline_reward: 5.25,
        policy_accuracy: Some(0.5),
        baseline_accuracy: Some(0.0),
        kl: 0.125,
    };
    let heldout = HeldoutHeadline {
        lists: 4,
        ranking_accuracy: 0.75,
        margin: 0.5,
        ndcg: 0.9,
    };
    events
        .finish_with(Some(&headline), Some(&heldout), 5)
        .unwrap();
    run_dir.join(TB_DIR).join(FIXTURE_NAME)
}

/// Regenerate with `LPO_WRITE_TB_FIXTURE=1 cargo test -p lpo-track --test
/// events`, then `scripts/make_tb_fixture.py` for the accumulator's view.
#[test]
fn the_writer_reproduces_the_fixture_and_tensorboard_reads_what_we_read() {
    let tmp = tempfile::tempdir().unwrap();
    let written = std::fs::read(write_fixture_run(tmp.path())).unwrap();
    let committed = fixture_dir().join(FIXTURE_NAME);
    if std::env::var_os("LPO_WRITE_TB_FIXTURE").is_some() {
        std::fs::create_dir_all(fixture_dir()).unwrap();
        std::fs::write(&committed, &written).unwrap();
    }
    assert_eq!(
        written,
        std::fs::read(&committed).unwrap(),
        "writer bytes changed"
    );
    let (version, ours) = decode_file(&committed);
    assert_eq!(version, "brain.Event:2");
    assert_eq!(
        ours,
        accumulate(&fixture_dir()).unwrap(),
        "lpo-track's reader"
    );
    assert_eq!(ours["train/loss"].len(), 5);
    assert_eq!(ours["final/win_rate"], vec![(5, (5.0f64 / 7.0) as f32)]);
    // What TensorBoard's EventAccumulator read from the same file.
    let json = std::fs::read_to_string(fixture_dir().join("accumulator.json")).unwrap();
    let theirs: BTreeMap<String, Vec<(i64, f64)>> = serde_json::from_str(&json).unwrap();
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>()
    );
    for (tag, values) in &theirs {
        // Python's floats are the f32 values widened; serde_json parses
        // them to within an f64 ulp, which rounds back to the same f32.
        let theirs: Vec<(i64, f32)> = values.iter().map(|&(s, v)| (s, v as f32)).collect();
        assert_eq!(theirs, ours[tag], "{tag}");
    }
}

#[test]
fn a_resumed_run_shows_one_value_per_tag_and_step() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    // The first process: steps 0..10, curves every 5 steps; then killed
    // (what the buffer held is flushed by the drop, as if it had been).
    {
        let mut events = RunEvents::start(run, &[], &[]).unwrap();
        for step in 0..10 {
            events.metrics(&metrics_row(step, 0.0)).unwrap();
            if step % 5 == 0 {
                events.curve(&curve_row(step)).unwrap();
            }
        }
    }
    // The checkpoint at step 6 restores metrics.csv to steps 0..6 and the
    // curves to those at or before 6; the resumed process re-trains from 6
    // (different numbers, as with another thread count) to 20.
    let history: Vec<MetricsRow> = (0..6).map(|s| metrics_row(s, 0.0)).collect();
    let curves = vec![curve_row(0), curve_row(5)];
    let mut events = RunEvents::start(run, &history, &curves).unwrap();
    for step in 6..20 {
        events.metrics(&metrics_row(step, 1.0)).unwrap();
        if step % 5 == 0 {
            events.curve(&curve_row(step)).unwrap();
        }
    }
    events.curve(&curve_row(20)).unwrap();
    events.flush().unwrap();
    let tb = run.join(TB_DIR);
    let files: Vec<_> = std::fs::read_dir(&tb).unwrap().collect();
    assert_eq!(files.len(), 1, "one event file");
    assert!(!run.join("tb-new").exists() && !run.join("tb-old").exists());
    let seen = accumulate(&tb).unwrap();
    assert_eq!(seen, decode_file(events.path()).1);
    for (tag, values) in &seen {
        let steps: Vec<i64> = values.iter().map(|v| v.0).collect();
        let want: Vec<i64> = if tag.starts_with("heldout/") {
            vec![0, 5, 10, 15, 20]
        } else {
            (0..20).collect()
        };
        assert_eq!(steps, want, "{tag}");
    }
    let loss: Vec<f32> = seen["train/loss"].iter().map(|v| v.1).collect();
    let want: Vec<f32> = (0..20)
        .map(|s| metrics_row(s, if s < 6 { 0.0 } else { 1.0 }).loss as f32)
        .collect();
    assert_eq!(loss, want);
    assert_eq!(seen.len(), 16 + 6);
}

/// A weighted `loss.kind`'s parts get a tag each, `loss_parts/<kind>`,
/// replayed on a resume like the other columns.
#[test]
fn each_part_of_a_weighted_loss_has_its_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let with_parts = |step: u32| MetricsRow {
        parts: vec![
            lpo_results::records::PartLoss {
                kind: "dpo".into(),
                loss: 0.69 - 0.01 * f64::from(step),
            },
            lpo_results::records::PartLoss {
                kind: "bco_pair".into(),
                loss: 1.38,
            },
        ],
        ..metrics_row(step, 0.0)
    };
    let history: Vec<MetricsRow> = (0..3).map(with_parts).collect();
    let mut events = RunEvents::start(tmp.path(), &history, &[]).unwrap();
    events.metrics(&with_parts(3)).unwrap();
    events.flush().unwrap();
    let seen = accumulate(&tmp.path().join(TB_DIR)).unwrap();
    let dpo: Vec<(i64, f32)> = (0..4)
        .map(|s| (i64::from(s), (0.69 - 0.01 * f64::from(s)) as f32))
        .collect();
    assert_eq!(seen["loss_parts/dpo"], dpo);
    assert_eq!(seen["loss_parts/bco_pair"].len(), 4);
    assert_eq!(seen.len(), 16 + 2);
}

#[test]
fn a_corrupt_record_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_fixture_run(tmp.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(lpo_track::read_events(&path).is_err());
    // A record cut short (a writer mid-write) ends the file quietly.
    std::fs::write(&path, &bytes[..n - 3]).unwrap();
    assert!(lpo_track::read_events(&path).is_ok());
}
