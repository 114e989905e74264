// Structured output through the package in headless chromium: JSON schema / json_object /
// GBNF-constrained generate and chat.completions (streamed and not), tool calls with a named
// tool_choice, logprobs, typed errors, and the mask cost on the real 128,256-token Llama 3
// vocabulary. Every JSON output is validated by Python `jsonschema` (the reference validator).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { evalWithLib, launch } from "./harness.mjs";
import { startServer } from "./server.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const MODEL = "/tests/fixtures/tiny-q8_0.gguf";
const LLAMA3_JSON = process.env.LLAMA3_TOKENIZER_JSON;

let browser, page, server, scratch, scratchServer;

/** [{schema, text}] → the texts Python jsonschema rejects (with why). */
function pythonInvalid(cases) {
  const f = join(scratch, `cases-${Date.now()}.json`);
  writeFileSync(f, JSON.stringify(cases));
  const script = [
    "import json, sys, jsonschema",
    "bad = []",
    "for c in json.load(open(sys.argv[1])):",
    "    try:",
    "        jsonschema.validate(json.loads(c['text']), c['schema'])",
    "    except Exception as e:",
    "        bad.append(repr(c['text']) + ': ' + str(e).splitlines()[0])",
    "print(json.dumps(bad))",
  ].join("\n");
  return JSON.parse(execFileSync("python3", ["-c", script, f], { encoding: "utf8" }));
}

/** Runs `fn(lib, arg)` in the page with the package imported (harness.mjs). */
function inPage(fn, arg) {
  return evalWithLib(page, fn, arg);
}

const SCHEMAS = [
  { type: "object", properties: { name: { type: "string", maxLength: 8 }, age: { type: "integer", minimum: 0, maximum: 120 } }, required: ["name", "age"], additionalProperties: false },
  { type: "object", properties: { color: { enum: ["red", "green", "blue"] }, tags: { type: "array", items: { type: "string", maxLength: 5 }, minItems: 1, maxItems: 3 } }, required: ["color", "tags"], additionalProperties: false },
  { type: "object", properties: { p: { type: "object", properties: { x: { type: "integer", minimum: -9, maximum: 9 }, ok: { type: "boolean" } }, required: ["x", "ok"], additionalProperties: false } }, required: ["p"], additionalProperties: false },
];

before(async () => {
  server = await startServer({ root: ROOT });
  scratch = mkdtempSync(join(tmpdir(), "lw-structured-"));
  scratchServer = await startServer({ root: scratch });
  browser = await launch();
  page = await browser.page();
  await page.goto(`${server.origin}/tests/browser/page.html`);
});

after(async () => {
  if (process.exitCode && browser) console.log(browser.logs.slice(-40).join("\n"));
  await browser?.close();
  for (const s of [server, scratchServer]) await s?.close();
});

test("generate with jsonSchema at temperature 1 (21 seeds, 3 schemas) and chat response_format: every output validates", async () => {
  const r = await inPage(
    async (lib, { url, schemas }) => {
      const model = await lib.loadModel(url, { cache: false });
      const out = [];
      for (const [k, schema] of schemas.entries()) {
        for (let seed = 0; seed < 7; seed++) {
          let text = "";
          for await (const c of model.generate("Hello", { jsonSchema: schema, temperature: 1, seed: 100 * k + seed, maxTokens: 200 })) text += c.text;
          out.push({ schema, text, stop: model.lastStats.stopReason });
        }
      }
      const body = (stream, seed) => ({
        messages: [{ role: "user", content: "Give JSON." }],
        response_format: { type: "json_schema", json_schema: { name: "s", schema: schemas[0], strict: true } },
        temperature: 1,
        seed,
        max_tokens: 200,
        stream,
      });
      const plain = await model.chat.completions.create(body(false, 1));
      let streamed = "";
      let finish = null;
      for await (const ch of await model.chat.completions.create(body(true, 2))) {
        streamed += ch.choices[0].delta.content ?? "";
        finish = ch.choices[0].finish_reason ?? finish;
      }
      const obj = await model.chat.completions.create({ messages: [{ role: "user", content: "x" }], response_format: { type: "json_object" }, temperature: 1, seed: 3, max_tokens: 300 });
      await model.dispose();
      return { out, plain: plain.choices[0], streamed, finish, obj: obj.choices[0] };
    },
    { url: `${server.origin}${MODEL}`, schemas: SCHEMAS },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  assert.equal(r.out.length, 21);
  for (const o of r.out) assert.equal(o.stop, "eos", `${o.text} did not end by itself`);
  const cases = r.out.map(({ schema, text }) => ({ schema, text }));
  cases.push({ schema: SCHEMAS[0], text: r.plain.message.content }, { schema: SCHEMAS[0], text: r.streamed });
  assert.equal(r.plain.finish_reason, "stop");
  assert.equal(r.finish, "stop");
  assert.deepEqual(pythonInvalid(cases), []);
  // json_object: unbounded, so it may hit max_tokens; when it ends by itself it is an object
  if (r.obj.finish_reason === "stop") assert.equal(typeof JSON.parse(r.obj.message.content), "object");
});

test("tools: a named tool_choice returns tool_calls whose arguments validate; streamed as delta.tool_calls; tool results go back in", async () => {
  const params = { type: "object", properties: { city: { type: "string", maxLength: 8 }, days: { type: "integer", minimum: 1, maximum: 7 } }, required: ["city", "days"], additionalProperties: false };
  const r = await inPage(
    async (lib, { url, params }) => {
      // the generic tool prompt is long in this byte-level toy vocabulary
      const model = await lib.loadModel(url, { cache: false, contextLength: 1024 });
      const tools = [
        { type: "function", function: { name: "forecast", description: "Weather forecast", parameters: params } },
        { type: "function", function: { name: "noop", parameters: { type: "object", properties: {} } } },
      ];
      const messages = [{ role: "user", content: "Weather in Paris for 3 days?" }];
      const calls = [];
      for (let seed = 0; seed < 4; seed++) {
        const c = await model.chat.completions.create({ messages, tools, tool_choice: { type: "function", function: { name: "forecast" } }, temperature: 1, seed, max_tokens: 200 });
        calls.push(c.choices[0]);
      }
      const chunks = [];
      for await (const ch of await model.chat.completions.create({ messages, tools, tool_choice: "required", temperature: 1, seed: 9, max_tokens: 200, stream: true })) chunks.push(ch.choices[0]);
      const call = calls[0].message.tool_calls[0];
      const followUp = await model.chat.completions.create({
        messages: [...messages, { role: "assistant", content: null, tool_calls: [call] }, { role: "tool", tool_call_id: call.id, content: '{"temp": 21}' }],
        tools,
        tool_choice: "none",
        max_tokens: 4,
        temperature: 0,
      });
      let bad = null;
      try {
        await model.chat.completions.create({ messages, tools, tool_choice: { type: "function", function: { name: "missing" } } });
      } catch (e) {
        bad = { name: e.name, message: e.message };
      }
      await model.dispose();
      return { calls, chunks, followUp: followUp.choices[0], usage: followUp.usage, bad };
    },
    { url: `${server.origin}${MODEL}`, params },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  const cases = [];
  for (const c of r.calls) {
    assert.equal(c.finish_reason, "tool_calls");
    assert.equal(c.message.content, null);
    assert.equal(c.message.tool_calls.length, 1);
    assert.equal(c.message.tool_calls[0].type, "function");
    assert.equal(c.message.tool_calls[0].function.name, "forecast");
    cases.push({ schema: params, text: c.message.tool_calls[0].function.arguments });
  }
  assert.deepEqual(pythonInvalid(cases), []);
  const tc = r.chunks.flatMap((c) => c.delta.tool_calls ?? []);
  assert.equal(tc.length, 1);
  assert.ok(["forecast", "noop"].includes(tc[0].function.name));
  assert.equal(r.chunks.at(-1).finish_reason, "tool_calls");
  assert.ok(r.usage.prompt_tokens > 20, JSON.stringify(r.usage));
  assert.equal(r.followUp.message.tool_calls, undefined);
  assert.equal(r.bad?.name, "InvalidArgumentError", JSON.stringify(r.bad));
});

test("GBNF and Lark grammars, logprobs in OpenAI's shape, invalid schema/grammar → InvalidArgumentError", async () => {
  const r = await inPage(
    async (lib, { url }) => {
      const model = await lib.loadModel(url, { cache: false });
      const texts = [];
      for (let seed = 0; seed < 3; seed++) {
        let t = "";
        for await (const c of model.generate("Hi", { grammar: { gbnf: 'root ::= "(" [a-e]{1,4} ")"' }, temperature: 1, seed })) t += c.text;
        texts.push(t);
        t = "";
        for await (const c of model.generate("Hi", { grammar: 'start: "n=" /[0-9]{2}/', temperature: 1, seed })) t += c.text;
        texts.push(t);
      }
      const lp = await model.chat.completions.create({ messages: [{ role: "user", content: "x" }], logprobs: true, top_logprobs: 3, max_tokens: 4, temperature: 0 });
      const errors = [];
      for (const o of [{ jsonSchema: { type: "nonsense" } }, { grammar: { gbnf: 'root ::= "a' } }, { grammar: "start: nothing_here" }]) {
        try {
          for await (const _ of model.generate("Hi", o));
          errors.push(null);
        } catch (e) {
          errors.push({ name: e.name, message: e.message });
        }
      }
      let after = "";
      for await (const c of model.generate("Hi", { maxTokens: 3 })) after += c.text;
      await model.dispose();
      return { texts, lp: lp.choices[0].logprobs, errors, after };
    },
    { url: `${server.origin}${MODEL}` },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  r.texts.forEach((t, i) => assert.match(t, i % 2 ? /^n=[0-9]{2}$/ : /^\([a-e]{1,4}\)$/));
  assert.equal(r.lp.content.length, 4);
  for (const e of r.lp.content) {
    assert.equal(typeof e.token, "string");
    assert.ok(e.logprob <= 0);
    assert.ok(Array.isArray(e.bytes));
    assert.equal(e.top_logprobs.length, 3);
    assert.ok(e.top_logprobs[0].logprob >= e.top_logprobs[2].logprob);
    // temperature 0: the chosen token is the most likely one
    assert.equal(e.top_logprobs[0].token, e.token);
  }
  for (const e of r.errors) assert.equal(e?.name, "InvalidArgumentError", JSON.stringify(r.errors));
  assert.match(r.errors[0].message, /JSON schema/);
  assert.match(r.errors[1].message, /GBNF/);
  assert.ok(r.after.length > 0, "the engine still works after the errors");
});

test("the real Llama 3 vocabulary (128,256 tokens): schema outputs validate; mask cost in wasm", { skip: !LLAMA3_JSON || !existsSync(LLAMA3_JSON) ? "LLAMA3_TOKENIZER_JSON not set (scripts/setup.sh sets it)" : false }, async () => {
  const file = join(scratch, "llama3-vocab.gguf");
  execFileSync("python3", [join(ROOT, "tests/browser/make_llama3_vocab_model.py"), LLAMA3_JSON, file]);
  const r = await inPage(
    async (lib, { url, schemas }) => {
      const model = await lib.loadModel(url, { cache: false, chunkBytes: 1 << 20 });
      const bench = await model.benchGrammar(schemas[0], { steps: 200 });
      const out = [];
      for (const [k, schema] of schemas.entries()) {
        for (let seed = 0; seed < 2; seed++) {
          let text = "";
          for await (const c of model.generate("Hello", { jsonSchema: schema, temperature: 1, seed: 10 * k + seed, maxTokens: 120 })) text += c.text;
          out.push({ schema, text, stop: model.lastStats.stopReason });
        }
      }
      await model.dispose();
      return { bench, out };
    },
    { url: `${scratchServer.origin}/llama3-vocab.gguf`, schemas: SCHEMAS },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  console.log(`# browser mask cost (Llama 3 vocab): ${JSON.stringify(r.bench)}`);
  assert.ok(r.bench.masks >= 200 && r.bench.maskUsMedian > 0, JSON.stringify(r.bench));
  for (const o of r.out) assert.equal(o.stop, "eos", o.text);
  assert.deepEqual(pythonInvalid(r.out.map(({ schema, text }) => ({ schema, text }))), []);
});

test("demo page: the JSON output switch constrains the reply to the schema; a tool call is shown as a tool call", { timeout: 300_000 }, async () => {
  const { startDemoServer } = await import("../../www/serve.mjs");
  const demo = await startDemoServer({ port: 0 });
  const fixtures = await startServer({ root: join(ROOT, "tests/fixtures") });
  const b = await launch();
  const p = await b.page();
  const schema = SCHEMAS[0];
  const idle = () =>
    p.waitForFunction(() => !document.querySelector('[data-testid="send"]').disabled && document.querySelector('[data-testid="stop"]').disabled, null, { timeout: 120_000 });
  try {
    await p.goto(`${demo.url}?model=${encodeURIComponent(`${fixtures.origin}/tiny-q8_0.gguf`)}`);
    await p.waitForFunction(() => /ready/.test(document.querySelector('[data-testid="status"]').textContent), null, { timeout: 120_000 });
    assert.equal(await p.$eval("#json-box", (e) => e.hidden), true);
    await p.check('[data-testid="json-mode"]');
    assert.equal(await p.$eval("#json-box", (e) => e.hidden), false);
    await p.fill('[data-testid="json-schema"]', JSON.stringify(schema));
    await p.fill("#max-tokens", "200");
    await p.$eval("#temperature", (e) => (e.value = "1"));
    await p.fill('[data-testid="prompt-input"]', "A person as JSON, please.");
    await p.press('[data-testid="prompt-input"]', "Enter");
    await p.waitForSelector('[data-testid="message-assistant"]');
    await idle();
    const reply = await p.$$eval('[data-testid="message-assistant"] .body', (els) => els.at(-1).textContent);
    assert.deepEqual(pythonInvalid([{ schema, text: reply.trim() }]), [], reply);
    // Tools: with the JSON switch off and a tools list, a call appears as a call card.
    await p.uncheck('[data-testid="json-mode"]');
    const tools = [{ type: "function", function: { name: "lookup", parameters: { type: "object", properties: { q: { type: "string", maxLength: 6 } }, required: ["q"], additionalProperties: false } } }];
    await p.fill('[data-testid="tools"]', JSON.stringify(tools));
    await p.evaluate(() => (document.getElementById("system-prompt").value = ""));
    await p.check('[data-testid="tool-required"]');
    await p.fill('[data-testid="prompt-input"]', "Look up cats.");
    await p.press('[data-testid="prompt-input"]', "Enter");
    await p.waitForSelector('[data-testid="tool-call"]', { timeout: 120_000 });
    await idle();
    const card = await p.$eval('[data-testid="tool-call"]', (e) => ({ name: e.querySelector(".tool-name").textContent, args: e.querySelector("pre").textContent }));
    assert.equal(card.name, "Tool call: lookup");
    assert.deepEqual(pythonInvalid([{ schema: tools[0].function.parameters, text: card.args }]), []);
    mkdirSync(join(ROOT, "tests/browser/screenshots"), { recursive: true });
    await p.screenshot({ path: join(ROOT, "tests/browser/screenshots/demo-structured.png") });
  } finally {
    await b.close();
    await demo.close();
    await fixtures.close();
  }
});
