#!/usr/bin/env bash
# The CPU backend's aarch64 NEON kernels, cross-compiled and run under qemu-user (this machine
# is x86_64): the kernel self-check at every SIMD level (scalar, NEON) and the fidelity tests
# against transformers on every fixture type, SmolLM2's greedy tokens included.
# Installs what it needs: the rust target, Debian's cross gcc + libc and qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -q aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
cargo test --release --locked -p llama-webgpu --target aarch64-unknown-linux-gnu --lib cpu::
cargo test --release --locked -p llama-webgpu --target aarch64-unknown-linux-gnu --test cpu
