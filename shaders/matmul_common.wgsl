// y[t, y_off + r] (+)= Σ_k W[r, k] · h[t, k]  for the rows r of up to three weights at once
// (Q, K and V in one launch), where h = x, or with NORM the RMS-normalised x ⊙ g (the
// RMSNorm is fused: every workgroup computes its tokens' 1/rms itself; x is small).
// GLU: y[t, r] = silu(W0 h)[r] · (W1 h)[r] (gate and up, with SiLU·mul, in one launch).
//
// TPR threads share a row and stride over its 32-value blocks (adjacent lanes read adjacent
// blocks: coalesced 16-byte loads); RPW = WG / TPR rows per workgroup; each decoded block is
// used for TT tokens (decode: TT = 1 reads every weight byte exactly once). Lane partial
// sums meet through subgroup shuffles (SG = 1: needs TPR ≤ the subgroup size) or through
// workgroup memory (SG = 0, the fallback and the browser's path for now).
// The bindings w0.., x, g, y, p, step come from matmul_slots (gpu/kernels/mod.rs), the prelude
// there declares the constants
// WG, TPR, TT, NSEG, GLU, NACC (accumulators per token: 2 for GLU), NORM, SG, fn load0..load2 for each weight's format, fn gw (the
// norm weight as vec4, or 1) and fn sg_xor (subgroupShuffleXor where SG).

struct Seg {
    rows: u32,       // rows of this weight part
    row_qs_v4: u32,  // vec4<u32> per row in its quant array
    row_sc_h: u32,   // f16 halves per row in its scale array
    wg0: u32,        // first workgroup (x) of this segment
    y_off: u32,      // first output column
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

struct Params {
    k_blocks: u32,    // 32-value blocks per row
    x_stride_v4: u32, // vec4<f32> per token in x
    y_stride: u32,    // floats per token in y
    flags: u32,       // 1: accumulate into y (residual); 2: last token of the pass only
    eps: f32,         // RMSNorm epsilon (NORM)
    _p0: u32,
    _p1: u32,
    _p2: u32,
    sc_v4: vec4<u32>, // first vec4 of each weight binding's scale array
    seg: array<Seg, 3>,
}

// The weight part workgroup `wgx` computes: the last segment starting at or before it (GLU's
// two weights share every workgroup: segment 0).
fn segment(wgx: u32) -> u32 {
    var s = 0u;
    if (NSEG > 1u && !GLU && wgx >= p.seg[1].wg0) {
        s = 1u;
    }
    if (NSEG > 2u && !GLU && wgx >= p.seg[2].wg0) {
        s = 2u;
    }
    return s;
}

// y[i] ← one result: with NORM both sums times the token's 1/rms `inv`; GLU: silu(v) · u;
// flag 1: added to y (the residual).
fn store_y(i: u32, acc: f32, acc_up: f32, inv: f32) {
    var v = acc;
    var u = acc_up;
    if (NORM) {
        v *= inv;
        u *= inv;
    }
    if (GLU) {
        v = v / (1.0 + exp(-v)) * u;
    } else if ((p.flags & 1u) != 0u) {
        v += y[i];
    }
    y[i] = v;
}

fn load_seg(s: u32, qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    if (NSEG > 1u && s == 1u) {
        return load1(qrow, srow, b);
    }
    if (NSEG > 2u && s == 2u) {
        return load2(qrow, srow, b);
    }
    return load0(qrow, srow, b);
}

fn dot8(w: array<vec4<f32>, 8>, xb: u32) -> f32 {
    var s = dot(w[0], x[xb]);
    for (var i = 1u; i < 8u; i++) {
        s += dot(w[i], x[xb + i]);
    }
    return s;
}

