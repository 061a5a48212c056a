#!/usr/bin/env python3
"""Writes tests/fixtures/tensorboard/accumulator.json: the scalars that
TensorBoard's own EventAccumulator reads from the event file lpo wrote in
tests/fixtures/tensorboard/ (tag -> [[step, value], ...]). The Rust test
crates/lpo-track/tests/events.rs decodes the same file with its own reader
and compares; CI needs no Python.

Installs nothing. Make a virtual environment outside the repository once:

    python3 -m venv /work/venv-tb && /work/venv-tb/bin/pip install tensorboard

then regenerate the event file and this JSON:

    LPO_WRITE_TB_FIXTURE=1 cargo test -p lpo-track --test events
    /work/venv-tb/bin/python scripts/make_tb_fixture.py
"""
import json
import pathlib

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

here = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tensorboard"
# size_guidance 0 keeps every scalar (no reservoir sampling).
acc = EventAccumulator(str(here), size_guidance={"scalars": 0})
acc.Reload()
out = {
    tag: [[event.step, event.value] for event in acc.Scalars(tag)]
    for tag in sorted(acc.Tags()["scalars"])
}
lines = [f"  {json.dumps(tag)}: {json.dumps(values)}" for tag, values in out.items()]
(here / "accumulator.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")
print(f"wrote {here / 'accumulator.json'}: {len(out)} tags")
