#!/usr/bin/env bash
# Install the libraries proxrl's benchmarks compare against, each in its own virtual environment
# OUTSIDE the project, so that their pinned dependencies never touch proxrl's own environment.
#
#   sb3    Stable-Baselines3 2.9.2 on PyTorch 2.13.0 (CPU), Gymnasium with MuJoCo
#   sbx    SBX 0.28 (Stable-Baselines3 on JAX), Gymnasium with MuJoCo
#   rejax  Rejax 0.1.3 on gymnax 0.0.9 (Rejax 0.1.3 does not run on gymnax 1.x, whose step returns 6 values)
#   evosax evosax 0.3.2 (OpenAI-ES, bench/bench_es_peers.py) on gymnax 1.0.1 (six: gymnax's MNIST module imports it)
# The peers are pinned to the versions behind the figures in RESULTS.md; their own dependencies are resolved by
# pip, and each venv's full `pip freeze` is kept in $PEERS_DIR/<name>/requirements.lock.
#
# Usage:   bash bench/setup_peers.sh [sb3] [sbx] [rejax] [evosax]      (no argument: all four)
# Where:   $PEERS_DIR/<name>/bin/python, PEERS_DIR defaulting to ~/.cache/proxrl-peers
# Python:  $PEERS_PYTHON (default python3) creates the venvs; 3.11 is what the figures in RESULTS.md used.
# pip:     $PEERS_PIP_ARGS is passed to every `pip install` (e.g. an extra index holding PyTorch's CPU-only
#          wheels, so that sb3 does not pull the much larger CUDA build of torch 2.13.0).
# A venv is marked complete by a .ok file, so re-running skips finished ones; delete the folder to redo one.
set -euo pipefail

peers_dir=${PEERS_DIR:-$HOME/.cache/proxrl-peers}
base_python=${PEERS_PYTHON:-python3}
mkdir -p "$peers_dir"

install_peer() {  # install_peer NAME PIP-REQUIREMENT...
    local name=$1
    shift
    local venv="$peers_dir/$name"
    if [[ -f "$venv/.ok" && -x "$venv/bin/python" ]]; then
        echo "[$name] already installed in $venv"
        return 0
    fi
    echo "[$name] creating $venv and installing: $*"
    "$base_python" -m venv --clear "$venv"
    local log="$peers_dir/$name-install.log"
    # shellcheck disable=SC2086  # PEERS_PIP_ARGS is a word list on purpose
    if ! "$venv/bin/python" -m pip install --quiet ${PEERS_PIP_ARGS:-} "$@" >"$log" 2>&1; then
        tail -n 25 "$log"
        echo "[$name] pip install failed; full log: $log" >&2
        return 1
    fi
    "$venv/bin/python" -m pip freeze >"$venv/requirements.lock"
    touch "$venv/.ok"
    echo "[$name] done"
}

peers=("$@")
if [[ ${#peers[@]} -eq 0 ]]; then
    peers=(sb3 sbx rejax evosax)
fi
for peer in "${peers[@]}"; do
    case "$peer" in
        sb3) install_peer sb3 "torch==2.13.0" "stable-baselines3==2.9.2" "gymnasium[mujoco]" ;;
        sbx) install_peer sbx "sbx-rl==0.28.0" "gymnasium[mujoco]" ;;
        rejax) install_peer rejax "rejax==0.1.3" "gymnax==0.0.9" ;;
        evosax) install_peer evosax "evosax==0.3.2" "gymnax==1.0.1" six ;;
        *)
            echo "unknown peer '$peer' (choose from: sb3 sbx rejax evosax)" >&2
            exit 2
            ;;
    esac
done
echo "peer venvs are in $peers_dir"
