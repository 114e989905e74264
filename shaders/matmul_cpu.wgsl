// CPU adapters (lavapipe, SwiftShader): matmul_common.wgsl's contract with one weight row per
// invocation. A CPU "GPU" runs a subgroup as one SIMD vector: a load whose address differs
// per lane becomes one scalar load per lane (with its own bounds check), a load whose address
// is the same in every lane becomes one scalar load broadcast. Here every invocation walks the
// same blocks, so the activations are uniform loads and only the weights are per lane; no lane
// sums need reducing, and the token loop has a constant trip count (TT) so its accumulators
// stay in registers. Lanes past the last row redo the last row (no divergent control flow)
// and store nothing.

fn dot8v(w: array<vec4<f32>, 8>, v: array<vec4<f32>, 8>) -> f32 {
    var s = dot(w[0], v[0]);
    for (var i = 1u; i < 8u; i++) {
        s += dot(w[i], v[i]);
    }
    return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lane = li;
    let s = segment(wg.x);
    let seg = p.seg[s];
    let row = (wg.x - seg.wg0) * WG + li;
    let r = min(row, seg.rows - 1u);
    var t0 = wg.y * TT;
    var nt = min(TT, step.n_tokens - min(t0, step.n_tokens));
    let last_only = (p.flags & 2u) != 0u;
    if (last_only) { // generation needs only the last position's logits, written to row 0
        t0 = step.n_tokens - 1u;
        nt = 1u;
    }
    let tl = max(nt, 1u) - 1u; // tokens past nt recompute the last one

    // RMSNorm: every subgroup sums Σx² of each token itself (no workgroup barrier)
    var inv: array<f32, TT>;
    if (NORM) {
        for (var t = 0u; t < TT; t++) {
            let ss = sum_sq((t0 + min(t, tl)) * p.x_stride_v4, p.k_blocks * 8u, lane);
            inv[t] = inverseSqrt(ss / f32(p.k_blocks * 32u) + p.eps);
        }
    }

    var acc: array<f32, TT>;
    var acc2: array<f32, TT>;
    let qrow = r * seg.row_qs_v4;
    let srow = r * seg.row_sc_h;
    let qrow1 = r * p.seg[1].row_qs_v4;
    let srow1 = r * p.seg[1].row_sc_h;
    for (var b = 0u; b < p.k_blocks; b++) {
        var w = load_seg(s, qrow, srow, b);
        var gb: array<vec4<f32>, 8>;
        if (NORM) {
            gb = norm8(b * 8u, lane);
            for (var i = 0u; i < 8u; i++) {
                w[i] *= gb[i];
            }
        }
        var u: array<vec4<f32>, 8>;
        if (GLU) {
            u = load1(qrow1, srow1, b);
            if (NORM) {
                for (var i = 0u; i < 8u; i++) {
                    u[i] *= gb[i];
                }
            }
        }
        for (var t = 0u; t < TT; t++) {
            let xb = (t0 + min(t, tl)) * p.x_stride_v4 + b * 8u;
            let xv = x8(xb, lane);
            acc[t] += dot8v(w, xv);
            if (GLU) {
                acc2[t] += dot8v(u, xv);
            }
        }
    }
    if (row >= seg.rows) {
        return;
    }
    for (var t = 0u; t < TT; t++) {
        if (t < nt) {
            store_y(select(t0 + t, 0u, last_only) * p.y_stride + seg.y_off + row, acc[t], acc2[t], inv[t]);
        }
    }
}
