// Shared browser-test plumbing: Debian's chromium, headless, with software WebGPU
// (SwiftShader), driven by playwright-core. Each browser gets a fresh profile, so OPFS and
// the Cache API start empty unless a test reuses the same context.
import { chromium } from "playwright-core";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startServer } from "./server.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
/** The test build the browser tests load (served as /tests/.cache/pkg-test/). */
export const TEST_PKG = join(ROOT, "tests/.cache/pkg-test");

/**
 * The test build, current: its wasm (built with the cargo feature test-hooks) comes from
 * `scripts/build-pkg.sh --test`; its JS is pkg/'s, copied again here so an edit to pkg/*.js
 * needs no rebuild (hooks.js, the file that switches the hooks on, is the build's own).
 */
export function ensureTestPkg() {
  if (!existsSync(join(TEST_PKG, "wasm/llama_webgpu_bg.wasm")) || !existsSync(join(TEST_PKG, "hooks.js"))) {
    throw new Error(`${TEST_PKG} is missing: run \`bash scripts/build-pkg.sh --test\` first (npm run test:browser does)`);
  }
  for (const f of readdirSync(join(ROOT, "pkg"))) {
    if ((f.endsWith(".js") || f.endsWith(".d.ts") || f === "package.json") && f !== "hooks.js") copyFileSync(join(ROOT, "pkg", f), join(TEST_PKG, f));
  }
}

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const ARGS = [
  "--enable-unsafe-webgpu",
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  // extra flags for a benchmark or a profile, e.g. CHROMIUM_ARGS="--js-flags=--perf-basic-prof"
  ...(process.env.CHROMIUM_ARGS ?? "").split(" ").filter(Boolean),
];

/** A persistent context (real OPFS/Cache storage) in a fresh profile dir; `close()` removes it. */
export async function launch({ viewport = { width: 1280, height: 800 } } = {}) {
  // tests that load the engine need the test build; the loader's tests do not
  if (existsSync(join(TEST_PKG, "hooks.js"))) ensureTestPkg();
  else console.warn(`note: ${TEST_PKG} is missing (bash scripts/build-pkg.sh --test builds it)`);
  const dir = mkdtempSync(join(tmpdir(), "lw-chrome-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport,
  });
  const logs = [];
  const watch = (page) => {
    page.on("console", (m) => logs.push(`[${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => logs.push(`[pageerror] ${e.message}`));
  };
  context.on("page", watch);
  context.pages().forEach(watch);
  return {
    context,
    logs,
    async page() {
      const p = context.pages()[0] || (await context.newPage());
      return p;
    },
    async close() {
      await context.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A float32 `.npy` file (the fixtures' transformers logits): its shape and values. */
export function readNpy(path) {
  const b = readFileSync(path);
  const hlen = b.readUInt16LE(8);
  const header = b.subarray(10, 10 + hlen).toString("latin1");
  if (!/'descr': '<f4'/.test(header)) throw new Error(`${path}: not a little-endian float32 .npy`);
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(",").filter((s) => s.trim()).map(Number);
  return { shape, data: new Float32Array(b.buffer.slice(b.byteOffset + 10 + hlen, b.byteOffset + b.length)) };
}

/** Population standard deviation. */
export function std(a) {
  let m = 0;
  for (const x of a) m += x;
  m /= a.length;
  let v = 0;
  for (const x of a) v += (x - m) ** 2;
  return Math.sqrt(v / a.length);
}

/**
 * Runs `fn(lib, arg)` in `page` with the test package imported as `lib`; a throw comes back as
 * `{ thrown: { name, code, message, status, typed } }` (errors do not cross page.evaluate whole;
 * `typed`: an instance of the package's LlamaWebGPUError).
 */
export function evalWithLib(page, fn, arg) {
  return page.evaluate(
    async ([src, arg]) => {
      const lib = await import("/tests/.cache/pkg-test/index.js");
      const f = new Function(`return (${src})`)();
      try {
        return await f(lib, arg);
      } catch (e) {
        return { thrown: { name: e.name, code: e.code, message: e.message, status: e.status, typed: e instanceof lib.LlamaWebGPUError } };
      }
    },
    [fn.toString(), arg],
  );
}

/**
 * The package's test page in a fresh browser, with the repository and SmolLM2's folder
 * (`SMOLLM2_GGUF`, set by scripts/setup.sh) served; `close()` ends all three, printing the
 * browser's last log lines when a test failed.
 */
export async function openTestPage() {
  const smollm2 = process.env.SMOLLM2_GGUF;
  if (!smollm2) throw new Error("SMOLLM2_GGUF is not set: scripts/setup.sh sets it");
  const server = await startServer({ root: ROOT });
  const smol = await startServer({ root: dirname(smollm2) });
  const browser = await launch();
  const page = await browser.page();
  await page.goto(`${server.origin}/tests/browser/page.html`);
  const close = async () => {
    if (process.exitCode) console.log(browser.logs.slice(-40).join("\n"));
    await browser.close();
    await server.close();
    await smol.close();
  };
  return { server, smol, browser, page, close };
}

/** Headers that make a page cross-origin isolated (SharedArrayBuffer, Atomics.wait in workers). */
export const ISOLATION = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" };

/** The test page in a new tab of `browser`, from a server of the repository that sends [`ISOLATION`]. */
export async function openIsolatedPage(browser) {
  const server = await startServer({ root: ROOT, headers: ISOLATION });
  const page = await browser.context.newPage();
  await page.goto(`${server.origin}/tests/browser/page.html`);
  return { server, page };
}

/**
 * Runs `msg` in a fresh tests/browser/instances-worker.mjs on `page` (the package's engine in a
 * worker of its own, reporting each wasm instance's weights and memory); its last message.
 */
export function inInstancesWorker(page, msg) {
  return page.evaluate(
    (msg) =>
      new Promise((resolve) => {
        const w = new Worker("/tests/browser/instances-worker.mjs", { type: "module" });
        w.onmessage = ({ data }) => {
          w.terminate();
          resolve(data);
        };
        w.onerror = (e) => resolve({ type: "error", message: e.message });
        w.postMessage(msg);
      }),
    msg,
  );
}
