// Flash attention, one kernel for prefill and decode: causal GQA over the KV cache with an
// online softmax over blocks of BK keys, so no n_head × context scores buffer exists.
//
// One workgroup per (KV head, split of the keys, block of TQ query tokens). Its R = G × TQ
// query rows are the G query heads sharing the KV head for each of its tokens, so every
// cached K and V row is read once per KV head, for all the heads of its group. Per key block:
// the K rows are staged (coalesced, decoded from the cache's type) into workgroup memory, a
// row's BK scores are spread over BK lanes and reduced (subgroup shuffles where the adapter
// has them, else workgroup memory), then V is staged in the same memory and each lane
// accumulates its (row, dimension) outputs.
//
// Decode splits the keys of a part across `splits` workgroups (flash decoding) that write
// partial results (unnormalised acc, max m, sum l); attention_combine.wgsl merges them. A
// prefill pass over a single cache part writes the normalised output directly (`direct`).
//
// The cache is raw u32 words (kv.wgsl decodes f32, packed f16 halves, q8_0 and q4_0 blocks).
// Constants (gpu/kernels/attention.rs): WG, BK (keys per block, WG a multiple), HD (head_dim), HDP (HD + 1,
// the staged row stride), G (query heads per KV head), TQ, R (= G × TQ), RI (row iterations of
// the score phase), NACC (outputs per lane), UPR (decode units per head row), SG.

var<workgroup> kv_s: array<f32, BK * HDP>;
var<workgroup> qs: array<f32, R * HD>;
var<workgroup> ps: array<f32, R * BK>;
var<workgroup> row_m: array<f32, R>;
var<workgroup> row_l: array<f32, R>;
var<workgroup> row_a: array<f32, R>;
var<workgroup> red: array<f32, WG>;


// The max (or sum) of `x` over the BK lanes of this lane's row (aligned groups of BK lanes).
// Subgroups: a butterfly within min(subgroup, BK) lanes, then the partials of the row's
// subgroups through workgroup memory. Every lane gets the result; uniform control flow.
fn row_reduce(li: u32, sn: u32, x0: f32, is_max: bool) -> f32 {
    var x = x0;
    let base = li - li % BK;
    var w = 1u;
    if (SG) {
        w = min(sn, BK);
        for (var o = 1u; o < BK; o <<= 1u) {
            let y = sg_xor(x, o);
            if (o < w) {
                x = select(x + y, max(x, y), is_max);
            }
        }
        red[li] = x;
        workgroupBarrier();
        var r = red[base];
        for (var k = w; k < BK; k += w) {
            r = select(r + red[base + k], max(r, red[base + k]), is_max);
        }
        workgroupBarrier();
        return r;
    }
    red[li] = x;
    workgroupBarrier();
    for (var s = BK / 2u; s > 0u; s >>= 1u) {
        if (li % BK < s) {
            red[li] = select(red[li] + red[li + s], max(red[li], red[li + s]), is_max);
        }
        workgroupBarrier();
    }
    let r = red[base];
    workgroupBarrier();
    return r;
}

// Stages BK head rows (keys kb.., of KV head kvh) of K (v = false) or V into kv_s as f32;
// rows at or past `k_end` are zeros.
fn stage(v: bool, li: u32, kb: u32, k_end: u32, kvh: u32) {
    for (var i = li; i < BK * UPR; i += WG) {
        let j = i / UPR;
        let u = i % UPR;
        let key = kb + j;
        var vals: array<f32, UV>;
        if (key < k_end) {
            let base = (key - p.pos0) * p.pos_bytes + kvh * p.row_bytes;
            vals = kv_unit(v, base, u);
        }
        kv_put(j * HDP, u, vals);
    }
}

fn flash(wg: vec3<u32>, li: u32, sn: u32) {
    let kvh = wg.x / p.splits;
    let split = wg.x % p.splits;
    let t0 = wg.y * TQ;
    let t_last = min(t0 + TQ, step.n_tokens) - 1u;

    // this workgroup's keys: its part's positions up to its last token's, split evenly in
    // whole blocks
    let hi = min(step.pos + t_last + 1u, p.pos0 + p.part_len);
    var n = 0u;
    if (hi > p.pos0) {
        n = hi - p.pos0;
    }
    let span = ((n + p.splits - 1u) / p.splits + BK - 1u) / BK * BK;
    let k_start = min(p.pos0 + split * span, p.pos0 + n);
    let k_end = min(k_start + span, p.pos0 + n);

    // the query rows, pre-scaled: row r = token t0 + r / G, head kvh · G + r % G
    for (var i = li; i < R * HD; i += WG) {
        let r = i / HD;
        let t = t0 + r / G;
        var x = 0.0;
        if (t < step.n_tokens) {
            x = q[(t * p.n_head + kvh * G + r % G) * HD + i % HD] * p.scale;
        }
        qs[i] = x;
    }
    for (var r = li; r < R; r += WG) {
        row_m[r] = NEG;
        row_l[r] = 0.0;
        row_a[r] = 1.0;
    }
    var acc: array<f32, NACC>;

    let j = li % BK;
    for (var kb = k_start; kb < k_end; kb += BK) {
        workgroupBarrier();
        stage(false, li, kb, k_end, kvh);
        workgroupBarrier();
        let key = kb + j;
        for (var ri = 0u; ri < RI; ri++) {
            let r = ri * (WG / BK) + li / BK;
            let rc = min(r, R - 1u);
            let t = t0 + rc / G;
            let ok = r < R && t < step.n_tokens && key < k_end && key <= step.pos + t;
            var s = NEG;
            if (ok) {
                var d0 = 0.0;
                for (var d = 0u; d < HD; d++) {
                    d0 += qs[rc * HD + d] * kv_s[j * HDP + d];
                }
                s = d0;
            }
            let m_old = row_m[rc];
            let m_new = max(m_old, row_reduce(li, sn, s, true));
            var e = 0.0;
            if (ok) {
                e = exp(s - m_new);
            }
            let bsum = row_reduce(li, sn, e, false);
            if (r < R) {
                ps[r * BK + j] = e;
                if (j == 0u) {
                    let a = exp(m_old - m_new);
                    row_a[r] = a;
                    row_l[r] = row_l[r] * a + bsum;
                    row_m[r] = m_new;
                }
            }
        }
        workgroupBarrier();
        stage(true, li, kb, k_end, kvh);
        workgroupBarrier();
        for (var c = 0u; c < NACC; c++) {
            let i = li + c * WG;
            let r = i / HD;
            let d = i % HD;
            if (r < R) {
                var a = acc[c] * row_a[r];
                for (var jj = 0u; jj < BK; jj++) {
                    a += ps[r * BK + jj] * kv_s[jj * HDP + d];
                }
                acc[c] = a;
            }
        }
    }
    workgroupBarrier();

    let slice = p.slice0 + split;
    for (var c = 0u; c < NACC; c++) {
        let i = li + c * WG;
        let r = i / HD;
        let t = t0 + r / G;
        if (r < R && t < step.n_tokens) {
            let row = t * p.n_head + kvh * G + r % G;
            if (p.direct == 1u) {
                o[row * HD + i % HD] = acc[c] / row_l[r];
            } else {
                o[(slice * p.rows_stride + row) * HD + i % HD] = acc[c];
            }
        }
    }
    if (p.direct == 0u) {
        for (var r = li; r < R; r += WG) {
            let t = t0 + r / G;
            if (t < step.n_tokens) {
                let row = t * p.n_head + kvh * G + r % G;
                o[p.ml0 + (slice * p.rows_stride + row) * 2u] = row_m[r];
                o[p.ml0 + (slice * p.rows_stride + row) * 2u + 1u] = row_l[r];
            }
        }
    }
}

fn kv_put_4(row: u32, u: u32, x: array<f32, 4>) {
    for (var i = 0u; i < 4u; i++) {
        kv_s[row + 4u * u + i] = x[i];
    }
}

fn kv_put_q4_0(row: u32, u: u32, x: array<f32, 8>) {
    let b = row + (u / 4u) * 32u + 4u * (u % 4u);
    for (var i = 0u; i < 4u; i++) {
        kv_s[b + i] = x[i];
        kv_s[b + 16u + i] = x[i + 4u];
    }
}
