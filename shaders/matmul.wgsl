// y[t, y_offset + r] (+)= Σ_k W[r, k] · x[t, k]   for the rows r of one weight part.
//
// TPR threads share a row and stride over its 32-element blocks; each decoded block is
// used for up to TT tokens, so prefill reads each weight once per TT tokens and decode
// (TT = 1) reads every weight exactly once. Partial sums meet in workgroup memory.
// Constants from the prelude: WG, TPR, TT, QS_V4, SC_H, and fn load_block.

struct Params {
    rows: u32,        // rows in this part
    k_blocks: u32,    // 32-element blocks per row
    row_qs_v4: u32,   // vec4<u32> per row in wq
    row_sc_h: u32,    // f16 scales per row in ws (padded to even)
    x_stride_v4: u32, // vec4<f32> per token in x
    y_stride: u32,    // floats per token in y
    y_offset: u32,    // first output column of this part
    flags: u32,       // 1: accumulate into y (residual); 2: last token of the pass only
}

@group(0) @binding(0) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> ws: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

const RPW: u32 = WG / TPR; // rows per workgroup
var<workgroup> red: array<f32, WG * TT>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lane = li % TPR;
    let row = wg.x * RPW + li / TPR;
    var t0 = wg.y * TT;
    var nt = min(TT, step.n_tokens - min(t0, step.n_tokens));
    let last_only = (p.flags & 2u) != 0u;
    if (last_only) { // generation needs only the last position's logits, written to row 0
        t0 = step.n_tokens - 1u;
        nt = 1u;
    }
    var acc: array<f32, TT>;
    if (row < p.rows) {
        for (var b = lane; b < p.k_blocks; b += TPR) {
            let w = load_block(row * p.row_qs_v4 + b * QS_V4, row * p.row_sc_h + b * SC_H);
            for (var t = 0u; t < nt; t++) {
                let xb = (t0 + t) * p.x_stride_v4 + b * 8u;
                var s = dot(w[0], x[xb]);
                for (var i = 1u; i < 8u; i++) {
                    s += dot(w[i], x[xb + i]);
                }
                acc[t] += s;
            }
        }
    }
    if (TPR == 1u) {
        // one thread per row: nothing to reduce, no barrier
        if (row < p.rows) {
            for (var t = 0u; t < nt; t++) {
                let i = select(t0 + t, 0u, last_only) * p.y_stride + p.y_offset + row;
                var v = acc[t];
                if ((p.flags & 1u) != 0u) {
                    v += y[i];
                }
                y[i] = v;
            }
        }
        return;
    }
    for (var t = 0u; t < TT; t++) {
        red[t * WG + li] = acc[t];
    }
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            for (var t = 0u; t < TT; t++) {
                red[t * WG + li] += red[t * WG + li + s];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < p.rows) {
        for (var t = 0u; t < nt; t++) {
            let i = select(t0 + t, 0u, last_only) * p.y_stride + p.y_offset + row;
            var v = red[t * WG + li];
            if ((p.flags & 1u) != 0u) {
                v += y[i];
            }
            y[i] = v;
        }
    }
}
