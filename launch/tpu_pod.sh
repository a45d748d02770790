#!/usr/bin/env bash
# The same command on every worker of a TPU VM pod slice; jax.distributed finds the other hosts
# itself (no coordinator flags needed on TPU VMs). The workdir must be a file system path that
# every worker shares (NFS/Filestore, or a bucket mounted with gcsfuse): gen writes it with
# plain file operations, not gs:// URLs.
#   TPU=my-pod ZONE=us-central2-b bash launch/tpu_pod.sh experiments/ddpm_cifar10.py \
#       /mnt/shared/runs/ddpm_cifar10 [--config.a.b=v ...]
# It assumes the repository is checked out at ~/gen with its venv on every worker, e.g. once:
#   gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all --command=\
#     'git clone REPO ~/gen && cd ~/gen && python3.11 -m venv .venv && \
#      .venv/bin/pip install -r requirements.lock -e ".[tpu]"'
# CONFIG is a path inside that checkout (e.g. experiments/ddpm_cifar10.py); WORKDIR must be
# absolute: a relative one would mean a different folder on every worker.
set -euo pipefail
config=${1:?usage: TPU=name ZONE=zone launch/tpu_pod.sh CONFIG WORKDIR [flags]}
workdir=${2:?usage: TPU=name ZONE=zone launch/tpu_pod.sh CONFIG WORKDIR [flags]}
shift 2
case "$workdir" in
  /*) ;;
  *) echo "error: WORKDIR=$workdir must be an absolute path that every worker shares" >&2; exit 2 ;;
esac
extra=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "${TPU:?set TPU}" --zone="${ZONE:?set ZONE}" --worker=all \
  --command="cd ~/gen && .venv/bin/python -m gen.main --multihost --config=$config --workdir=$workdir$extra"
