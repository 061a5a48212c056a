#!/usr/bin/env bash
# The whole test suite: installs libtorch if needed, checks formatting and
# lints (warnings are errors), then runs every test. Stops at the first
# failure. Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-libtorch.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
