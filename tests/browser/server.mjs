#!/usr/bin/env node
// Static HTTP server for the browser tests (no dependencies). Serves files under `root` on
// 127.0.0.1 with HTTP Range, ETag and CORS, counts the body bytes it sends per path, and can
// misbehave on demand: crash mid-download (failAfterBytes), hang (stallAfterBytes), answer an
// error status (failStatus), ignore Range (range: false), omit CORS (cors: false), or answer
// however a test likes (intercept: a lying server).
//
//   node tests/browser/server.mjs [ROOT] [PORT]     # manual use; ROOT defaults to the cwd
//
// startServer({ root, port = 0, cors = true, range = true, headers }) →
//   { origin, port, stats: { bytes: {path: n}, requests: [{method, path, range, status}] },
//     kill(), restart(), close(), failAfterBytes(path, n), stallAfterBytes(path, n, { every }),
//     failStatus(path, status, count = Infinity), intercept(path, fn | null), resetStats() }
// intercept: fn({req, res, start, end, size, file, status, headers, range}) runs before a file
// answer (headers computed, nothing sent) and returns true when it answered itself.
// `path` is the URL pathname ("/tests/fixtures/x.gguf"), without the query string.
import { createServer } from "node:http";
import { createReadStream, existsSync, readdirSync, statSync } from "node:fs";
import { extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { MIME, parseRange } from "../../www/serve.mjs";

const CORS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Expose-Headers": "Content-Range, Content-Length, ETag, Accept-Ranges, Last-Modified, Content-Encoding, X-Linked-Etag",
};

export async function startServer({ root, port = 0, cors = true, range = true, headers } = {}) {
  root = resolve(root ?? process.cwd());
  const stats = { bytes: {}, requests: [] };
  const sockets = new Set();
  // Pending misbehaviours, keyed by path.
  const crashAt = new Map(); // path → total bytes after which the server "crashes"
  const stallAt = new Map(); // path → total bytes after which responses stop (socket kept open)
  const stallEvery = new Set(); // paths whose every response past the mark hangs, not just the first
  const statusFor = new Map(); // path → {status, left}
  const intercepts = new Map(); // path → fn

  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) {
        res.writeHead(500, { "Content-Type": "text/plain" });
        res.end(String(e?.stack || e));
      } else {
        res.destroy();
      }
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });

  function base() {
    return { ...(cors ? CORS : {}), "Cache-Control": "no-cache" };
  }
  /** The caller's `headers` (object, or function of the path) override ours, ETag included. */
  function custom(path) {
    return (typeof headers === "function" ? headers(path) : headers) || {};
  }

  function log(req, path, status) {
    stats.requests.push({ method: req.method, path, range: req.headers.range ?? null, status });
  }

  async function handle(req, res) {
    const url = new URL(req.url, "http://x");
    let path;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      path = url.pathname;
    }
    if (req.method === "OPTIONS") {
      // CORS preflight (the Range header is not always CORS-safelisted).
      const h = cors
        ? {
          ...CORS,
          "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
          "Access-Control-Allow-Headers": req.headers["access-control-request-headers"] || "Range",
          "Access-Control-Max-Age": "600",
        }
        : { Allow: "GET, HEAD, OPTIONS" };
      log(req, path, 204);
      res.writeHead(204, h);
      return res.end();
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      log(req, path, 405);
      res.writeHead(405, { ...base(), Allow: "GET, HEAD, OPTIONS" });
      return res.end();
    }
    const forced = statusFor.get(path);
    if (forced && forced.left > 0) {
      if (--forced.left === 0) statusFor.delete(path);
      log(req, path, forced.status);
      res.writeHead(forced.status, { ...base(), "Content-Type": "text/plain" });
      return res.end(`forced ${forced.status}\n`);
    }
    const file = resolve(join(root, path));
    if (file !== root && !file.startsWith(root + sep)) {
      log(req, path, 403);
      res.writeHead(403, base());
      return res.end();
    }
    let st = existsSync(file) ? statSync(file) : null;
    let target = file;
    if (st?.isDirectory()) {
      const index = join(file, "index.html");
      if (existsSync(index)) {
        target = index;
        st = statSync(index);
      } else {
        // A tiny listing, so any directory is an HTML page a test can navigate to.
        const items = readdirSync(file).map((n) => `<li><a href="${encodeURI(n)}">${n}</a></li>`).join("");
        const body = Buffer.from(`<!doctype html><meta charset="utf-8"><title>${path}</title><ul>${items}</ul>\n`);
        log(req, path, 200);
        res.writeHead(200, { ...base(), "Content-Type": "text/html; charset=utf-8", "Content-Length": body.length });
        return res.end(req.method === "HEAD" ? undefined : body);
      }
    }
    if (!st || !st.isFile()) {
      log(req, path, 404);
      res.writeHead(404, { ...base(), "Content-Type": "text/plain" });
      return res.end("not found\n");
    }
    const size = st.size;
    const h = {
      ...base(),
      "Content-Type": MIME[extname(target).toLowerCase()] || "application/octet-stream",
      ETag: `"${size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`,
      "Last-Modified": st.mtime.toUTCString(),
    };
    if (range) h["Accept-Ranges"] = "bytes";
    let start = 0;
    let end = size - 1;
    let status = 200;
    const r = range && req.headers.range ? parseRange(req.headers.range, size) : null;
    if (r === "unsatisfiable") {
      log(req, path, 416);
      res.writeHead(416, { ...h, "Content-Range": `bytes */${size}` });
      return res.end();
    }
    if (r) {
      ({ start, end } = r);
      status = 206;
      h["Content-Range"] = `bytes ${start}-${end}/${size}`;
    }
    h["Content-Length"] = end - start + 1;
    Object.assign(h, custom(path));
    const hook = intercepts.get(path);
    if (hook && (await hook({ req, res, start, end, size, file: target, status, headers: h, range: req.headers.range ?? null }))) {
      log(req, path, res.statusCode);
      return;
    }
    log(req, path, status);
    res.writeHead(status, h);
    if (req.method === "HEAD" || size === 0) return res.end();
    await pump(path, target, start, end, res);
  }

  function pump(path, file, start, end, res) {
    return new Promise((done) => {
      const rs = createReadStream(file, { start, end, highWaterMark: 64 << 10 });
      const finish = () => {
        rs.destroy();
        done();
      };
      res.on("close", finish);
      rs.on("error", () => {
        res.destroy();
        finish();
      });
      rs.on("end", () => res.end());
      rs.on("data", (chunk) => {
        const before = stats.bytes[path] ?? 0;
        const crash = crashAt.get(path);
        const stall = stallAt.get(path);
        const limit = Math.min(crash ?? Infinity, stall ?? Infinity);
        if (before + chunk.length >= limit) {
          const part = chunk.subarray(0, Math.max(0, limit - before));
          stats.bytes[path] = before + part.length;
          rs.pause();
          if (part.length) res.write(part);
          if (crash != null && crash === limit) {
            crashAt.delete(path);
            kill();
          } else if (!stallEvery.has(path)) {
            stallAt.delete(path); // this response hangs until its socket closes
          }
          return;
        }
        stats.bytes[path] = before + chunk.length;
        if (!res.write(chunk)) {
          rs.pause();
          res.once("drain", () => rs.resume());
        }
      });
    });
  }

  function listen() {
    return new Promise((ok, fail) => {
      server.once("error", fail);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", fail);
        port = server.address().port;
        ok();
      });
    });
  }

  let listening = false;
  let closing = Promise.resolve();
  /** Simulated crash: every open connection is destroyed and the port stops listening. */
  function kill() {
    for (const s of sockets) s.destroy();
    sockets.clear();
    if (!listening) return closing;
    listening = false;
    closing = new Promise((ok) => server.close(() => ok()));
    return closing;
  }

  await listen();
  listening = true;
  const origin = `http://127.0.0.1:${port}`;
  return {
    origin,
    port,
    stats,
    root,
    kill,
    get listening() { return listening; },
    /** Listen again on the same port after kill(). */
    async restart() {
      if (listening) return;
      await closing;
      await listen();
      listening = true;
    },
    close: kill,
    /** The next time the bytes sent for `path` (stats.bytes[path], cumulative) reach n: kill(). */
    failAfterBytes(path, n) { crashAt.set(path, n); },
    /** Like failAfterBytes, but the response just stops sending and the connection stays open. */
    /**
     * The response that carries `path`'s served bytes past `n` (all responses together) sends up
     * to `n` and hangs; later requests are answered whole, or with `every`, hang there too until
     * `stallAfterBytes(path, null)`. A client that drops a hung request's promise and asks again
     * gets through without `every`.
     */
    stallAfterBytes(path, n, { every = false } = {}) {
      if (n == null) {
        stallAt.delete(path);
        stallEvery.delete(path);
        return;
      }
      stallAt.set(path, n);
      if (every) stallEvery.add(path);
      else stallEvery.delete(path);
    },
    /** Answer the next `count` GET/HEAD requests of `path` with `status`. */
    failStatus(path, status, count = Infinity) { statusFor.set(path, { status, left: count }); },
    /** Answer `path` with `fn` (see above); null removes it. */
    intercept(path, fn) { if (fn) intercepts.set(path, fn); else intercepts.delete(path); },
    resetStats() {
      for (const k of Object.keys(stats.bytes)) delete stats.bytes[k];
      stats.requests.length = 0;
    },
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = process.argv[2] || process.cwd();
  const port = Number(process.argv[3] || 8080);
  const s = await startServer({ root, port });
  console.log(`serving ${resolve(root)} at ${s.origin}/`);
}
