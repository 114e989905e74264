// Merges the partial results of attention.wgsl's key splits (flash decoding, and a prefill
// over several cache parts): one workgroup per (query head, token); for each slice s its
// unnormalised acc_s, max m_s and sum l_s: o = Σ acc_s e^(m_s − M) / Σ l_s e^(m_s − M),
// M = max m_s. Constants: WG, HD.

struct Params {
    n_head: u32,
    slices: u32,
    rows_stride: u32, // partial rows per slice
    ml0: u32,         // float offset of the (m, l) pairs in `part`
}

// Bindings part, o (read_write), p, step: COMBINE_SLOTS in gpu/kernels/attention.rs.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = wg.y * p.n_head + wg.x;
    var m = -3.0e38;
    for (var s = 0u; s < p.slices; s++) {
        m = max(m, part[p.ml0 + (s * p.rows_stride + row) * 2u]);
    }
    var l = 0.0;
    for (var s = 0u; s < p.slices; s++) {
        let i = p.ml0 + (s * p.rows_stride + row) * 2u;
        l += part[i + 1u] * exp(part[i] - m);
    }
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var d = li; d < HD; d += WG) {
        var a = 0.0;
        for (var s = 0u; s < p.slices; s++) {
            let w = exp(part[p.ml0 + (s * p.rows_stride + row) * 2u] - m);
            a += part[(s * p.rows_stride + row) * HD + d] * w;
        }
        o[row * HD + d] = a * inv;
    }
}
