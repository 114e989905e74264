// RoPE on q (in place) and k, and the KV-cache append: rotated k and plain v are written to
// the cache at the tokens' absolute positions. GGUF's converter pre-permutes q/k rows, so the
// rotated pairs are adjacent: (x[2j], x[2j+1]) by angle pos · inv_freq[j], where inv_freq
// already includes Llama 3.1's rope_freqs factors (computed on the CPU in f64).

struct Params {
    n_head: u32,
    n_kv: u32,
    head_dim: u32,
}

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: array<kv_t>;
@group(0) @binding(4) var<storage, read_write> vc: array<kv_t>;
@group(0) @binding(5) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;
@group(0) @binding(7) var<uniform> step: Step;

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
    let qn = p.n_head * half;
    if (i < qn) {
        let b = t * p.n_head * p.head_dim + 2u * i;
        let r = rotate(q[b], q[b + 1u], i % half, pos);
        q[b] = r.x;
        q[b + 1u] = r.y;
    }
    if (i < p.n_kv * half) {
        let src = t * p.n_kv * p.head_dim + 2u * i;
        let dst = pos * p.n_kv * p.head_dim + 2u * i;
        let r = rotate(k[src], k[src + 1u], i % half, pos);
        kc[dst] = kv_t(r.x);
        kc[dst + 1u] = kv_t(r.y);
        vc[dst] = kv_t(v[src]);
        vc[dst + 1u] = kv_t(v[src + 1u]);
    }
}
