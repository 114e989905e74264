// Speculative decoding in the browser (issue 22): the package's CPU backend (wasm simd128) in
// headless chromium, plain and speculative greedy chat completions of the same request side by
// side in one page, REPS times interleaved, as bench/speculative.sh does natively:
//   lookup-copy  SmolLM2 F16 asked to repeat a passage, speculative: "lookup"
//   draft        SmolLM2 F16 with the Q4_1 file as its draft, speculative: "draft"
// Uses the browser tests' page and test build (`bash scripts/build-pkg.sh --test`) and the
// F16 file bench/speculative.sh makes (bench/speculative-out/smollm2-f16.gguf).
//   node bench/browser-speculative.mjs [--reps 2] [--gen 64] [--cases lookup-copy,draft]
// Prints a markdown table (median rates, median of paired ratios) and the JSON results.
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { evalWithLib, openTestPage } from "../tests/browser/harness.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : d);
const reps = Number(opt("reps", "2"));
const gen = Number(opt("gen", "64"));
const cases = opt("cases", "lookup-copy,draft").split(",");
if (!existsSync(join(ROOT, "bench/speculative-out/smollm2-f16.gguf"))) {
  throw new Error("bench/speculative-out/smollm2-f16.gguf is missing: run bench/speculative.sh (CASES=draft REPS=1) once");
}

// the passage and prompts of bench/speculative.sh
const passage =
  "The lighthouse keeper kept a notebook in which he wrote down every ship that passed the point, " +
  "the hour it passed, the colour of its hull and the direction of the wind. In the first year the entries " +
  "were short: a name, a time, a word about the weather. By the third year they had grown into small stories. " +
  "He noted that the grain ships from the south always came in the early morning, riding low in the water, " +
  "and that their crews sang when they saw the light. He noted that the mail steamer was never late in summer " +
  "and never on time in winter, and that its captain waved a red handkerchief from the bridge.";
const prompts = {
  "lookup-copy": `Repeat the following passage exactly, word for word, without any comment:\n\n${passage}`,
  draft: "Write a short essay about why people enjoy walking in the mountains.",
};

const { server, smol, page, close } = await openTestPage();
const rows = [];
try {
  const r = await evalWithLib(
    page,
    async (lib, { target, draft, prompts, cases, reps, gen }) => {
      const model = await lib.loadModel(target, { backend: "cpu", draft, contextLength: 512 });
      const one = async (c, speculative) => {
        const out = await model.chat.completions.create({
          messages: [{ role: "user", content: prompts[c] }],
          max_tokens: c === "lookup-copy" ? 2 * gen : gen,
          temperature: 0,
          speculative,
        });
        const s = model.lastStats;
        return { text: out.choices[0].message.content, rate: s.decodeTokensPerSecond, tokens: s.generatedTokens, spec: s.speculative };
      };
      const res = {};
      for (let i = 0; i < reps; i++) {
        for (const c of cases) {
          const kind = c === "draft" ? "draft" : "lookup";
          (res[c] ??= []).push({ plain: await one(c, false), spec: await one(c, kind) });
        }
      }
      const info = { adapter: model.info.adapter, quantization: model.info.quantization };
      await model.dispose();
      return { info, res };
    },
    {
      target: `${server.origin}/bench/speculative-out/smollm2-f16.gguf`,
      draft: `${smol.origin}/${basename(process.env.SMOLLM2_GGUF)}`,
      prompts,
      cases,
      reps,
      gen,
    },
  );
  if (r.thrown) throw new Error(JSON.stringify(r.thrown));
  const med = (a) => [...a].sort((x, y) => x - y)[Math.floor((a.length - 1) / 2)];
  console.log(`engine: ${JSON.stringify(r.info)}, ${reps} reps`);
  console.log("| case | tokens | plain tok/s | speculative tok/s | median of paired ratios | drafted / accepted / target passes (last run) | acceptance | same text |");
  console.log("|---|---:|---:|---:|---:|---|---:|---|");
  for (const c of cases) {
    const runs = r.res[c];
    const same = runs.every((x) => x.spec.text === x.plain.text);
    const s = runs[runs.length - 1].spec.spec ?? {};
    console.log(
      `| ${c} | ${runs[0].plain.tokens} | ${med(runs.map((x) => x.plain.rate)).toFixed(2)} | ${med(runs.map((x) => x.spec.rate)).toFixed(2)} | ` +
        `${med(runs.map((x) => x.spec.rate / x.plain.rate)).toFixed(2)}× | ${s.drafted} / ${s.accepted} / ${s.targetForwards} | ` +
        `${((s.acceptance ?? 0) * 100).toFixed(0)}% | ${same ? "yes" : "NO"} |`,
    );
    rows.push({ case: c, runs });
  }
  console.log(JSON.stringify(rows));
} finally {
  await close();
}
