#!/usr/bin/env bash
# One process on this machine (all its devices): the README's main command, any experiment.
#   bash launch/local.sh experiments/ddpm_ring8.py runs/ddpm_ring8 [--config.a.b=v ...]
# Paths are relative to the folder this is started from (gen.main makes them absolute); the
# script itself may be called from anywhere, e.g. bash ~/gen/launch/local.sh ...
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
config=${1:?usage: launch/local.sh CONFIG WORKDIR [flags]}
workdir=${2:?usage: launch/local.sh CONFIG WORKDIR [flags]}
shift 2
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-$repo/.venv/bin/python}" -m gen.main --config="$config" --workdir="$workdir" "$@"
