#!/usr/bin/env bash
# One process on this machine (all its devices): the README's main command, any experiment.
#   bash launch/local.sh experiments/ddpm_ring8.py runs/ddpm_ring8 [--config.a.b=v ...]
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:?usage: launch/local.sh CONFIG WORKDIR [flags]}
workdir=${2:?usage: launch/local.sh CONFIG WORKDIR [flags]}
shift 2
exec "${PYTHON:-.venv/bin/python}" -m gen.main --config="$config" --workdir="$workdir" "$@"
