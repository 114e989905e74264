// Prefill: one RT-row × TT-token output tile per workgroup of 64 threads (matmul_common.wgsl
// gives the contract). For each 32-value block column, the tile's weights are decoded once
// into workgroup memory (a row per thread; GLU: gate and up rows) next to the tokens' x,
// then every thread accumulates a 4-row × 4-token sub-tile: each decoded weight is used for
// TT = 32 tokens (the decode kernel uses it once).

const RT: u32 = 32u;
var<workgroup> wt: array<array<f32, 33>, RT * NACC>; // [row][k], +1 against bank conflicts
var<workgroup> xt: array<array<f32, 33>, TT>;        // [token][k]
var<workgroup> inv_rms: array<f32, TT>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let s = segment(wg.x);
    let seg = p.seg[s];
    let row0 = (wg.x - seg.wg0) * RT;
    let t0 = wg.y * TT;
    let nt = min(TT, step.n_tokens - min(t0, step.n_tokens));

    if (NORM && li < TT) {
        var ss = 0.0;
        if (li < nt) {
            let xb = (t0 + li) * p.x_stride_v4;
            for (var i = 0u; i < p.k_blocks * 8u; i++) {
                let v = x[xb + i];
                ss += dot(v, v);
            }
        }
        inv_rms[li] = inverseSqrt(ss / f32(p.k_blocks * 32u) + p.eps);
    }

    let tr = li / 8u; // rows 4tr..4tr+3 of the tile
    let tc = li % 8u; // tokens 4tc..4tc+3
    var acc: array<f32, 16>;
    var acc2: array<f32, 16>;
    for (var b = 0u; b < p.k_blocks; b++) {
        if (li < RT * NACC) {
            let up = li >= RT;
            let r = row0 + li % RT;
            var w: array<vec4<f32>, 8>;
            if (r < seg.rows) {
                if (GLU && up) {
                    w = load1(r * p.seg[1].row_qs_v4, r * p.seg[1].row_sc_h, b);
                } else {
                    w = load_seg(s, r * seg.row_qs_v4, r * seg.row_sc_h, b);
                }
                if (NORM) {
                    for (var i = 0u; i < 8u; i++) {
                        w[i] *= gw(b * 8u + i);
                    }
                }
            }
            for (var i = 0u; i < 8u; i++) {
                wt[li][4u * i] = w[i].x;
                wt[li][4u * i + 1u] = w[i].y;
                wt[li][4u * i + 2u] = w[i].z;
                wt[li][4u * i + 3u] = w[i].w;
            }
        }
        for (var j = li; j < TT * 8u; j += 64u) {
            let t = j / 8u;
            let i = j % 8u;
            var v = vec4<f32>(0.0);
            if (t < nt) {
                v = x[(t0 + t) * p.x_stride_v4 + b * 8u + i];
            }
            xt[t][4u * i] = v.x;
            xt[t][4u * i + 1u] = v.y;
            xt[t][4u * i + 2u] = v.z;
            xt[t][4u * i + 3u] = v.w;
        }
        workgroupBarrier();
        for (var k = 0u; k < 32u; k++) {
            var xv: array<f32, 4>;
            for (var j = 0u; j < 4u; j++) {
                xv[j] = xt[4u * tc + j][k];
            }
            for (var i = 0u; i < 4u; i++) {
                let a = wt[4u * tr + i][k];
                for (var j = 0u; j < 4u; j++) {
                    acc[4u * i + j] += a * xv[j];
                }
                if (GLU) {
                    let a2 = wt[RT + 4u * tr + i][k];
                    for (var j = 0u; j < 4u; j++) {
                        acc2[4u * i + j] += a2 * xv[j];
                    }
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + 4u * tr + i;
        for (var j = 0u; j < 4u; j++) {
            let t = 4u * tc + j;
            if (r < seg.rows && t < nt) {
                store_y((t0 + t) * p.y_stride + seg.y_off + r, acc[4u * i + j], acc2[4u * i + j], inv_rms[t]);
            }
        }
    }
}
