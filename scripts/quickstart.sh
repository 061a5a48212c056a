#!/usr/bin/env bash
# The main job: installs libtorch if needed, builds lpo, runs the quickstart
# sweep (SFT reference, reward lists, LPO/DPO/ListMLE training, evaluation)
# and prints its report. Rerunning skips finished runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-libtorch.sh
cargo build --release --locked --bin lpo
target/release/lpo doctor
echo
target/release/lpo sweep recipes/quickstart.toml
echo
target/release/lpo report recipes/quickstart.toml
