// Split GGUF in the package, in chromium on the CPU backend: SmolLM2 cut into 3 parts by
// llama.cpp's llama-gguf-split --split-max-tensors 100 (tests/make_split.sh) gives the whole
// file's greedy tokens from the URL of part 1 (the others found by name), from a list of URLs in
// any order, and from Files (an <input type=file multiple>); each part is cached under its own
// URL and an interrupted download resumes part by part; a missing, duplicated or mismatched part
// is a SplitModelError.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { evalWithLib, openTestPage } from "./harness.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const SMOLLM2 = process.env.SMOLLM2_GGUF;
const PARTS = [1, 2, 3].map((i) => join(ROOT, `tests/.cache/split/smollm2-0000${i}-of-00003.gguf`));
const PROMPT = [504, 3575, 282, 4649, 314, 7042, 30];
const STEPS = 12;

let page, server, smol, close;

const inPage = (fn, arg) => evalWithLib(page, fn, arg);

/** Greedy tokens of `source` (URL, URLs, or "files": the <input>'s Files), and what loaded. */
async function greedy(source, opts = {}) {
  return inPage(
    async (lib, { source, prompt, steps, opts }) => {
      const src = source === "files" ? [...document.querySelector("#parts").files] : source;
      const model = await lib.loadModel(src, { backend: "cpu", contextLength: 64, ...opts });
      const tokens = [];
      for await (const c of model.generate(prompt, { maxTokens: steps })) tokens.push(c.token);
      const out = { tokens, info: { parts: model.info.parts, source: model.info.source, fromCache: model.info.fromCache, parameters: model.info.parameters } };
      await model.dispose();
      return out;
    },
    { source, prompt: PROMPT, steps: STEPS, opts },
  );
}

before(async () => {
  assert.ok(SMOLLM2, "SMOLLM2_GGUF is set by scripts/setup.sh");
  execFileSync("bash", [join(ROOT, "tests/make_split.sh")], { stdio: "inherit" });
  ({ server, smol, page, close } = await openTestPage());
});

after(() => close?.());

const partUrl = (i, q = "") => `${server.origin}/tests/.cache/split/${basename(PARTS[i])}${q}`;
const partPath = (i) => `/tests/.cache/split/${basename(PARTS[i])}`;

test("3 parts give the whole file's greedy tokens: from part 1's URL, from a list in any order, from Files", async () => {
  const whole = await greedy(`${smol.origin}/${basename(SMOLLM2)}`, { cache: false });
  assert.ok(!whole.thrown, JSON.stringify(whole.thrown));
  assert.equal(whole.tokens.length, STEPS);
  assert.equal(whole.info.parts, null);

  const first = await greedy(partUrl(0, "?t=first"), { cache: false });
  assert.ok(!first.thrown, JSON.stringify(first.thrown));
  assert.deepEqual(first.tokens, whole.tokens, "from the first part's URL");
  assert.deepEqual(first.info.parts, [0, 1, 2].map((i) => partUrl(i, "?t=first")), "the others found by name");
  assert.equal(first.info.parameters, whole.info.parameters);

  const listed = await greedy([2, 0, 1].map((i) => partUrl(i, "?t=list")), { cache: false });
  assert.ok(!listed.thrown, JSON.stringify(listed.thrown));
  assert.deepEqual(listed.tokens, whole.tokens, "from the URLs in the order 3, 1, 2");

  await page.evaluate(() => {
    const i = document.createElement("input");
    i.type = "file";
    i.multiple = true;
    i.id = "parts";
    document.body.append(i);
  });
  await page.setInputFiles("#parts", [PARTS[1], PARTS[0], PARTS[2]]);
  const files = await greedy("files");
  assert.ok(!files.thrown, JSON.stringify(files.thrown));
  assert.deepEqual(files.tokens, whole.tokens, "from Files");
  assert.deepEqual(files.info.parts, [PARTS[1], PARTS[0], PARTS[2]].map((p) => basename(p)));
});

test("each part is cached under its own URL, and an interrupted download resumes part by part", async () => {
  const q = "?t=resume";
  const sizes = PARTS.map((p) => statSync(p).size);
  const CS = 1 << 20;
  // the download hangs inside part 2 and the load is aborted there. `every`: the chunk cache
  // reads one chunk ahead and keeps 4, so a stalled read-ahead can be dropped and fetched again
  // by a later read; that request must hang too, or the load sometimes finishes before the abort
  server.resetStats();
  server.stallAfterBytes(partPath(1), 10 * CS + 1234, { every: true });
  await inPage(
    async (lib, { url, cs }) => {
      window.ac = new AbortController();
      window.pending = lib.loadModel(url, { backend: "cpu", contextLength: 64, chunkBytes: cs, signal: window.ac.signal }).then(
        (m) => m.dispose().then(() => ({ loaded: true })),
        (e) => ({ name: e.name }),
      );
      return null;
    },
    { url: partUrl(0, q), cs: CS },
  );
  const t0 = Date.now();
  while ((server.stats.bytes[partPath(1)] ?? 0) < 10 * CS + 1234) {
    assert.ok(Date.now() - t0 < 60_000, `part 2 reached ${server.stats.bytes[partPath(1)]} bytes`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 500)); // cache writes of the chunks that arrived
  const aborted = await page.evaluate(async () => {
    window.ac.abort();
    return await window.pending;
  });
  assert.equal(aborted.name, "AbortError", JSON.stringify(aborted));
  server.stallAfterBytes(partPath(1), null);
  const cached = await inPage(async (lib) => lib.listCachedModels());
  const entry = (i) => cached.find((m) => m.url === partUrl(i, q));
  assert.equal(entry(0)?.complete, true, `part 1 cached whole: ${JSON.stringify(cached)}`);
  assert.equal(entry(1)?.complete, false);
  assert.ok(entry(1).cachedBytes >= 8 * CS, `part 2 partly cached: ${entry(1).cachedBytes}`);

  // the next load fetches only what is missing, part by part
  server.resetStats();
  const again = await greedy(partUrl(0, q), { chunkBytes: CS });
  assert.ok(!again.thrown, JSON.stringify(again.thrown));
  const bytes = (i) => server.stats.bytes[partPath(i)] ?? 0;
  assert.equal(bytes(0), 0, "part 1 came from the cache");
  assert.ok(bytes(1) <= sizes[1] - entry(1).cachedBytes + CS, `part 2: ${bytes(1)} bytes fetched, ${entry(1).cachedBytes} were cached`);
  assert.ok(bytes(2) <= sizes[2], `part 3: ${bytes(2)}`);
  const after = await inPage(async (lib) => lib.listCachedModels());
  for (let i = 0; i < 3; i++) assert.equal(after.find((m) => m.url === partUrl(i, q))?.complete, true, `part ${i + 1} complete`);

  // all from the cache now, tokens unchanged
  server.resetStats();
  const cachedRun = await greedy(partUrl(0, q));
  assert.deepEqual(cachedRun.tokens, again.tokens);
  assert.equal(cachedRun.info.fromCache, true);
  assert.equal(PARTS.reduce((n, _, i) => n + bytes(i), 0), 0, "no part fetched");
});

test("a missing, duplicated or mismatched part is a SplitModelError", async () => {
  const tinyPart = `${server.origin}/tests/.cache/split/tiny-00002-of-00003.gguf`;
  const r = await inPage(
    async (lib, { cases }) => {
      const out = [];
      for (const src of cases) {
        try {
          const m = await lib.loadModel(src, { backend: "cpu", cache: false });
          await m.dispose();
          out.push(null);
        } catch (e) {
          out.push({ name: e.name, message: e.message });
        }
      }
      return out;
    },
    {
      cases: [
        // part 2 is not on the server
        `${server.origin}/tests/.cache/split-missing/smollm2-00001-of-00003.gguf`,
        // a list without part 3
        [partUrl(0), partUrl(1)],
        // part 2 twice
        [partUrl(0), partUrl(1), partUrl(1)],
        // a part of another model's split
        [partUrl(0), tinyPart, partUrl(2)],
        // part 1 alone, under another name: the others cannot be found
        `${server.origin}/tests/.cache/split-missing/renamed.gguf`,
      ],
    },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  const want = [/part 2 of 3 .*missing/, /part 3 .*missing|missing.*part 3/i, /part 2 .*(twice|duplicate)|duplicate.*part 2/i, /tensors/, /part 1 of a model in 3 files/];
  want.forEach((re, i) => {
    assert.equal(r[i]?.name, "SplitModelError", `case ${i}: ${JSON.stringify(r[i])}`);
    assert.match(r[i].message, re, `case ${i}`);
  });
});
