// Speculative decoding in the package, in chromium on the CPU backend: greedy output with
// `speculative: "lookup"` and `"draft"` (the q8_0 fixture drafting for the f32 one) is token
// for token the plain output, through generate() and chat.completions.create, and lastStats
// reports the drafts; a draft of another vocabulary and a bad option are typed errors.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { evalWithLib, openTestPage } from "./harness.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const tiny = JSON.parse(readFileSync(join(ROOT, "tests/fixtures/tiny.json"), "utf8"));

let page, server, smol, close;
// the real SmolLM2 (49,152 tokens): a draft of another vocabulary for the 320-token fixture
const SMOLLM2 = process.env.SMOLLM2_GGUF;

const inPage = (fn, arg) => evalWithLib(page, fn, arg);

before(async () => {
  ({ server, smol, page, close } = await openTestPage());
});

after(() => close?.());

test("greedy output is identical with and without speculation (lookup, draft), CPU backend", async () => {
  // a prompt that repeats itself, so lookup has n-grams to continue
  const prompt = [...tiny.tokens.slice(0, 12), ...tiny.tokens.slice(1, 12)];
  const r = await inPage(
    async (lib, { target, draft, prompt }) => {
      const model = await lib.loadModel(target, { backend: "cpu", draft, contextLength: 64 });
      const run = async (speculative) => {
        const tokens = [];
        let text = "";
        for await (const c of model.generate(prompt, { maxTokens: 24, speculative })) {
          if (c.token !== null) tokens.push(c.token);
          text += c.text;
        }
        return { tokens, text, stats: model.lastStats };
      };
      const out = { plain: await run(false), lookup: await run("lookup"), draft: await run("draft") };
      const chat = async (speculative) => {
        const c = await model.chat.completions.create({
          messages: [{ role: "user", content: "Hello there, hello there" }],
          max_tokens: 16,
          temperature: 0,
          speculative,
        });
        return { text: c.choices[0].message.content, stats: model.lastStats };
      };
      out.chatPlain = await chat(false);
      out.chatDraft = await chat("draft");
      let bad = null;
      try {
        await model.generate(prompt, { speculative: "yes" }).next();
      } catch (e) {
        bad = { name: e.name, message: e.message };
      }
      out.bad = bad;
      await model.dispose();
      return out;
    },
    {
      target: `${server.origin}/tests/fixtures/tiny-f32.gguf`,
      draft: `${server.origin}/tests/fixtures/tiny-q8_0.gguf`,
      prompt,
    },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  assert.equal(r.plain.tokens.length, 24);
  assert.equal(r.plain.stats.speculative, undefined);
  for (const k of ["lookup", "draft"]) {
    assert.deepEqual(r[k].tokens, r.plain.tokens, `${k}: tokens`);
    assert.equal(r[k].text, r.plain.text, `${k}: text`);
    const s = r[k].stats.speculative;
    // lookup drafts here (3-token matches of the repeated prompt) but the tiny model's
    // continuation does not copy it, so its drafts may all be rejected: the identity above is
    // the check; accepted lookup drafts are covered natively (crate/tests/speculative.rs)
    assert.ok(s.drafted > 0 && s.accepted <= s.drafted && (k === "lookup" || s.accepted > 0), `${k}: ${JSON.stringify(s)}`);
    assert.ok(s.targetForwards < 24, `${k}: fewer passes than tokens: ${JSON.stringify(s)}`);
    assert.equal(s.acceptance, s.accepted / s.drafted);
  }
  assert.equal(r.chatDraft.text, r.chatPlain.text);
  assert.ok(r.chatDraft.stats.speculative.drafted > 0);
  assert.equal(r.bad?.name, "InvalidArgumentError", JSON.stringify(r.bad));
  assert.match(r.bad.message, /speculative/);
});

test("a draft of another vocabulary is an InvalidModelError", async () => {
  const r = await inPage(
    async (lib, { target, draft }) => {
      const m = await lib.loadModel(target, { backend: "cpu", draft });
      await m.dispose();
      return { loaded: true };
    },
    {
      target: `${server.origin}/tests/fixtures/tiny-f32.gguf`,
      draft: `${smol.origin}/${basename(SMOLLM2)}`,
    },
  );
  assert.equal(r.thrown?.name, "InvalidModelError", JSON.stringify(r));
  assert.match(r.thrown.message, /vocabulary/);
});
