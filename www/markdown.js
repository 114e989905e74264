// Markdown for model output, with markdown-it (CommonMark): raw HTML off (`html: false`, so
// `<img onerror>` is text), bare URLs linked (linkify), and only http(s) and mailto link
// targets (validateLink): a model, or a prompt injection in a document it read, cannot produce
// a script, an event handler, an attribute of its choosing or a javascript: URL. markdown-it
// escapes every attribute value it writes, and nests at most 100 blocks deep (10,000 `>` are a
// paragraph of text past that, not a stack overflow).
//
// markdown-it's browser build is at ./vendor/markdown-it.mjs: serve.mjs serves it from
// node_modules, and scripts/build-pkg.sh copies it there for the tests that import this file.
//
// Pathological input: markdown-it's link and linkify rules cost ~0.2-1 s on a 100,000-character
// run without whitespace such as "[a](https://x".repeat(8000) (measured in node on a loaded
// 2-core machine). No real link is 2,000 characters long, so text with a whitespace-free run that
// long is rendered without those two rules: its links stay text, still escaped.
//
// Streaming: createStreamRenderer() renders a growing reply block by block. Top-level blocks
// before the last one are final once a later block has started; they are rendered once and
// kept, and each update parses and renders only the last block (and what follows it).
import markdownit from "./vendor/markdown-it.mjs";

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escape text for HTML element content and attribute values. */
export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ESC[c]);
}

/** Link targets allowed: absolute http(s) and mailto only. */
export function allowedLink(url) {
  return /^(https?:\/\/|mailto:)/i.test(String(url).trim());
}

function create(links = true) {
  const md = markdownit({ html: false, linkify: links, breaks: true, typographer: false });
  if (!links) md.disable(["link", "linkify"]);
  md.validateLink = allowedLink;
  // links open in a new tab, without the opener and without passing on rank
  const linkOpen = md.renderer.rules.link_open ?? ((tokens, idx, options, env, self) => self.renderToken(tokens, idx, options));
  md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
    const t = tokens[idx];
    t.attrSet("target", "_blank");
    t.attrSet("rel", "noopener noreferrer nofollow");
    return linkOpen(tokens, idx, options, env, self);
  };
  // images: shown as their alt text (a model's reply must not fetch URLs of its choosing)
  md.renderer.rules.image = (tokens, idx, options, env, self) => escapeHtml(self.renderInlineAsText(tokens[idx].children, options, env));
  return md;
}

const md = create();
const mdNoLinks = create(false);
const LONG_RUN = /\S{2000}/;

/** The renderer for `src`: without link rules where a whitespace-free run is pathologically long. */
function pick(src) {
  return LONG_RUN.test(src) ? mdNoLinks : md;
}

/** Markdown → HTML (safe to assign to innerHTML). */
export function renderMarkdown(src) {
  src = String(src ?? "");
  return pick(src).render(src);
}

/**
 * A renderer for one streaming reply: `update(src)` → {reset, added, tail}. `added` is the HTML
 * of blocks that became final since the last update (append it once), `tail` the HTML of the
 * last block (replace the previous tail with it); `reset` means src did not extend the previous
 * one and everything must be redrawn from `added` + `tail`.
 */
export function createStreamRenderer() {
  let prev = "";
  let doneLen = 0; // chars of src whose blocks are final (and rendered)
  return {
    update(src) {
      src = String(src ?? "");
      let reset = false;
      if (!src.startsWith(prev) || doneLen > src.length) {
        reset = true;
        doneLen = 0;
      }
      prev = src;
      const rest = src.slice(doneLen);
      const env = {};
      const m = pick(rest);
      const tokens = m.parse(rest, env);
      // the start (line) of each top-level block
      let last = -1;
      for (let i = 0; i < tokens.length; i++) if (tokens[i].level === 0 && tokens[i].nesting !== -1 && tokens[i].map) last = i;
      let added = "";
      let tailTokens = tokens;
      if (last > 0) {
        added = m.renderer.render(tokens.slice(0, last), m.options, env);
        tailTokens = tokens.slice(last);
        // chars of `rest` before the last block's first line
        const line = tokens[last].map[0];
        let off = 0;
        for (let n = 0; n < line; n++) off = rest.indexOf("\n", off) + 1;
        doneLen += off;
      }
      return { reset, added, tail: m.renderer.render(tailTokens, m.options, env) };
    },
  };
}
