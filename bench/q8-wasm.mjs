// The integer-dot kernels in wasm, one thread, outside the browser: `crate/examples/q8_bench.rs`
// compiled to wasm32-wasip1 (the relaxed SIMD build and the simd128 one, as the package ships
// them) and run under node's V8, which compiles wasm SIMD as Chrome does. A kernel change can
// be timed in seconds here, where the page benchmark (bench/browser-cpu.mjs) needs a model load.
//   node bench/q8-wasm.mjs [--build relaxed,simd128] [REPS [TOKENS]]
// Environment: Q8_BENCH_ONLY / Q8_BENCH_SIMD / Q8_BENCH_INT8_ONLY as for the native example, and
// Q8_BENCH_WASM_DOT=i16|i32 to fix the integer dot each build otherwise measures and picks
// (crate/src/cpu/q8/wasm.rs). The kernels are checked against the scalar ones before they run.
// Chrome's V8 is newer than node's: figures here guide, bench/browser-cpu.mjs decides.
import { WASI } from "node:wasi";
import { readFileSync } from "node:fs";
import { execFileSync, spawnSync } from "node:child_process";

const args = process.argv.slice(2);
if (args[0] === "--run") {
  // one build, in its own process (the child below): WASI's exit ends it
  const [, file, build, ...rest] = args;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("Q8_BENCH")));
  const wasi = new WASI({ version: "preview1", args: ["q8_bench", ...rest], env });
  const { instance } = await WebAssembly.instantiate(readFileSync(file), { wasi_snapshot_preview1: wasi.wasiImport });
  console.log(`== ${build} build, node ${process.version}, V8 ${process.versions.v8}`);
  wasi.start(instance);
} else {
  const root = new URL("..", import.meta.url).pathname;
  const at = args.indexOf("--build");
  const builds = (at >= 0 ? args.splice(at, 2)[1] : "relaxed,simd128").split(",");
  const features = { relaxed: "+simd128,+relaxed-simd", simd128: "+simd128" };
  // node 20's V8 (11.3) has relaxed SIMD behind a flag. Its baseline compiler (Liftoff) also gets
  // the i32 relaxed dot wrong for Q4_1 (the kernel check fails there, and passes under TurboFan
  // and in Chrome 156), so that V8 runs TurboFan only.
  const flags = Number(process.versions.v8.split(".")[0]) < 12 ? ["--experimental-wasm-relaxed-simd", "--no-liftoff", "--no-warnings"] : [];
  execFileSync("rustup", ["target", "add", "wasm32-wasip1"], { stdio: "ignore" });
  for (const build of builds) {
    // a target folder per build: the two RUSTFLAGS would otherwise rebuild everything each time
    const target = `${root}target/wasi-${build}`;
    execFileSync("cargo", ["build", "-q", "--release", "--locked", "--example", "q8_bench", "--target", "wasm32-wasip1"], {
      cwd: root,
      stdio: "inherit",
      env: { ...process.env, CARGO_TARGET_DIR: target, RUSTFLAGS: `-C target-feature=${features[build]}` },
    });
    const wasm = `${target}/wasm32-wasip1/release/examples/q8_bench.wasm`;
    const r = spawnSync(process.execPath, [...flags, new URL(import.meta.url).pathname, "--run", wasm, build, ...args], { stdio: "inherit" });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
}
