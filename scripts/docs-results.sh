#!/usr/bin/env bash
# Copies the results files that docs/results.md quotes into docs/results/,
# where they are committed, so tests/docs_results.rs checks the quotes on
# every clone. Run it after regenerating the results with the sweeps and
# reports named above each quote in docs/results.md, then paste each copy
# between its quote markers (the test says which quote differs).
set -euo pipefail
cd "$(dirname "$0")/.."
paths=$(grep -o '<!-- lpo report: [^ ]* -->' docs/results.md | sed 's/<!-- lpo report: \(.*\) -->/\1/' | sort -u)
status=0
for path in $paths; do
    if [[ -f "$path" ]]; then
        mkdir -p "docs/$(dirname "$path")"
        cp "$path" "docs/$path"
        echo "copied $path to docs/$path"
    else
        echo "missing $path: run the sweep and report named above its quote" >&2
        status=1
    fi
done
exit $status
