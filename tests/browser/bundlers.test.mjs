// The package as apps consume it: imported by name ("llama-webgpu") into a small app built
// with Vite and with webpack 5, then run in the browser. Bundlers must find the worker and
// the .wasm through `new URL(..., import.meta.url)`; no init() call in the app.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launch } from "./harness.mjs";
import { startServer } from "./server.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const MODEL = "/tests/fixtures/tiny-q8_0.gguf";
let dir, browser, fixtures;

const APP = `import { loadModel } from "llama-webgpu";
window.run = async (url, prompt, useWorker) => {
  const model = await loadModel(url, { useWorker });
  const tokens = [];
  for await (const c of model.generate(prompt, { maxTokens: 8 })) if (c.token !== null) tokens.push(c.token);
  await model.dispose();
  return tokens;
};
document.body.dataset.ready = "yes";
`;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "lw-bundlers-"));
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(join(ROOT, "pkg"), join(dir, "node_modules/llama-webgpu"), "dir");
  mkdirSync(join(dir, "src"));
  writeFileSync(join(dir, "src/main.js"), APP);
  writeFileSync(join(dir, "index.html"), `<!doctype html><html><body><script type="module" src="/src/main.js"></script></body></html>`);
  fixtures = await startServer({ root: ROOT });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await fixtures?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Opens the built app from its own origin and runs the same greedy generation both ways. */
async function runApp(distDir, page = "index.html") {
  const app = await startServer({ root: distDir });
  try {
    const p = await browser.context.newPage();
    await p.goto(`${app.origin}/${page}`);
    await p.waitForSelector("body[data-ready=yes]", { state: "attached", timeout: 30000 });
    const url = `${fixtures.origin}${MODEL}`;
    const prompt = [315, 76, 59, 132, 137];
    const worker = await p.evaluate(([u, pr]) => window.run(u, pr, true), [url, prompt]);
    const inPage = await p.evaluate(([u, pr]) => window.run(u, pr, false), [url, prompt]);
    await p.close();
    return { worker, inPage };
  } finally {
    await app.close();
  }
}

/** The same generation through the package's own files, no bundler. */
async function reference() {
  const p = await browser.context.newPage();
  await p.goto(`${fixtures.origin}/tests/browser/page.html`);
  const t = await p.evaluate(async (url) => {
    const { loadModel } = await import("/pkg/index.js");
    const m = await loadModel(url);
    const out = [];
    for await (const c of m.generate([315, 76, 59, 132, 137], { maxTokens: 8 })) if (c.token !== null) out.push(c.token);
    await m.dispose();
    return out;
  }, `${fixtures.origin}${MODEL}`);
  await p.close();
  return t;
}

test("a Vite production build of an app importing llama-webgpu runs in the browser", async () => {
  const { build } = await import("vite");
  await build({ root: dir, logLevel: "error", build: { outDir: join(dir, "dist-vite") }, worker: { format: "es" } });
  const r = await runApp(join(dir, "dist-vite"));
  const ref = await reference();
  assert.equal(ref.length, 8);
  assert.deepEqual(r.worker, ref);
  assert.deepEqual(r.inPage, ref);
});

test("a webpack 5 build of an app importing llama-webgpu runs in the browser", async () => {
  const webpack = (await import("webpack")).default;
  const out = join(dir, "dist-webpack");
  const stats = await new Promise((resolve, reject) =>
    webpack(
      {
        mode: "production",
        context: dir,
        entry: "./src/main.js",
        output: { path: out, filename: "main.js", publicPath: "auto" },
        performance: { hints: false },
      },
      (err, s) => (err ? reject(err) : resolve(s)),
    ),
  );
  assert.ok(!stats.hasErrors(), stats.toString("errors-only"));
  writeFileSync(join(out, "index.html"), `<!doctype html><html><body><script src="main.js"></script></body></html>`);
  const r = await runApp(out);
  const ref = await reference();
  assert.deepEqual(r.worker, ref);
  assert.deepEqual(r.inPage, ref);
});
