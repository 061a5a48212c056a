#!/usr/bin/env bash
# The main job: installs libtorch if needed, builds lpo, checks the install
# and plans the quickstart sweep (training and reports are not built yet).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-libtorch.sh
cargo build --release --locked --bin lpo
target/release/lpo doctor
echo
target/release/lpo plan recipes/quickstart.toml
