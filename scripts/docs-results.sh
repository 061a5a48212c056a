#!/usr/bin/env bash
# Copies the results files that docs/results.md quotes into docs/results/,
# where they are committed, so tests/docs_results.rs checks the quotes on
# every clone. Run it after regenerating the results with the sweeps and
# reports named above each quote in docs/results.md, then paste each copy
# between its quote markers (the test says which quote differs).
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
while IFS= read -r path; do
    # Quotes name files under results/ (the test refuses others); never
    # copy from or to anywhere else.
    if [[ "$path" != results/* || "$path" == *..* ]]; then
        echo "refusing the quote of \`$path\`: not a file under results/" >&2
        status=1
    elif [[ -f "$path" ]]; then
        mkdir -p "docs/$(dirname "$path")"
        cp -- "$path" "docs/$path"
        echo "copied $path to docs/$path"
    else
        echo "missing $path: run the sweep and report named above its quote" >&2
        status=1
    fi
done < <(sed -n 's/^<!-- lpo report: \(.*\) -->$/\1/p' docs/results.md | sort -u)
exit $status
