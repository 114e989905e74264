//! Token sampling from one row of logits, in llama.cpp's order:
//! repetition penalty → (greedy: argmax) → top-k → softmax(logits / T) → top-p → min-p → draw.
//!
//! The RNG lives here (xoshiro256** seeded through SplitMix64) rather than coming from `rand`,
//! so the library stays dependency-free for wasm32 and a seed means the same thing everywhere.

use crate::{Error, Result};
use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// `<= 0` → greedy (argmax, ties → lowest id).
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0.0 = off; keep tokens with `p >= min_p * p_max`.
    pub min_p: f32,
    /// 1.0 = off; for tokens in history: logit > 0 → logit / penalty, else logit * penalty.
    pub repetition_penalty: f32,
    /// How much history the penalty looks at; 0 = all.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, repeat_last_n: 64, seed: 0 }
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        Self::default()
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidArgument(msg));
        // Infinite values are rejected too: they turn the arithmetic below into NaN (0 * inf).
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!("temperature must be finite and >= 0, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(self.min_p >= 0.0 && self.min_p <= 1.0) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!("repetition_penalty must be finite and > 0, got {}", self.repetition_penalty));
        }
        Ok(())
    }
}

/// xoshiro256** (Blackman & Vigna): small, fast, good statistical quality, no dependencies.
#[derive(Debug, Clone)]
struct Xoshiro256 {
    s: [u64; 4],
}

/// SplitMix64, which expands a seed into xoshiro states: it never yields the all-zero state
/// xoshiro can't leave.
pub(crate) fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The state step the xoshiro256 family shares (`**` here, `++` in [`crate::synth`]).
#[inline]
pub(crate) fn xoshiro256_advance(s: &mut [u64; 4]) {
    let t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s[3].rotate_left(45);
}

impl Xoshiro256 {
    fn seed(seed: u64) -> Self {
        let mut x = seed;
        Self { s: std::array::from_fn(|_| splitmix64(&mut x)) }
    }

    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        xoshiro256_advance(&mut self.s);
        result
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Descending by value, ties → lower id first, so every truncation is deterministic.
fn desc(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

pub struct Sampler {
    cfg: SamplerConfig,
    rng: Xoshiro256,
    // Scratch buffers kept across calls: a 128k vocabulary would otherwise cost ~1.5 MB of
    // allocation per token.
    logits: Vec<f32>,
    recent: Vec<u32>,
    cands: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { rng: Xoshiro256::seed(cfg.seed), cfg, logits: Vec::new(), recent: Vec::new(), cands: Vec::new() })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Picks the next token from one row of logits; `history` = tokens so far (prompt + generated).
    /// NaN logits never get picked; an empty or all-NaN/-inf row → `Error::InvalidArgument`.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<u32> {
        if let Some(argmax) = self.prepare(logits, history)? {
            return Ok(argmax);
        }
        // Draw from the renormalized survivors by inverse CDF.
        let c = &self.cands;
        let total: f64 = c.iter().map(|x| x.1 as f64).sum();
        let u = self.rng.next_f64() * total;
        let mut cum = 0f64;
        for &(id, p) in c.iter() {
            cum += p as f64;
            if u < cum {
                return Ok(id);
            }
        }
        // Rounding can leave u == total; the last survivor with nonzero mass is then correct.
        Ok(c.iter().rev().find(|x| x.1 > 0.0).unwrap_or(&c[0]).0)
    }

    /// The distribution [`sample`](Self::sample) draws from, as `(id, probability)` pairs
    /// summing to 1 (one pair at 1.0 when greedy): what speculative decoding compares drafts
    /// against.
    pub fn probs(&mut self, logits: &[f32], history: &[u32]) -> Result<Vec<(u32, f64)>> {
        if let Some(argmax) = self.prepare(logits, history)? {
            return Ok(vec![(argmax, 1.0)]);
        }
        let total: f64 = self.cands.iter().map(|x| x.1 as f64).sum();
        Ok(self.cands.iter().filter(|x| x.1 > 0.0).map(|&(id, p)| (id, p as f64 / total)).collect())
    }

    /// Uniform in [0, 1) from the sampler's seeded stream.
    pub fn uniform(&mut self) -> f64 {
        self.rng.next_f64()
    }

    /// Whether this configuration always takes the argmax.
    pub fn is_greedy(&self) -> bool {
        self.cfg.temperature <= 0.0 || self.cfg.top_k == 1
    }

    /// Penalty, truncation and softmax: `Some(argmax)` when greedy, else the surviving
    /// candidates with unnormalized probabilities in `self.cands`.
    fn prepare(&mut self, logits: &[f32], history: &[u32]) -> Result<Option<u32>> {
        let cfg = &self.cfg;
        if logits.is_empty() {
            return Err(Error::InvalidArgument("sample: empty logits row".into()));
        }
        if logits.len() > u32::MAX as usize {
            return Err(Error::InvalidArgument("sample: logits row longer than u32 ids".into()));
        }

        self.logits.clear();
        self.logits.extend_from_slice(logits);
        let l = &mut self.logits;

        if cfg.repetition_penalty != 1.0 {
            let window = match cfg.repeat_last_n {
                0 => history,
                n => &history[history.len().saturating_sub(n)..],
            };
            // Penalize each distinct token once, however often it repeats (as llama.cpp does).
            self.recent.clear();
            self.recent.extend_from_slice(window);
            self.recent.sort_unstable();
            self.recent.dedup();
            let p = cfg.repetition_penalty;
            for &t in &self.recent {
                // Ids outside the vocabulary (e.g. from another tokenizer) are simply ignored.
                if let Some(x) = l.get_mut(t as usize) {
                    *x = if *x > 0.0 { *x / p } else { *x * p };
                }
            }
        }

        // Argmax over usable logits (NaN comparisons are false, -inf never beats the start).
        let mut best: Option<(u32, f32)> = None;
        for (i, &x) in l.iter().enumerate() {
            if x > f32::NEG_INFINITY && best.is_none_or(|(_, b)| x > b) {
                best = Some((i as u32, x));
            }
        }
        let Some((argmax, max)) = best else {
            return Err(Error::InvalidArgument("sample: no finite logit in row (all NaN/-inf)".into()));
        };
        if cfg.temperature <= 0.0 || cfg.top_k == 1 {
            return Ok(Some(argmax));
        }
        let c = &mut self.cands;
        c.clear();
        if max == f32::INFINITY {
            // +inf means "certain"; softmax would give inf - inf = NaN, so the +inf tokens share
            // the mass equally instead.
            c.extend((0..l.len() as u32).filter(|&i| l[i as usize] == f32::INFINITY).map(|i| (i, 0.0)));
        } else {
            c.extend(l.iter().enumerate().filter(|(_, x)| **x > f32::NEG_INFINITY).map(|(i, &x)| (i as u32, x)));
        }

        // Top-k: O(n) partial selection, then only the k survivors get sorted.
        let mut sorted = false;
        if cfg.top_k > 0 && cfg.top_k < c.len() {
            c.select_nth_unstable_by(cfg.top_k - 1, desc);
            c.truncate(cfg.top_k);
            c.sort_unstable_by(desc);
            sorted = true;
        }

        // Softmax at temperature T; max subtracted for stability, sum in f64 for 128k terms.
        let t = cfg.temperature;
        let m = if max == f32::INFINITY { 0.0 } else { max };
        let mut sum = 0f64;
        for (_, x) in c.iter_mut() {
            *x = ((*x - m) / t).exp();
            sum += *x as f64;
        }

        if cfg.top_p < 1.0 {
            if !sorted {
                c.sort_unstable_by(desc);
            }
            // Smallest prefix whose mass reaches top_p. The tiny slack keeps float rounding
            // (0.5 + 0.3 = 0.79999..) from dragging in one more token than the user asked for.
            let target = cfg.top_p as f64 * sum * (1.0 - 1e-6);
            let mut cum = 0f64;
            let mut keep = c.len();
            for (i, (_, p)) in c.iter().enumerate() {
                cum += *p as f64;
                if cum >= target {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep.max(1));
        }

        if cfg.min_p > 0.0 {
            // Unnormalized probs suffice since the threshold is relative to the max; the max
            // itself always passes, so at least one token survives.
            let p_max = c.iter().map(|x| x.1).fold(0f32, f32::max);
            let thr = cfg.min_p * p_max;
            c.retain(|x| x.1 >= thr);
        }

        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn sampler(f: impl FnOnce(&mut SamplerConfig)) -> Sampler {
        let mut cfg = SamplerConfig { temperature: 1.0, seed: 7, ..Default::default() };
        f(&mut cfg);
        Sampler::new(cfg).unwrap()
    }

    fn counts(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<usize> {
        let mut c = vec![0; logits.len()];
        for _ in 0..n {
            c[s.sample(logits, &[]).unwrap() as usize] += 1;
        }
        c
    }

    fn ln(p: &[f32]) -> Vec<f32> {
        p.iter().map(|x| x.ln()).collect()
    }

    fn random_logits(n: usize, seed: u64) -> Vec<f32> {
        let mut r = StdRng::seed_from_u64(seed);
        (0..n).map(|_| r.random_range(-8.0..8.0)).collect()
    }

    fn argmax(l: &[f32]) -> u32 {
        let mut b = 0;
        for i in 1..l.len() {
            if l[i] > l[b] {
                b = i;
            }
        }
        b as u32
    }

    #[test]
    fn greedy_is_argmax_with_lowest_id_on_ties() {
        let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
        assert_eq!(s.sample(&[1.0, 3.0, 2.0], &[]).unwrap(), 1);
        assert_eq!(s.sample(&[1.0, 3.0, 3.0, 2.0], &[]).unwrap(), 1);
        assert_eq!(s.sample(&[-5.0, -5.0], &[]).unwrap(), 0);
        let l = random_logits(128_256, 1);
        assert_eq!(s.sample(&l, &[]).unwrap(), argmax(&l));
        assert_eq!(SamplerConfig::greedy(), SamplerConfig::default());
    }

    #[test]
    fn seeded_determinism() {
        let l = vec![0.0; 100];
        let run = |seed| {
            let mut s = sampler(|c| c.seed = seed);
            (0..1000).map(|_| s.sample(&l, &[]).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn frequencies_match_softmax_at_t07() {
        let l = [1.0f32, 2.0, 0.5, -1.0, 3.0, 0.0];
        let t = 0.7;
        let w: Vec<f64> = l.iter().map(|x| ((x - 3.0) as f64 / t).exp()).collect();
        let z: f64 = w.iter().sum();
        let n = 20_000;
        let c = counts(&mut sampler(|c| c.temperature = t as f32), &l, n);
        let mut chi2 = 0.0;
        for (i, &k) in c.iter().enumerate() {
            let e = n as f64 * w[i] / z;
            chi2 += (k as f64 - e).powi(2) / e;
            assert!((k as f64 / n as f64 - w[i] / z).abs() < 0.015, "token {i}: {c:?}");
        }
        // 5 degrees of freedom, p = 0.001 critical value.
        assert!(chi2 < 20.52, "chi2 = {chi2}, counts {c:?}");
    }

    #[test]
    fn top_k_1_is_greedy_at_any_temperature() {
        for (i, t) in [0.1, 1.0, 5.0, 100.0].into_iter().enumerate() {
            let l = random_logits(5000, i as u64);
            let mut s = sampler(|c| {
                c.temperature = t;
                c.top_k = 1;
            });
            for _ in 0..50 {
                assert_eq!(s.sample(&l, &[]).unwrap(), argmax(&l));
            }
        }
    }

    #[test]
    fn top_k_3_stays_in_top_3() {
        let l = random_logits(1000, 9);
        let mut order: Vec<u32> = (0..1000).collect();
        order.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]));
        let c = counts(
            &mut sampler(|c| {
                c.temperature = 50.0; // nearly flat, so anything outside top-3 would show up
                c.top_k = 3;
            }),
            &l,
            3000,
        );
        for (id, &k) in c.iter().enumerate() {
            assert_eq!(k > 0, order[..3].contains(&(id as u32)), "token {id} count {k}");
        }
    }

    #[test]
    fn top_p_keeps_smallest_prefix() {
        // Shuffled so the sort is exercised: sorted probs are 0.5, 0.3, 0.15, 0.05.
        let l = ln(&[0.15, 0.5, 0.05, 0.3]);
        let c = counts(&mut sampler(|c| c.top_p = 0.8), &l, 5000);
        assert!(c[0] == 0 && c[2] == 0 && c[1] > 0 && c[3] > 0, "{c:?}");
        // Renormalized 0.5 / 0.8.
        assert!((c[1] as f64 / 5000.0 - 0.625).abs() < 0.03, "{c:?}");
        let c = counts(&mut sampler(|c| c.top_p = 0.81), &l, 5000);
        assert!(c[2] == 0 && c[0] > 0, "{c:?}");
        // Always at least one token.
        let c = counts(&mut sampler(|c| c.top_p = 0.01), &l, 500);
        assert_eq!(c[1], 500);
        // Combined with top-k (pre-sorted path).
        let c = counts(
            &mut sampler(|c| {
                c.top_k = 3;
                c.top_p = 0.8;
            }),
            &l,
            2000,
        );
        assert!(c[0] == 0 && c[2] == 0, "{c:?}");
    }

    #[test]
    fn min_p_filters_relative_to_max() {
        let l = ln(&[0.5, 0.3, 0.15, 0.05]);
        // 0.4 * 0.5 = 0.2 → {0, 1}
        let c = counts(&mut sampler(|c| c.min_p = 0.4), &l, 5000);
        assert!(c[0] > 0 && c[1] > 0 && c[2] == 0 && c[3] == 0, "{c:?}");
        // 0.25 * 0.5 = 0.125 → {0, 1, 2}
        let c = counts(&mut sampler(|c| c.min_p = 0.25), &l, 5000);
        assert!(c[2] > 0 && c[3] == 0, "{c:?}");
        // min_p = 1 keeps only the top token.
        let c = counts(&mut sampler(|c| c.min_p = 1.0), &l, 500);
        assert_eq!(c[0], 500);
    }

    #[test]
    fn repetition_penalty() {
        let greedy = |pen, last_n| {
            Sampler::new(SamplerConfig { repetition_penalty: pen, repeat_last_n: last_n, ..Default::default() })
                .unwrap()
        };
        // Positive logit is divided: 2.0 / 2 = 1.0 < 1.5.
        assert_eq!(greedy(2.0, 64).sample(&[2.0, 1.5, -1.0], &[0, 0, 0]).unwrap(), 1);
        assert_eq!(greedy(1.0, 64).sample(&[2.0, 1.5, -1.0], &[0]).unwrap(), 0);
        // Negative logit is multiplied: -1.0 * 1.5 = -1.5 < -1.2 (dividing would give -0.67 and keep 0).
        assert_eq!(greedy(1.5, 64).sample(&[-1.0, -1.2], &[0]).unwrap(), 1);
        // Token 0 has left the 2-token window, so it is not penalized; 0 = whole history.
        let h = [0, 2, 2];
        assert_eq!(greedy(2.0, 2).sample(&[2.0, 1.5, -1.0], &h).unwrap(), 0);
        assert_eq!(greedy(2.0, 0).sample(&[2.0, 1.5, -1.0], &h).unwrap(), 1);
        // Out-of-vocabulary history ids are ignored.
        assert_eq!(greedy(2.0, 64).sample(&[2.0, 1.5], &[99]).unwrap(), 0);
        // Penalty < 1 boosts instead.
        assert_eq!(greedy(0.5, 64).sample(&[1.0, 1.5], &[0]).unwrap(), 0);
        // Also applied before sampling: with top_k = 1 the penalized token loses.
        let mut s = sampler(|c| {
            c.top_k = 1;
            c.repetition_penalty = 2.0;
        });
        assert_eq!(s.sample(&[2.0, 1.5], &[0]).unwrap(), 1);
    }

    #[test]
    fn nan_and_inf_handling() {
        let l = [f32::NAN, 1.0, f32::NAN, 0.5, f32::NEG_INFINITY];
        assert_eq!(Sampler::new(SamplerConfig::greedy()).unwrap().sample(&l, &[]).unwrap(), 1);
        let c = counts(&mut sampler(|c| c.temperature = 5.0), &l, 3000);
        assert!(c[0] == 0 && c[2] == 0 && c[4] == 0 && c[1] > 0 && c[3] > 0, "{c:?}");
        for bad in [&[][..], &[f32::NAN, f32::NAN], &[f32::NEG_INFINITY], &[f32::NAN, f32::NEG_INFINITY]] {
            for mut s in [Sampler::new(SamplerConfig::greedy()).unwrap(), sampler(|_| {})] {
                assert!(matches!(s.sample(bad, &[]), Err(Error::InvalidArgument(_))), "{bad:?}");
            }
        }
        // +inf dominates and never produces NaN probabilities.
        let l = [1.0, f32::INFINITY, 2.0, f32::INFINITY];
        assert_eq!(Sampler::new(SamplerConfig::greedy()).unwrap().sample(&l, &[]).unwrap(), 1);
        let c = counts(&mut sampler(|c| c.top_p = 0.9), &l, 2000);
        assert!(c[0] == 0 && c[2] == 0 && c[1] > 0 && c[3] > 0, "{c:?}");
    }

    #[test]
    fn invalid_configs_rejected() {
        type Tweak = fn(&mut SamplerConfig);
        let cases: [(&str, Tweak); 11] = [
            ("temperature", |c| c.temperature = -0.1),
            ("temperature", |c| c.temperature = f32::NAN),
            ("temperature", |c| c.temperature = f32::INFINITY),
            ("top_p", |c| c.top_p = 0.0),
            ("top_p", |c| c.top_p = 1.01),
            ("top_p", |c| c.top_p = f32::NAN),
            ("min_p", |c| c.min_p = -0.01),
            ("min_p", |c| c.min_p = 1.5),
            ("min_p", |c| c.min_p = f32::NAN),
            ("repetition_penalty", |c| c.repetition_penalty = 0.0),
            ("repetition_penalty", |c| c.repetition_penalty = -1.0),
        ];
        for (field, f) in cases {
            let mut cfg = SamplerConfig::default();
            f(&mut cfg);
            match Sampler::new(cfg.clone()) {
                Err(Error::InvalidArgument(m)) => assert!(m.contains(field), "{m}"),
                Err(e) => panic!("{cfg:?}: wrong error {e}"),
                Ok(_) => panic!("{cfg:?} accepted"),
            }
        }
        assert!(SamplerConfig::default().validate().is_ok());
        assert!(SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.1,
            ..Default::default()
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn full_vocab_pipeline() {
        // 128256-entry row through every stage; checks results stay within the allowed sets.
        let l = random_logits(128_256, 3);
        let mut order: Vec<u32> = (0..l.len() as u32).collect();
        order.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]));
        let history: Vec<u32> = order[..10].to_vec();
        // The allowed top-40 is taken after the penalty, which pushes the 10 history tokens down.
        let mut pen = l.clone();
        for &h in &history {
            pen[h as usize] /= 1.1; // all top-10 logits are positive
        }
        order.sort_by(|&a, &b| pen[b as usize].total_cmp(&pen[a as usize]));
        let mut s = sampler(|c| {
            c.temperature = 0.8;
            c.top_k = 40;
            c.top_p = 0.95;
            c.min_p = 0.05;
            c.repetition_penalty = 1.1;
        });
        let mut t = sampler(|c| c.top_p = 0.9);
        for _ in 0..20 {
            assert!(order[..40].contains(&s.sample(&l, &history).unwrap()));
            assert!(l[t.sample(&l, &[]).unwrap() as usize] > 0.0);
        }
    }
}
