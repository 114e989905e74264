// A small, safe Markdown renderer for model output.
//
// Safety model: the source is HTML-escaped *before* any Markdown is recognised, and the only
// tags in the output are the ones built here. Links are emitted only for http(s) URLs, so a
// model (or a prompt injection inside a document it read) cannot produce script, event handlers
// or javascript: URLs. Supports what chat models actually write: code fences, inline code,
// headings, bold/italic, (nested) lists, blockquotes, rules, links and paragraphs.
// It is forgiving of half-finished input because replies are re-rendered while they stream
// (an unclosed ``` fence renders as code up to the end).

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escape text for HTML element content and attribute values. */
export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ESC[c]);
}

// Placeholder delimiter for parked inline HTML; NUL is stripped from the input so it cannot
// forge one.
const PH = "\u0000";

/** Inline Markdown of one block (already split into lines joined by "\n"). */
export function renderInline(text) {
  // Code spans and links are rendered first and parked behind placeholders, so emphasis
  // markers inside them (`a*b*c`, https://x/_y_) are left alone.
  const parked = [];
  const park = (html) => `${PH}${parked.push(html) - 1}${PH}`;
  let s = text.replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g,
    (_, _ticks, body) => park(`<code>${escapeHtml(body.replace(/^ (.*) $/s, "$1"))}</code>`));
  s = escapeHtml(s);
  // [label](http(s)://url "optional title"): only absolute http(s) targets become links.
  s = s.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)(?:\s+&quot;[^\n]*?&quot;)?\)/g,
    (_, label, url) => park(link(url, emphasis(label))));
  // Bare URLs; trailing punctuation stays outside the link.
  s = s.replace(/(^|[\s(])(https?:\/\/(?:[^\s<&]|&amp;)*[^\s<&.,:;!?)'])/g, (_, pre, url) => pre + park(link(url, url)));
  s = emphasis(s).replace(/\n/g, "<br>");
  // Restore parked spans (a link label may itself contain a parked code span).
  const restore = (t) => t.replace(new RegExp(`${PH}(\\d+)${PH}`, "g"), (_, i) => restore(parked[Number(i)]));
  return restore(s);
}

function link(url, label) {
  return `<a href="${url}" target="_blank" rel="noopener noreferrer nofollow">${label}</a>`;
}

function emphasis(s) {
  return s
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
    .replace(/(^|[^*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?!\*)/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>")
    .replace(/~~(?=\S)([^~\n]*?\S)~~/g, "<del>$1</del>");
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^\n]*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;

/** Render Markdown source to an HTML string that is safe to assign to innerHTML. */
export function renderMarkdown(src) {
  const lines = String(src ?? "").replace(/\u0000/g, "").replace(/\r\n?/g, "\n").split("\n");
  return renderBlocks(lines);
}

function renderBlocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }

    const fence = line.match(FENCE);
    if (fence) {
      const marker = fence[1];
      const body = [];
      i++;
      while (i < lines.length && !isClosingFence(lines[i], marker)) body.push(lines[i++]);
      i++; // the closing fence (or past the end while the reply is still streaming)
      const lang = fence[2] ? ` class="language-${escapeHtml(fence[2])}"` : "";
      out.push(`<pre><code${lang}>${escapeHtml(body.join("\n"))}</code></pre>`);
      continue;
    }

    const heading = line.match(HEADING);
    if (heading) {
      const level = heading[1].length;
      out.push(`<h${level}>${renderInline(heading[2])}</h${level}>`);
      i++;
      continue;
    }

    if (RULE.test(line)) { out.push("<hr>"); i++; continue; }

    if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && QUOTE.test(lines[i])) body.push(lines[i++].match(QUOTE)[1]);
      out.push(`<blockquote>${renderBlocks(body)}</blockquote>`);
      continue;
    }

    if (LIST_ITEM.test(line)) {
      const start = i;
      const kind = listKind(line);
      i++;
      while (i < lines.length) {
        const m = lines[i].match(LIST_ITEM);
        // A top-level item of the other kind (bullets vs numbers) starts a new list.
        if (m ? m[1].length <= kind.indent + 1 && listKind(lines[i]).ordered !== kind.ordered
              : !isListContinuation(lines, i)) break;
        i++;
      }
      while (i > start + 1 && !lines[i - 1].trim()) i--; // leave trailing blank lines out
      out.push(renderList(lines.slice(start, i)));
      continue;
    }

    // Paragraph: consecutive lines until a blank line or the start of another block.
    const para = [];
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) para.push(lines[i++].trim());
    out.push(`<p>${renderInline(para.join("\n"))}</p>`);
  }
  return out.join("\n");
}

function isClosingFence(line, marker) {
  const t = line.trim();
  return t.length >= marker.length && t[0] === marker[0] && /^(`+|~+)$/.test(t);
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || LIST_ITEM.test(line);
}

// Indented non-blank lines (and single blank lines followed by indented ones) belong to the
// list item above them.
function isListContinuation(lines, i) {
  const line = lines[i];
  if (line.trim()) return /^\s{2,}/.test(line) && !FENCE.test(line.trim());
  const next = lines[i + 1];
  return next !== undefined && (/^\s{2,}\S/.test(next) || LIST_ITEM.test(next));
}

function listKind(line) {
  const m = line.match(LIST_ITEM);
  return { indent: m[1].length, ordered: /\d/.test(m[2]) };
}

/** Lists, nested by indentation: items indented deeper than the first one form sub-lists. */
function renderList(lines) {
  const first = lines[0].match(LIST_ITEM);
  const baseIndent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const items = [];
  for (const line of lines) {
    const m = line.match(LIST_ITEM);
    if (m && m[1].length <= baseIndent + 1) items.push([m[3]]);
    else if (items.length) items[items.length - 1].push(line.trim() ? line.replace(/^\s{1,4}/, "") : "");
  }
  const startAttr = ordered && parseInt(first[2], 10) !== 1 ? ` start="${parseInt(first[2], 10)}"` : "";
  const tag = ordered ? "ol" : "ul";
  const lis = items.map(([head, ...rest]) => {
    const restHtml = rest.some((l) => l.trim()) ? renderBlocks(dedent(rest)) : "";
    return `<li>${renderInline(head)}${restHtml ? "\n" + restHtml : ""}</li>`;
  });
  return `<${tag}${startAttr}>\n${lis.join("\n")}\n</${tag}>`;
}

function dedent(lines) {
  const indents = lines.filter((l) => l.trim()).map((l) => l.match(/^\s*/)[0].length);
  const n = Math.min(...indents);
  return lines.map((l) => l.slice(Math.min(n, l.match(/^\s*/)[0].length)));
}
