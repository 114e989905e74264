#!/usr/bin/env bash
# Builds the npm package in pkg/: the engine compiled to wasm32 + wasm-bindgen's JS glue in
# pkg/wasm/, next to the hand-written JS API (pkg/*.js). Offline apart from crates.io: the
# wasm-bindgen CLI is built with cargo at exactly the version in Cargo.lock (the glue and the
# library must match), and wasm-opt is not used (Debian's binaryen 108 breaks the output).
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

WASM="${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/llama_webgpu.wasm"
if [ "$TEST" = 0 ]; then
  echo "== building the engine for wasm32"
  cargo build --release --locked --target wasm32-unknown-unknown -p llama-webgpu --lib
  rm -rf pkg/wasm
  wasm-bindgen --target web --out-dir pkg/wasm --out-name llama_webgpu "$WASM"
  echo "== pkg/ ready: $(du -h pkg/wasm/llama_webgpu_bg.wasm | cut -f1) of wasm"
  exit 0
fi

OUT=tests/.cache/pkg-test
echo "== building the engine for wasm32 with test hooks"
cargo build --release --locked --target wasm32-unknown-unknown -p llama-webgpu --lib --features test-hooks
rm -rf "$OUT.partial"
mkdir -p "$OUT.partial"
cp pkg/*.js pkg/*.d.ts pkg/package.json "$OUT.partial/"
cp -r pkg/vendor "$OUT.partial/"
wasm-bindgen --target web --out-dir "$OUT.partial/wasm" --out-name llama_webgpu "$WASM"
cat > "$OUT.partial/hooks.js" <<'JS'
// The test build (scripts/build-pkg.sh --test): test hooks on.
export const TEST_HOOKS = true;
export { testTrapSync, testTrapAsync } from "./wasm/llama_webgpu.js";
JS
rm -rf "$OUT"
mv "$OUT.partial" "$OUT"
echo "== $OUT ready (test hooks on)"
