// A local stand-in for the Hugging Face Hub, as far as the package uses it (no dependencies):
//   GET /api/models/{owner}/{name}/tree/{revision}[?recursive=true]
//       → [{type: "file", path, size, oid, lfs: {oid: "sha256:…", size, pointerSize}}]
//   GET|HEAD /{owner}/{name}/resolve/{revision}/{path}
//       → 302 to the "CDN" (a second origin: tests/browser/server.mjs serving the file with
//         Range, and its SHA-256 as ETag), with X-Linked-Etag / X-Linked-Size as the Hub sends
// and the Hub's failures: an unknown repo, revision or file is 404 with X-Error-Code
// RepoNotFound / RevisionNotFound / EntryNotFound; a gated repo lists its files but answers a
// resolve with 401 (403 with gated: 403) and X-Error-Code GatedRepo. CORS everywhere, as
// huggingface.co.
//
// startHub({ root, repos: { "owner/name": { files: { "path/in/repo": "path under root" },
//   gated?: true | 403, revisions?: ["main", …] } } }) → { origin, cdn, requests, close() }
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { startServer } from "./server.mjs";

const CORS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Expose-Headers": "X-Error-Code, X-Error-Message, X-Linked-Etag, X-Linked-Size, X-Repo-Commit, ETag, Content-Range, Content-Length, Accept-Ranges",
};

export async function startHub({ root, repos }) {
  root = resolve(root);
  // each file's SHA-256, the LFS oid the Hub reports and the CDN's ETag
  const sha = new Map();
  const digest = (rel) => {
    if (!sha.has(rel)) sha.set(rel, createHash("sha256").update(readFileSync(join(root, rel))).digest("hex"));
    return sha.get(rel);
  };
  const cdn = await startServer({ root, headers: (path) => ({ ETag: `"${digest(relative(root, join(root, path)))}"` }) });
  const requests = [];

  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const path = decodeURIComponent(url.pathname);
    const send = (status, headers = {}, body = "") => {
      requests.push({ method: req.method, path, status });
      res.writeHead(status, { ...CORS, ...headers });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    const error = (status, code, message) => send(status, { "Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message }, JSON.stringify({ error: message }));
    if (req.method === "OPTIONS") {
      return send(204, { "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS", "Access-Control-Allow-Headers": req.headers["access-control-request-headers"] || "*" });
    }
    let m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)\/?$/.exec(path);
    const kind = m ? "tree" : (m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path)) ? "resolve" : null;
    if (!kind) return error(404, "EntryNotFound", `no such path ${path}`);
    const [, repoId, revision, file] = m;
    const repo = repos[repoId];
    if (!repo) return error(404, "RepoNotFound", `Repository not found: ${repoId}`);
    if (!(repo.revisions ?? ["main"]).includes(revision)) return error(404, "RevisionNotFound", `Invalid rev id: ${revision}`);
    if (kind === "tree") {
      const list = Object.entries(repo.files).map(([p, rel]) => {
        const size = statSync(join(root, rel)).size;
        return { type: "file", oid: digest(rel).slice(0, 40), size, path: p, lfs: { oid: `sha256:${digest(rel)}`, size, pointerSize: 135 } };
      });
      list.push({ type: "file", oid: "0".repeat(40), size: 20, path: "README.md" });
      return send(200, { "Content-Type": "application/json" }, JSON.stringify(list));
    }
    const rel = repo.files[file];
    if (!rel) return error(404, "EntryNotFound", `${file} does not exist on ${revision}`);
    // anonymous: 401; signed in without having accepted the license: 403 (gated: 403)
    if (repo.gated) return error(repo.gated === 403 ? 403 : 401, "GatedRepo", `Access to model ${repoId} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
    const size = statSync(join(root, rel)).size;
    send(302, {
      Location: `${cdn.origin}/${rel.split("/").map(encodeURIComponent).join("/")}`,
      "X-Linked-Etag": `"${digest(rel)}"`,
      "X-Linked-Size": String(size),
      ETag: `"${digest(rel)}"`,
      "X-Repo-Commit": "0123456789abcdef0123456789abcdef01234567",
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    cdn,
    requests,
    async close() {
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
      await cdn.close();
    },
  };
}
