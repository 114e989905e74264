// RoPE on q and k from the fused QKV projection (`qkv` rows: q | k | v), and the KV-cache
// write: rotated q goes to `q`, rotated k and plain v into the cache at the tokens' absolute
// positions, in the cache's type (quantized as written: kv_store, from gpu/kernels/attention.rs). GGUF's
// converter pre-permutes q/k rows, so the rotated pairs are adjacent: (x[2j], x[2j+1]) by
// angle pos · inv_freq[j], where inv_freq already includes Llama 3.1's rope_freqs factors
// (computed on the CPU in f64). A cache split into parts gets one launch per part: each
// writes the positions its part holds (and the first one q).

struct Params {
    n_head: u32,
    n_kv: u32,
    head_dim: u32,
    pos0: u32,      // first cache position held by this part
    part_len: u32,  // positions held by this part
    pos_bytes: u32, // bytes per cached position
    row_bytes: u32, // bytes per head row
    write_q: u32,
}

// Bindings qkv, q (read_write), kc, vc (the cache, read_write), inv_freq, p, step:
// rope_slots in gpu/kernels/attention.rs.

// sin/cos lose accuracy far from zero on GPUs: reduce by 2π in two steps (Cody–Waite) first.
fn reduce_angle(a: f32) -> f32 {
    let k = round(a * 0.15915494309189535);
    return (a - k * 6.28125) - k * 0.0019353071795864769;
}

fn rotate(x0: f32, x1: f32, j: u32, pos: u32) -> vec2<f32> {
    let a = reduce_angle(f32(pos) * inv_freq[j]);
    let c = cos(a);
    let s = sin(a);
    return vec2<f32>(x0 * c - x1 * s, x0 * s + x1 * c);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x; // pair index within the token
    let t = gid.y;
    let pos = step.pos + t;
    let half = p.head_dim / 2u;
    let q_dim = p.n_head * p.head_dim;
    let row = t * (q_dim + 2u * p.n_kv * p.head_dim);
    if (p.write_q == 1u && i < p.n_head * half) {
        let b = row + 2u * i;
        let r = rotate(qkv[b], qkv[b + 1u], i % half, pos);
        q[t * q_dim + 2u * i] = r.x;
        q[t * q_dim + 2u * i + 1u] = r.y;
    }
    if (pos >= p.pos0 && pos - p.pos0 < p.part_len) {
        kv_store(i, row + q_dim, pos - p.pos0, pos);
    }
}
