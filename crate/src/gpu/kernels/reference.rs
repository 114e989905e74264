//! Plain CPU versions of every kernel. The GPU kernels are tested against these; they are
//! written for clarity, not speed. Block formats are decoded by [`crate::quant`].

/// `y[t, r] = Σ_k w[r, k] x[t, k]` with `w` [rows, cols], `x` [n, cols].
pub fn matmul(w: &[f32], rows: usize, cols: usize, x: &[f32], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; n * rows];
    for t in 0..n {
        for r in 0..rows {
            let wr = &w[r * cols..(r + 1) * cols];
            let xt = &x[t * cols..(t + 1) * cols];
            y[t * rows + r] = wr.iter().zip(xt).map(|(a, b)| (*a as f64) * (*b as f64)).sum::<f64>() as f32;
        }
    }
    y
}

pub fn rmsnorm(x: &[f32], g: &[f32], eps: f32) -> Vec<f32> {
    let dim = g.len();
    x.chunks(dim)
        .flat_map(|row| {
            let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / dim as f64;
            let s = 1.0 / (ms + eps as f64).sqrt();
            row.iter().zip(g).map(move |(v, w)| (*v as f64 * s * *w as f64) as f32)
        })
        .collect()
}

/// Rotates adjacent pairs of each head of `x` [n, heads, head_dim] at positions pos0 + t.
pub fn rope(x: &mut [f32], heads: usize, head_dim: usize, pos0: usize, inv_freq: &[f32]) {
    for (t, tok) in x.chunks_mut(heads * head_dim).enumerate() {
        for head in tok.chunks_mut(head_dim) {
            for j in 0..head_dim / 2 {
                let a = (pos0 + t) as f64 * inv_freq[j] as f64;
                let (s, c) = a.sin_cos();
                let (x0, x1) = (head[2 * j] as f64, head[2 * j + 1] as f64);
                head[2 * j] = (x0 * c - x1 * s) as f32;
                head[2 * j + 1] = (x0 * s + x1 * c) as f32;
            }
        }
    }
}

/// Causal GQA attention: q [n, n_head, hd] at positions pos0.., k/v [pos0 + n, n_kv, hd].
pub fn attention(q: &[f32], k: &[f32], v: &[f32], n_head: usize, n_kv: usize, hd: usize, pos0: usize) -> Vec<f32> {
    let n = q.len() / (n_head * hd);
    let mut o = vec![0f32; q.len()];
    let scale = 1.0 / (hd as f64).sqrt();
    for t in 0..n {
        for h in 0..n_head {
            let kvh = h / (n_head / n_kv);
            let qv = &q[(t * n_head + h) * hd..][..hd];
            let keys = pos0 + t + 1;
            let s: Vec<f64> = (0..keys)
                .map(|j| {
                    qv.iter().zip(&k[(j * n_kv + kvh) * hd..][..hd]).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
                        * scale
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            for d in 0..hd {
                let acc: f64 = (0..keys).map(|j| e[j] * v[(j * n_kv + kvh) * hd + d] as f64).sum();
                o[(t * n_head + h) * hd + d] = (acc / sum) as f32;
            }
        }
    }
    o
}

pub fn swiglu(g: &[f32], u: &[f32]) -> Vec<f32> {
    g.iter().zip(u).map(|(a, b)| a / (1.0 + (-a).exp()) * b).collect()
}
