// @ts-check
// Which engine wasm this browser runs. The package ships two builds of the same engine (one
// wasm-bindgen glue, wasm/llama_webgpu.js, fits both: scripts/build-pkg.sh checks it):
//   wasm/llama_webgpu_bg.wasm          simd128 (every browser with WebAssembly SIMD)
//   wasm/llama_webgpu_relaxed_bg.wasm  + relaxed SIMD (Chrome 114+): the int8 CPU kernels'
//                                      4-byte dot in one instruction
// A module with a relaxed SIMD opcode fails validation where the browser lacks it, so
// `WebAssembly.validate` of a tiny one picks the build. engine.js instantiates the pick; its
// shard workers instantiate the module it compiled, so every thread runs the same build.

/**
 * `(func (param v128 v128 v128) (result v128) local.get 0 local.get 1 local.get 2
 *  i32x4.relaxed_dot_i8x16_i7x16_add_s)`: the opcode the int8 kernels use (0xfd 0x113).
 */
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b, // types: (v128 v128 v128) -> v128
  0x03, 0x02, 0x01, 0x00, // functions: one of type 0
  0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfd, 0x93, 0x02, 0x0b, // code
]);

/** Whether this browser validates relaxed SIMD. */
export function relaxedSimdSupported() {
  try {
    return WebAssembly.validate(RELAXED_PROBE);
  } catch {
    return false;
  }
}

/** @typedef {"relaxed-simd" | "simd128"} WasmSimd */

/**
 * The engine build to run: relaxed SIMD where the browser has it, unless `simd` is "simd128"
 * (the LoadOptions of that name; tests and comparisons force the fallback with it).
 * @param {string | undefined} simd "auto" (default) or "simd128"
 * @returns {{ simd: WasmSimd, url: URL }}
 */
export function engineWasm(simd = "auto") {
  // each URL a literal `new URL(…, import.meta.url)`: bundlers copy both files
  if (simd !== "simd128" && relaxedSimdSupported()) return { simd: "relaxed-simd", url: new URL("./wasm/llama_webgpu_relaxed_bg.wasm", import.meta.url) };
  return { simd: "simd128", url: new URL("./wasm/llama_webgpu_bg.wasm", import.meta.url) };
}
