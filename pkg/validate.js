// @ts-check
// Request validation, before anything reaches the engine: a request the package cannot honour
// as written is an InvalidArgumentError that names the parameter, never a value silently
// ignored or a deserializer's message ("invalid type: floating point -1.0, expected usize").
import { InvalidArgumentError } from "./errors.js";

const ROLES = ["system", "user", "assistant", "tool"];

/** Accepted chat.completions.create fields. Fields OpenAI defines that change nothing here
 *  (model, user, metadata...) are accepted; those the engine cannot honour are checked below. */
const CHAT_FIELDS = new Set([
  "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop",
  "repetition_penalty", "context_policy", "response_format", "tools", "tool_choice", "logprobs",
  "top_logprobs", "signal", "n", "model", "user", "metadata", "store", "stream_options",
  "parallel_tool_calls", "presence_penalty", "frequency_penalty", "logit_bias", "speculative",
]);

/** Accepted generate() options. */
const GENERATE_OPTIONS = new Set([
  "maxTokens", "temperature", "topK", "topP", "minP", "repetitionPenalty", "seed", "stop", "contextPolicy",
  "jsonSchema", "jsonObject", "grammar", "logprobs", "signal", "speculative",
]);

function fail(message) {
  throw new InvalidArgumentError(message);
}

function show(v) {
  if (typeof v === "number" || typeof v === "boolean" || v == null) return String(v);
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : typeof v;
}

/** Edit distance, for "did you mean". */
function distance(a, b) {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const t = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = t;
    }
  }
  return d[b.length];
}

function unknown(where, key, known) {
  let best = null;
  for (const k of known) {
    const n = distance(key.toLowerCase(), k.toLowerCase());
    if (n <= Math.max(2, key.length / 3) && (!best || n < best.n)) best = { k, n };
  }
  fail(`${where}: unknown ${where === "generate" ? "option" : "field"} '${key}'${best ? ` (did you mean '${best.k}'?)` : ""}`);
}

const present = (v) => v !== undefined && v !== null;

function integer(name, v, min, max = Number.MAX_SAFE_INTEGER, what = null) {
  if (!present(v)) return;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    fail(`${name} must be ${what ?? (min === 1 ? "a positive integer" : min === 0 && max === Number.MAX_SAFE_INTEGER ? "a non-negative integer" : `an integer from ${min} to ${max}`)}, got ${show(v)}`);
  }
}

function number(name, v, { min = -Infinity, max = Infinity, minOpen = false } = {}, what) {
  if (!present(v)) return;
  if (typeof v !== "number" || !Number.isFinite(v) || v > max || (minOpen ? v <= min : v < min)) fail(`${name} must be ${what}, got ${show(v)}`);
}

function boolean(name, v) {
  if (present(v) && typeof v !== "boolean") fail(`${name} must be true or false, got ${show(v)}`);
}

function stop(name, v) {
  if (!present(v)) return;
  if (typeof v === "string") return;
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) fail(`${name} must be a string or an array of strings, got ${show(v)}`);
}

function contextPolicy(name, v) {
  if (present(v) && v !== "error" && v !== "sliding") fail(`${name} must be "error" or "sliding", got ${show(v)}`);
}

function speculative(name, v) {
  if (present(v) && v !== false && v !== "lookup" && v !== "draft") fail(`${name} must be "lookup", "draft" or false, got ${show(v)}`);
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Message content: a string, or an array of text parts (what the engine reads). */
function content(where, c, nullable) {
  if (c === null || c === undefined) {
    if (!nullable) fail(`${where}.content is required (a string or an array of text parts)`);
    return;
  }
  if (typeof c === "string") return;
  if (!Array.isArray(c)) fail(`${where}.content must be a string or an array of text parts, got ${show(c)}`);
  c.forEach((p, i) => {
    if (!isObject(p) || p.type !== "text" || typeof p.text !== "string") {
      const t = isObject(p) && typeof p.type === "string" ? `'${p.type}' parts are not supported (text only)` : "must be {type: \"text\", text: string}";
      fail(`${where}.content[${i}]: ${t}`);
    }
  });
}

function toolCalls(where, calls) {
  if (!Array.isArray(calls)) fail(`${where}.tool_calls must be an array, got ${show(calls)}`);
  calls.forEach((c, i) => {
    const w = `${where}.tool_calls[${i}]`;
    if (!isObject(c)) fail(`${w} must be {id, type: "function", function: {name, arguments}}`);
    if (present(c.type) && c.type !== "function") fail(`${w}.type must be "function", got ${show(c.type)}`);
    if (present(c.id) && typeof c.id !== "string") fail(`${w}.id must be a string, got ${show(c.id)}`);
    if (!isObject(c.function) || typeof c.function.name !== "string" || !c.function.name) fail(`${w}.function.name must be a non-empty string`);
    const a = c.function.arguments;
    if (present(a) && typeof a !== "string" && !isObject(a)) fail(`${w}.function.arguments must be a JSON string, got ${show(a)}`);
    if (typeof a === "string" && a.trim()) {
      try {
        JSON.parse(a);
      } catch {
        fail(`${w}.function.arguments is not valid JSON`);
      }
    }
  });
}

function messages(list) {
  if (!Array.isArray(list) || list.length === 0) fail("messages must be a non-empty array");
  list.forEach((m, i) => {
    const w = `messages[${i}]`;
    if (!isObject(m)) fail(`${w} must be an object {role, content}, got ${show(m)}`);
    if (!ROLES.includes(m.role)) fail(`${w}.role must be one of ${ROLES.map((r) => `"${r}"`).join(", ")}, got ${show(m.role)}`);
    if (present(m.name) && typeof m.name !== "string") fail(`${w}.name must be a string, got ${show(m.name)}`);
    if (m.role === "assistant") {
      const calls = present(m.tool_calls) ? (toolCalls(w, m.tool_calls), m.tool_calls.length) : 0;
      content(w, m.content, calls > 0);
    } else {
      if (present(m.tool_calls)) fail(`${w}: tool_calls belong to assistant messages, not ${m.role}`);
      content(w, m.content, false);
    }
    if (m.role === "tool") {
      if (typeof m.tool_call_id !== "string" || !m.tool_call_id) fail(`${w}: a tool message needs tool_call_id (the id of the call it answers)`);
    } else if (present(m.tool_call_id)) {
      fail(`${w}: tool_call_id belongs to tool messages, not ${m.role}`);
    }
  });
}

function tools(list, choice) {
  let names = [];
  if (present(list)) {
    if (!Array.isArray(list)) fail(`tools must be an array, got ${show(list)}`);
    names = list.map((t, i) => {
      const w = `tools[${i}]`;
      if (!isObject(t) || t.type !== "function" || !isObject(t.function)) fail(`${w} must be {type: "function", function: {name, parameters}}`);
      const f = t.function;
      if (typeof f.name !== "string" || !f.name) fail(`${w}.function.name must be a non-empty string`);
      if (present(f.description) && typeof f.description !== "string") fail(`${w}.function.description must be a string`);
      if (present(f.parameters) && !isObject(f.parameters)) fail(`${w}.function.parameters must be a JSON schema object`);
      return f.name;
    });
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup) fail(`tools: the function name '${dup}' appears twice`);
  }
  if (!present(choice)) return;
  if (choice === "none" || choice === "auto") return;
  if (choice === "required") {
    if (!names.length) fail('tool_choice "required" needs a non-empty tools list');
    return;
  }
  if (isObject(choice) && choice.type === "function" && isObject(choice.function) && typeof choice.function.name === "string") {
    if (!names.includes(choice.function.name)) fail(`tool_choice names '${choice.function.name}', which is not in tools`);
    return;
  }
  fail(`tool_choice must be "auto", "none", "required" or {type: "function", function: {name}}, got ${show(choice)}`);
}

/** Throws an InvalidArgumentError naming the first thing wrong with a chat.completions.create body. */
export function validateChatRequest(body) {
  if (!isObject(body)) fail(`chat.completions.create: the request must be an object, got ${show(body)}`);
  for (const k of Object.keys(body)) if (!CHAT_FIELDS.has(k)) unknown("chat.completions.create", k, CHAT_FIELDS);
  messages(body.messages);
  integer("max_tokens", body.max_tokens, 1);
  integer("max_completion_tokens", body.max_completion_tokens, 1);
  number("temperature", body.temperature, { min: 0, max: 2 }, "a number from 0 to 2");
  number("top_p", body.top_p, { min: 0, max: 1, minOpen: true }, "a number above 0, at most 1");
  integer("seed", body.seed, 0);
  stop("stop", body.stop);
  number("repetition_penalty", body.repetition_penalty, { min: 0, minOpen: true }, "a positive number");
  contextPolicy("context_policy", body.context_policy);
  boolean("stream", body.stream);
  boolean("logprobs", body.logprobs);
  integer("top_logprobs", body.top_logprobs, 0, 20);
  if (present(body.top_logprobs) && body.logprobs !== true) fail("top_logprobs needs logprobs: true");
  if (present(body.n) && body.n !== 1) fail(`n must be 1 (one choice per request), got ${show(body.n)}`);
  for (const k of ["presence_penalty", "frequency_penalty"]) {
    if (present(body[k]) && body[k] !== 0) fail(`${k} is not supported (use repetition_penalty), got ${show(body[k])}`);
  }
  if (present(body.logit_bias) && !(isObject(body.logit_bias) && Object.keys(body.logit_bias).length === 0)) fail("logit_bias is not supported");
  if (present(body.model) && typeof body.model !== "string") fail(`model must be a string, got ${show(body.model)}`);
  boolean("parallel_tool_calls", body.parallel_tool_calls);
  speculative("speculative", body.speculative);
  if (present(body.response_format) && !isObject(body.response_format)) fail(`response_format must be an object, got ${show(body.response_format)}`);
  tools(body.tools, body.tool_choice);
}

/** Throws an InvalidArgumentError naming the first thing wrong with generate() options. */
export function validateGenerateOptions(o) {
  if (!isObject(o)) fail(`generate: options must be an object, got ${show(o)}`);
  for (const k of Object.keys(o)) if (!GENERATE_OPTIONS.has(k)) unknown("generate", k, GENERATE_OPTIONS);
  integer("maxTokens", o.maxTokens, 1);
  number("temperature", o.temperature, { min: 0 }, "a non-negative number");
  integer("topK", o.topK, 0);
  number("topP", o.topP, { min: 0, max: 1, minOpen: true }, "a number above 0, at most 1");
  number("minP", o.minP, { min: 0, max: 1 }, "a number from 0 to 1");
  number("repetitionPenalty", o.repetitionPenalty, { min: 0, minOpen: true }, "a positive number");
  integer("seed", o.seed, 0);
  stop("stop", o.stop);
  contextPolicy("contextPolicy", o.contextPolicy);
  boolean("jsonObject", o.jsonObject);
  if (present(o.jsonSchema) && typeof o.jsonSchema !== "boolean" && !isObject(o.jsonSchema)) fail(`jsonSchema must be a JSON schema (an object or a boolean), got ${show(o.jsonSchema)}`);
  if (present(o.grammar) && typeof o.grammar !== "string" && !isObject(o.grammar)) fail(`grammar must be a Lark string or {lark|gbnf|regex: string}, got ${show(o.grammar)}`);
  integer("logprobs", o.logprobs, 0, 20);
  speculative("speculative", o.speculative);
}

/** A token-id prompt: an array (or typed array) of non-negative integers. */
export function validatePrompt(prompt) {
  if (typeof prompt === "string") return;
  if (prompt == null || typeof prompt !== "object" || typeof prompt.length !== "number") fail(`generate: the prompt must be a string or an array of token ids, got ${show(prompt)}`);
  for (let i = 0; i < prompt.length; i++) {
    const t = prompt[i];
    if (!Number.isInteger(t) || t < 0 || t > 0xffffffff) fail(`generate: prompt[${i}] must be a token id (a non-negative integer), got ${show(t)}`);
  }
}

/** Accepted embeddings.create fields (OpenAI's, less those that change nothing here). */
const EMBEDDING_FIELDS = new Set(["input", "pooling", "normalize", "encoding_format", "model", "user", "dimensions", "signal"]);

/** Throws an InvalidArgumentError naming the first thing wrong with an embeddings.create body. */
export function validateEmbeddingsRequest(body) {
  if (!isObject(body)) fail(`embeddings.create: the request must be an object, got ${show(body)}`);
  for (const k of Object.keys(body)) if (!EMBEDDING_FIELDS.has(k)) unknown("embeddings.create", k, EMBEDDING_FIELDS);
  const input = body.input;
  // OpenAI's forms: a string, strings, one token-id array, token-id arrays
  const tokens = (w, a) => {
    if (a.length === 0) fail(`${w} must not be empty`);
    a.forEach((t, j) => {
      if (!Number.isInteger(t) || t < 0 || t > 0xffffffff) fail(`${w}[${j}] must be a token id (a non-negative integer), got ${show(t)}`);
    });
  };
  if (typeof input === "string") {
    if (!input) fail("input must not be an empty string");
  } else if (Array.isArray(input) && input.length > 0) {
    if (typeof input[0] === "number") tokens("input", input);
    else {
      input.forEach((x, i) => {
        if (typeof x === "string") {
          if (!x) fail(`input[${i}] must not be an empty string`);
        } else if (Array.isArray(x)) tokens(`input[${i}]`, x);
        else fail(`input[${i}] must be a string or an array of token ids, got ${show(x)}`);
      });
    }
  } else {
    fail(`input must be a non-empty string, an array of strings, or token ids, got ${Array.isArray(input) ? "an empty array" : show(input)}`);
  }
  if (present(body.pooling) && !["mean", "last", "cls"].includes(body.pooling)) fail(`pooling must be "mean", "last" or "cls", got ${show(body.pooling)}`);
  boolean("normalize", body.normalize);
  if (present(body.encoding_format) && body.encoding_format !== "float" && body.encoding_format !== "base64") fail(`encoding_format must be "float" or "base64", got ${show(body.encoding_format)}`);
  if (present(body.dimensions)) fail("dimensions is not supported (the vector has the model's hidden size)");
  if (present(body.model) && typeof body.model !== "string") fail(`model must be a string, got ${show(body.model)}`);
}
