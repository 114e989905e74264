// The package as apps consume it: imported by name ("llama-webgpu") into a small app built
// with Vite and with webpack 5, then run in the browser. Bundlers must find the worker and
// the .wasm through `new URL(..., import.meta.url)`; no init() call in the app. Minified, the
// error classes keep their names (e.name === "AbortError"), and the published package's wasm
// glue has no test-trap export.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, rmSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launch, TEST_PKG } from "./harness.mjs";
import { startServer } from "./server.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const MODEL = "/tests/fixtures/tiny-q8_0.gguf";
let dir, browser, fixtures;

const APP = `import * as lib from "llama-webgpu";
const { loadModel } = lib;
// every exported error class's name, and the names of errors thrown on the page and in the worker
window.names = async (notGguf) => {
  const out = { classes: {} };
  for (const [k, C] of Object.entries(lib)) {
    if (typeof C === "function" && (C === lib.LlamaWebGPUError || C.prototype instanceof lib.LlamaWebGPUError)) out.classes[k] = new C("m").name;
  }
  const ctl = new AbortController();
  ctl.abort();
  const name = (p) => p.then(() => "no error", (e) => e.name + (e instanceof lib.LlamaWebGPUError ? "" : " (untyped)"));
  out.abort = await name(loadModel(notGguf, { signal: ctl.signal }));
  out.invalidModel = await name(loadModel(notGguf));
  out.invalidModelPage = await name(loadModel(notGguf, { useWorker: false }));
  out.invalidArgument = await name(loadModel(notGguf, { backend: "tpu" }));
  out.log = String(new lib.AbortError("stopped"));
  return out;
};
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
    const names = await p.evaluate((u) => window.names(u), `${fixtures.origin}/tests/browser/page.html`);
    await p.close();
    return { worker, inPage, names };
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

/** The error names after minification are the classes' own. */
function checkNames(names, bundler) {
  const classes = Object.entries(names.classes);
  assert.ok(classes.length >= 15, `${bundler}: ${classes.length} error classes exported`);
  for (const [k, name] of classes) assert.equal(name, k, `${bundler}: new ${k}().name`);
  assert.equal(names.abort, "AbortError", bundler);
  assert.equal(names.invalidModel, "InvalidModelError", bundler);
  assert.equal(names.invalidModelPage, "InvalidModelError", bundler);
  assert.equal(names.invalidArgument, "InvalidArgumentError", bundler);
  assert.equal(names.log, "AbortError: stopped", bundler);
}

/** Every file under `dir`, recursively. */
function files(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)]));
}

test("the published package's wasm glue has no test-trap export (the test build has)", () => {
  const glue = readFileSync(join(ROOT, "pkg/wasm/llama_webgpu.js"), "utf8");
  assert.ok(glue.includes("export function loadEngine"), "pkg/wasm/llama_webgpu.js is the engine's glue");
  assert.doesNotMatch(glue, /testTrap/);
  assert.doesNotMatch(readFileSync(join(ROOT, "pkg/wasm/llama_webgpu.d.ts"), "utf8"), /testTrap/);
  assert.match(readFileSync(join(ROOT, "pkg/hooks.js"), "utf8"), /TEST_HOOKS = false/);
  // the test build is the same glue with the traps: the check above can fail
  assert.match(readFileSync(join(TEST_PKG, "wasm/llama_webgpu.js"), "utf8"), /export function testTrapSync/);
});

test("a Vite production build of an app importing llama-webgpu runs in the browser", async () => {
  const { build } = await import("vite");
  await build({ root: dir, logLevel: "error", build: { outDir: join(dir, "dist-vite") }, worker: { format: "es" } });
  const r = await runApp(join(dir, "dist-vite"));
  checkNames(r.names, "vite");
  for (const f of files(join(dir, "dist-vite"))) if (/\.js$/.test(f)) assert.doesNotMatch(readFileSync(f, "utf8"), /testTrap/, f);
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
  checkNames(r.names, "webpack");
  const ref = await reference();
  assert.deepEqual(r.worker, ref);
  assert.deepEqual(r.inPage, ref);
});
