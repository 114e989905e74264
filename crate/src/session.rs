//! A conversation with a loaded model: the tokens in the KV cache, prefill of only what is
//! new (a follow-up turn reuses the cache of the common prefix), sampling, stop conditions
//! and streamed, UTF-8-whole text.

use crate::error::{Error, Result};
use crate::model::LlamaModel;
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::Tokenizer;
use web_time::Instant;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Generation ends when the text contains one of these (the stop string is cut off).
    pub stop: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_tokens: 256, sampler: SamplerConfig::default(), stop: vec![] }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An end-of-turn / end-of-text token.
    Eos,
    /// A user stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The context is full.
    Context,
    /// The caller's callback asked to stop.
    Cancelled,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Generation {
    pub prompt_tokens: Vec<u32>,
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop_reason: StopReason,
    /// Tokens actually prefilled (after reusing the cached prefix).
    pub prefilled: usize,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
}

pub struct Session {
    /// Tokens whose keys/values are in the model's KV cache, in order.
    cached: Vec<u32>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn new() -> Self {
        Session { cached: Vec::new() }
    }

    /// Tokens currently in the KV cache.
    pub fn cached(&self) -> &[u32] {
        &self.cached
    }

    /// Forget the cache (the next prompt is prefilled from scratch).
    pub fn reset(&mut self) {
        self.cached.clear();
    }

    /// Runs `prompt` through the model, reusing the cached common prefix; returns the
    /// logits of the last prompt token and how many tokens were actually computed.
    pub async fn prefill(&mut self, model: &mut LlamaModel, prompt: &[u32]) -> Result<(Vec<f32>, usize)> {
        if prompt.is_empty() {
            return Err(Error::InvalidArgument("empty prompt".into()));
        }
        let common = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        // at least one token must run to produce logits
        let start = common.min(prompt.len() - 1);
        self.cached.truncate(start);
        let logits = model.forward(&prompt[start..], start, false).await?;
        self.cached.extend_from_slice(&prompt[start..]);
        Ok((logits, prompt.len() - start))
    }

    /// Generates after `prompt`. `on_text(token, new_text)` sees each token with the text it
    /// completed (possibly empty while a UTF-8 character is split); returning false stops.
    pub async fn generate(
        &mut self,
        model: &mut LlamaModel,
        tok: &Tokenizer,
        prompt: &[u32],
        opts: &GenerateOptions,
        mut on_text: impl FnMut(u32, &str) -> bool,
    ) -> Result<Generation> {
        let mut sampler = Sampler::new(opts.sampler.clone())?;
        let stop_ids = tok.stop_ids();
        let t0 = Instant::now();
        let (mut logits, prefilled) = self.prefill(model, prompt).await?;
        let prefill_s = t0.elapsed().as_secs_f64();

        let mut history = prompt.to_vec();
        let mut tokens = Vec::new();
        let mut text = String::new();
        let mut stream = tok.stream_decoder();
        let mut reason = StopReason::Length;
        let t1 = Instant::now();
        let mut decoded = 0usize;
        while tokens.len() < opts.max_tokens {
            let next = sampler.sample(&logits, &history)?;
            if stop_ids.contains(&next) {
                reason = StopReason::Eos;
                break;
            }
            tokens.push(next);
            history.push(next);
            let piece = stream.push(tok, next)?;
            text.push_str(&piece);
            if let Some(i) = opts.stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min() {
                text.truncate(i);
                reason = StopReason::Stop;
                break;
            }
            if !on_text(next, &piece) {
                reason = StopReason::Cancelled;
                break;
            }
            if tokens.len() >= opts.max_tokens {
                break;
            }
            if self.cached.len() >= model.context {
                reason = StopReason::Context;
                break;
            }
            let pos = self.cached.len();
            logits = model.forward(&[next], pos, false).await?;
            self.cached.push(next);
            decoded += 1;
        }
        if reason != StopReason::Stop {
            // bytes held back for an unfinished character belong to the last token
            let rest = stream.flush();
            if let (Some(&last), false) = (tokens.last(), rest.is_empty()) {
                on_text(last, &rest);
                text.push_str(&rest);
            }
        }
        let decode_s = t1.elapsed().as_secs_f64();
        Ok(Generation {
            prompt_tokens: prompt.to_vec(),
            tokens,
            text,
            stop_reason: reason,
            prefilled,
            prefill_tokens_per_s: rate(prefilled, prefill_s),
            decode_tokens_per_s: rate(decoded, decode_s),
        })
    }
}

fn rate(n: usize, s: f64) -> f64 {
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}
