// Request validation (pkg/validate.js) in node, no browser: each request the package cannot
// honour as written is an InvalidArgumentError naming the parameter; valid OpenAI-style
// requests pass. (package.test.mjs checks that chat.completions.create and generate apply it.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { validateChatRequest, validateGenerateOptions, validatePrompt } from "../../pkg/validate.js";
import { InvalidArgumentError } from "../../pkg/errors.js";

const user = [{ role: "user", content: "Hi" }];
const tool = { type: "function", function: { name: "get_weather", parameters: { type: "object" } } };

function rejects(fn, re) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof InvalidArgumentError, `${e?.name}: ${e?.message}`);
    assert.equal(e.name, "InvalidArgumentError");
    assert.match(e.message, re);
    return true;
  });
}

test("chat requests: what the issue found accepted silently is refused, naming the parameter", () => {
  rejects(() => validateChatRequest({ messages: [{ role: "robot", content: "Hi" }] }), /messages\[0\]\.role must be one of "system", "user", "assistant", "tool", got "robot"/);
  rejects(() => validateChatRequest({ messages: [...user, { role: "tool", content: "22 C" }] }), /messages\[1\]: a tool message needs tool_call_id/);
  rejects(() => validateChatRequest({ messages: user, tool_choice: "required" }), /tool_choice "required" needs a non-empty tools list/);
  rejects(() => validateChatRequest({ messages: user, tools: [], tool_choice: "required" }), /tool_choice "required"/);
  rejects(() => validateChatRequest({ messages: user, tools: [tool], tool_choice: { type: "function", function: { name: "nope" } } }), /tool_choice names 'nope', which is not in tools/);
  rejects(() => validateChatRequest({ messages: user, tools: [tool], tool_choice: "sometimes" }), /tool_choice must be/);
  rejects(() => validateChatRequest({ messages: user, n: 3 }), /n must be 1 \(one choice per request\), got 3/);
  rejects(() => validateChatRequest({ messages: user, max_tokens: -1 }), /^max_tokens must be a positive integer, got -1$/);
  rejects(() => validateChatRequest({ messages: user, max_tokens: 2.5 }), /max_tokens must be a positive integer, got 2.5/);
  rejects(() => validateChatRequest({ messages: user, max_tokens: "5" }), /max_tokens must be a positive integer, got "5"/);
  rejects(() => validateChatRequest({ messages: user, max_completion_tokens: 0 }), /max_completion_tokens must be a positive integer/);
  rejects(() => validateChatRequest({ messages: user, temperature: -0.1 }), /temperature must be a number from 0 to 2/);
  rejects(() => validateChatRequest({ messages: user, temperature: NaN }), /temperature must be a number from 0 to 2, got NaN/);
  rejects(() => validateChatRequest({ messages: user, top_p: 0 }), /top_p must be a number above 0, at most 1/);
  rejects(() => validateChatRequest({ messages: user, seed: -3 }), /seed must be a non-negative integer/);
  rejects(() => validateChatRequest({ messages: user, top_logprobs: 30, logprobs: true }), /top_logprobs must be an integer from 0 to 20/);
  rejects(() => validateChatRequest({ messages: user, top_logprobs: 3 }), /top_logprobs needs logprobs: true/);
  rejects(() => validateChatRequest({ messages: user, stop: [1] }), /stop must be a string or an array of strings/);
  rejects(() => validateChatRequest({ messages: user, presence_penalty: 0.5 }), /presence_penalty is not supported/);
  rejects(() => validateChatRequest({ messages: user, logit_bias: { 5: 10 } }), /logit_bias is not supported/);
  rejects(() => validateChatRequest({ messages: user, context_policy: "wrap" }), /context_policy must be "error" or "sliding"/);
  rejects(() => validateChatRequest({ messages: user, max_token: 5 }), /unknown field 'max_token' \(did you mean 'max_tokens'\?\)/);
  rejects(() => validateChatRequest({ messages: user, temprature: 0.7 }), /unknown field 'temprature' \(did you mean 'temperature'\?\)/);
  rejects(() => validateChatRequest({ messages: [] }), /messages must be a non-empty array/);
  rejects(() => validateChatRequest({}), /messages must be a non-empty array/);
  rejects(() => validateChatRequest(null), /the request must be an object/);
  rejects(() => validateChatRequest({ messages: [{ role: "user" }] }), /messages\[0\]\.content is required/);
  rejects(() => validateChatRequest({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }), /messages\[0\]\.content\[0\]: 'image_url' parts are not supported/);
  rejects(() => validateChatRequest({ messages: [{ role: "assistant", content: null }] }), /messages\[0\]\.content is required/);
  rejects(() => validateChatRequest({ messages: [{ role: "user", content: "x", tool_call_id: "a" }] }), /tool_call_id belongs to tool messages/);
  rejects(() => validateChatRequest({ messages: [{ role: "assistant", content: null, tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{nope" } }] }] }), /arguments is not valid JSON/);
  rejects(() => validateChatRequest({ messages: user, tools: [{ type: "function", function: {} }] }), /tools\[0\]\.function\.name must be a non-empty string/);
  rejects(() => validateChatRequest({ messages: user, tools: [tool, tool] }), /appears twice/);
});

test("chat requests: valid OpenAI-style requests pass", () => {
  validateChatRequest({ messages: user });
  validateChatRequest({ model: "x", messages: [{ role: "system", content: "Be brief." }, { role: "user", content: [{ type: "text", text: "Hi" }] }], max_tokens: 5, temperature: 0, top_p: 1, seed: 0, stop: "\n", stream: true, n: 1, logprobs: true, top_logprobs: 2, presence_penalty: 0, user: "u", signal: new AbortController().signal });
  validateChatRequest({
    messages: [
      ...user,
      { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }] },
      { role: "tool", tool_call_id: "call_1", content: "22 C" },
    ],
    tools: [tool],
    tool_choice: { type: "function", function: { name: "get_weather" } },
  });
  validateChatRequest({ messages: user, tools: [tool], tool_choice: "required" });
  validateChatRequest({ messages: user, tool_choice: "none" });
  validateChatRequest({ messages: user, max_tokens: null, temperature: undefined });
});

test("generate options and prompts", () => {
  validateGenerateOptions({ maxTokens: 8, temperature: 0, topK: 40, topP: 0.9, minP: 0.05, repetitionPenalty: 1.1, seed: 1, stop: ["\n"], contextPolicy: "sliding", logprobs: 2, signal: null });
  validateGenerateOptions({});
  rejects(() => validateGenerateOptions({ maxTokens: -1 }), /maxTokens must be a positive integer, got -1/);
  rejects(() => validateGenerateOptions({ max_tokens: 5 }), /generate: unknown option 'max_tokens' \(did you mean 'maxTokens'\?\)/);
  rejects(() => validateGenerateOptions({ topK: -1 }), /topK must be a non-negative integer/);
  rejects(() => validateGenerateOptions({ minP: 2 }), /minP must be a number from 0 to 1/);
  rejects(() => validateGenerateOptions({ logprobs: 21 }), /logprobs must be an integer from 0 to 20/);
  validatePrompt("text");
  validatePrompt([1, 2, 3]);
  validatePrompt(new Uint32Array([1, 2]));
  rejects(() => validatePrompt([1, -2]), /prompt\[1\] must be a token id/);
  rejects(() => validatePrompt([1.5]), /prompt\[0\] must be a token id/);
  rejects(() => validatePrompt(42), /the prompt must be a string or an array of token ids/);
});
