//! A conversation with a loaded model: the tokens in the KV cache, prefill of only what is
//! new (a follow-up turn reuses the cache of the common prefix), sampling, stop conditions
//! and streamed, UTF-8-whole text.

use crate::backend::Forward;
use crate::error::{Error, Result};
use crate::grammar::Constraint;
use crate::graph::Logits;
use crate::sampler::{Sampler, SamplerConfig};
use crate::speculative::{self, SpecStats, Speculator};
use crate::tokenizer::Tokenizer;
use std::collections::VecDeque;
use web_time::Instant;

/// What happens when the KV cache is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContextPolicy {
    /// A prompt that does not fit is an [`Error::ContextOverflow`]; generation stops with
    /// [`StopReason::Context`] when the cache fills.
    #[default]
    Error,
    /// Keep the first `keep` tokens (the system prompt: an attention sink) and the most
    /// recent ones, drop the middle and re-run what follows the kept prefix.
    SlidingWindow { keep: usize },
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Generation ends when the text contains one of these (the stop string is cut off).
    pub stop: Vec<String>,
    pub context_policy: ContextPolicy,
    /// `Some(k)`: each [`Piece`] carries the sampled token's log-probability and the `k` most
    /// likely tokens' (OpenAI `logprobs` / `top_logprobs`).
    pub logprobs: Option<usize>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop: vec![],
            context_policy: ContextPolicy::Error,
            logprobs: None,
        }
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
    /// Draft and acceptance counts, when decoding was speculative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speculative: Option<SpecStats>,
}

/// What steers a generation beyond its [`GenerateOptions`]: a grammar the output is held to
/// and a speculator whose drafts are verified in batches.
#[derive(Default)]
pub struct Steering<'s> {
    pub constraint: Option<Constraint>,
    pub spec: Option<&'s mut Speculator>,
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
    pub async fn prefill<M: Forward>(&mut self, model: &mut M, prompt: &[u32]) -> Result<(Vec<f32>, usize)> {
        if prompt.is_empty() {
            return Err(Error::empty_input());
        }
        let common = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        // at least one token must run to produce logits
        let start = common.min(prompt.len() - 1);
        self.cached.truncate(start);
        let logits = model.forward(&prompt[start..], start, Logits::Last).await?;
        self.cached.extend_from_slice(&prompt[start..]);
        Ok((logits, prompt.len() - start))
    }

    /// Prefills `prompt` (fitted to the context by the policy) and returns a [`Generator`]
    /// that yields one token per [`Generator::next`] call: callers can stop between tokens.
    pub async fn start<M: Forward>(
        &mut self,
        model: &mut M,
        tok: &Tokenizer,
        prompt: &[u32],
        opts: &GenerateOptions,
    ) -> Result<Generator> {
        let sampler = Sampler::new(opts.sampler.clone())?;
        let fitted = fit_prompt(prompt, model.context(), opts);
        let t0 = Instant::now();
        let (logits, prefilled) = self.prefill(model, &fitted).await?;
        Ok(Generator {
            opts: opts.clone(),
            sampler,
            stop_ids: tok.stop_ids(),
            prompt: prompt.to_vec(),
            history: fitted.clone(),
            tokens: Vec::new(),
            text: String::new(),
            emitted: 0,
            stream: tok.stream_decoder(),
            logits,
            constraint: None,
            done: None,
            prefilled,
            reused: fitted.len() - prefilled,
            prefill_s: t0.elapsed().as_secs_f64(),
            decode_start: Instant::now(),
            decoded: 0,
            pending: VecDeque::new(),
            round: (0, 0),
            stats: None,
        })
    }

    /// Generates after `prompt`. `on_text(token, new_text)` sees each token with the text it
    /// completed (possibly empty while a UTF-8 character or a possible stop string is held
    /// back); returning false stops.
    pub async fn generate<M: Forward>(
        &mut self,
        model: &mut M,
        tok: &Tokenizer,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_text: impl FnMut(u32, &str) -> bool,
    ) -> Result<Generation> {
        self.generate_constrained(model, tok, prompt, opts, None, on_text).await
    }

    /// [`generate`](Self::generate) with the output held to a grammar (see [`Generator::constrain`]).
    pub async fn generate_constrained<M: Forward>(
        &mut self,
        model: &mut M,
        tok: &Tokenizer,
        prompt: &[u32],
        opts: &GenerateOptions,
        constraint: Option<Constraint>,
        on_text: impl FnMut(u32, &str) -> bool,
    ) -> Result<Generation> {
        self.generate_speculative(model, tok, prompt, opts, Steering { constraint, spec: None }, on_text).await
    }

    /// [`generate_constrained`](Self::generate_constrained) with drafts from `steering.spec`
    /// verified in batches (see [`crate::speculative`]): greedy output is the same token for token.
    pub async fn generate_speculative<M: Forward>(
        &mut self,
        model: &mut M,
        tok: &Tokenizer,
        prompt: &[u32],
        opts: &GenerateOptions,
        steering: Steering<'_>,
        mut on_text: impl FnMut(u32, &str) -> bool,
    ) -> Result<Generation> {
        let Steering { constraint, mut spec } = steering;
        let mut g = self.start(model, tok, prompt, opts).await?;
        if let Some(c) = constraint {
            g.constrain(c);
        }
        if let Some(s) = spec.as_deref_mut() {
            s.restart();
        }
        while let Some(piece) = g.next_with(self, model, tok, spec.as_deref_mut()).await? {
            let token = piece.token.or(g.tokens.last().copied()).unwrap_or(0);
            if !on_text(token, &piece.text) {
                g.cancel();
            }
        }
        Ok(g.finish())
    }
}

/// A prompt cut to the context under [`ContextPolicy::SlidingWindow`] (kept prefix + the
/// most recent tokens, leaving room to generate); unchanged otherwise.
fn fit_prompt(prompt: &[u32], context: usize, opts: &GenerateOptions) -> Vec<u32> {
    match opts.context_policy {
        ContextPolicy::SlidingWindow { keep } if prompt.len() > context => {
            let keep = keep.min(context / 2);
            let room = context - keep;
            sink_and_tail(prompt, keep, room - opts.max_tokens.min(room / 2))
        }
        _ => prompt.to_vec(),
    }
}

/// The first `keep` tokens and the last `tail` ones (`keep + tail <= tokens.len()`).
fn sink_and_tail(tokens: &[u32], keep: usize, tail: usize) -> Vec<u32> {
    let mut v = tokens[..keep].to_vec();
    v.extend_from_slice(&tokens[tokens.len() - tail..]);
    v
}

/// One step of output: the token (None for text flushed at the end) and the text it released.
#[derive(Debug, Clone, Default)]
pub struct Piece {
    pub token: Option<u32>,
    pub text: String,
    /// With [`GenerateOptions::logprobs`]: ln p(token), and the top tokens `(id, ln p)` best
    /// first, from the distribution the token was drawn from (after any grammar mask, at
    /// temperature 1).
    pub logprob: Option<f32>,
    pub top_logprobs: Vec<(u32, f32)>,
}

/// ln softmax of `logits` at `id`, and the `k` largest `(id, ln p)`.
pub fn log_probs(logits: &[f32], id: u32, k: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().filter(|x| x.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().filter(|x| x.is_finite()).map(|&x| ((x - max) as f64).exp()).sum();
    let lse = max + sum.ln() as f32;
    let lp = |x: f32| if x.is_finite() { x - lse } else { f32::NEG_INFINITY };
    let mut top: Vec<(u32, f32)> = Vec::new();
    if k > 0 {
        let mut idx: Vec<u32> = (0..logits.len() as u32).filter(|&i| logits[i as usize].is_finite()).collect();
        let k = k.min(idx.len());
        if k > 0 {
            let by = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
            idx.select_nth_unstable_by(k - 1, by);
            idx.truncate(k);
            idx.sort_unstable_by(by);
            top = idx.into_iter().map(|i| (i, lp(logits[i as usize]))).collect();
        }
    }
    (logits.get(id as usize).map_or(f32::NEG_INFINITY, |&x| lp(x)), top)
}

/// A generation in progress (see [`Session::start`]).
pub struct Generator {
    opts: GenerateOptions,
    sampler: Sampler,
    stop_ids: Vec<u32>,
    prompt: Vec<u32>,
    /// Prompt (as fitted) and generated tokens: the repetition-penalty window, and what the
    /// sliding window is cut from.
    history: Vec<u32>,
    pub tokens: Vec<u32>,
    text: String,
    /// Bytes of `text` already handed out (the rest may be the start of a stop string).
    emitted: usize,
    stream: crate::tokenizer::StreamDecoder,
    logits: Vec<f32>,
    /// The grammar the output must follow, if any: it masks each row of logits, and
    /// generation ends (as at EOS) once the grammar is complete.
    constraint: Option<Constraint>,
    done: Option<StopReason>,
    prefilled: usize,
    reused: usize,
    prefill_s: f64,
    decode_start: Instant,
    decoded: usize,
    /// Drafts verified by the last batched pass and not yet consumed, each with the target's
    /// logits after it; their KV entries are in the cache (and in `session.cached`).
    pending: VecDeque<(u32, Vec<f32>)>,
    /// Drafts of the current verification round, and how many were accepted so far.
    round: (usize, usize),
    /// `Some` once a speculator was given.
    stats: Option<SpecStats>,
}

impl Generator {
    /// Tokens of the prompt whose KV entries were reused from the previous turn.
    pub fn reused(&self) -> usize {
        self.reused
    }

    /// Why generation ended, once it has.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.done
    }

    /// Holds every following token to `c` (call before the first [`next`](Self::next)).
    pub fn constrain(&mut self, c: Constraint) {
        self.constraint = Some(c);
    }

    /// Stop before the next token (the text held back is still flushed by `next`).
    pub fn cancel(&mut self) {
        if self.done.is_none() {
            self.done = Some(StopReason::Cancelled);
        }
    }

    /// Samples the next token, runs it through the model (so its logits are ready for the
    /// following call) and returns the text it released; `None` once finished.
    pub async fn next<M: Forward>(
        &mut self,
        session: &mut Session,
        model: &mut M,
        tok: &Tokenizer,
    ) -> Result<Option<Piece>> {
        self.next_with(session, model, tok, None).await
    }

    /// [`next`](Self::next), drafting with `spec` when the model has to run: the drafts are
    /// verified in one pass and later calls consume the verified rows without running it.
    pub async fn next_with<M: Forward>(
        &mut self,
        session: &mut Session,
        model: &mut M,
        tok: &Tokenizer,
        mut spec: Option<&mut Speculator>,
    ) -> Result<Option<Piece>> {
        if spec.is_some() && self.stats.is_none() {
            self.stats = Some(SpecStats::default());
        }
        if let Some(reason) = self.done {
            self.drop_pending(session);
            return Ok(self.flush(reason));
        }
        if self.tokens.len() >= self.opts.max_tokens {
            self.drop_pending(session);
            self.done = Some(StopReason::Length);
            return Ok(self.flush(StopReason::Length));
        }
        if let Some(c) = &mut self.constraint {
            if c.is_complete() {
                self.drop_pending(session);
                self.done = Some(StopReason::Eos);
                return Ok(self.flush(StopReason::Eos));
            }
            c.mask_logits(&mut self.logits)?;
        }
        let draft = self.pending.front().map(|x| x.0);
        let next = match draft {
            Some(d) if !self.sampler.is_greedy() => {
                let p = self.sampler.probs(&self.logits, &self.history)?;
                speculative::accept(&mut self.sampler, &p, d, None)?
            }
            // greedy: the argmax, which accepts the draft exactly when it is the draft
            _ => self.sampler.sample(&self.logits, &self.history)?,
        };
        // the verified logits after `next`, when it was the draft
        let mut verified = None;
        if let Some(d) = draft {
            if next == d {
                verified = self.pending.pop_front().map(|x| x.1);
                self.round.1 += 1;
                if let Some(st) = &mut self.stats {
                    st.accepted += 1;
                }
            } else {
                self.drop_pending(session);
            }
            if self.pending.is_empty() {
                if let Some(s) = spec.as_deref_mut() {
                    s.record(self.round.0, self.round.1);
                }
            }
        }
        let (logprob, top_logprobs) = match self.opts.logprobs {
            Some(k) => {
                let (lp, top) = log_probs(&self.logits, next, k);
                (Some(lp), top)
            }
            None => (None, Vec::new()),
        };
        if let Some(c) = &mut self.constraint {
            c.consume(next)?;
        }
        if self.stop_ids.contains(&next) {
            self.drop_pending(session);
            self.done = Some(StopReason::Eos);
            return Ok(self.flush(StopReason::Eos));
        }
        self.tokens.push(next);
        self.history.push(next);
        // control tokens (headers, turn markers) are not text for the reader
        let piece = if tok.is_special(next) { String::new() } else { self.stream.push(tok, next)? };
        self.text.push_str(&piece);
        let stops = self.opts.stop.iter().filter(|s| !s.is_empty());
        if let Some(i) = stops.clone().filter_map(|s| self.text.find(s.as_str())).min() {
            self.text.truncate(i);
            self.drop_pending(session);
            self.done = Some(StopReason::Stop);
            let out = self.text.get(self.emitted..).unwrap_or("").to_string();
            self.emitted = self.text.len();
            return Ok(Some(Piece { token: Some(next), text: out, logprob, top_logprobs }));
        }
        // hold back a suffix that may still grow into a stop string
        let hold = stops.map(|s| held_back(&self.text, s)).max().unwrap_or(0);
        let upto = (self.text.len() - hold).max(self.emitted);
        let out = self.text[self.emitted..upto].to_string();
        self.emitted = upto;

        if self.tokens.len() < self.opts.max_tokens {
            if let Some(row) = verified {
                self.logits = row;
                self.decoded += 1;
            } else if session.cached.len() >= model.context() {
                match self.opts.context_policy {
                    ContextPolicy::Error => {
                        self.done = Some(StopReason::Context);
                        return Ok(Some(Piece { token: Some(next), text: out, logprob, top_logprobs }));
                    }
                    ContextPolicy::SlidingWindow { keep } => {
                        // history ends with `next`: re-running the window yields its logits
                        let keep = keep.min(model.context() / 2);
                        let window = sink_and_tail(&self.history, keep, (model.context() - keep) / 2);
                        let t = Instant::now();
                        self.logits = session.prefill(model, &window).await?.0;
                        self.prefill_s += t.elapsed().as_secs_f64();
                    }
                }
            } else {
                let pos = session.cached.len();
                // drafts must fit the context, and past the last token to emit they are waste
                let limit = (model.context() - pos - 1).min(self.opts.max_tokens - self.tokens.len() - 1);
                let drafts = match spec.as_deref_mut() {
                    Some(s) => s.draft_tokens(&session.cached, next, &self.history, limit).await?,
                    None => Vec::new(),
                };
                // the speculator prices its drafts by these passes' times
                let clock = Instant::now();
                if drafts.is_empty() {
                    self.logits = model.forward(&[next], pos, Logits::Last).await?;
                    session.cached.push(next);
                } else {
                    let mut input = Vec::with_capacity(drafts.len() + 1);
                    input.push(next);
                    input.extend_from_slice(&drafts);
                    let all = model.forward(&input, pos, Logits::All).await?;
                    let vocab = all.len() / input.len();
                    let mut rows = all.chunks_exact(vocab);
                    self.logits = rows.next().map(<[f32]>::to_vec).unwrap_or_default();
                    self.pending = drafts.iter().copied().zip(rows.map(<[f32]>::to_vec)).collect();
                    self.round = (drafts.len(), 0);
                    session.cached.extend_from_slice(&input);
                }
                if let Some(s) = spec {
                    s.time_target(drafts.len() + 1, clock.elapsed().as_secs_f64());
                }
                if let Some(st) = &mut self.stats {
                    st.drafted += drafts.len();
                    st.target_forwards += 1;
                }
                self.decoded += 1;
            }
        }
        Ok(Some(Piece { token: Some(next), text: out, logprob, top_logprobs }))
    }

    /// Rolls back drafts that will not be used: their KV entries stay past the accepted
    /// length (the next pass overwrites them), the session stops counting them as cached.
    fn drop_pending(&mut self, session: &mut Session) {
        let n = self.pending.len().min(session.cached.len());
        session.cached.truncate(session.cached.len() - n);
        self.pending.clear();
    }

    /// The text still held back (an unfinished UTF-8 character, a partial stop string).
    fn flush(&mut self, reason: StopReason) -> Option<Piece> {
        if reason != StopReason::Stop {
            let rest = self.stream.flush();
            self.text.push_str(&rest);
        }
        if self.emitted >= self.text.len() {
            return None;
        }
        let out = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        Some(Piece { token: None, text: out, ..Default::default() })
    }

    pub fn finish(self) -> Generation {
        let decode_s = self.decode_start.elapsed().as_secs_f64();
        Generation {
            prompt_tokens: self.prompt,
            tokens: self.tokens,
            text: self.text,
            stop_reason: self.done.unwrap_or(StopReason::Length),
            prefilled: self.prefilled,
            prefill_tokens_per_s: rate(self.prefilled, self.prefill_s),
            decode_tokens_per_s: rate(self.decoded, decode_s),
            speculative: self.stats,
        }
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`.
fn held_back(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .find(|&n| {
            n <= text.len() && text.is_char_boundary(text.len() - n) && stop.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

fn rate(n: usize, s: f64) -> f64 {
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}
