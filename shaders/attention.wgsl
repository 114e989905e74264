// Causal attention with GQA over the KV cache: one workgroup per (head, token).
// Query head h reads KV head h / (n_head / n_kv). Scores go through a scratch buffer
// (softmax needs the max before the sum), then each thread owns output dimensions.

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<kv_t>;
@group(0) @binding(2) var<storage, read> vc: array<kv_t>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<uniform> step: Step;

var<workgroup> qv: array<f32, 256>;
var<workgroup> red: array<f32, WG>;

fn reduce_max(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            red[li] = max(red[li], red[li + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            red[li] += red[li + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let h = wg.x;
    let t = wg.y;
    let hd = p.head_dim;
    let kvh = h / (p.n_head / p.n_kv);
    let n_keys = step.pos + t + 1u; // causal: keys 0..=own position
    let qb = (t * p.n_head + h) * hd;
    for (var d = li; d < hd; d += WG) {
        qv[d] = q[qb + d];
    }
    workgroupBarrier();

    let sb = (t * p.n_head + h) * p.ctx;
    let kv_stride = p.n_kv * hd;
    var m = -3.4e38;
    for (var j = li; j < n_keys; j += WG) {
        let kb = j * kv_stride + kvh * hd;
        var s = 0.0;
        for (var d = 0u; d < hd; d++) {
            s += qv[d] * f32(kc[kb + d]);
        }
        s *= p.scale;
        scores[sb + j] = s;
        m = max(m, s);
    }
    m = reduce_max(li, m);
    var sum = 0.0;
    for (var j = li; j < n_keys; j += WG) {
        let e = exp(scores[sb + j] - m);
        scores[sb + j] = e;
        sum += e;
    }
    sum = reduce_sum(li, sum);
    storageBarrier();
    let inv = 1.0 / sum;
    for (var d = li; d < hd; d += WG) {
        var acc = 0.0;
        for (var j = 0u; j < n_keys; j++) {
            acc += scores[sb + j] * f32(vc[j * kv_stride + kvh * hd + d]);
        }
        o[qb + d] = acc * inv;
    }
}
