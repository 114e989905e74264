// Embedding lookup: out[t, :] = token_embd[ids[t], :], dequantized from one weight part
// (rows row0..row0+rows; tokens outside the part are left to the other parts' dispatches).
// One thread per 32-element block.

struct Params {
    row0: u32,
    rows: u32,
    k_blocks: u32,
    row_qs_v4: u32,
    row_sc_h: u32,
    sc_v4: u32, // first vec4 of the scale array in w0
}

// Bindings w0, ids, out (read_write), p, step: EMBED_SLOTS in gpu/kernels/mod.rs.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.x;
    let t = gid.y;
    let id = ids[t];
    if (b >= p.k_blocks || id < p.row0 || id >= p.row0 + p.rows) {
        return;
    }
    let r = id - p.row0;
    let w = load0(r * p.row_qs_v4, r * p.row_sc_h, b);
    let ob = (t * p.k_blocks + b) * 8u;
    for (var i = 0u; i < 8u; i++) {
        out[ob + i] = w[i];
    }
}
