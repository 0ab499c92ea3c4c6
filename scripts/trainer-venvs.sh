#!/usr/bin/env bash
# The trainers' own virtual environments, for the tests that drive their code (tests/trainer/).
#   .venv-verl      verl 0.9.1 with its own pins (transformers < 5.11, which the main .venv cannot hold)
#   .venv-openrlhf  OpenRLHF 0.11.2 without its GPU stack: `--no-deps`, then exactly what its
#                   reward client and argument parser import (deepspeed, flash-attn
#                   and vllm do not build on a CPU box; the tests stub the modules that need them)
# Both use the local CPU torch wheel (torch 2.13.0+cpu) and add httpx for our client, which the
# tests load from the checkout (PYTHONPATH), as `pkg://trainer.verl` would from an install.
# A venv is rebuilt only when its line below changes (the stamp file holds its hash). They live in
# $RLRF_VENV_CACHE (default /var/cache/rlrf-ci), outside the checkout, so a fresh clone on the same
# machine (CI) reuses them; .venv-verl and .venv-openrlhf in the checkout are links to them.
# Usage: bash scripts/trainer-venvs.sh [verl|openrlhf]...   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH="torch==2.13.0+cpu"
declare -A DEPS=(
  # cachetools, uvicorn, fastapi: imported by verl 0.9.1's agent loop, undeclared (vLLM/SGLang bring them)
  [verl]="$TORCH verl==0.9.1 transformers>=5.5.3,<5.11 httpx cachetools uvicorn fastapi"
  [openrlhf]="$TORCH transformers==5.15.0 ray==2.55.0 aiohttp sympy pylatexenc tqdm packaging httpx"
)
declare -A NODEPS=([verl]="" [openrlhf]="openrlhf==0.11.2")

CACHE=${RLRF_VENV_CACHE:-/var/cache/rlrf-ci}

build() {
  local name=$1 dir=$CACHE/venv-$1
  mkdir -p "$CACHE"
  ln -sfn "$dir" ".venv-$name"
  local stamp="$dir/.installed-$(echo "${DEPS[$name]} ${NODEPS[$name]}" | sha1sum | cut -c1-12)"
  if [ -f "$stamp" ]; then echo "$dir: up to date"; return; fi
  local start=$SECONDS
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  # shellcheck disable=SC2086  # word splitting of the package lists is intended
  "$dir/bin/pip" install -q ${DEPS[$name]}
  if [ -n "${NODEPS[$name]}" ]; then
    # shellcheck disable=SC2086
    "$dir/bin/pip" install -q --no-deps ${NODEPS[$name]}
  fi
  touch "$stamp"
  echo "$dir: built in $((SECONDS - start)) s"
}

for name in "${@:-verl openrlhf}"; do
  for n in $name; do build "$n"; done
done
