// SwiGLU: g = silu(g) · u, in place over each token's row of n.

struct Params {
    n: u32,
}

// Bindings g (read_write), u, p, step: SWIGLU_SLOTS in gpu/kernels/mod.rs.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n) {
        return;
    }
    let i = gid.y * p.n + gid.x;
    let a = g[i];
    g[i] = a / (1.0 + exp(-a)) * u[i];
}
