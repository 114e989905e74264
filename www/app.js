// The demo chat page: pick/load a model, chat with streamed Markdown replies, manage the cache.
// Everything runs in this tab: the package loads the model in a Web Worker on WebGPU, and
// files picked from disk are read in place (never uploaded).
import {
  loadModel, listCachedModels, deleteCachedModel, clearModelCache, wasmMemoryBytes,
  DeviceLostError, InvalidArgumentError,
} from "../pkg/index.js";
import { renderMarkdown, createStreamRenderer } from "./markdown.js";
import { describeError, isAbort } from "./error-help.js";
import { PRESETS, DEFAULT_PRESET, presetUrl, presetForUrl, nameFromUrl, cachedUrl } from "./presets.js";
import { formatBytes, formatDuration, formatParams, formatRate, RateMeter } from "./format.js";

const $ = (id) => document.getElementById(id);
const el = {
  status: $("status"), panel: $("panel"), panelToggle: $("panel-toggle"),
  preset: $("preset"), presetForm: $("preset-form"), presetNote: $("preset-note"),
  urlForm: $("url-form"), url: $("model-url"), file: $("file-input"), useCache: $("use-cache"),
  info: $("model-info"),
  loadBox: $("load-box"), phase: $("progress-phase"), progress: $("progress"), progressText: $("progress-text"),
  cancelLoad: $("cancel-load"), errorBox: $("error-box"),
  messages: $("messages"), empty: $("empty"),
  composer: $("composer"), input: $("prompt-input"), send: $("send"), stop: $("stop"),
  regenerate: $("regenerate"), newChat: $("new-chat"), stats: $("stats"),
  system: $("system-prompt"), temperature: $("temperature"), temperatureValue: $("temperature-value"),
  topP: $("top-p"), topPValue: $("top-p-value"), maxTokens: $("max-tokens"), speculative: $("speculative"),
  jsonMode: $("json-mode"), jsonBox: $("json-box"), jsonSchema: $("json-schema"), tools: $("tools"),
  toolRequired: $("tool-required"),
  cacheList: $("cache-list"), storageUsed: $("storage-used"), refreshCache: $("refresh-cache"),
  clearCache: $("clear-cache"), dropOverlay: $("drop-overlay"),
};

const state = {
  model: null,     // the loaded model, or null
  source: null,    // what it was loaded from: { kind: "url", url } (a URL or an hf: reference) | { kind: "file", files }
  loading: null,   // { ctrl, done } while a load runs
  gen: null,       // AbortController of the reply being generated
  history: [],     // [{ role: "user" | "assistant", content, el }] (no system prompt)
};

// ---------------------------------------------------------------- status, errors, controls

function setStatus(text, kind = "info") {
  el.status.textContent = text;
  el.status.dataset.kind = kind;
}

function readyText() {
  const m = state.model;
  if (!m) return "No model loaded";
  const from = state.source?.kind === "file" ? " (local file)" : m.info.fromCache ? " (loaded from browser cache)" : "";
  return `${modelName()} ready${from}`;
}

function modelName() {
  const info = state.model?.info;
  if (info?.name) return info.name;
  return state.source?.kind === "file" ? filesLabel(state.source.files) : nameFromUrl(state.source?.url ?? "");
}

function showError(e, ctx, action) {
  const { title, detail, help } = describeError(e, ctx);
  const box = el.errorBox;
  box.replaceChildren();
  const h = document.createElement("p");
  h.className = "error-title";
  h.textContent = title;
  box.append(h);
  if (detail && detail !== title) {
    const d = document.createElement("p");
    d.className = "error-detail";
    d.textContent = detail;
    box.append(d);
  }
  if (help.length) {
    const ul = document.createElement("ul");
    for (const line of help) {
      const li = document.createElement("li");
      li.textContent = line;
      ul.append(li);
    }
    box.append(ul);
  }
  const row = document.createElement("div");
  row.className = "row";
  if (action) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = action.label;
    b.addEventListener("click", () => { hideError(); action.run(); });
    row.append(b);
  }
  const close = document.createElement("button");
  close.type = "button";
  close.className = "secondary";
  close.textContent = "Dismiss";
  close.addEventListener("click", hideError);
  row.append(close);
  box.append(row);
  box.hidden = false;
  if (!(e instanceof Error) || !e.code) console.error(e);
}

function hideError() {
  el.errorBox.hidden = true;
  el.errorBox.replaceChildren();
}

function lastIsAssistant() {
  return state.history.at(-1)?.role === "assistant";
}

/** One place decides which buttons work, so no state combination leaves a stale control. */
function updateControls() {
  const idle = !!state.model && !state.gen && !state.loading;
  el.send.disabled = !idle;
  el.stop.disabled = !state.gen;
  el.regenerate.disabled = !idle || !state.history.length; // also retries after a failed reply
  el.loadBox.hidden = !state.loading;
  el.messages.setAttribute("aria-busy", state.gen ? "true" : "false");
}

// ---------------------------------------------------------------- model loading

const PHASES = {
  download: "Downloading",
  upload: "Uploading weights to the GPU",
  compile: "Compiling GPU shaders",
  ready: "Starting",
};

/** Progress bar + text with phase, bytes, speed and ETA; returns the onProgress callback. */
function progressReporter(source) {
  const meter = new RateMeter();
  let phase = null;
  let lastPaint = 0;
  return (p) => {
    const now = performance.now();
    if (p.phase !== phase) {
      phase = p.phase;
      meter.reset();
      const label = phase === "download" && source.kind === "file" ? "Reading the file" : PHASES[phase] || phase;
      el.phase.textContent = label;
      setStatus(`${label}…`, "busy"); // status is aria-live: only announce phase changes
    }
    meter.add(p.loaded, now);
    // Progress events can come thousands of times a second; repaint at most ~10 times.
    if (now - lastPaint < 100 && p.loaded !== p.total) return;
    lastPaint = now;
    const bytesPhase = phase === "download" || phase === "upload";
    if (bytesPhase && p.total > 0) {
      el.progress.max = p.total;
      el.progress.value = Math.min(p.loaded, p.total);
      const rate = meter.rate();
      const parts = [`${formatBytes(p.loaded)} of ${formatBytes(p.total)} (${Math.floor((100 * p.loaded) / p.total)}%)`];
      if (rate > 0) {
        parts.push(`${formatBytes(rate)}/s`);
        if (p.loaded < p.total) parts.push(`about ${formatDuration((p.total - p.loaded) / rate)} left`);
      }
      el.progressText.textContent = parts.join(" · ");
    } else if (bytesPhase) {
      el.progress.removeAttribute("value"); // unknown size: indeterminate bar
      el.progressText.textContent = `${formatBytes(p.loaded)}`;
    } else {
      el.progress.removeAttribute("value");
      el.progressText.textContent = phase === "compile" ? "This takes a while the first time on some GPUs." : "";
    }
  };
}

/** Several files are the parts of one split model (NAME-00001-of-00003.gguf …). */
function filesLabel(files) {
  return files.length > 1 ? `${files[0].name} (+${files.length - 1} parts)` : files[0].name;
}

/** Load a model from { kind: "url", url } or { kind: "file", files }, replacing the current one. */
async function load(source) {
  if (state.loading) {
    state.loading.ctrl.abort();
    await state.loading.done;
  }
  if (state.gen) state.gen.abort();
  hideError();
  const ctx = {
    isFile: source.kind === "file",
    isLocalDefault: source.kind === "url" && source.url === presetUrl(DEFAULT_PRESET),
  };
  const label = source.kind === "file" ? filesLabel(source.files) : nameFromUrl(source.url);
  setAddress(source);
  closePanelOnNarrow();

  const ctrl = new AbortController();
  let settle;
  state.loading = { ctrl, done: new Promise((r) => (settle = r)) };
  el.phase.textContent = `Loading ${label}`;
  el.progress.value = 0;
  el.progressText.textContent = "";
  setStatus(`Loading ${label}…`, "busy");
  updateControls();
  try {
    // Free the old model's GPU memory first: two models rarely fit side by side.
    if (state.model) {
      const old = state.model;
      state.model = null;
      showInfo(null);
      await old.dispose().catch(() => {});
    }
    // several files: one split model's parts (in any order; the engine orders them)
    const model = await loadModel(source.kind === "file" ? source.files : source.url, {
      onProgress: progressReporter(source),
      cache: el.useCache.checked,
      signal: ctrl.signal,
      // A chat should keep going when it outgrows the context: drop the oldest turns (the
      // system prompt stays) instead of failing.
      contextPolicy: "sliding",
      // ?backend=cpu|webgpu; by default the CPU where there is no WebGPU or only a software adapter
      backend: new URLSearchParams(location.search).get("backend") || "auto",
      // ?hub=URL: where hf: references resolve (a Hugging Face mirror; the tests' mock Hub)
      hubUrl: new URLSearchParams(location.search).get("hub") || undefined,
    });
    state.model = model;
    state.source = source;
    setStatus(readyText(), "ready");
    showInfo(model);
    if (document.activeElement === document.body || document.activeElement === el.input) el.input.focus();
  } catch (e) {
    if (isAbort(e) || ctrl.signal.aborted) {
      setStatus(`Loading ${label} cancelled`);
    } else {
      setStatus(`Could not load ${label}`, "error");
      showError(e, ctx, { label: "Try again", run: () => load(source) });
    }
  } finally {
    state.loading = null;
    settle();
    updateControls();
    refreshCache();
  }
}

/** Keep the address shareable: ?model=URL for URL models; nothing for the default or a file. */
function setAddress(source) {
  const u = new URL(location.href);
  if (source.kind === "url" && source.url !== presetUrl(DEFAULT_PRESET)) u.searchParams.set("model", source.url);
  else u.searchParams.delete("model");
  if (u.href !== location.href) history.replaceState(null, "", u);
}

async function showInfo(model) {
  const dl = el.info;
  dl.replaceChildren();
  dl.hidden = !model;
  if (!model) return;
  const i = model.info;
  const adapter = typeof i.adapter === "string" ? i.adapter
    : [i.adapter?.vendor, i.adapter?.architecture, i.adapter?.device, i.adapter?.description].filter(Boolean).join(" · ");
  const rows = [
    ["Model", i.name || modelName()],
    ["Architecture", i.architecture],
    ["Parameters", formatParams(i.parameters)],
    ["Quantization", i.quantization],
    ["Context", i.contextLength ? `${i.contextLength.toLocaleString()} tokens (oldest turns slide out when full)` : ""],
    ["Vocabulary", i.vocabSize ? `${i.vocabSize.toLocaleString()} tokens` : ""],
    ["Mode", i.chatTemplate ? `chat (${i.chatTemplate} template)` : "base model: plain text completion"],
    ["Source", state.source?.kind === "file" ? "local file (read in place)" : i.fromCache ? "browser cache" : "network"],
    ["Parts", i.parts ? `${i.parts.length} (a split GGUF)` : ""],
    ["Backend", i.backend ? `${i.backend === "cpu" ? "CPU" : "WebGPU"} (${i.backendReason})` : ""],
    [i.backend === "cpu" ? "Device" : "GPU", adapter],
    ["GPU memory", i.gpuBytes ? formatBytes(i.gpuBytes) : ""],
    [i.backend === "cpu" ? "" : "GPU features", `shader-f16 ${i.features?.shaderF16 ? "yes" : "no"} · subgroups ${i.features?.subgroups ? "yes" : "no"}${"f16" in i ? ` · computes in ${i.f16 ? "f16" : "f32"}` : ""}`],
  ];
  try {
    const bytes = await wasmMemoryBytes();
    if (Number.isFinite(bytes)) rows.push(["Wasm memory", formatBytes(bytes)]);
  } catch { /* optional detail */ }
  if (state.model !== model) return; // replaced while awaiting
  for (const [k, v] of rows) {
    if (!v || !k) continue;
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dl.append(dt, dd);
  }
  el.system.disabled = !i.chatTemplate;
}

// ---------------------------------------------------------------- chat

function settings() {
  const num = (input, fallback) => (Number.isFinite(input.valueAsNumber) ? input.valueAsNumber : fallback);
  return {
    temperature: num(el.temperature, 0.7),
    topP: num(el.topP, 0.95),
    maxTokens: Math.max(1, Math.round(num(el.maxTokens, 512))),
    // drafts from n-grams of the conversation, verified in one pass: same text, fewer passes
    speculative: el.speculative.checked ? "lookup" : false,
  };
}

/** The JSON switch and tools box → {schema, tools}; a box that is not valid JSON throws. */
function structured() {
  const parse = (text, what) => {
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new InvalidArgumentError(`${what} is not valid JSON: ${e.message}`);
    }
  };
  const json = el.jsonMode.checked ? { schema: el.jsonSchema.value.trim() ? parse(el.jsonSchema.value, "The JSON schema") : null } : null;
  const tools = el.tools.value.trim() ? parse(el.tools.value, "The tools list") : null;
  return { json, tools };
}

function addMessage(role, content) {
  el.empty.hidden = true;
  const article = document.createElement("article");
  article.className = `msg msg-${role}`;
  article.dataset.testid = `message-${role}`;
  const who = document.createElement("h3");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Assistant";
  const body = document.createElement("div");
  body.className = "body";
  article.append(who, body);
  el.messages.append(article);
  const msg = { role, content, el: article, body };
  paint(msg);
  scrollToEnd(true);
  return msg;
}

/** A tool call the model made, shown as a call (name and arguments), not as text. */
function showToolCall(msg, call) {
  (msg.toolCalls ??= []).push({ id: call.id, type: "function", function: call.function });
  const box = document.createElement("div");
  box.className = "tool-call";
  box.dataset.testid = "tool-call";
  const head = document.createElement("p");
  head.className = "tool-name";
  head.textContent = `Tool call: ${call.function.name}`;
  const args = document.createElement("pre");
  let text = call.function.arguments;
  try {
    text = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    /* shown as it came */
  }
  args.textContent = text;
  box.append(head, args);
  msg.el.append(box);
}

function paint(msg) {
  if (msg.role === "user" || msg.verbatim) {
    msg.body.textContent = msg.content; // shown verbatim (pre-wrap)
  } else if (msg.stream) {
    // while it streams: finished blocks are appended once, only the last block is redrawn
    const { reset, added, tail } = msg.stream.update(msg.content);
    const b = msg.body;
    if (reset) {
      b.textContent = "";
      msg.kept = 0;
    }
    while (b.childNodes.length > (msg.kept ?? 0)) b.lastChild.remove();
    if (added) {
      b.insertAdjacentHTML("beforeend", added); // markdown-it output: raw HTML off, links checked
      msg.kept = b.childNodes.length;
    }
    b.insertAdjacentHTML("beforeend", tail);
  } else {
    msg.body.innerHTML = renderMarkdown(msg.content); // markdown-it output: raw HTML off, links checked
  }
}

// Streamed text arrives token by token; re-render at most once per frame.
const dirty = new Set();
let frame = 0;
function schedulePaint(msg) {
  dirty.add(msg);
  if (!frame) frame = requestAnimationFrame(flushPaint);
}
function flushPaint() {
  frame = 0;
  const stick = nearBottom();
  for (const m of dirty) paint(m);
  dirty.clear();
  if (stick) scrollToEnd();
}

function nearBottom() {
  const m = el.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}
function scrollToEnd(force = false) {
  if (force || nearBottom()) el.messages.scrollTop = el.messages.scrollHeight;
}

async function send() {
  const text = el.input.value;
  if (!text.trim() || !state.model || state.gen || state.loading) return;
  el.input.value = "";
  state.history.push(addMessage("user", text));
  await reply();
}

/** Generate the assistant's answer to the conversation so far, streaming it into a new message. */
async function reply() {
  const model = state.model;
  const { temperature, topP, maxTokens, speculative } = settings();
  const chat = !!model.info.chatTemplate;
  // Base models have no chat format: the conversation is one running text they continue.
  const messages = [
    ...(el.system.value.trim() ? [{ role: "system", content: el.system.value.trim() }] : []),
    ...state.history.map(({ role, content, toolCalls }) => (toolCalls?.length ? { role, content: null, tool_calls: toolCalls } : { role, content })),
  ];
  const prompt = state.history.map((m) => m.content).join("");

  const statsBefore = model.lastStats;
  const ctrl = new AbortController();
  state.gen = ctrl;
  const msg = addMessage("assistant", "");
  // JSON output is shown as it is: markdown would eat its backslash escapes (`\\` → `\`)
  msg.verbatim = el.jsonMode.checked;
  if (msg.verbatim) msg.body.style.whiteSpace = "pre-wrap";
  msg.stream = createStreamRenderer();
  msg.el.classList.add("streaming");
  updateControls();
  setStatus("Generating…", "busy");
  hideError();

  let usage = null;
  let finish = null;
  let failure = null;
  let pieces = 0;
  let first = 0;
  const onText = (t) => {
    if (!t) return;
    if (!pieces++) first = performance.now();
    msg.content += t;
    schedulePaint(msg);
  };
  try {
    const { json, tools } = structured();
    if (chat) {
      const body = { messages, stream: true, max_tokens: maxTokens, temperature, top_p: topP, speculative };
      if (json) body.response_format = json.schema ? { type: "json_schema", json_schema: { name: "demo", schema: json.schema } } : { type: "json_object" };
      if (tools) Object.assign(body, { tools, tool_choice: el.toolRequired.checked ? "required" : "auto" });
      const stream = await model.chat.completions.create(body, { signal: ctrl.signal });
      for await (const chunk of stream) {
        const c = chunk.choices?.[0];
        onText(c?.delta?.content);
        for (const call of c?.delta?.tool_calls ?? []) showToolCall(msg, call);
        if (c?.finish_reason) finish = c.finish_reason;
        if (chunk.usage) usage = chunk.usage;
      }
    } else {
      const opts = { maxTokens, temperature, topP, contextPolicy: "sliding", speculative, signal: ctrl.signal };
      if (json) Object.assign(opts, json.schema ? { jsonSchema: json.schema } : { jsonObject: true });
      for await (const c of model.generate(prompt, opts)) onText(c.text);
    }
  } catch (e) {
    if (!isAbort(e)) failure = e;
  }
  const end = performance.now();
  const stopped = ctrl.signal.aborted;

  if (frame) { cancelAnimationFrame(frame); frame = 0; dirty.clear(); }
  paint(msg);
  msg.stream = null;
  msg.el.classList.remove("streaming");
  if (msg.toolCalls?.length) {
    // The call stays in the conversation as the assistant's turn, as OpenAI's API expects.
    state.history.push(msg);
  } else if (!msg.content && (failure || stopped)) {
    msg.el.remove(); // nothing to keep; the error box or the stats line says what happened
  } else {
    state.history.push(msg);
    if (!msg.content) msg.body.innerHTML = '<p class="note">The model ended its reply without any text.</p>';
  }
  // lastStats still holding the previous reply's figures (e.g. stopped before the engine
  // reported) must not be shown as this reply's.
  const fresh = model.lastStats !== statsBefore ? model.lastStats : null;
  const statsText = formatStats(fresh, usage, { stopped, finish, pieces, seconds: (end - first) / 1000 });
  if (!failure) el.stats.textContent = statsText;
  if (!failure && msg.content) {
    const meta = document.createElement("p");
    meta.className = "meta";
    meta.textContent = statsText;
    msg.el.append(meta);
  }
  state.gen = null;

  if (failure) {
    const crashed = failure?.code === "engine_crashed";
    if (failure instanceof DeviceLostError || failure?.code === "device_lost" || failure?.code === "disposed" || crashed) {
      state.model?.dispose().catch(() => {});
      state.model = null;
      showInfo(null);
      setStatus(crashed ? "The engine stopped: load the model again" : "The GPU was reset: load the model again", "error");
      const source = state.source;
      showError(failure, {}, { label: "Reload the model", run: () => load(source) });
    } else {
      setStatus(readyText(), "ready");
      showError(failure, {});
    }
  } else {
    setStatus(readyText(), "ready");
  }
  updateControls();
}

function formatStats(lastStats, usage, { stopped, finish, pieces, seconds }) {
  const s = lastStats || {};
  const t = usage?.timings || {};
  const prefill = s.prefillTokensPerSecond ?? t.prefill_tokens_per_s;
  // If the engine has no figure (e.g. stopped early), estimate from the stream itself.
  const decode = s.decodeTokensPerSecond ?? t.decode_tokens_per_s ?? (pieces > 1 && seconds > 0 ? (pieces - 1) / seconds : NaN);
  const promptTokens = s.promptTokens ?? usage?.prompt_tokens;
  const cached = s.cachedTokens ?? usage?.prompt_tokens_details?.cached_tokens;
  const generated = s.generatedTokens ?? usage?.completion_tokens ?? pieces;
  const reason = stopped ? "stopped"
    : s.stopReason === "context" ? "context full"
    : (s.stopReason ?? finish) === "length" ? "max tokens reached" : "done";
  const parts = [`prefill ${formatRate(prefill)} tok/s`, `decode ${formatRate(decode)} tok/s`];
  const sp = s.speculative;
  if (sp) parts.push(`${sp.drafted ? Math.round(100 * sp.acceptance) : 0}% of ${sp.drafted} drafts accepted`);
  if (promptTokens != null) parts.push(`${promptTokens} prompt tokens${cached ? ` (${cached} cached)` : ""}`);
  parts.push(`${generated} generated`, reason);
  return parts.join(" · ");
}

function stop() {
  state.gen?.abort();
}

async function regenerate() {
  if (!state.history.length || state.gen || !state.model) return;
  if (lastIsAssistant()) state.history.pop().el.remove();
  await reply();
}

function newChat() {
  stop();
  for (const m of state.history) m.el.remove();
  state.history = [];
  el.empty.hidden = false;
  el.stats.textContent = "";
  updateControls();
  el.input.focus();
}

// ---------------------------------------------------------------- cache panel

async function refreshCache() {
  let entries = [];
  try {
    entries = await listCachedModels();
  } catch (e) {
    el.storageUsed.textContent = `Could not read the cache: ${e?.message ?? e}`;
    return;
  }
  entries.sort((a, b) => (b.lastUsed ?? 0) - (a.lastUsed ?? 0));
  el.cacheList.replaceChildren();
  for (const entry of entries) {
    const li = document.createElement("li");
    const name = nameFromUrl(entry.url);
    const title = document.createElement("span");
    title.className = "cache-name";
    title.textContent = name;
    title.title = entry.url;
    const meta = document.createElement("span");
    meta.className = "note";
    const size = entry.complete ? formatBytes(entry.cachedBytes ?? entry.size)
      : `${formatBytes(entry.cachedBytes)} of ${formatBytes(entry.size)} (partial download)`;
    const when = entry.lastUsed ? ` · used ${new Date(entry.lastUsed).toLocaleString()}` : "";
    meta.textContent = size + when;
    const loadBtn = document.createElement("button");
    loadBtn.type = "button";
    loadBtn.className = "small";
    loadBtn.textContent = entry.complete ? "Load" : "Resume";
    loadBtn.setAttribute("aria-label", `${loadBtn.textContent} ${name}`);
    loadBtn.addEventListener("click", () => load({ kind: "url", url: entry.url }));
    const del = document.createElement("button");
    del.type = "button";
    del.className = "small danger";
    del.textContent = "Delete";
    del.setAttribute("aria-label", `Delete ${name} from the cache`);
    del.addEventListener("click", async () => {
      del.disabled = true;
      await deleteCachedModel(entry.url).catch((e) => showError(e, {}));
      refreshCache();
    });
    const buttons = document.createElement("span");
    buttons.className = "row";
    buttons.append(loadBtn, del);
    li.append(title, meta, buttons);
    el.cacheList.append(li);
  }
  if (!entries.length) {
    const li = document.createElement("li");
    li.className = "note";
    li.textContent = "No models cached yet.";
    el.cacheList.append(li);
  }
  el.clearCache.disabled = !entries.length;
  markCachedPresets(new Set(entries.filter((e) => e.complete).map((e) => e.url)));
  try {
    const est = await navigator.storage?.estimate?.();
    if (est) el.storageUsed.textContent = `Browser storage used: ${formatBytes(est.usage)} of ${formatBytes(est.quota)} available to this site.`;
  } catch { /* estimate() is optional */ }
}

// ---------------------------------------------------------------- model picker

function fillPresets() {
  for (const p of PRESETS) {
    const o = document.createElement("option");
    o.value = p.id;
    el.preset.append(o);
  }
  markCachedPresets(new Set());
  el.preset.value = DEFAULT_PRESET.id;
  describePreset();
}

function markCachedPresets(cached) {
  for (const o of el.preset.options) {
    const p = PRESETS.find((x) => x.id === o.value);
    o.textContent = `${p.label} · ${p.quant} · ${formatBytes(p.size)}${cached.has(cachedUrl(presetUrl(p))) ? " · cached" : ""}`;
  }
}

function describePreset() {
  const p = PRESETS.find((x) => x.id === el.preset.value);
  el.presetNote.textContent = p ? `${p.quant}, ${formatBytes(p.size)}. ${p.note}` : "";
}

function closePanelOnNarrow() {
  if (document.body.classList.contains("panel-open")) togglePanel(false);
}

function togglePanel(open = !document.body.classList.contains("panel-open")) {
  document.body.classList.toggle("panel-open", open);
  el.panelToggle.setAttribute("aria-expanded", String(open));
  el.panelToggle.textContent = open ? "Back to chat" : "Model & settings";
  if (open) el.panel.querySelector("select, input, button")?.focus();
}

// ---------------------------------------------------------------- wiring

function wire() {
  el.presetForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = PRESETS.find((x) => x.id === el.preset.value);
    if (p) load({ kind: "url", url: presetUrl(p) });
  });
  el.preset.addEventListener("change", describePreset); // no auto-load: arrow keys fire change
  el.urlForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = el.url.value.trim();
    // hf:owner/repo/file.gguf (or hf:owner/repo:Q4_K_M) goes to the package as it is
    let url = v.startsWith("hf:") ? v : null;
    try { url ??= new URL(v, location.href).href; } catch { return; }
    load({ kind: "url", url });
  });
  el.file.addEventListener("change", () => {
    const files = [...(el.file.files ?? [])];
    if (files.length) load({ kind: "file", files });
    el.file.value = ""; // picking the same file again should load it again
  });
  el.cancelLoad.addEventListener("click", () => state.loading?.ctrl.abort());

  el.composer.addEventListener("submit", (ev) => {
    ev.preventDefault();
    send();
  });
  el.input.addEventListener("keydown", (ev) => {
    // Enter sends, Shift+Enter inserts a newline; IME composition keeps Enter for itself.
    if (ev.key === "Enter" && !ev.shiftKey && !ev.altKey && !ev.ctrlKey && !ev.metaKey && !ev.isComposing) {
      ev.preventDefault();
      send();
    } else if (ev.key === "Escape" && state.gen) {
      ev.preventDefault();
      stop();
    }
  });
  el.stop.addEventListener("click", stop);
  el.regenerate.addEventListener("click", regenerate);
  el.newChat.addEventListener("click", newChat);

  for (const [input, out] of [[el.temperature, el.temperatureValue], [el.topP, el.topPValue]]) {
    const show = () => (out.value = Number(input.value).toFixed(2));
    input.addEventListener("input", show);
    show();
  }

  const showJson = () => (el.jsonBox.hidden = !el.jsonMode.checked);
  el.jsonMode.addEventListener("change", showJson);
  showJson();

  el.refreshCache.addEventListener("click", refreshCache);
  el.clearCache.addEventListener("click", async () => {
    if (!confirm("Delete all cached models from this browser?")) return;
    await clearModelCache().catch((e) => showError(e, {}));
    refreshCache();
  });

  el.panelToggle.addEventListener("click", () => togglePanel());
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && document.body.classList.contains("panel-open")) {
      togglePanel(false);
      el.panelToggle.focus();
    }
  });

  // Drag and drop a .gguf anywhere on the page. The counter copes with dragenter/leave firing
  // for every child element.
  let depth = 0;
  const hasFiles = (ev) => [...(ev.dataTransfer?.types ?? [])].includes("Files");
  window.addEventListener("dragenter", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    depth++;
    el.dropOverlay.hidden = false;
  });
  window.addEventListener("dragleave", () => {
    if (--depth <= 0) { depth = 0; el.dropOverlay.hidden = true; }
  });
  window.addEventListener("dragover", (ev) => {
    if (hasFiles(ev)) ev.preventDefault(); // allow dropping (and stop the browser opening the file)
  });
  window.addEventListener("drop", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    depth = 0;
    el.dropOverlay.hidden = true;
    const files = [...ev.dataTransfer.files];
    if (files.length) load({ kind: "file", files });
  });

  // Release GPU memory promptly when the tab goes away.
  window.addEventListener("pagehide", () => state.model?.dispose().catch(() => {}));
}

function start() {
  fillPresets();
  wire();
  updateControls();
  refreshCache();

  const requested = new URLSearchParams(location.search).get("model");
  if (requested) {
    // ?model=URL: a shared link; load it right away.
    let url;
    try { url = requested.startsWith("hf:") ? requested : new URL(requested, location.href).href; } catch { url = null; }
    if (url) {
      const preset = presetForUrl(url);
      if (preset) el.preset.value = preset.id;
      else el.url.value = url;
      describePreset();
      load({ kind: "url", url });
      return;
    }
    setStatus("The model link in the address is not a valid URL", "error");
    return;
  }
  // Fresh visit: open ready to chat with the small default model.
  load({ kind: "url", url: presetUrl(DEFAULT_PRESET) });
}

// Browser tests reach the loaded model through this (device loss, engine crash).
if (new URLSearchParams(location.search).has("test-hooks")) window.__demo = state;

start();
