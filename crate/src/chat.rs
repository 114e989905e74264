//! Chat prompt formats (Llama 3 headers, ChatML) encoded straight to token ids.
//!
//! We do not run Jinja: the two formats are fixed strings around the messages. Control tokens
//! are inserted by id and only the text between them is tokenized, with
//! [`Tokenizer::encode_plain`], so text a user types can never become a control token. Because
//! HF also splits the rendered template at special tokens before pre-tokenizing, tokenizing
//! segment by segment gives the same ids as `apply_chat_template(tokenize=True)`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
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
