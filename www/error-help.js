// Turns the package's typed errors into messages a person can act on. Branches with
// `instanceof` on the classes the package exports (the stable, documented way), with the
// error's `code` as a fallback for errors that are not instances (e.g. from another realm).
import {
  LlamaWebGPUError, WebGPUUnavailableError, LimitsError, OutOfMemoryError, DeviceLostError,
  InvalidModelError, UnsupportedModelError, NetworkError, HttpError, QuotaExceededError, AbortError,
  NumericalError, EngineCrashedError, SplitModelError, ModelNotFoundError, GatedModelError,
} from "../pkg/index.js";

export function isAbort(e) {
  return e instanceof AbortError || e?.name === "AbortError" || e?.code === "aborted";
}

const is = (e, Class, code) => e instanceof Class || e?.code === code;

/**
 * @param {unknown} e the thrown value
 * @param {{ url?: string, isFile?: boolean, isLocalDefault?: boolean }} ctx what was being loaded
 * @returns {{ title: string, detail: string, help: string[] }}
 */
export function describeError(e, ctx = {}) {
  const detail = e?.message ? String(e.message) : String(e);
  if (is(e, WebGPUUnavailableError, "no_webgpu")) {
    return {
      title: "WebGPU is not available in this browser",
      detail,
      help: [
        "Use a browser with WebGPU: Chrome or Edge 113+ on Windows, macOS or ChromeOS, Chrome 121+ on Android, Safari 26+, or Firefox 141+ on Windows.",
        "On Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu (and #enable-vulkan) turned on.",
        "Make sure hardware acceleration is enabled in the browser settings; chrome://gpu shows whether WebGPU is active.",
        "WebGPU only works on https:// pages or on localhost.",
      ],
    };
  }
  if (is(e, LimitsError, "limits")) {
    return {
      title: "Your GPU's limits are too small for this model",
      detail,
      help: ["Try a smaller model (SmolLM2 or Llama 3.2 1B), or another browser or GPU with larger buffer limits."],
    };
  }
  if (is(e, OutOfMemoryError, "out_of_memory")) {
    return {
      title: "Out of GPU memory",
      detail,
      help: ["Close other tabs or apps that use the GPU, or pick a smaller model."],
    };
  }
  if (is(e, DeviceLostError, "device_lost")) {
    return {
      title: "The GPU was reset (device lost)",
      detail,
      help: ["This happens after a driver crash, a GPU timeout or when the system reclaims memory. Load the model again."],
    };
  }
  if (is(e, InvalidModelError, "invalid_model")) {
    return {
      title: ctx.isFile ? "This file is not a valid GGUF model" : "The download is not a valid GGUF model",
      detail,
      help: ctx.isFile
        ? ["Pick a .gguf file (e.g. a Q4_K_M Llama 3 conversion). The file may also be truncated."]
        : ["Check that the URL points at the .gguf file itself (on Hugging Face: a /resolve/ link, not /blob/)."],
    };
  }
  if (is(e, UnsupportedModelError, "unsupported_model")) {
    return {
      title: "This model is not supported",
      detail,
      help: ["llama-webgpu runs Llama-architecture GGUF models (Llama 3.x, SmolLM2 and similar); the message above says what this file needs."],
    };
  }
  if (is(e, SplitModelError, "split_model")) {
    return {
      title: "The parts of this split model do not add up",
      detail,
      help: ["Give every part of the model (NAME-00001-of-0000N.gguf … -0000N-of-0000N.gguf), each once, all from the same download: select or drop them together."],
    };
  }
  if (is(e, ModelNotFoundError, "not_found")) {
    return {
      title: "Not found on Hugging Face",
      detail,
      help: ["Check the repo (owner/name), the file name or quant, and the revision. hf:owner/repo:Q4_K_M picks a repo's Q4_K_M file."],
    };
  }
  if (is(e, GatedModelError, "gated")) {
    return {
      title: "This model is gated on Hugging Face",
      detail,
      help: ["Its files need a signed-in account that accepted the license. Use an ungated conversion (for example bartowski's or unsloth's GGUF repos)."],
    };
  }
  if (is(e, HttpError, "http")) {
    const status = e?.status;
    const help = [];
    if (ctx.isLocalDefault && status === 404) {
      help.push("The default model is served by `npm run demo` (it needs SMOLLM2_GGUF; source scripts/setup.sh). Pick another model meanwhile.");
    } else if (status === 401 || status === 403) {
      help.push("The file needs a login or is gated. Use a public mirror of the model.");
    } else if (status === 404) {
      help.push("Check the URL.");
    } else if (status >= 500) {
      help.push("The server had a problem. Try again later.");
    }
    return { title: `The server answered HTTP ${status ?? "error"}`, detail, help };
  }
  if (is(e, NetworkError, "network")) {
    return {
      title: "Could not download the model",
      detail,
      help: [
        "Check your connection.",
        "If the model is on another site, that server must allow cross-origin requests (CORS: Access-Control-Allow-Origin) and Range requests. Hugging Face /resolve/ links do; many other hosts do not.",
      ],
    };
  }
  if (is(e, QuotaExceededError, "quota_exceeded")) {
    return {
      title: "Browser storage is full",
      detail,
      help: ["Delete cached models below, or untick “Keep downloaded models in browser storage” and load again."],
    };
  }
  if (e?.code === "context_overflow") {
    return { title: "The conversation is longer than the model's context", detail, help: ["Start a new chat, or shorten your message."] };
  }
  if (is(e, EngineCrashedError, "engine_crashed")) {
    return {
      title: "The engine stopped",
      detail,
      help: ["Its WebAssembly instance crashed (for example out of memory on a very large file). Load the model again."],
    };
  }
  if (is(e, NumericalError, "numerical")) {
    return {
      title: "The model produced invalid numbers (NaN/Inf)",
      detail,
      help: ["The file's weights are probably corrupt. Download it again, or try another quantization."],
    };
  }
  if (e instanceof LlamaWebGPUError) return { title: "Something went wrong", detail, help: [] };
  return { title: "Unexpected error", detail, help: ["Details are in the browser console."] };
}
