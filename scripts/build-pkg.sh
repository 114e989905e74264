#!/usr/bin/env bash
# Builds the npm package in pkg/: the engine compiled to wasm32 + wasm-bindgen's JS glue in
# pkg/wasm/, next to the hand-written JS API (pkg/*.js), with wasm-pack
# (`wasm-pack build --target web --mode no-install`). Offline apart from crates.io: wasm-pack
# and the wasm-bindgen CLI are built with cargo, the latter at exactly the version in
# Cargo.lock (the glue and the library must match); `--mode no-install` makes wasm-pack use
# them instead of downloading its own tools.
# wasm-opt (binaryen) comes from the npm package `binaryen` in node_modules, never Debian's
# binaryen 108, whose output fails at load (`WebAssembly.Table.set(): Argument 1 is invalid`).
#
#   scripts/build-pkg.sh           # the package, in pkg/
#   scripts/build-pkg.sh --test    # the test build the browser tests load: the engine with the
#                                  # cargo feature test-hooks (deliberate traps), pkg/*.js copied,
#                                  # hooks.js switched on, all in tests/.cache/pkg-test/
set -euo pipefail
cd "$(dirname "$0")/.."

TEST=0
case "${1:-}" in
  --test) TEST=1 ;;
  "") ;;
  *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac

if command -v rustup >/dev/null && ! rustup target list --installed | grep -q wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)"
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB_VERSION" ]; then
  echo "== installing wasm-bindgen-cli $WB_VERSION (a few minutes, once)"
  # not --locked: one of its locked dependencies is no longer on the registry
  cargo install -q wasm-bindgen-cli --version "=$WB_VERSION"
fi

# wasm-opt -O on the wasm-bindgen output: measured 2026-12 on the release build, 6,263,051 →
# 4,897,697 bytes raw (−22 %), 1,990,855 → 1,789,024 gzipped (gzip -6, −10 %); it costs
# 2–3 minutes a build on 2 cores. wasm-pack's own wasm-opt step is off (--no-opt) because it
# passes no feature flags and the engine uses simd128; this runs the same tool with them.
# NO_WASM_OPT=1 skips it (quicker local builds).
WASM_OPT=node_modules/.bin/wasm-opt
WASM_OPT_FLAGS=(-O --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
  --enable-mutable-globals --enable-reference-types --enable-multivalue)
if [ "${NO_WASM_OPT:-0}" != 1 ] && [ ! -x "$WASM_OPT" ]; then
  echo "== npm install (binaryen's wasm-opt)"
  npm install --no-audit --no-fund --loglevel=error
fi

if ! command -v wasm-pack >/dev/null; then
  echo "== installing wasm-pack (about 5 minutes, once)"
  cargo install -q wasm-pack --locked
fi

# wasm-opt -O on $1 in place, with the feature flags above and any more ($2...).
opt() {
  local wasm="$1"
  shift
  if [ "${NO_WASM_OPT:-0}" != 1 ]; then
    echo "== wasm-opt -O $(basename "$wasm") (binaryen $("$WASM_OPT" --version | awk '{print $3}'), 2-3 minutes)"
    "$WASM_OPT" "${WASM_OPT_FLAGS[@]}" "$@" "$wasm" -o "$wasm.opt"
    mv "$wasm.opt" "$wasm"
  fi
}

# Two builds of the engine, one glue (pkg/simd.js picks the wasm at run time):
# 1. wasm-pack over the crate: a release build for wasm32 (extra cargo arguments after the out
#    dir) and wasm-bindgen into $1: llama_webgpu_bg.wasm, simd128. --no-pack: pkg/package.json
#    is ours, not generated. --no-opt: wasm-opt runs after it, with feature flags (above).
# 2. llama_webgpu_relaxed_bg.wasm: the engine crate again with +relaxed-simd (the int8 CPU
#    kernels' relaxed dot, crate/src/cpu/q8/wasm.rs). `cargo rustc` gives the flag to the engine
#    crate alone, so its dependencies are build 1's artifacts (only the engine recompiles, not
#    a second tree); wasm-bindgen as wasm-pack runs it, and its glue must equal build 1's.
pack() {
  local out="$1"
  shift
  wasm-pack build crate --release --target web --mode no-install --no-pack --no-opt \
    --out-dir "$PWD/$out" --out-name llama_webgpu -- --locked "$@"
  rm -f "$out/.gitignore" "$out/package.json" "$out/README.md"
  opt "$out/llama_webgpu_bg.wasm"

  echo "== building the engine for wasm32 again with relaxed SIMD"
  local tmp="$out.relaxed"
  rm -rf "$tmp"
  cargo rustc -p llama-webgpu --lib --release --target wasm32-unknown-unknown --locked "$@" \
    -- -C target-feature=+relaxed-simd
  local target_dir
  target_dir="$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>console.log(JSON.parse(s).target_directory))')"
  wasm-bindgen --target web --out-dir "$tmp" --out-name llama_webgpu \
    "$target_dir/wasm32-unknown-unknown/release/llama_webgpu.wasm"
  for f in llama_webgpu.js llama_webgpu.d.ts llama_webgpu_bg.wasm.d.ts; do
    if ! cmp -s "$tmp/$f" "$out/$f"; then
      echo "the relaxed SIMD build's $f differs from the simd128 build's: one glue cannot load both" >&2
      exit 1
    fi
  done
  mv "$tmp/llama_webgpu_bg.wasm" "$out/llama_webgpu_relaxed_bg.wasm"
  rm -rf "$tmp"
  opt "$out/llama_webgpu_relaxed_bg.wasm" --enable-relaxed-simd
}

# The loader's SHA-256 (@noble/hashes, ESM, no dependencies) is bundled into pkg/vendor/: the
# package stays plain files that load in a browser as they are.
NOBLE=node_modules/@noble/hashes
if [ ! -f "$NOBLE/sha2.js" ] || [ ! -d node_modules/markdown-it ]; then
  echo "== npm install (@noble/hashes, markdown-it)"
  npm install --no-audit --no-fund --loglevel=error
fi
rm -rf pkg/vendor
mkdir -p pkg/vendor/noble-hashes
cp "$NOBLE"/{sha2.js,_md.js,_u64.js,utils.js,LICENSE} pkg/vendor/noble-hashes/

# The demo's Markdown renderer: markdown-it's self-contained browser build (serve.mjs also
# serves it from node_modules; the copy is for code that imports www/markdown.js directly).
mkdir -p www/vendor
cp node_modules/markdown-it/dist/browser/markdown-it.esm.min.mjs www/vendor/markdown-it.mjs

if [ "$TEST" = 0 ]; then
  echo "== building the engine for wasm32 (wasm-pack)"
  rm -rf pkg/wasm
  pack pkg/wasm
  echo "== pkg/ ready: $(du -h pkg/wasm/llama_webgpu_bg.wasm | cut -f1) of wasm (simd128), $(du -h pkg/wasm/llama_webgpu_relaxed_bg.wasm | cut -f1) (relaxed SIMD)"
  exit 0
fi

OUT=tests/.cache/pkg-test
echo "== building the engine for wasm32 with test hooks (wasm-pack)"
rm -rf "$OUT.partial"
mkdir -p "$OUT.partial"
cp pkg/*.js pkg/*.d.ts pkg/package.json "$OUT.partial/"
cp -r pkg/vendor "$OUT.partial/"
pack "$OUT.partial/wasm" --features test-hooks
cat > "$OUT.partial/hooks.js" <<'JS'
// The test build (scripts/build-pkg.sh --test): test hooks on.
export const TEST_HOOKS = true;
export { testTrapSync, testTrapAsync } from "./wasm/llama_webgpu.js";
JS
rm -rf "$OUT"
mv "$OUT.partial" "$OUT"
echo "== $OUT ready (test hooks on)"
