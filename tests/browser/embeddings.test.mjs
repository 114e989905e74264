// model.embeddings.create in chromium on the CPU backend, against transformers' final-norm
// hidden states pooled the same way (tests/make_embed_refs.py → tests/fixtures/embed.json and
// *.embed.npy), within 1e-4 of std: SmolLM2 from its texts (our tokenizer in the path) and the
// tiny fixtures from token ids; a batch gives what each input gives alone; OpenAI's shape and
// usage; a paraphrase scores closer than an unrelated sentence; bad requests are typed errors.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { evalWithLib, openTestPage, readNpy, std } from "./harness.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const FIX = join(ROOT, "tests/fixtures");
const refs = JSON.parse(readFileSync(join(FIX, "embed.json"), "utf8"));
const TOL = 1e-4;
const SMOLLM2 = process.env.SMOLLM2_GGUF;

let page, server, smol, close;

const inPage = (fn, arg) => evalWithLib(page, fn, arg);

before(async () => {
  ({ server, smol, page, close } = await openTestPage());
});

after(() => close?.());

/** Max |got − want| over the std of `want`. */
function errVsStd(got, want) {
  assert.equal(got.length, want.length, "vector length");
  let e = 0;
  for (let i = 0; i < want.length; i++) e = Math.max(e, Number.isNaN(got[i]) ? Infinity : Math.abs(got[i] - want[i]));
  return e / std(want);
}

/** Reference `[inputs, 2 (mean, last), dim]` → ref(i, "mean" | "last"). */
function reference(file) {
  const { shape, data } = readNpy(join(FIX, file));
  const dim = shape[2];
  return { dim, at: (i, pooling) => data.subarray((i * 2 + (pooling === "mean" ? 0 : 1)) * dim, (i * 2 + (pooling === "mean" ? 0 : 1) + 1) * dim) };
}

const cos = (a, b) => {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return d / Math.sqrt(na * nb);
};

test("SmolLM2: texts match transformers (mean and last), batched = alone, paraphrase closer than unrelated", async () => {
  const s = refs.smollm2;
  const ref = reference(s.file);
  const r = await inPage(
    async (lib, { url, texts, smoke }) => {
      const model = await lib.loadModel(url, { backend: "cpu", contextLength: 64, kvType: "f32" }); // the reference is f32 throughout
      const out = { info: { name: model.info.name, pooling: model.info.pooling, dim: model.info.embeddingLength } };
      for (const pooling of ["mean", "last"]) {
        out[pooling] = await model.embeddings.create({ input: texts, pooling, normalize: false });
        out[`${pooling}Alone`] = [];
        for (const t of texts) out[`${pooling}Alone`].push((await model.embeddings.create({ input: t, pooling, normalize: false })).data[0].embedding);
      }
      out.smoke = (await model.embeddings.create({ input: smoke })).data.map((d) => d.embedding);
      const b64 = await model.embeddings.create({ input: texts[0], encoding_format: "base64" });
      const bytes = Uint8Array.from(atob(b64.data[0].embedding), (c) => c.charCodeAt(0));
      out.b64 = Array.from(new Float32Array(bytes.buffer));
      out.unit = (await model.embeddings.create({ input: texts[0] })).data[0].embedding;
      out.tokens = await model.tokenize(texts[0], { addSpecial: true });
      await model.dispose();
      return out;
    },
    { url: `${smol.origin}/${basename(SMOLLM2)}`, texts: s.texts, smoke: s.smoke.texts },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  assert.equal(r.info.dim, ref.dim);
  assert.equal(r.info.pooling, "mean", "SmolLM2's GGUF names no pooling_type: mean");
  let worst = 0;
  for (const pooling of ["mean", "last"]) {
    const res = r[pooling];
    assert.equal(res.object, "list");
    assert.equal(res.model, r.info.name);
    const n = s.inputs.reduce((a, ids) => a + ids.length, 0);
    assert.deepEqual(res.usage, { prompt_tokens: n, total_tokens: n }, "usage counts the tokens the reference ran");
    assert.equal(res.data.length, s.texts.length);
    res.data.forEach((d, i) => {
      assert.equal(d.object, "embedding");
      assert.equal(d.index, i);
      assert.ok(Array.isArray(d.embedding));
      const e = errVsStd(d.embedding, ref.at(i, pooling));
      assert.ok(e <= TOL, `${pooling} input ${i}: max |ours − transformers| = ${e.toExponential(2)} × std > ${TOL}`);
      worst = Math.max(worst, e);
      // a batch runs each input from position 0: the very numbers it gives alone
      assert.deepEqual(d.embedding, r[`${pooling}Alone`][i], `${pooling} input ${i}: batched ≠ alone`);
    });
  }
  console.log(`SmolLM2 embeddings: worst ${worst.toExponential(2)} × std (tolerance ${TOL})`);
  // normalize (the default): the same direction at length 1; base64: the same float32 values
  const norm = Math.hypot(...r.unit);
  assert.ok(Math.abs(norm - 1) < 1e-5, `unit length: ${norm}`);
  const raw = r.mean.data[0].embedding;
  const rawNorm = Math.hypot(...raw);
  assert.ok(raw.every((x, i) => Math.abs(x / rawNorm - r.unit[i]) < 1e-6), "normalized = pooled / |pooled|");
  assert.deepEqual(r.b64, r.unit.map((x) => Math.fround(x)));
  assert.deepEqual(r.tokens, s.inputs[0], "our tokens are the reference's");
  // smoke: cosines (default mean pooling, unit vectors) order as transformers' do
  const [a, b, c] = r.smoke;
  const para = cos(a, b), unrel = cos(a, c);
  assert.ok(para > unrel, `paraphrase ${para.toFixed(4)} > unrelated ${unrel.toFixed(4)}`);
  assert.ok(Math.abs(para - s.smoke.cosines.mean.paraphrase) < 1e-3 && Math.abs(unrel - s.smoke.cosines.mean.unrelated) < 1e-3, `transformers' cosines ${JSON.stringify(s.smoke.cosines.mean)}, ours ${para}, ${unrel}`);
});

test("tiny fixtures: token-id inputs match transformers (f32, q8_0, q4_1, q4_k_m)", async () => {
  const t = refs.tiny;
  for (const [type, meta] of Object.entries(t.types)) {
    const ref = reference(meta.file);
    const r = await inPage(
      async (lib, { url, inputs }) => {
        const model = await lib.loadModel(url, { backend: "cpu", contextLength: 64, kvType: "f32" }); // the reference is f32 throughout
        const out = {};
        for (const pooling of ["mean", "last"]) out[pooling] = await model.embeddings.create({ input: inputs, pooling, normalize: false });
        // one token-id array is one input (OpenAI's form)
        out.one = await model.embeddings.create({ input: inputs[2], pooling: "mean", normalize: false });
        await model.dispose();
        return out;
      },
      { url: `${server.origin}/tests/fixtures/${meta.gguf}`, inputs: t.inputs },
    );
    assert.ok(!r.thrown, `${type}: ${JSON.stringify(r.thrown)}`);
    for (const pooling of ["mean", "last"]) {
      r[pooling].data.forEach((d, i) => {
        const e = errVsStd(d.embedding, ref.at(i, pooling));
        assert.ok(e <= TOL, `${type} ${pooling} input ${i}: ${e.toExponential(2)} × std > ${TOL}`);
      });
    }
    assert.equal(r.one.data.length, 1);
    assert.deepEqual(r.one.data[0].embedding, r.mean.data[2].embedding);
    assert.equal(r.one.usage.prompt_tokens, t.inputs[2].length);
  }
});

test("bad embeddings requests are InvalidArgumentErrors naming the field", async () => {
  const r = await inPage(
    async (lib, { url }) => {
      const model = await lib.loadModel(url, { backend: "cpu", contextLength: 32 });
      const out = [];
      for (const body of [
        { input: [] },
        { input: "" },
        { input: ["ok", 3] },
        { input: [1, -2] },
        { input: "x", pooling: "max" },
        { input: "x", normalize: "yes" },
        { input: "x", dimensions: 8 },
        { input: "x", encoding_format: "int8" },
        { inputs: "x" },
        null,
        { input: [[1, 2], [100000]] },
      ]) {
        try {
          await model.embeddings.create(body);
          out.push(null);
        } catch (e) {
          out.push({ name: e.name, message: e.message });
        }
      }
      // still usable after the errors
      out.push((await model.embeddings.create({ input: [1, 2, 3] })).data.length);
      await model.dispose();
      return out;
    },
    { url: `${server.origin}/tests/fixtures/tiny-f32.gguf` },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  const want = [/input must be/, /input must not be an empty string/, /input\[1\] must be a string/, /input\[1\] must be a token id/, /pooling/, /normalize/, /dimensions/, /encoding_format/, /unknown field 'inputs' \(did you mean 'input'\?\)/, /must be an object/, /vocab/i];
  want.forEach((re, i) => {
    assert.equal(r[i]?.name, "InvalidArgumentError", `request ${i}: ${JSON.stringify(r[i])}`);
    assert.match(r[i].message, re, `request ${i}`);
  });
  assert.equal(r[want.length], 1);
});
