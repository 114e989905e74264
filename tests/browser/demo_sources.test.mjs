// The demo's model sources beyond one URL or file, in headless chromium on the CPU backend:
// hf: references (?model= and the URL box, against the mock Hub of tests/browser/hub.mjs via
// ?hub=), a split model's parts picked together as one model, a gated repo's explanation, and
// the Q3_K_M 8B preset in the picker.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { launch } from "./harness.mjs";
import { startHub } from "./hub.mjs";
import { startDemoServer } from "../../www/serve.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

const statusText = (page) => page.textContent('[data-testid="status"]');

async function waitSettled(page, timeout = 60_000) {
  await page.waitForFunction(
    () => /ready/.test(document.querySelector('[data-testid="status"]').textContent) || !document.getElementById("error-box").hidden,
    null,
    { timeout },
  );
  return page.$eval("#error-box", (e) => (e.hidden ? "" : e.textContent));
}

test("demo: hf: references, a split model's files, the gated explanation, the Q3_K_M preset", { timeout: 300_000 }, async (t) => {
  execFileSync("bash", [join(ROOT, "tests/make_split.sh")], { stdio: "inherit" });
  const demo = await startDemoServer({ port: 0 });
  const hub = await startHub({
    root: ROOT,
    repos: {
      "test-org/tiny-GGUF": { files: { "tiny-Q8_0.gguf": "tests/fixtures/tiny-q8_0.gguf", "tiny-Q4_0.gguf": "tests/fixtures/tiny-q4_0.gguf" } },
      "test-org/gated-GGUF": { gated: true, files: { "tiny-Q8_0.gguf": "tests/fixtures/tiny-q8_0.gguf" } },
    },
  });
  const b = await launch();
  const page = await b.page();
  try {
    await t.test("?model=hf:… loads through the Hub and stays in the address", async () => {
      const ref = "hf:test-org/tiny-GGUF/tiny-Q8_0.gguf";
      await page.goto(`${demo.url}?backend=cpu&hub=${encodeURIComponent(hub.origin)}&model=${encodeURIComponent(ref)}`);
      assert.equal(await waitSettled(page), "");
      assert.equal(new URL(page.url()).searchParams.get("model"), ref);
      assert.ok(hub.requests.some((r) => r.path === "/test-org/tiny-GGUF/resolve/main/tiny-Q8_0.gguf" && r.status === 302));
      assert.match(await page.textContent("#model-info"), /Source\s*network/);
    });

    await t.test("the URL box takes hf:owner/repo:QUANT", async () => {
      await page.fill("#model-url", "hf:test-org/tiny-GGUF:Q4_0");
      await page.press("#model-url", "Enter");
      await page.waitForFunction(() => /Q4_0/.test(new URL(location.href).searchParams.get("model") ?? ""));
      assert.equal(await waitSettled(page), "");
      assert.ok(hub.requests.some((r) => r.path === "/api/models/test-org/tiny-GGUF/tree/main"), "the repo was listed");
      assert.ok(hub.requests.some((r) => r.path === "/test-org/tiny-GGUF/resolve/main/tiny-Q4_0.gguf"), "its Q4_0 file loaded");
    });

    await t.test("a split model's parts picked together load as one model", async () => {
      const parts = [3, 1, 2].map((k) => join(ROOT, `tests/.cache/split/tiny-0000${k}-of-00003.gguf`));
      await page.setInputFiles('[data-testid="file-input"]', parts);
      await page.waitForFunction(() => /local file/.test(document.querySelector('[data-testid="status"]').textContent), null, { timeout: 60_000 });
      assert.equal(await waitSettled(page), "");
      assert.match(await page.textContent("#model-info"), /Parts\s*3 \(a split GGUF\)/);
    });

    await t.test("a gated repo gets its own explanation", async () => {
      await page.fill("#model-url", "hf:test-org/gated-GGUF/tiny-Q8_0.gguf");
      await page.press("#model-url", "Enter");
      const err = await waitSettled(page);
      assert.match(err, /gated on Hugging Face/);
      assert.match(await statusText(page), /Could not load/);
    });

    await t.test("the picker offers Llama 3.1 8B Q3_K_M by its hf: reference", async () => {
      const opts = await page.$$eval("#preset option", (os) => os.map((o) => o.textContent));
      assert.ok(opts.some((o) => /Llama 3\.1 8B Instruct · Q3_K_M/.test(o)), JSON.stringify(opts));
      const { PRESETS } = await import("../../www/presets.js");
      const p = PRESETS.find((x) => x.quant === "Q3_K_M");
      assert.equal(p.url, "hf:bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/Meta-Llama-3.1-8B-Instruct-Q3_K_M.gguf");
    });
  } finally {
    if (process.exitCode) console.log(b.logs.slice(-40).join("\n"));
    await b.close();
    await hub.close();
    await demo.close();
  }
});

test("the demo explains split-model and Hub errors", async () => {
  const llama = await import("../../pkg/index.js");
  const { describeError } = await import("../../www/error-help.js");
  const cases = [
    [new llama.SplitModelError("split model: part 2 of 3 is missing"), /do not add up/, /every part/],
    [new llama.ModelNotFoundError("o/r@main was not found", 404), /Not found on Hugging Face/, /hf:owner\/repo:Q4_K_M/],
    [new llama.GatedModelError("o/r is gated", 401), /gated on Hugging Face/, /ungated/],
    // as the worker sends them: plain {code, message}
    [{ code: "split_model", message: "x" }, /do not add up/, /every part/],
  ];
  for (const [e, title, help] of cases) {
    const d = describeError(e, {});
    assert.match(d.title, title);
    assert.match(d.help.join(" "), help);
  }
});
