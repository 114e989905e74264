//! Chat prompts: the GGUF's own Jinja template ([`ChatFormat::Jinja`], rendered with
//! minijinja as HF transformers renders it), or two built-in formats (Llama 3 headers, ChatML)
//! for files without one.
//!
//! The built-ins are fixed strings around the messages. Control tokens
//! are inserted by id and only the text between them is tokenized, with
//! [`Tokenizer::encode_plain`], so text a user types can never become a control token. Because
//! HF also splits the rendered template at special tokens before pre-tokenizing, tokenizing
//! segment by segment gives the same ids as `apply_chat_template(tokenize=True)`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::heap;
use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`…
    Llama3,
    /// `<|im_start|>role\ncontent<|im_end|>\n`… (SmolLM2, Qwen).
    ChatMl,
    /// Plain completion: the contents concatenated.
    None,
}

impl ChatTemplate {
    /// From the GGUF `tokenizer.chat_template` if there is one, else from the vocab.
    pub fn detect(template: Option<&str>, tok: &Tokenizer) -> Self {
        match template {
            Some(t) if t.contains("<|start_header_id|>") => Self::Llama3,
            Some(t) if t.contains("<|im_start|>") => Self::ChatMl,
            Some(_) => Self::None,
            None if tok.token_to_id("<|start_header_id|>").is_some() => Self::Llama3,
            None if tok.token_to_id("<|im_start|>").is_some() => Self::ChatMl,
            None => Self::None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    /// `null` (an assistant turn that only calls tools) reads as "".
    #[serde(default, deserialize_with = "null_as_empty")]
    pub content: String,
    /// An assistant turn's tool calls (OpenAI shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A `role: "tool"` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into(), ..Default::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text (OpenAI) or an object (HF templates); templates get an object either way.
    pub arguments: serde_json::Value,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn special(tok: &Tokenizer, name: &str) -> Result<u32> {
    tok.token_to_id(name).ok_or_else(|| Error::Tokenizer(format!("chat template needs '{name}', not in vocab")))
}

pub fn encode_chat(
    tok: &Tokenizer,
    template: ChatTemplate,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    match template {
        ChatTemplate::Llama3 => {
            let bos = match tok.bos_id() {
                Some(id) => id,
                None => special(tok, "<|begin_of_text|>")?,
            };
            let (start, end, eot) =
                (special(tok, "<|start_header_id|>")?, special(tok, "<|end_header_id|>")?, special(tok, "<|eot_id|>")?);
            ids.push(bos);
            for m in messages {
                ids.push(start);
                ids.extend(tok.encode_plain(&m.role)?);
                ids.push(end);
                ids.extend(tok.encode_plain(&format!("\n\n{}", jinja_trim(&m.content)))?);
                ids.push(eot);
            }
            if add_generation_prompt {
                ids.push(start);
                ids.extend(tok.encode_plain("assistant")?);
                ids.push(end);
                ids.extend(tok.encode_plain("\n\n")?);
            }
        }
        ChatTemplate::ChatMl => {
            let (start, end) = (special(tok, "<|im_start|>")?, special(tok, "<|im_end|>")?);
            let mut turn = |role: &str, content: &str| -> Result<()> {
                ids.push(start);
                ids.extend(tok.encode_plain(&format!("{role}\n{content}"))?);
                ids.push(end);
                ids.extend(tok.encode_plain("\n")?);
                Ok(())
            };
            let first_is_system = messages.first().is_some_and(|m| m.role == "system");
            if !first_is_system && !messages.is_empty() {
                if let Some(sys) = tok.chat_template().and_then(default_system_prompt) {
                    turn("system", &sys)?;
                }
            }
            for m in messages {
                turn(&m.role, &m.content)?;
            }
            if add_generation_prompt {
                ids.push(start);
                ids.extend(tok.encode_plain("assistant\n")?);
            }
        }
        ChatTemplate::None => {
            if tok.add_bos() {
                ids.extend(tok.bos_id());
            }
            let text: String = messages.iter().map(|m| m.content.as_str()).collect();
            ids.extend(tok.encode_plain(&text)?);
        }
    }
    Ok(ids)
}

/// What a chat prompt is rendered with: the GGUF's own Jinja template (`tokenizer.chat_template`),
/// or one of the built-ins for files without a usable one.
pub enum ChatFormat {
    Jinja(Box<JinjaChat>),
    Builtin(ChatTemplate),
}

/// Everything besides the messages that a template sees.
#[derive(Debug, Clone, Default)]
pub struct ChatOptions {
    pub add_generation_prompt: bool,
    /// OpenAI-shaped tool definitions (`[{type: "function", function: {name, parameters}}]`).
    pub tools: Option<serde_json::Value>,
    /// Extra template variables (HF's `**kwargs`), e.g. `date_string`.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ChatFormat {
    /// The tokenizer's GGUF template if it compiles; else the built-in its text or vocab suggests
    /// (`template_error` then says why the Jinja one was not used).
    pub fn for_tokenizer(tok: &Tokenizer) -> Self {
        let name = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i)).unwrap_or_default();
        // llama.cpp stores the turn end (Llama 3's <|eot_id|>) as the GGUF EOS of instruct models.
        let (bos, eos) = (name(tok.bos_id()), name(tok.eos_id()));
        match tok.chat_template().map(|t| JinjaChat::new(t, &bos, &eos)) {
            Some(Ok(j)) => Self::Jinja(Box::new(j)),
            _ => Self::Builtin(ChatTemplate::detect(tok.chat_template(), tok)),
        }
    }

    /// A short name for the UI/logs: "jinja", "llama3", "chatml" or "none".
    pub fn name(&self) -> &'static str {
        match self {
            Self::Jinja(_) => "jinja",
            Self::Builtin(ChatTemplate::Llama3) => "llama3",
            Self::Builtin(ChatTemplate::ChatMl) => "chatml",
            Self::Builtin(ChatTemplate::None) => "none",
        }
    }

    /// Whether the template renders `tools` itself (else callers describe them in a system turn).
    pub fn renders_tools(&self) -> bool {
        matches!(self, Self::Jinja(j) if j.uses_tools)
    }

    pub fn encode(&self, tok: &Tokenizer, messages: &[Message], opts: &ChatOptions) -> Result<Vec<u32>> {
        match self {
            Self::Jinja(j) => j.encode(tok, messages, opts),
            Self::Builtin(t) => encode_chat(tok, *t, messages, opts.add_generation_prompt),
        }
    }
}

/// Where chat templates come from: the GGUF key, named in their errors.
pub const TEMPLATE_NAME: &str = "tokenizer.chat_template";
/// Template instructions one render may run: real templates use tens to hundreds per message;
/// 20M took 0.7 s in a debug build (the nested-loop template of `robustness.rs`).
pub const TEMPLATE_FUEL: u64 = 20_000_000;
/// Rendered bytes allowed: a fixed allowance for the template's own text and tool
/// descriptions, plus a multiple of the messages' text (templates repeat content at most a
/// few times).
pub const TEMPLATE_OUTPUT_MIN: usize = 4 << 20;
pub const TEMPLATE_OUTPUT_PER_INPUT: usize = 4;
/// Heap a render may hold beyond its output (where `heap::Heap` is the allocator).
pub const TEMPLATE_HEAP: usize = 64 << 20;

/// A `Write` that refuses bytes past `cap`, so a template's output cannot outgrow memory.
struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > self.cap {
            self.buf.extend_from_slice(&b[..self.cap.saturating_sub(self.buf.len())]);
            return Err(std::io::Error::other("template output cap"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A compiled Jinja chat template, rendered as HF transformers does (`trim_blocks`,
/// `lstrip_blocks`, Python string methods, `raise_exception`, `strftime_now`, Python-style
/// `tojson`), then tokenized as HF's `apply_chat_template(tokenize=True)` does: special-token
/// text the template writes becomes the special token. Special-token text inside message
/// content does not (see [`JinjaChat::encode`]).
pub struct JinjaChat {
    env: minijinja::Environment<'static>,
    bos: String,
    eos: String,
    uses_tools: bool,
}

impl JinjaChat {
    /// `bos`/`eos`: the text of the `bos_token` / `eos_token` the template may write.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        // Bounded, since the template comes with the file: fuel stops loops that run for ever;
        // the output cap and the heap budget (see `render`) stop text that grows without bound.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_template_owned("chat", source.to_owned())
            .map_err(|e| Error::InvalidArgument(format!("chat template does not compile: {e}")))?;
        Ok(Self { env, bos: bos.to_owned(), eos: eos.to_owned(), uses_tools: source.contains("tools") })
    }

    /// The rendered prompt text (what HF's `apply_chat_template(tokenize=False)` returns).
    pub fn render(&self, messages: &[Message], opts: &ChatOptions) -> Result<String> {
        let msgs: Vec<serde_json::Value> = messages.iter().map(template_message).collect();
        let mut ctx = opts.extra.clone();
        ctx.insert("messages".into(), serde_json::Value::Array(msgs));
        ctx.insert("tools".into(), opts.tools.clone().unwrap_or(serde_json::Value::Null));
        ctx.insert("add_generation_prompt".into(), opts.add_generation_prompt.into());
        ctx.insert("bos_token".into(), self.bos.clone().into());
        ctx.insert("eos_token".into(), self.eos.clone().into());
        let tmpl = self.env.get_template("chat").map_err(|e| Error::InvalidArgument(format!("chat template: {e}")))?;
        let input: usize = messages.iter().map(|m| m.content.len()).sum();
        let mut out = CappedWriter { buf: Vec::new(), cap: TEMPLATE_OUTPUT_MIN + TEMPLATE_OUTPUT_PER_INPUT * input };
        let rendered = heap::with_budget(TEMPLATE_NAME, TEMPLATE_HEAP + 4 * out.cap, || {
            tmpl.render_captured_to(&ctx, &mut out).map(|_| ())
        });
        let bounded = |reason: String| Error::Template { name: TEMPLATE_NAME, reason };
        match rendered {
            Ok(()) => String::from_utf8(out.buf).map_err(|_| bounded("rendered invalid UTF-8".into())),
            Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => {
                Err(bounded(format!("stopped after {TEMPLATE_FUEL} template instructions (a loop that does not end?)")))
            }
            Err(_) if out.buf.len() >= out.cap => {
                Err(bounded(format!("rendered more than {} bytes for {input} bytes of messages", out.cap)))
            }
            Err(e) => Err(Error::InvalidArgument(format!("chat template failed to render: {e}"))),
        }
    }

    /// Renders and tokenizes. Special-token text the user typed (in any message's content) is
    /// swapped for a private-use placeholder before rendering and tokenized back as plain text,
    /// so `<|eot_id|>` in a message cannot end a turn; without such text the ids equal HF's.
    pub fn encode(&self, tok: &Tokenizer, messages: &[Message], opts: &ChatOptions) -> Result<Vec<u32>> {
        let mut forged: Vec<String> = Vec::new();
        for m in messages {
            for id in tok.encode(&m.content)? {
                let t = tok.id_to_token(id).filter(|_| tok.is_special(id));
                if let Some(t) = t.filter(|t| !forged.contains(t)) {
                    forged.push(t);
                }
            }
        }
        if forged.is_empty() {
            return tok.encode(&self.render(messages, opts)?);
        }
        // Placeholder k = U+F0000+k (a plane-15 private-use char), never special-token text.
        let mark = |k: usize| char::from_u32(0xF0000 + k as u32).unwrap_or('\u{F0000}');
        let safe: Vec<Message> = messages
            .iter()
            .map(|m| {
                let mut c = m.content.clone();
                for (k, t) in forged.iter().enumerate() {
                    c = c.replace(t.as_str(), &mark(k).to_string());
                }
                Message { content: c, ..m.clone() }
            })
            .collect();
        let text = self.render(&safe, opts)?;
        let mut ids = Vec::new();
        let mut rest = text.as_str();
        while let Some((i, c)) =
            rest.char_indices().find(|(_, c)| (0xF0000..0xF0000 + forged.len() as u32).contains(&(*c as u32)))
        {
            ids.extend(tok.encode(&rest[..i])?);
            ids.extend(tok.encode_plain(&forged[(c as u32 - 0xF0000) as usize])?);
            rest = &rest[i + c.len_utf8()..];
        }
        ids.extend(tok.encode(rest)?);
        Ok(ids)
    }
}

/// A message as HF templates expect it: tool-call arguments as an object, not JSON text.
fn template_message(m: &Message) -> serde_json::Value {
    let mut v = serde_json::to_value(m).unwrap_or_default();
    if let Some(calls) = v.get_mut("tool_calls").and_then(|c| c.as_array_mut()) {
        for c in calls {
            if let Some(args) = c.pointer_mut("/function/arguments") {
                if let Some(parsed) = args.as_str().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) {
                    *args = parsed;
                }
            }
        }
    }
    v
}

/// HF's `tojson`: Python `json.dumps(x, ensure_ascii=False, indent=indent, sort_keys=...)`
/// (`", "`/`": "` separators, or `","` + newlines with `indent`), keys in insertion order.
fn tojson(
    v: minijinja::Value,
    kwargs: minijinja::value::Kwargs,
) -> std::result::Result<minijinja::Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut j = serde_json::to_value(&v)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))?;
    if sort_keys == Some(true) {
        j = sorted(j);
    }
    let mut out = String::new();
    py_json(&j, indent, 0, &mut out);
    Ok(minijinja::Value::from_safe_string(out))
}

fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut kv: Vec<_> = m.into_iter().collect();
            kv.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(kv.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.into_iter().map(sorted).collect()),
        v => v,
    }
}

fn py_json(v: &serde_json::Value, indent: Option<usize>, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, d: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * d));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                py_json(x, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(m) if !m.is_empty() => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push_str(": ");
                py_json(x, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        // Python writes floats with a fraction (1.0); serde_json does too.
        v => out.push_str(&serde_json::to_string(v).unwrap_or_default()),
    }
}

/// HF's `strftime_now(format)`: the current UTC time, for the common `%d %b %Y`-style codes.
fn strftime_now(fmt: String) -> String {
    let secs = web_time::SystemTime::now().duration_since(web_time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month = MONTHS[(m - 1).clamp(0, 11) as usize];
    let (hh, mm, ss) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y % 100)),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('H') => out.push_str(&format!("{hh:02}")),
            Some('M') => out.push_str(&format!("{mm:02}")),
            Some('S') => out.push_str(&format!("{ss:02}")),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Meta's templates apply Jinja's `| trim` (Python `str.strip()`) to the content. Python also
/// counts the separators U+001C..U+001F as whitespace; Rust's `trim` does not.
fn jinja_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// The system prompt a ChatML template inserts when the conversation has none, e.g. SmolLM2's
/// `'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging
/// Face<|im_end|>\n'`. Only a literal string counts (no Jinja expressions inside).
fn default_system_prompt(template: &str) -> Option<String> {
    const HEAD: &str = "<|im_start|>system";
    template.match_indices(HEAD).find_map(|(i, _)| {
        let rest = &template[i + HEAD.len()..];
        let rest = rest.strip_prefix('\n').or_else(|| rest.strip_prefix("\\n"))?;
        let body = &rest[..rest.find("<|im_end|>")?];
        let literal = !body.contains(['\'', '"', '{', '}', '+']);
        (literal && !body.is_empty()).then(|| body.replace("\\n", "\n"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_system_prompt_extraction() {
        let smol = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";
        assert_eq!(
            default_system_prompt(smol).as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        let escaped = r"{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}{{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}";
        assert_eq!(default_system_prompt(escaped).as_deref(), Some("You are a helpful assistant."));
        let none = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'}}";
        assert_eq!(default_system_prompt(none), None);
    }
}
