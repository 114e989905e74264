// Shared browser-test plumbing: Debian's chromium, headless, with software WebGPU
// (SwiftShader), driven by playwright-core. Each browser gets a fresh profile, so OPFS and
// the Cache API start empty unless a test reuses the same context.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const ARGS = [
  "--enable-unsafe-webgpu",
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/** A persistent context (real OPFS/Cache storage) in a fresh profile dir; `close()` removes it. */
export async function launch({ viewport = { width: 1280, height: 800 } } = {}) {
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
