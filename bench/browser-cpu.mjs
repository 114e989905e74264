// Browser CPU benchmark, one headless chromium, one page setup (served from 127.0.0.1,
// cross-origin isolated so that wasm threads / SharedArrayBuffer are allowed):
//   ours: www/bench.html?backend=cpu  (the wasm CPU backend: the relaxed SIMD build, and with
//         --simd auto,simd128 the simd128 one too; threads > 1: row-shard workers)
//   peer: bench/cpu/wllama.html      (wllama, bench/cpu/package.json's version: llama.cpp's
//         wasm CPU path, n_threads)
// for each thread count, one after the other. Prints a markdown table and the JSON results.
//   node bench/browser-cpu.mjs [--model URL|FILE] [--prompt 64] [--gen 32] [--threads 1,2]
//                              [--cpu-dot exact,int8] [--simd auto,simd128] [--pkg DIR]
//                              [--reps 1] [--peer 1] [--lead 1000,800]
// --model FILE (a local GGUF) is served at /models/NAME, where both pages fetch it; --pkg
// serves another build of the package (e.g. tests/.cache/pkg-test) at /pkg/. --reps N runs
// the thread counts N times, alternating (1, 2, 1, 2, …: on a shared machine the ratio of
// neighbours is what holds); --peer 0 leaves wllama out; --lead runs threads > 1 with each
// weight of part 0 in the row split (pkg/shards.js LEAD). Each row has the load average.
import { startDemoServer } from "../www/serve.mjs";
import { launch } from "../tests/browser/harness.mjs";
import { existsSync } from "node:fs";
import { basename, resolve } from "node:path";
import { execFileSync } from "node:child_process";
import { loadavg } from "node:os";

const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : d);
const here = new URL(".", import.meta.url).pathname;
if (!existsSync(`${here}cpu/node_modules/@wllama/wllama`)) {
  execFileSync("npm", ["install", "--omit=optional", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: `${here}cpu`, stdio: "inherit" });
}
let model = opt("model");
const models = {};
if (model && existsSync(model)) {
  const route = `/models/${basename(model)}`;
  models[route] = resolve(model);
  model = route;
}
const pkgDir = opt("pkg") ? { pkgDir: resolve(opt("pkg")) } : {};
const server = await startDemoServer({ port: 0, models, ...pkgDir, roots: { bench: new URL(".", import.meta.url).pathname, tests: new URL("../tests", import.meta.url).pathname } }); // bench/ (its pages, out/) and tests/ (fixtures) too
// cross-origin isolation (SharedArrayBuffer, wasm threads) for every page of this run
server.server.prependListener("request", (_req, res) => {
  res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
  res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
});
const origin = server.origin ?? `http://127.0.0.1:${server.port}`;
const b = await launch();
const rows = [];
try {
  const page = await b.page();
  const base = { prompt: opt("prompt", "64"), gen: opt("gen", "32") };
  if (model) base.model = model;
  const runPage = async (path, extra) => {
    await page.goto(`${origin}${path}?${new URLSearchParams({ ...base, ...extra })}`);
    await page.waitForFunction(() => window.benchResult, null, { timeout: 30 * 60 * 1000, polling: 500 });
    const r = await page.evaluate(() => window.benchResult);
    if (r.error) throw new Error(`${path}: ${r.error}`);
    return r;
  };
  const withPeer = opt("peer", "1") !== "0";
  const load = () => loadavg()[0];
  for (let rep = 0; rep < Number(opt("reps", "1")); rep++) {
    for (const threads of opt("threads", "1,2").split(",").map(Number)) {
      const peer = withPeer ? { ...(await runPage("/bench/cpu/wllama.html", { threads: String(threads) })), load: load() } : null;
      if (peer) console.error(JSON.stringify({ threads, peer }));
      const ours = [];
      for (const cpuDot of opt("cpu-dot", "exact").split(",")) {
        for (const simd of opt("simd", "auto").split(",")) {
          for (const lead of threads > 1 ? opt("lead", "").split(",") : [""]) {
            const r = await runPage("/www/bench.html", { backend: "cpu", threads: String(threads), cpuDot, simd, ...(lead ? { lead } : {}) });
            r.load = load();
            r.lead = lead || null;
            console.error(JSON.stringify({ threads, cpuDot, simd, lead, ours: r }));
            ours.push(r);
          }
        }
      }
      rows.push({ rep, threads, ours, peer });
    }
  }
} finally {
  await b.close();
  await server.close?.();
}
const f = (x) => (typeof x === "number" && isFinite(x) ? x.toFixed(2) : "n/a");
// sync µs: one matmul's round trip to the shard workers (an empty job), measured after the run;
// per token (ms): the engine's own rows / its wait for the shards / its work between jobs, and
// the shards' busy / idle time (shard_stats)
console.log("| rep | threads asked | engine | threads used | prefill tok/s | decode tok/s | decode ours/peer | sync µs | ms/token: own / wait / between; shard busy / idle | load |");
console.log("|---:|---:|---|---:|---:|---:|---:|---:|---|---:|");
for (const { rep, threads, ours, peer } of rows) {
  for (const o of ours) {
    const sync = o.shard_sync_us != null ? `${f(o.shard_sync_us)} × ${o.shard_syncs_per_token}/token` : "–";
    const st = o.shard_stats;
    const split = st ? `${f(st.own_ms)} / ${f(st.wait_ms)} / ${f(st.between_ms)}; ${st.shards.map((s) => `${f(s.busy_ms)} / ${f(s.idle_ms)}`).join(", ")} (${f(st.jobs)} jobs, ${f(st.blocked)} slept)` : `${f(1000 / o.decode_tokens_per_s)} in all`;
    const ratio = peer ? f(o.decode_tokens_per_s / peer.decode_tokens_per_s) : "–";
    const lead = o.lead ? `, lead ${o.lead}` : "";
    console.log(`| ${rep} | ${threads} | llama-webgpu cpu (${o.adapter}${lead}) | ${o.threads} | ${f(o.prefill_tokens_per_s)} | ${f(o.decode_tokens_per_s)} | ${ratio} | ${sync} | ${split} | ${f(o.load)} |`);
  }
  if (peer) console.log(`| ${rep} | ${threads} | ${peer.engine} | ${peer.threads} | ${f(peer.prefill_tokens_per_s)} | ${f(peer.decode_tokens_per_s)} | 1.00 | | | ${f(peer.load)} |`);
}
console.log(JSON.stringify(rows));
