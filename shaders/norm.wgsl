// RMSNorm over each token's row: y = x / sqrt(mean(x²) + eps) * g. One workgroup per token.

struct Params {
    dim: u32,
    eps: f32,
}

// Bindings x, g, y (read_write), p, step: NORM_SLOTS in gpu/kernels/mod.rs.

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let base = wg.y * p.dim;
    var ss = 0.0;
    for (var i = li; i < p.dim; i += WG) {
        let v = x[base + i];
        ss += v * v;
    }
    red[li] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            red[li] += red[li + s];
        }
        workgroupBarrier();
    }
    let scale = inverseSqrt(red[0] / f32(p.dim) + p.eps);
    for (var i = li; i < p.dim; i += WG) {
        y[base + i] = x[base + i] * scale * g[i];
    }
}
