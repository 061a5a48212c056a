#!/usr/bin/env bash
# Installs libtorch 2.11.0 into .libtorch/ (git-ignored) from PyPI wheels.
#
#   scripts/setup-libtorch.sh          CPU install (~1 GB on disk, ~540 MB download)
#   scripts/setup-libtorch.sh --cuda   adds the full CUDA 13 library set (~4.7 GB)
#
# Nothing is downloaded when the install is already present. A LIBTORCH set in
# the environment is used as it is and nothing is installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.libtorch"
reqs="$root/scripts/libtorch-requirements.txt"
cuda=0
[ "${1:-}" = "--cuda" ] && cuda=1

say() { echo "setup-libtorch: $*" >&2; }
die() { say "error: $*"; exit 1; }

if [ -n "${LIBTORCH:-}" ]; then
    [ -f "$LIBTORCH/lib/libtorch_cpu.so" ] ||
        die "LIBTORCH=$LIBTORCH has no lib/libtorch_cpu.so; unset LIBTORCH to install the project-local copy"
    say "using LIBTORCH=$LIBTORCH"
    exit 0
fi

command -v python3 >/dev/null || die "python3 (with pip) is needed to fetch libtorch from PyPI"

# The wheels that requirements pin, as "name version sha256".
pins() { sed -n 's/^\([a-z0-9_-]*\)==\([^ ]*\) --hash=sha256:\([0-9a-f]*\)$/\1 \2 \3/p' "$reqs"; }

# Path of the downloaded wheel for a pin, if present and its hash matches.
verified_wheel() {
    local name="${1//-/_}" version="$2" sha="$3" f
    for f in "$dest/wheels/$name-$version-"*.whl; do
        [ -f "$f" ] || continue
        if [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sha" ]; then echo "$f"; return 0; fi
        say "hash mismatch for $(basename "$f"); removing it"
        rm -f "$f"
    done
    return 1
}

installed() {
    [ -f "$dest/.installed" ] && [ "$(cat "$dest/.installed")" = "$(sha256sum "$reqs" | cut -d' ' -f1)" ] &&
        [ -f "$dest/torch/lib/libtorch_cpu.so" ] && [ -f "$dest/torch/include/torch/csrc/api/include/torch/torch.h" ] &&
        [ -f "$dest/nvidia/cu13/lib/libcudart.so.13" ] && [ -f "$dest/nvidia/cu13/lib/libcupti.so.13" ]
}

if ! installed; then
    mkdir -p "$dest/wheels"
    missing=0
    while read -r name version sha; do
        verified_wheel "$name" "$version" "$sha" >/dev/null || missing=1
    done < <(pins)
    if [ "$missing" = 1 ]; then
        say "downloading libtorch 2.11.0 wheels from PyPI into $dest/wheels (about 540 MB)"
        if ! python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
            --python-version 3.11 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_25_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -r "$reqs" -d "$dest/wheels"; then
            die "could not download the libtorch wheels (pinned in $reqs) from PyPI.
  Check that PyPI is reachable (python3 -m pip download --no-deps torch==2.11.0), then run
  scripts/setup-libtorch.sh again: finished downloads are kept and verified.
  Or point LIBTORCH at an existing libtorch 2.11.0 and run again."
        fi
    fi
    wheels=()
    while read -r name version sha; do
        w="$(verified_wheel "$name" "$version" "$sha")" || die "$name $version: downloaded wheel does not match its pinned hash"
        wheels+=("$w")
    done < <(pins)

    say "unpacking libtorch into $dest"
    tmp="$(mktemp -d "$dest/unpack.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    python3 - "$tmp" "${wheels[@]}" <<'PY'
import sys, zipfile, os
out, wheels = sys.argv[1], sys.argv[2:]
keep = ("torch/lib/", "torch/include/", "torch/share/", "nvidia/cu13/lib/")
for w in wheels:
    with zipfile.ZipFile(w) as z:
        for info in z.infolist():
            name = info.filename
            if not name.startswith(keep) or name.endswith("/") or name.endswith(".a"):
                continue
            if name.endswith("libtorch_python.so"):  # needs a Python interpreter
                continue
            z.extract(info, out)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(os.path.join(out, name), mode)
PY
    rm -rf "$dest/torch" "$dest/nvidia"
    mv "$tmp/torch" "$tmp/nvidia" "$dest/"
    sha256sum "$reqs" | cut -d' ' -f1 > "$dest/.installed"
    say "libtorch 2.11.0 installed in $dest/torch"
fi

if [ "$cuda" = 1 ] && [ ! -f "$dest/.installed-cuda" ]; then
    # The versions torch 2.11.0's own metadata pins for Linux.
    say "installing the CUDA 13 libraries (about 4.7 GB) into $dest/nvidia"
    tmp="$(mktemp -d "$dest/cuda.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip install --quiet --no-compile --target "$tmp" \
        "cuda-toolkit[cublas,cudart,cufft,cufile,cupti,curand,cusolver,cusparse,nvjitlink,nvrtc,nvtx]==13.0.2" \
        nvidia-cudnn-cu13==9.19.0.56 nvidia-cusparselt-cu13==0.8.0 \
        nvidia-nccl-cu13==2.28.9 nvidia-nvshmem-cu13==3.4.5 ||
        die "could not install the CUDA libraries from PyPI; run scripts/setup-libtorch.sh --cuda again"
    cp -a "$tmp/nvidia/." "$dest/nvidia/"
    touch "$dest/.installed-cuda"
    say "CUDA libraries installed; lpo loads libtorch_cuda at start-up when a GPU is present"
fi
