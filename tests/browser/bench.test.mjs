// The browser bench page runs end to end and reports the same work per token as the native
// bench (speed itself is a benchmark's business, not a test's).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const MODEL = "tests/fixtures/tiny-q4_k_m.gguf";

test("bench page: rates and bytes per token, equal to the native bench's accounting", () => {
  const run = (cmd, args) => JSON.parse(execFileSync(cmd, args, { cwd: ROOT, encoding: "utf8", maxBuffer: 16 << 20, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR || "/tmp" } }).trim().split("\n").pop());
  const web = run("node", ["bench/browser.mjs", "--model", `/${MODEL}`, "--prompt", "16", "--gen", "8", "--bandwidth", "100"]);
  const native = run("cargo", ["run", "-q", "--locked", "--bin", "llama-webgpu", "--", "bench", "--model", MODEL, "--prompt-tokens", "16", "--gen-tokens", "8", "--precision", "f32", "--json"]);
  for (const k of ["prefill_tokens_per_s", "decode_tokens_per_s", "first_token_s", "load_s"]) assert.ok(web[k] > 0, `${k} = ${web[k]}`);
  assert.equal(web.precision, "f32");
  assert.equal(web.weight_bytes_per_token, native.weight_bytes_per_token);
  assert.equal(web.dispatches_per_token, native.dispatches_per_token);
  assert.ok(Math.abs(web.roofline_tokens_per_s - 100e9 / web.weight_bytes_per_token) < 1e-6);
  assert.ok(web.peak_wasm_memory_bytes > 0);
});
