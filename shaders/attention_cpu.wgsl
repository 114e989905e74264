// Flash attention for CPU adapters (lavapipe), attention.wgsl's contract and parameters: on
// a CPU "GPU" a subgroup is one SIMD vector, every per-lane load a scalar load and every
// barrier a costly switch, so here a workgroup is exactly one subgroup and each lane walks its
// own keys (j ≡ lane mod WG) of the workgroup's split: it reads each K and V row once for all
// G query heads of the group (held in registers), with its own online softmax (m, l, acc per
// head); the lanes then merge through subgroup reductions, with no barrier and no workgroup
// memory. One token per workgroup. Constants: WG (the subgroup size), HD, G, HD4 (HD / 4).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let kvh = wg.x / p.splits;
    let split = wg.x % p.splits;
    let t = wg.y;
    let hi = min(step.pos + t + 1u, p.pos0 + p.part_len);
    var n = 0u;
    if (hi > p.pos0) {
        n = hi - p.pos0;
    }
    let span = ((n + p.splits - 1u) / p.splits + 31u) / 32u * 32u;
    let k_start = min(p.pos0 + split * span, p.pos0 + n);
    let k_end = min(k_start + span, p.pos0 + n);

    var qr: array<vec4<f32>, G * HD4>;
    for (var g = 0u; g < G; g++) {
        let qb = ((t * p.n_head + kvh * G + g) * HD) / 4u;
        for (var c = 0u; c < HD4; c++) {
            let i = (qb + c) * 4u;
            qr[g * HD4 + c] = vec4<f32>(q[i], q[i + 1u], q[i + 2u], q[i + 3u]) * p.scale;
        }
    }
    var m: array<f32, G>;
    var l: array<f32, G>;
    var acc: array<vec4<f32>, G * HD4>;
    for (var g = 0u; g < G; g++) {
        m[g] = NEG;
    }
    for (var key = k_start + li; key < k_end; key += WG) {
        let base = (key - p.pos0) * p.pos_bytes + kvh * p.row_bytes;
        var s: array<f32, G>;
        for (var c = 0u; c < HD4; c++) {
            let k = kv4(false, base, c);
            for (var g = 0u; g < G; g++) {
                s[g] += dot(qr[g * HD4 + c], k);
            }
        }
        var a: array<f32, G>;
        var e: array<f32, G>;
        for (var g = 0u; g < G; g++) {
            let mn = max(m[g], s[g]);
            a[g] = exp(m[g] - mn);
            e[g] = exp(s[g] - mn);
            l[g] = l[g] * a[g] + e[g];
            m[g] = mn;
        }
        for (var c = 0u; c < HD4; c++) {
            let v = kv4(true, base, c);
            for (var g = 0u; g < G; g++) {
                acc[g * HD4 + c] = acc[g * HD4 + c] * a[g] + e[g] * v;
            }
        }
    }
    // merge the lanes: each one's (m, l, acc) rescaled to the subgroup's max
    let slice = p.slice0 + split;
    for (var g = 0u; g < G; g++) {
        let mm = subgroupMax(m[g]);
        let w = select(0.0, exp(m[g] - mm), l[g] > 0.0);
        let ll = subgroupAdd(l[g] * w);
        let row = t * p.n_head + kvh * G + g;
        for (var c = 0u; c < HD4; c++) {
            let x = subgroupAdd(acc[g * HD4 + c] * w);
            if (c % WG == li) {
                var y = x;
                var at = row * HD + 4u * c;
                if (p.direct == 1u) {
                    y = x / ll;
                } else {
                    at = (slice * p.rows_stride + row) * HD + 4u * c;
                }
                o[at] = y.x;
                o[at + 1u] = y.y;
                o[at + 2u] = y.z;
                o[at + 3u] = y.w;
            }
        }
        if (p.direct == 0u && li == 0u) {
            o[p.ml0 + (slice * p.rows_stride + row) * 2u] = mm;
            o[p.ml0 + (slice * p.rows_stride + row) * 2u + 1u] = ll;
        }
    }
}
