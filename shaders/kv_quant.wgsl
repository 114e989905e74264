// The quantized KV-cache write (rope.wgsl's kv_store for q8_0 / q4_0): lane i < 2 · nb
// quantizes 32-value block i % nb of K (i < nb, rotated) or V of the position, nb = n_kv ·
// head_dim / 32, exactly as ggml's quantize_row_q8_0_ref / q4_0_ref (kv.rs). Blocks of 34 or
// 18 bytes share words with their neighbours, so halves are written with atomicAnd/atomicOr
// (each lane touches only its own bytes). The cache is bound as array<atomic<u32>>.

fn put_half(v: bool, b: u32, h: u32) {
    let i = b >> 2u;
    let s = (b & 2u) * 8u;
    let keep = ~(0xffffu << s);
    let bits = (h & 0xffffu) << s;
    if (v) {
        atomicAnd(&vc[i], keep);
        atomicOr(&vc[i], bits);
    } else {
        atomicAnd(&kc[i], keep);
        atomicOr(&kc[i], bits);
    }
}

// C's roundf: halves away from zero.
fn round_away(x: f32) -> f32 {
    return sign(x) * floor(abs(x) + 0.5);
}

// Block (values) of lane i: (is V, byte offset, the 32 values).
fn kv_block(i: u32, krow: u32, lp: u32, pos: u32, ts: u32, x: ptr<function, array<f32, 32>>) -> vec2<u32> {
    let nb = p.n_kv * p.head_dim / 32u;
    let v = i >= nb;
    let b = i % nb;
    let e0 = b * 32u; // element of the position's K (or V) row
    let hb = p.head_dim / 32u;
    let src = krow + select(0u, p.n_kv * p.head_dim, v) + e0;
    for (var m = 0u; m < 16u; m++) {
        let x0 = qkv[src + 2u * m];
        let x1 = qkv[src + 2u * m + 1u];
        if (v) {
            (*x)[2u * m] = x0;
            (*x)[2u * m + 1u] = x1;
        } else {
            let r = rotate(x0, x1, (e0 % p.head_dim) / 2u + m, pos);
            (*x)[2u * m] = r.x;
            (*x)[2u * m + 1u] = r.y;
        }
    }
    let byte = lp * p.pos_bytes + (b / hb) * p.row_bytes + (b % hb) * ts;
    return vec2<u32>(select(0u, 1u, v), byte);
}

fn kv_store_q8_0(i: u32, krow: u32, lp: u32, pos: u32) {
    if (i >= 2u * (p.n_kv * p.head_dim / 32u)) {
        return;
    }
    var x: array<f32, 32>;
    let at = kv_block(i, krow, lp, pos, 34u, &x);
    let v = at.x == 1u;
    var amax = 0.0;
    for (var m = 0u; m < 32u; m++) {
        amax = max(amax, abs(x[m]));
    }
    let d = amax / 127.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    put_half(v, at.y, pack2x16float(vec2<f32>(d, 0.0)));
    for (var k = 0u; k < 16u; k++) {
        let q0 = u32(i32(round_away(x[2u * k] * id))) & 0xffu;
        let q1 = u32(i32(round_away(x[2u * k + 1u] * id))) & 0xffu;
        put_half(v, at.y + 2u + 2u * k, q0 | (q1 << 8u));
    }
}

fn kv_store_q4_0(i: u32, krow: u32, lp: u32, pos: u32) {
    if (i >= 2u * (p.n_kv * p.head_dim / 32u)) {
        return;
    }
    var x: array<f32, 32>;
    let at = kv_block(i, krow, lp, pos, 18u, &x);
    let v = at.x == 1u;
    var mx = 0.0;
    for (var m = 0u; m < 32u; m++) {
        if (abs(x[m]) > abs(mx)) {
            mx = x[m];
        }
    }
    let d = mx / -8.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    put_half(v, at.y, pack2x16float(vec2<f32>(d, 0.0)));
    for (var k = 0u; k < 8u; k++) {
        var h = 0u;
        for (var e = 0u; e < 2u; e++) {
            let j = 2u * k + e;
            let lo = min(u32(max(x[j] * id + 8.5, 0.0)), 15u);
            let hi = min(u32(max(x[j + 16u] * id + 8.5, 0.0)), 15u);
            h |= (lo | (hi << 4u)) << (8u * e);
        }
        put_half(v, at.y + 2u + 2u * k, h);
    }
}
