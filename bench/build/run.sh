#!/usr/bin/env bash
# Builds: source -> image for the bundled Python example (examples/python-hello), first
# build and rebuilds after a one-line change with warm caches, against `podman build` of
# an equivalent Containerfile on the same base image, measured in the same run. Run as
# root. Not a test: see README.md beside this file.
#
#   bench/build/run.sh                    # 5 rebuilds, podman with vfs storage
#   REBUILDS=10 DRIVER=overlay bench/build/run.sh
set -euo pipefail

REBUILDS=${REBUILDS:-5}
DRIVER=${DRIVER:-vfs}
ISOLATION=${ISOLATION:-oci}
repo_root=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo_root/target}

if [[ $(id -u) != 0 ]]; then
  echo "run as root: builds run in runc containers" >&2
  exit 1
fi
"$repo_root/scripts/deps" test
cd "$repo_root"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r), $(runc --version | head -1), $(podman --version), load $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench -p runway-build --bench build -- --rebuilds "$REBUILDS" --storage-driver "$DRIVER" --isolation "$ISOLATION"
