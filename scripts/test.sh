#!/usr/bin/env bash
# The whole test suite: installs libtorch if needed, checks formatting and
# lints (warnings are errors), then runs every test. Stops at the first
# failure. Arguments go to `cargo test`. Each phase prints its wall time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# A clean CI build gains nothing from incremental compilation's bookkeeping.
if [[ -n "${CI:-}" ]]; then
    export CARGO_INCREMENTAL=0
fi
phase() {
    local start=$SECONDS
    "$@"
    echo "test.sh: \`$*\` took $((SECONDS - start)) s" >&2
}
phase scripts/setup-libtorch.sh
# The MLflow tests need a tracking server (pip, into a virtualenv outside
# the clone): install it while the code builds; the tests wait for it, or
# install it themselves when run alone.
mkdir -p target
scripts/mlflow-local.sh install > target/mlflow-install.log 2>&1 &
# Likewise Slurm for the Slurm tests (apt-get, when missing and root).
scripts/slurm-local.sh install > target/slurm-install.log 2>&1 &
phase cargo fmt --all --check
phase cargo clippy --workspace --all-targets --locked -- -D warnings
# Libraries, binaries and integration tests; not the doc tests (no crate has
# one, and rustdoc's pass over every crate costs about a minute on 2 cores:
# add --doc when one does) nor the examples (clippy --all-targets checks
# that they compile).
phase cargo test --workspace --locked --lib --bins --tests "$@"
