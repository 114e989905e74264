// Hugging Face references in the package, against a local mock of the Hub (tests/browser/hub.mjs:
// its tree API, resolve URLs that 302 to a CDN origin with x-linked-etag, and its 404 / gated
// 401 answers), in chromium on the CPU backend: "hf:owner/repo/file.gguf", {hfRepo, file,
// revision}, {hfRepo, quant} (one file, or a split model's parts) give the same greedy tokens
// as the file's own URL; a missing repo, revision, file or quant is a ModelNotFoundError, a
// gated repo a GatedModelError; a malformed reference an InvalidArgumentError.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { evalWithLib, launch } from "./harness.mjs";
import { startServer } from "./server.mjs";
import { startHub } from "./hub.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const tiny = JSON.parse(readFileSync(join(ROOT, "tests/fixtures/tiny.json"), "utf8"));
const PROMPT = tiny.tokens.slice(0, 12);
const STEPS = 16;

let browser, page, server, hub;

/** Runs `fn(lib, arg)` in the page with the package imported (harness.mjs). */
function inPage(fn, arg) {
  return evalWithLib(page, fn, arg);
}

/** Greedy tokens of each source (loaded with hubUrl = the mock), or the error each threw. */
async function runAll(sources) {
  return inPage(
    async (lib, { sources, prompt, steps, hubUrl }) => {
      const out = [];
      for (const source of sources) {
        try {
          const model = await lib.loadModel(source, { backend: "cpu", contextLength: 64, hubUrl, cache: false });
          const tokens = [];
          for await (const c of model.generate(prompt, { maxTokens: steps })) tokens.push(c.token);
          out.push({ tokens, source: model.info.source, parts: model.info.parts });
          await model.dispose();
        } catch (e) {
          out.push({ error: { name: e.name, message: e.message, status: e.status } });
        }
      }
      return out;
    },
    { sources, prompt: PROMPT, steps: STEPS, hubUrl: hub.origin },
  );
}

before(async () => {
  execFileSync("bash", [join(ROOT, "tests/make_split.sh")], { stdio: "inherit" });
  server = await startServer({ root: ROOT });
  const fx = (f) => `tests/fixtures/${f}`;
  hub = await startHub({
    root: ROOT,
    repos: {
      "test-org/tiny-GGUF": {
        files: { "tiny-Q8_0.gguf": fx("tiny-q8_0.gguf"), "tiny-F32.gguf": fx("tiny-f32.gguf"), "tiny-Q4_K_M.gguf": fx("tiny-q4_k_m.gguf"), "tiny-Q4_0.gguf": fx("tiny-q4_0.gguf") },
      },
      "test-org/tiny-split-GGUF": {
        revisions: ["main", "v1.0"],
        files: {
          ...Object.fromEntries([1, 2, 3].map((k) => [`Q8_0/tiny-Q8_0-0000${k}-of-00003.gguf`, `tests/.cache/split/tiny-0000${k}-of-00003.gguf`])),
          "tiny-F32.gguf": fx("tiny-f32.gguf"),
        },
      },
      "test-org/gated-GGUF": { gated: true, files: { "tiny-Q8_0.gguf": fx("tiny-q8_0.gguf") } },
      "test-org/gated-403-GGUF": { gated: 403, files: { "tiny-Q8_0.gguf": fx("tiny-q8_0.gguf") } },
    },
  });
  browser = await launch();
  page = await browser.page();
  await page.goto(`${server.origin}/tests/browser/page.html`);
});

after(async () => {
  if (process.exitCode && browser) console.log(browser.logs.slice(-40).join("\n"));
  await browser?.close();
  await server?.close();
  await hub?.close();
});

test("hf: references, {hfRepo, file}, and quants (one file or a split model) load the file the Hub serves", async () => {
  const r = await runAll([
    `${server.origin}/tests/fixtures/tiny-q8_0.gguf`,
    "hf:test-org/tiny-GGUF/tiny-Q8_0.gguf",
    { hfRepo: "test-org/tiny-GGUF", file: "tiny-Q8_0.gguf", revision: "main" },
    { hfRepo: "test-org/tiny-GGUF", quant: "q8_0" },
    "hf:test-org/tiny-GGUF:Q8_0",
    { hfRepo: "test-org/tiny-split-GGUF", quant: "Q8_0", revision: "v1.0" },
    "hf:test-org/tiny-split-GGUF/Q8_0/tiny-Q8_0-00001-of-00003.gguf",
    `${server.origin}/tests/fixtures/tiny-f32.gguf`,
    "hf:test-org/tiny-split-GGUF@v1.0:F32",
  ]);
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  r.forEach((x, i) => assert.ok(!x.error, `source ${i}: ${JSON.stringify(x.error)}`));
  const [direct] = r;
  assert.equal(direct.tokens.length, STEPS);
  for (let i = 1; i <= 6; i++) assert.deepEqual(r[i].tokens, direct.tokens, `source ${i}: tokens`);
  assert.deepEqual(r[8].tokens, r[7].tokens, "F32 by quant");
  assert.notDeepEqual(r[7].tokens.length, 0);
  assert.equal(r[1].source, `${hub.origin}/test-org/tiny-GGUF/resolve/main/tiny-Q8_0.gguf`);
  assert.equal(r[1].parts, null);
  // a quant of several parts is a split model; so is the first part's reference
  const parts = (rev) => [1, 2, 3].map((k) => `${hub.origin}/test-org/tiny-split-GGUF/resolve/${rev}/Q8_0/tiny-Q8_0-0000${k}-of-00003.gguf`);
  assert.deepEqual(r[5].parts, parts("v1.0"));
  assert.deepEqual(r[6].parts, parts("main"));
  // the Hub's way: the listing, then resolve → 302 to the CDN, which served the bytes
  const seen = (re, status) => hub.requests.some((q) => re.test(q.path) && q.status === status);
  assert.ok(seen(/^\/api\/models\/test-org\/tiny-GGUF\/tree\/main$/, 200), "listed the repo");
  assert.ok(seen(/^\/api\/models\/test-org\/tiny-split-GGUF\/tree\/v1\.0$/, 200), "listed the revision");
  assert.ok(seen(/^\/test-org\/tiny-GGUF\/resolve\/main\/tiny-Q8_0\.gguf$/, 302), "resolve redirected");
  assert.ok((hub.cdn.stats.bytes["/tests/fixtures/tiny-q8_0.gguf"] ?? 0) > 0, "the CDN served the file");
  assert.ok((hub.cdn.stats.bytes["/tests/.cache/split/tiny-00002-of-00003.gguf"] ?? 0) > 0, "the CDN served part 2");
});

test("the x-linked-etag / ETag SHA-256 from the Hub is checked: a CDN serving other bytes is an IntegrityError", async () => {
  // the Hub's digest is of the file it lists: one low bit flipped in the CDN's copy (in the
  // last tensor's quants, so the model itself still loads) must be caught
  hub.cdn.intercept("/tests/fixtures/tiny-q4_0.gguf", ({ res, start, end, size, file, headers, status }) => {
    const copy = Buffer.from(readFileSync(file).subarray(start, end + 1));
    const at = size - 100;
    if (at >= start && at <= end) copy[at - start] ^= 0x01;
    res.writeHead(status, headers);
    res.end(copy);
    return true;
  });
  const r = await runAll(["hf:test-org/tiny-GGUF/tiny-Q4_0.gguf"]);
  hub.cdn.intercept("/tests/fixtures/tiny-q4_0.gguf", null);
  assert.equal(r[0].error?.name, "IntegrityError", JSON.stringify(r[0]));
  assert.match(r[0].error.message, /SHA-256/i);
});

test("a missing repo, revision, file or quant is a ModelNotFoundError; a gated repo a GatedModelError; a bad reference an InvalidArgumentError", async () => {
  const r = await runAll([
    "hf:test-org/nope/tiny-Q8_0.gguf",
    { hfRepo: "test-org/nope", quant: "Q8_0" },
    { hfRepo: "test-org/tiny-GGUF", file: "missing.gguf" },
    { hfRepo: "test-org/tiny-GGUF", quant: "Q8_0", revision: "no-such-rev" },
    { hfRepo: "test-org/tiny-GGUF", quant: "Q4_K" },
    "hf:test-org/gated-GGUF/tiny-Q8_0.gguf",
    { hfRepo: "test-org/gated-GGUF", quant: "Q8_0" },
    "hf:test-org/gated-403-GGUF/tiny-Q8_0.gguf",
    "hf:nope",
    { hfRepo: "test-org/tiny-GGUF" },
    { hfRepo: "test-org/tiny-GGUF", file: "x.bin" },
    { hfRepo: "not a repo", file: "x.gguf" },
  ]);
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  const want = [
    ["ModelNotFoundError", /test-org\/nope/, 404],
    ["ModelNotFoundError", /RepoNotFound/, 404],
    ["ModelNotFoundError", /missing\.gguf/, 404],
    ["ModelNotFoundError", /RevisionNotFound/, 404],
    ["ModelNotFoundError", /no GGUF file .* quant Q4_K \(it has .*Q4_K_M/, undefined],
    ["GatedModelError", /gated/, 401],
    ["GatedModelError", /gated/, 401],
    ["GatedModelError", /gated on Hugging Face \(HTTP 403\)/, 403],
    ["InvalidArgumentError", /not a Hugging Face reference/],
    ["InvalidArgumentError", /a file or a quant/],
    ["InvalidArgumentError", /\.gguf/],
    ["InvalidArgumentError", /owner\/name/],
  ];
  want.forEach(([name, re, status], i) => {
    assert.equal(r[i].error?.name, name, `case ${i}: ${JSON.stringify(r[i])}`);
    assert.match(r[i].error.message, re, `case ${i}`);
    if (status) assert.equal(r[i].error.status, status, `case ${i}: status`);
  });
});
