// Causal GQA attention for CPU adapters with subgroups (attention.wgsl's contract): one
// workgroup (of about one subgroup) per (head, token), one key per invocation. On a CPU "GPU" a subgroup is one SIMD
// vector and every per-lane load is a scalar load, so each lane reads whole K and V rows
// (vec4 words: 8 halves or 4 floats each) against the query held in registers, instead of
// threads sharing a row; lane sums meet through subgroup reductions and one workgroup step.
// Two passes over the keys: scores and their max, then exp and the weighted V sum.
// Constants (kernels.rs): WG, HD (head_dim, a multiple of 8), NSG (most subgroups per
// workgroup), KV16 (the cache holds f16), KW (vec4 words per cache row of one head). The
// cache is bound as raw vec4<u32> words (f16 pairs or f32 bits).

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kc: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> vc: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<uniform> step: Step;

var<workgroup> red: array<f32, NSG>;
var<workgroup> part: array<array<vec4<f32>, HD / 4u>, NSG>;

// Values 4i..4i+3 of a cache row starting at word `rw`.
fn unpack4(w: vec4<u32>, i: u32) -> vec4<f32> {
    if ((i & 1u) == 0u) {
        return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
    }
    return vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));
}

fn k4(rw: u32, i: u32) -> vec4<f32> {
    if (KV16) {
        return unpack4(kc[rw + i / 2u], i);
    }
    return bitcast<vec4<f32>>(kc[rw + i]);
}

fn v4(rw: u32, i: u32) -> vec4<f32> {
    if (KV16) {
        return unpack4(vc[rw + i / 2u], i);
    }
    return bitcast<vec4<f32>>(vc[rw + i]);
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_invocation_id) sl: u32,
    @builtin(subgroup_size) sn: u32,
) {
    let h = wg.x;
    let t = wg.y;
    let kvh = h / (p.n_head / p.n_kv);
    let n_keys = step.pos + t + 1u; // causal: keys 0..=own position
    let sg = li / sn;
    let qb = (t * p.n_head + h) * (HD / 4u);
    var qr: array<vec4<f32>, HD / 4u>;
    for (var i = 0u; i < HD / 4u; i++) {
        qr[i] = q[qb + i] * p.scale;
    }
    let sb = (t * p.n_head + h) * p.ctx;
    let row = p.n_kv * KW; // words per cached position

    var m = -3.4e38;
    for (var j = li; j < n_keys; j += WG) {
        let rw = j * row + kvh * KW;
        var s = 0.0;
        for (var i = 0u; i < HD / 4u; i++) {
            s += dot(qr[i], k4(rw, i));
        }
        scores[sb + j] = s;
        m = max(m, s);
    }
    m = subgroupMax(m);
    if (sl == 0u) {
        red[sg] = m;
    }
    workgroupBarrier();
    m = red[0];
    let nsg = (WG + sn - 1u) / sn;
    for (var k = 1u; k < nsg; k++) {
        m = max(m, red[k]);
    }
    workgroupBarrier();

    var acc: array<vec4<f32>, HD / 4u>;
    var l = 0.0;
    for (var j = li; j < n_keys; j += WG) {
        let e = exp(scores[sb + j] - m);
        l += e;
        let rw = j * row + kvh * KW;
        for (var i = 0u; i < HD / 4u; i++) {
            acc[i] += e * v4(rw, i);
        }
    }
    l = subgroupAdd(l);
    for (var i = 0u; i < HD / 4u; i++) {
        acc[i] = subgroupAdd(acc[i]);
    }
    if (sl == 0u) {
        red[sg] = l;
        part[sg] = acc;
    }
    workgroupBarrier();
    var sum = 0.0;
    for (var k = 0u; k < nsg; k++) {
        sum += red[k];
    }
    for (var i = li; i < HD / 4u; i += WG) {
        var v = vec4<f32>(0.0);
        for (var k = 0u; k < nsg; k++) {
            v += part[k][i];
        }
        o[qb + i] = v / sum;
    }
}
