// Decode (and small passes): the matvec of matmul_common.wgsl's contract.

const RPW: u32 = WG / TPR;
var<workgroup> red: array<f32, WG * TT * NACC>;
var<workgroup> inv_rms: array<f32, TT>;

// Sums v over the TPR lanes of a row (every lane gets the total on the subgroup path;
// lane 0 on the workgroup path). Called in uniform control flow.
fn reduce_lanes(li: u32, slot: u32, v: f32) -> f32 {
    if (TPR == 1u) {
        return v;
    }
    if (SG) {
        var r = v;
        for (var o = TPR / 2u; o > 0u; o >>= 1u) {
            r += sg_xor(r, o);
        }
        return r;
    }
    let i = slot * WG + li;
    red[i] = v;
    workgroupBarrier();
    let lane = li % TPR;
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            red[i] += red[i + s];
        }
        workgroupBarrier();
    }
    let r = red[i];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    // this workgroup's weight (uniform across the workgroup)
    let s = segment(wg.x);
    let seg = p.seg[s];
    let lane = li % TPR;
    let row = (wg.x - seg.wg0) * RPW + li / TPR;
    var t0 = wg.y * TT;
    var nt = min(TT, step.n_tokens - min(t0, step.n_tokens));
    let last_only = (p.flags & 2u) != 0u;
    if (last_only) { // generation needs only the last position's logits, written to row 0
        t0 = step.n_tokens - 1u;
        nt = 1u;
    }

    if (NORM) {
        // 1/rms of each token of the tile, over the whole workgroup
        for (var t = 0u; t < TT; t++) {
            var ss = 0.0;
            if (t < nt) {
                let xb = (t0 + t) * p.x_stride_v4;
                for (var i = li; i < p.k_blocks * 8u; i += WG) {
                    let v = x[xb + i];
                    ss += dot(v, v);
                }
            }
            red[li] = ss;
            workgroupBarrier();
            for (var k = WG / 2u; k > 0u; k >>= 1u) {
                if (li < k) {
                    red[li] += red[li + k];
                }
                workgroupBarrier();
            }
            if (li == 0u) {
                inv_rms[t] = inverseSqrt(red[0] / f32(p.k_blocks * 32u) + p.eps);
            }
            workgroupBarrier();
        }
    }

    var acc: array<f32, TT>;
    var acc2: array<f32, TT>;
    if (row < seg.rows) {
        let qrow = row * seg.row_qs_v4;
        let srow = row * seg.row_sc_h;
        let qrow1 = row * p.seg[1].row_qs_v4;
        let srow1 = row * p.seg[1].row_sc_h;
        for (var b = lane; b < p.k_blocks; b += TPR) {
            var w = load_seg(s, qrow, srow, b);
            if (NORM) {
                for (var i = 0u; i < 8u; i++) {
                    w[i] *= gw(b * 8u + i);
                }
            }
            if (GLU) {
                var u = load1(qrow1, srow1, b);
                if (NORM) {
                    for (var i = 0u; i < 8u; i++) {
                        u[i] *= gw(b * 8u + i);
                    }
                }
                for (var t = 0u; t < nt; t++) {
                    let xb = (t0 + t) * p.x_stride_v4 + b * 8u;
                    acc[t] += dot8(w, xb);
                    acc2[t] += dot8(u, xb);
                }
            } else {
                for (var t = 0u; t < nt; t++) {
                    acc[t] += dot8(w, (t0 + t) * p.x_stride_v4 + b * 8u);
                }
            }
        }
    }
    for (var t = 0u; t < TT; t++) {
        let v = reduce_lanes(li, t * NACC, acc[t]);
        var u = 0.0;
        if (GLU) {
            u = reduce_lanes(li, t * NACC + 1u, acc2[t]);
        }
        if (lane == 0u && row < seg.rows && t < nt) {
            store_y(select(t0 + t, 0u, last_only) * p.y_stride + seg.y_off + row, v, u, inv_rms[t]);
        }
    }
}
