// www/serve.mjs, the demo server, in node (no browser): it serves only www/, pkg/ and the models
// it announces, checks Host, follows no symlink out of its folders, and answers malformed
// requests with 400 while it keeps running.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDemoServer, DEFAULT_MODEL_ROUTE } from "../../www/serve.mjs";

let srv, dir;

/** A raw HTTP/1.1 exchange: `head` is the request line and headers, without the final CRLFs. */
function raw(head) {
  return new Promise((resolve, reject) => {
    const s = connect(srv.port, "127.0.0.1");
    let out = "";
    s.on("data", (d) => (out += d));
    s.on("end", () => resolve(out));
    s.on("error", reject);
    s.write(`${head}\r\nConnection: close\r\n\r\n`);
  });
}
const status = (text) => Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]);

before(async () => {
  // a package folder with symlinks: one inside it, two out of it
  dir = mkdtempSync(join(tmpdir(), "lw-serve-"));
  mkdirSync(join(dir, "pkg"));
  writeFileSync(join(dir, "pkg/index.js"), "export const x = 1;\n");
  writeFileSync(join(dir, "secret.txt"), "secret\n");
  symlinkSync(join(dir, "pkg/index.js"), join(dir, "pkg/alias.js"));
  symlinkSync(join(dir, "secret.txt"), join(dir, "pkg/secret.js"));
  symlinkSync(dir, join(dir, "pkg/up"));
  writeFileSync(join(dir, "model.gguf"), "GGUF....");
  srv = await startDemoServer({ port: 0, pkgDir: join(dir, "pkg"), modelPath: join(dir, "model.gguf"), models: { "/models/extra.gguf": join(dir, "model.gguf") } });
});

after(async () => {
  await srv?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const get = (path, init) => fetch(srv.origin + path, { redirect: "manual", ...init });

test("serves www/, pkg/, markdown-it and the announced models, nothing else of the repository", async () => {
  for (const [path, type] of [["/www/", /^text\/html/], ["/www/app.js", /^text\/javascript/], ["/pkg/index.js", /^text\/javascript/], ["/www/vendor/markdown-it.mjs", /^text\/javascript/]]) {
    const r = await get(path);
    assert.equal(r.status, 200, path);
    assert.match(r.headers.get("content-type"), type, path);
    await r.arrayBuffer();
  }
  for (const path of [DEFAULT_MODEL_ROUTE, "/models/extra.gguf"]) {
    const r = await get(path, { headers: { Range: "bytes=0-3" } });
    assert.equal(r.status, 206, path);
    assert.equal(Buffer.from(await r.arrayBuffer()).toString(), "GGUF");
  }
  for (const path of ["/Cargo.toml", "/README.md", "/package.json", "/tests/fixtures/tiny-q8_0.gguf", "/crate/src/lib.rs", "/node_modules/markdown-it/package.json",
    "/models/other.gguf", "/.git/config", "/www/../Cargo.toml", "/www/%2e%2e/Cargo.toml", "/pkg/%2e%2e/secret.txt", "/www/.hidden", "/__proto__/x", "/constructor"]) {
    const r = await get(path);
    assert.equal(r.status, 404, path);
    await r.arrayBuffer();
  }
  const r = await get("/");
  assert.equal(r.status, 302);
  assert.equal(r.headers.get("location"), "/www/");
});

test("no symlink out of the served folders", async () => {
  let r = await get("/pkg/alias.js");
  assert.equal(r.status, 200, "a link inside the folder");
  assert.equal(await r.text(), "export const x = 1;\n");
  for (const path of ["/pkg/secret.js", "/pkg/up/secret.txt", "/pkg/up/model.gguf"]) {
    r = await get(path);
    assert.equal(r.status, 404, path);
    await r.arrayBuffer();
  }
});

test("Host must name this server: 127.0.0.1, localhost or [::1] with its port", async () => {
  for (const host of [`127.0.0.1:${srv.port}`, `localhost:${srv.port}`, `[::1]:${srv.port}`, `LOCALHOST:${srv.port}`]) {
    assert.equal(status(await raw(`GET /www/ HTTP/1.1\r\nHost: ${host}`)), 200, host);
  }
  for (const host of ["evil.example", `evil.example:${srv.port}`, "127.0.0.1", `127.0.0.1:${srv.port + 1}`, `localhost.evil.example:${srv.port}`]) {
    assert.equal(status(await raw(`GET /www/ HTTP/1.1\r\nHost: ${host}`)), 403, host);
  }
  assert.equal(status(await raw("GET /www/ HTTP/1.0")), 403, "no Host at all");
});

test("malformed requests get 400 and the server keeps running (curl --request-target 'http://[')", async () => {
  const host = `Host: 127.0.0.1:${srv.port}`;
  for (const line of ["GET http://[ HTTP/1.1", "GET http://x/www/ HTTP/1.1", "GET * HTTP/1.1", "GET /www/%E0%A4%A HTTP/1.1", "GET /pkg/%ZZ HTTP/1.1"]) {
    assert.equal(status(await raw(`${line}\r\n${host}`)), 400, line);
  }
  // not even HTTP
  const junk = await raw("\u0001\u0002 garbage");
  assert.equal(status(junk), 400, junk);
  // still serving
  const r = await get("/www/");
  assert.equal(r.status, 200);
  await r.arrayBuffer();
  assert.equal((await get("/www/index.html", { method: "POST" })).status, 405);
});
