//! Speculative decoding: a drafter proposes the next few tokens, the target verifies them all
//! in one batched forward (`Logits::All`: k+1 rows for the cost of about one decode on a
//! bandwidth-bound device), and the [`Generator`](crate::session::Generator) consumes the
//! verified rows one by one through its ordinary path (grammar mask, sampler, stop strings),
//! so those keep working unchanged.
//!
//! Acceptance ([`accept`]): the standard rule of Leviathan et al. / Chen et al. — accept a
//! draft `d` with probability `min(1, p(d) / q(d))`, else draw from `max(0, p − q)`
//! normalized — keeps the output distribution the target's. Both drafters here propose
//! deterministically (the draft model's argmax, a lookup continuation), so `q` is a point
//! mass; greedy `p` is a point mass too, and the rule reduces to "accept while the target's
//! argmax equals the draft", token-for-token plain greedy.
//!
//! Rollback: a rejected draft's KV entries stay in the cache past the accepted length and are
//! overwritten by the next pass; the session's `cached` list is cut back to the accepted tokens.

use crate::backend::{Forward, Model};
use crate::error::{Error, Result};
use crate::graph::Logits;
use crate::sampler::Sampler;
use crate::tokenizer::Tokenizer;
use web_time::Instant;

/// Counters of one generation (the CLI's `"speculative"` JSON, the package's `lastStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpecStats {
    /// Draft tokens sent to the target for verification.
    pub drafted: usize,
    /// Of those, the ones the target accepted.
    pub accepted: usize,
    /// Target forward passes while decoding (verifications and plain single-token steps).
    pub target_forwards: usize,
}

impl SpecStats {
    /// `accepted / drafted` (0 when nothing was drafted).
    pub fn acceptance(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }
}

/// A draft model with the KV state of what it has seen.
pub struct DraftModel {
    model: Model,
    /// Tokens in the draft's KV cache, in order (as `Session::cached` for the target).
    cached: Vec<u32>,
    /// Its single-token step, seconds (measured inside the speculative runs, where it
    /// alternates with the target and pays for that in caches, not standalone).
    step_s: Ema,
}

/// An exponential moving average of recent timings (`None` before the first).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Ema(Option<f64>);

impl Ema {
    fn add(&mut self, x: f64) {
        if x.is_finite() && x >= 0.0 {
            self.0 = Some(self.0.map_or(x, |m| m + (x - m) * EMA_WEIGHT));
        }
    }
}

/// Weight of the newest timing in an [`Ema`]: a few rounds' memory, so one step slowed by
/// another process moves the price of a draft by a quarter of the disturbance.
const EMA_WEIGHT: f64 = 0.25;

/// The target's decode-step times in a speculator's runs (seconds), which price a draft.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Timings {
    /// A single-token step (plain decoding).
    step: Ema,
    /// What each token past the first adds to a verification pass.
    extra: Ema,
}

/// Where drafts come from.
pub enum Drafter {
    /// Continuations of the longest recent n-gram (`min_ngram..=max_ngram` tokens) found
    /// earlier in the prompt or the generated text.
    Lookup { min_ngram: usize, max_ngram: usize },
    /// A smaller model sharing the target's vocabulary, decoding greedily ahead.
    Model(Box<DraftModel>),
}

/// A drafter with its adaptive draft length; the caller keeps it across generations (it owns
/// the draft model).
pub struct Speculator {
    drafter: Drafter,
    max_tokens: usize,
    /// Current draft length (starts at [`FIRST_DRAFT`], doubles on full acceptance; after a
    /// rejection, what was accepted plus one, or what the acceptance rate pays for).
    k: usize,
    /// Plain decoding steps left before the next draft (after rounds that accepted nothing).
    skip: usize,
    /// The next `skip` after a zero-acceptance round (doubles, so a useless drafter costs
    /// one failed round per ~2^n tokens).
    backoff: usize,
    /// Drafts accepted and drafts judged (accepted ones plus each round's first rejected one)
    /// over the recent rounds: their ratio estimates the chance that the next draft is
    /// accepted given the ones before it were.
    hits: f64,
    trials: f64,
    /// Kept across generations: the models and the device do not change.
    timings: Timings,
}

/// Draft length of a generation's first round: a drafter that turns out useless (the
/// bench's zero-accept case) costs 2 draft steps and a 3-token verification, not 6 and 7;
/// a good one doubles its way to the maximum in two rounds.
const FIRST_DRAFT: usize = 2;

/// The most drafts a round verifies: the CPU backend computes up to
/// [`crate::cpu::dot::SMALL_BATCH`] tokens (the pending one and its drafts) with each token's
/// single-token bits, which makes speculative greedy output the plain output by construction;
/// past that, prefill's kernels round differently.
pub const MAX_DRAFTS: usize = crate::cpu::dot::SMALL_BATCH - 1;

/// Longest pause between drafting attempts after repeated rejections.
const MAX_BACKOFF: usize = 64;

/// How many judged drafts the acceptance estimate remembers (older rounds fade out).
const ACCEPT_MEMORY: f64 = 64.0;

/// What one more draft costs, in target decode steps: its draft step (a model's; lookup
/// drafts cost nothing to make) plus its share of the wider verification, `(d + e) / s` from
/// the measured draft step `d`, extra verified token `e` and target step `s`. The `j`-th
/// draft of a round is worth drafting while the chance that it gets accepted, `α^j`,
/// exceeds this. Until all three are measured (the first rounds), the priors: on the CPU
/// backend SmolLM2's Q4_1 draft step was ≈ 0.6 of the F16 target's, a verified token ≈ 0.07
/// (bench/SPECULATIVE.md); the measured cost is kept within [`COST_RANGE`] (timer noise).
fn draft_cost(t: &Timings, draft_step: Option<Ema>) -> f64 {
    let prior = if draft_step.is_some() { 0.7 } else { 0.1 };
    let d = match draft_step {
        Some(Ema(d)) => d,
        None => Some(0.0),
    };
    match (t.step.0, t.extra.0, d) {
        (Some(s), Some(e), Some(d)) if s > 0.0 => ((d + e) / s).clamp(COST_RANGE.0, COST_RANGE.1),
        _ => prior,
    }
}

/// Bounds of a measured [`draft_cost`]: even a free draft costs a little verification, and
/// above 2 target steps no acceptance rate pays for a draft anyway.
const COST_RANGE: (f64, f64) = (0.05, 2.0);

impl Speculator {
    /// Prompt lookup, drafting up to `max_tokens` per round.
    pub fn lookup(max_tokens: usize) -> Self {
        Self::new(Drafter::Lookup { min_ngram: 3, max_ngram: 4 }, max_tokens)
    }

    /// A draft model; its vocabulary must be the target's, token for token, or
    /// [`Error::DraftVocabMismatch`].
    pub fn draft(
        model: Model,
        draft_tok: &Tokenizer,
        target: &impl Forward,
        target_tok: &Tokenizer,
        max_tokens: usize,
    ) -> Result<Self> {
        check_vocab(model.config().n_vocab, draft_tok, target.config().n_vocab, target_tok)?;
        let d = DraftModel { model, cached: Vec::new(), step_s: Ema::default() };
        Ok(Self::new(Drafter::Model(Box::new(d)), max_tokens))
    }

    fn new(drafter: Drafter, max_tokens: usize) -> Self {
        let max_tokens = max_tokens.clamp(1, MAX_DRAFTS);
        let k = FIRST_DRAFT.min(max_tokens);
        Speculator { drafter, max_tokens, k, skip: 0, backoff: 1, hits: 0.0, trials: 0.0, timings: Timings::default() }
    }

    /// Starts the adaptation over (a new generation: its text may suit the drafter better).
    pub fn restart(&mut self) {
        (self.k, self.skip, self.backoff) = (FIRST_DRAFT.min(self.max_tokens), 0, 1);
        (self.hits, self.trials) = (0.0, 0.0);
    }

    pub fn drafter(&self) -> &Drafter {
        &self.drafter
    }

    /// The draft model back (to keep across loads), if there is one.
    pub fn into_draft_model(self) -> Option<Model> {
        match self.drafter {
            Drafter::Model(d) => Some(d.model),
            Drafter::Lookup { .. } => None,
        }
    }

    /// Up to `limit` tokens proposed to follow `next`, the token about to be run after the
    /// target's `cached` ones; `history` (prompt and generated text, ending with `next`) is
    /// what lookup searches. Empty while backing off, and before the target's single-token
    /// step has been timed (one plain step prices the drafts; it decodes a token all the same).
    pub async fn draft_tokens(&mut self, cached: &[u32], next: u32, history: &[u32], limit: usize) -> Result<Vec<u32>> {
        if self.timings.step.0.is_none() {
            return Ok(Vec::new());
        }
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(Vec::new());
        }
        let k = self.k.min(limit);
        if k == 0 {
            return Ok(Vec::new());
        }
        match &mut self.drafter {
            Drafter::Lookup { min_ngram, max_ngram } => Ok(lookup(history, *min_ngram, *max_ngram, k)),
            Drafter::Model(d) => {
                let mut context = Vec::with_capacity(cached.len() + 1);
                context.extend_from_slice(cached);
                context.push(next);
                d.draft(&context, k).await
            }
        }
    }

    /// Times a target forward pass of `tokens` tokens (a plain step: 1; a verification:
    /// drafts + 1) that took `secs`: the prices of drafts follow the device and its load.
    pub fn time_target(&mut self, tokens: usize, secs: f64) {
        let t = &mut self.timings;
        match (tokens, t.step.0) {
            (0, _) => {}
            (1, _) => t.step.add(secs),
            (n, Some(step)) => t.extra.add(((secs - step) / (n - 1) as f64).max(0.0)),
            (_, None) => {}
        }
    }

    /// What one more draft costs now, in target steps ([`draft_cost`]).
    pub fn draft_cost(&self) -> f64 {
        let d = match &self.drafter {
            Drafter::Model(d) => Some(d.step_s),
            Drafter::Lookup { .. } => None,
        };
        draft_cost(&self.timings, d)
    }

    /// Adapts the draft length to a verification's outcome.
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        let judged = (accepted + usize::from(accepted < drafted)) as f64;
        let keep = (ACCEPT_MEMORY / (self.trials + judged)).min(1.0);
        (self.hits, self.trials) = ((self.hits + accepted as f64) * keep, (self.trials + judged) * keep);
        if accepted == drafted {
            self.k = (2 * self.k).max(self.paid_length()).min(self.max_tokens);
            self.backoff = 1;
        } else if accepted == 0 {
            // the drafter lost track (lookup's match ended, the text changed): start small;
            // one whose acceptance rate pays for no draft at all (a useless draft model)
            // backs off twice as fast, so it costs a few failed rounds per generation
            self.k = 1;
            self.skip = self.backoff;
            let grow = if self.paid_length() == 0 { 4 } else { 2 };
            self.backoff = (self.backoff * grow).min(MAX_BACKOFF);
        } else {
            // one rejection in a long accepted run is chance where the rate is high
            self.k = (accepted + 1).max(self.paid_length()).min(self.max_tokens);
            self.backoff = 1;
        }
    }

    /// [`paid_length`] at the estimated acceptance rate (leaning low: one judged draft short).
    fn paid_length(&self) -> usize {
        paid_length(self.hits / (self.trials + 1.0), self.draft_cost(), self.max_tokens)
    }
}

/// The longest draft (at most `max`) whose last token is still worth its `cost` where each
/// draft is accepted with probability `alpha` after the ones before it: `alpha^k > cost`.
fn paid_length(alpha: f64, cost: f64, max: usize) -> usize {
    if alpha.is_nan() || alpha <= 0.0 {
        return 0;
    }
    let k = cost.ln() / alpha.ln();
    if alpha >= 1.0 || !k.is_finite() {
        max
    } else {
        (k.max(0.0) as usize).min(max)
    }
}

impl DraftModel {
    /// Greedy continuation of `context` by the draft model, reusing its cached prefix.
    async fn draft(&mut self, context: &[u32], k: usize) -> Result<Vec<u32>> {
        // a context the draft cannot hold gets no drafts (the target goes on alone)
        if context.len() + k > self.model.context() {
            return Ok(Vec::new());
        }
        let common = self.cached.iter().zip(context).take_while(|(a, b)| a == b).count();
        let start = common.min(context.len() - 1);
        self.cached.truncate(start);
        let clock = Instant::now();
        let mut logits = self.model.forward(&context[start..], start, Logits::Last).await?;
        if context.len() - start == 1 {
            self.step_s.add(clock.elapsed().as_secs_f64());
        }
        self.cached.extend_from_slice(&context[start..]);
        let mut out = Vec::with_capacity(k);
        loop {
            let t = argmax(&logits)?;
            out.push(t);
            if out.len() == k {
                return Ok(out);
            }
            let clock = Instant::now();
            logits = self.model.forward(&[t], self.cached.len(), Logits::Last).await?;
            self.step_s.add(clock.elapsed().as_secs_f64());
            self.cached.push(t);
        }
    }
}

/// The draft's vocabulary is the target's: same size, same token strings.
pub fn check_vocab(draft_n: usize, draft_tok: &Tokenizer, target_n: usize, target_tok: &Tokenizer) -> Result<()> {
    if draft_n != target_n || draft_tok.vocab_size() != target_tok.vocab_size() {
        return Err(Error::DraftVocabMismatch(format!(
            "the draft has {draft_n} logits and {} tokens, the target {target_n} and {}",
            draft_tok.vocab_size(),
            target_tok.vocab_size()
        )));
    }
    for id in 0..target_tok.vocab_size() as u32 {
        let (d, t) = (draft_tok.id_to_token(id), target_tok.id_to_token(id));
        if d != t {
            return Err(Error::DraftVocabMismatch(format!(
                "token {id} is {:?} in the draft and {:?} in the target",
                d.unwrap_or_default(),
                t.unwrap_or_default()
            )));
        }
    }
    Ok(())
}

fn argmax(logits: &[f32]) -> Result<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in logits.iter().enumerate() {
        if x > f32::NEG_INFINITY && best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i as u32).ok_or_else(|| Error::InvalidArgument("draft: no finite logit".into()))
}

/// Prompt lookup: the tokens that followed the most recent earlier occurrence of the longest
/// suffix n-gram of `context` (`max_ngram` down to `min_ngram` tokens), at most `k`, and at
/// most `L − 1` for a match of `L` tokens (the n-gram extended backwards while it still
/// matches): a short match is a weak prediction — in free text (bench/speculative.sh's
/// lookup-free) the continuations of 2-gram matches held for 10% of their tokens, 4-gram ones
/// for 17% — and every rejected draft costs verification work, while copied text matches long.
pub fn lookup(context: &[u32], min_ngram: usize, max_ngram: usize, k: usize) -> Vec<u32> {
    let n_ctx = context.len();
    for n in (min_ngram.max(1)..=max_ngram).rev() {
        if n >= n_ctx {
            continue;
        }
        let suffix = &context[n_ctx - n..];
        // latest match first: recent text is the likeliest to be repeated next
        for start in (0..n_ctx - n).rev() {
            if &context[start..start + n] == suffix {
                let longer = (1..=start.min(k)).take_while(|&e| context[start - e] == context[n_ctx - n - e]).count();
                let from = start + n;
                let k = k.min((n + longer).saturating_sub(1).max(1));
                return context[from..(from + k).min(n_ctx)].to_vec();
            }
        }
    }
    Vec::new()
}

/// The speculative-sampling rule for a draft `draft` proposed with probability `q_draft`
/// (a point mass: 1.0) against the target distribution `p` (`(id, prob)` pairs, from
/// [`Sampler::probs`]): `draft` with probability `min(1, p(d)/q(d))`, else a draw from
/// `max(0, p − q)` normalized, where `q` is `q_dist` (`None`: the point mass at `draft`).
pub fn accept(sampler: &mut Sampler, p: &[(u32, f64)], draft: u32, q_dist: Option<&[(u32, f64)]>) -> Result<u32> {
    let q_of = |id: u32| match q_dist {
        None => f64::from(u8::from(id == draft)),
        Some(q) => q.iter().find(|x| x.0 == id).map_or(0.0, |x| x.1),
    };
    let p_d = p.iter().find(|x| x.0 == draft).map_or(0.0, |x| x.1);
    let q_d = q_of(draft);
    if q_d > 0.0 && sampler.uniform() < p_d / q_d {
        return Ok(draft);
    }
    let residual: Vec<(u32, f64)> =
        p.iter().map(|&(id, pi)| (id, (pi - q_of(id)).max(0.0))).filter(|x| x.1 > 0.0).collect();
    let total: f64 = residual.iter().map(|x| x.1).sum();
    if residual.is_empty() || total <= 0.0 {
        // p ≤ q everywhere means p = q: the draft is a sample of p already
        return Ok(draft);
    }
    let u = sampler.uniform() * total;
    let mut cum = 0.0;
    for &(id, w) in &residual {
        cum += w;
        if u < cum {
            return Ok(id);
        }
    }
    Ok(residual[residual.len() - 1].0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::SamplerConfig;

    #[test]
    fn lookup_continues_the_latest_longest_match() {
        let ctx = [1, 2, 3, 4, 5, 9, 2, 3, 7, 8, 1, 2, 3];
        // suffix [1,2,3] occurs at 0; [2,3] also later, but the longer match wins; a match
        // of L tokens drafts at most L − 1
        assert_eq!(lookup(&ctx, 2, 4, 3), vec![4, 5]);
        assert_eq!(lookup(&[5, 6, 7, 5, 6], 2, 4, 8), vec![7]);
        assert_eq!(lookup(&[1, 2, 3, 4], 2, 4, 3), Vec::<u32>::new());
        assert_eq!(lookup(&[1, 2, 1], 1, 4, 2), vec![2]);
        // the match extends backwards past max_ngram: [7, 1, 2, 3, 4] repeats, 4 drafts of 5
        let long = [7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 7, 1, 2, 3, 4];
        assert_eq!(lookup(&long, 2, 4, 8), vec![5, 6, 7, 8]);
        assert_eq!(lookup(&long, 2, 4, 3), vec![5, 6, 7]);
    }

    #[test]
    fn backoff_grows_on_rejection_and_resets_on_acceptance() {
        let mut s = Speculator::lookup(6);
        // a first round drafts 2, full acceptance doubles (or more, see below) up to the maximum
        assert_eq!(s.k, 2);
        s.record(2, 2);
        assert!(s.k >= 4);
        s.record(s.k, s.k);
        assert_eq!(s.k, 6);
        s.record(4, 0);
        assert_eq!((s.k, s.skip, s.backoff), (1, 1, 2));
        s.skip = 0;
        s.record(1, 0);
        assert_eq!((s.skip, s.backoff), (2, 4));
        s.skip = 0;
        s.record(1, 1);
        assert_eq!(s.backoff, 1);
        s.restart();
        assert_eq!((s.k, s.skip, s.backoff, s.hits, s.trials), (2, 0, 1, 0.0, 0.0));
    }

    /// After a rejection the length is what the acceptance rate pays for, not only the
    /// accepted run plus one.
    #[test]
    fn draft_length_follows_the_acceptance_rate() {
        // α^k > cost: a model draft (cost 0.7) at 98% keeps 16 (0.98^16 = 0.72), at 90% 3
        // (0.9^3 = 0.73, 0.9^4 = 0.66); lookup's (0.1) at 80% 10 (0.8^10 = 0.107)
        assert_eq!(paid_length(0.98, 0.7, 16), 16);
        assert_eq!(paid_length(0.98, 0.7, 10), 10);
        assert_eq!(paid_length(0.9, 0.7, 16), 3);
        assert_eq!(paid_length(0.8, 0.1, 16), 10);
        assert_eq!((paid_length(0.0, 0.1, 16), paid_length(1.0, 0.1, 16)), (0, 16));
        let mut s = Speculator::lookup(MAX_DRAFTS);
        s.record(2, 2);
        // 2 hits of 2 judged, estimated low: α = 2/3 pays 5 (0.667^5 = 0.13), above 2·2
        assert_eq!(s.k, 5);
        // 7 of 7: α = 7/8 pays 17, capped at MAX_DRAFTS (15)
        s.record(5, 5);
        assert_eq!(s.k, MAX_DRAFTS);
        // 8 hits of 9 judged: α = 0.8 pays 10: one rejection early in a long draft keeps
        // the length where "accepted + 1" would have cut it to 2
        s.record(16, 1);
        assert_eq!(s.k, 10);
        // a low rate (1 hit in 3 judged) shrinks it to the accepted run plus one
        for _ in 0..40 {
            s.record(4, 1);
            s.record(4, 0);
        }
        s.record(4, 1);
        assert_eq!(s.k, 2);
        // the estimate forgets: old rounds fade past ACCEPT_MEMORY judged drafts
        assert!(s.trials <= ACCEPT_MEMORY + 1e-9);
    }

    /// A draft's price comes from the measured steps once they are known: the first step
    /// is plain (it times the target), verification passes time the extra tokens, a draft
    /// model its own steps; the price sets how long a draft the acceptance rate pays for.
    #[test]
    fn draft_price_comes_from_the_measured_steps() {
        let mut s = Speculator::lookup(16);
        // priors until measured
        assert_eq!(s.draft_cost(), 0.1);
        // no drafts before a plain step has been timed
        let drafts = pollster::block_on(s.draft_tokens(&[1, 2, 3], 1, &[1, 2, 3, 1, 2, 3, 1], 8)).unwrap();
        assert_eq!(drafts, Vec::<u32>::new());
        s.time_target(1, 0.020);
        let drafts = pollster::block_on(s.draft_tokens(&[1, 2, 3], 1, &[1, 2, 3, 1, 2, 3, 1], 8)).unwrap();
        assert_eq!(drafts, vec![2, 3]);
        // a 5-token verification of 30 ms: 2.5 ms per extra token, 0.125 of a step
        s.time_target(5, 0.030);
        assert!((s.draft_cost() - 0.125).abs() < 1e-12, "{}", s.draft_cost());
        // newer timings move the average by a quarter: 2.5 + (4.5 − 2.5)/4 = 3 ms
        s.time_target(3, 0.029);
        assert!((s.draft_cost() - 0.15).abs() < 1e-12, "{}", s.draft_cost());
        // a model draft: its step (6 ms) plus the verified token, over the target step
        let t = s.timings;
        let model = |d: Option<f64>| draft_cost(&t, Some(Ema(d)));
        assert!((model(Some(0.006)) - 0.45).abs() < 1e-12);
        assert_eq!(model(None), 0.7);
        // kept in range: a free draft still costs a little, a dear one at most 2 steps
        assert_eq!(model(Some(1.0)), COST_RANGE.1);
        let free = Timings { step: Ema(Some(0.02)), extra: Ema(Some(0.0)) };
        assert_eq!(draft_cost(&free, None), COST_RANGE.0);
        // at α = 0.95 a 0.45 draft pays 15 (0.95^15 = 0.46), the old constant 0.7 only 6
        assert_eq!((paid_length(0.95, model(Some(0.006)), 32), paid_length(0.95, 0.7, 32)), (15, 6));
        // timings survive a new generation; the adaptation does not
        s.record(2, 2);
        s.restart();
        assert_eq!((s.timings, s.hits), (t, 0.0));
    }

    /// A round never drafts more than the CPU backend verifies with single-token bits.
    #[test]
    fn drafts_are_capped_where_verification_stays_exact() {
        assert_eq!(MAX_DRAFTS + 1, crate::cpu::dot::SMALL_BATCH);
        for (asked, got) in [(0, 1), (6, 6), (MAX_DRAFTS, MAX_DRAFTS), (64, MAX_DRAFTS)] {
            assert_eq!(Speculator::lookup(asked).max_tokens, got, "asked {asked}");
        }
    }

    /// A drafter whose acceptance pays for no draft backs off 4× per failed round (skips of 1,
    /// 4, 16, 64 tokens: 4 rounds in 64 tokens, where doubling took 6), one that has paid 2×.
    #[test]
    fn a_useless_drafter_backs_off_faster() {
        let mut s = Speculator::lookup(6);
        let mut rounds = 0;
        for _ in 0..64 {
            if s.skip > 0 {
                s.skip -= 1;
                continue;
            }
            rounds += 1;
            s.record(s.k, 0);
        }
        assert_eq!((rounds, s.backoff), (4, MAX_BACKOFF));
        // after some acceptance a zero round doubles, as before
        let mut s = Speculator::lookup(6);
        s.record(2, 2);
        s.record(4, 0);
        assert_eq!((s.skip, s.backoff), (1, 2));
    }

    /// The rule's output distribution is p, exactly (computed, not sampled), for a point-mass
    /// and a spread q: P(x) = q(x) min(1, p/q) + P(reject) · residual(x).
    #[test]
    fn rule_preserves_the_target_distribution() {
        let p = [(0u32, 0.5), (1, 0.3), (2, 0.2)];
        let q = [(0u32, 0.1), (1, 0.6), (2, 0.3)];
        let mut s = Sampler::new(SamplerConfig { temperature: 1.0, seed: 3, ..Default::default() }).unwrap();
        let n = 200_000;
        let mut counts = [0usize; 3];
        let mut rng =
            crate::sampler::Sampler::new(SamplerConfig { temperature: 1.0, seed: 9, ..Default::default() }).unwrap();
        for _ in 0..n {
            // draw the draft from q, then apply the rule
            let u = rng.uniform();
            let d = if u < 0.1 {
                0
            } else if u < 0.7 {
                1
            } else {
                2
            };
            counts[accept(&mut s, &p, d, Some(&q)).unwrap() as usize] += 1;
        }
        for (i, &(_, pi)) in p.iter().enumerate() {
            let f = counts[i] as f64 / n as f64;
            assert!((f - pi).abs() < 0.005, "token {i}: {f} vs {pi}");
        }
        // point mass at 1: accepted with p(1) = 0.3, else drawn from p without 1
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[accept(&mut s, &p, 1, None).unwrap() as usize] += 1;
        }
        for (i, &(_, pi)) in p.iter().enumerate() {
            let f = counts[i] as f64 / n as f64;
            assert!((f - pi).abs() < 0.005, "point mass, token {i}: {f} vs {pi}");
        }
    }
}
