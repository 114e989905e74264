// Runs www/bench.html in headless chromium (WebGPU; software SwiftShader on machines without
// a GPU) against the demo server and prints the page's result as one JSON line.
//   node bench/browser.mjs [--model URL] [--prompt 64] [--gen 32] [--bandwidth GBPS] [--backend auto|webgpu|cpu]
import { startDemoServer } from "../www/serve.mjs";
import { launch } from "../tests/browser/harness.mjs";

const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : d);
const server = await startDemoServer({ port: 0, roots: { bench: new URL(".", import.meta.url).pathname, tests: new URL("../tests", import.meta.url).pathname } }); // bench/ (its pages, out/) and tests/ (fixtures) too
const origin = server.origin ?? `http://127.0.0.1:${server.port ?? server.address().port}`;
const b = await launch();
try {
  const page = await b.page();
  const q = new URLSearchParams({ prompt: opt("prompt", "64"), gen: opt("gen", "32") });
  if (opt("model")) q.set("model", opt("model"));
  for (const k of ["bandwidth", "backend"]) if (opt(k)) q.set(k, opt(k));
  await page.goto(`${origin}/www/bench.html?${q}`);
  await page.waitForFunction(() => window.benchResult, null, { timeout: 30 * 60 * 1000, polling: 1000 });
  const r = await page.evaluate(() => window.benchResult);
  if (r.error) throw new Error(r.error);
  console.error(await page.textContent("#result").then((t) => t.split("\n\n")[0]));
  console.log(JSON.stringify(r));
} finally {
  await b.close();
  await server.close?.();
}
