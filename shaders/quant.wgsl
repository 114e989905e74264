// Weight decoding: 32-element block `b` of a row → 8 × vec4<f32>, from GGUF's own block
// bytes. At upload (gpu/kernels/mod.rs, `repack`) each block is only regrouped, never expanded: its
// vec4-aligned part goes to the quant array (`wq_S`, `qs_v4` vec4<u32> per GGUF block), its
// remaining f16 fields (d, m; Q5's qh as two halves; Q6_K's d) to the scale array (`ws_S`,
// `sc_h` halves per GGUF block, two per u32). Q4_K/Q5_K stay whole in the quant array
// (144 / 176 bytes). Values are computed as ggml's `dequantize_row_*` computes them.
// `qrow` / `srow` are the row's first vec4 / half index.
//
// A template: gpu/kernels/mod.rs (`loader_src`) instantiates the sections a kernel needs once
// per weight binding, `_S` becoming `_0`, `_1`, …, with `wq_S` / `ws_S` reading that binding.
// Each section starts at a marker line `//@ NAME: DEPS` (the sections it calls) and runs to
// the next; NAME's function is `fn NAME_S`. Helpers: quant_common.wgsl.

//@ half_at
fn half_at_S(si: u32) -> u32 {
    return (ws_S(si >> 1u) >> (16u * (si & 1u))) & 0xffffu;
}

//@ scale_f16
fn scale_f16_S(si: u32) -> f32 {
    return unpack2x16float(ws_S(si >> 1u))[si & 1u];
}

//@ load_block_f32
fn load_block_f32_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let qi = qrow + b * 8u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = bitcast<vec4<f32>>(wq_S(qi + i));
    }
    return o;
}

//@ load_block_f16
fn load_block_f16_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let qi = qrow + b * 4u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let w = wq_S(qi + i);
        o[2u * i] = vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
        o[2u * i + 1u] = vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));
    }
    return o;
}


//@ load_block_bf16
fn load_block_bf16_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let qi = qrow + b * 4u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let w = wq_S(qi + i);
        o[2u * i] = vec4<f32>(bf16_pair(w.x), bf16_pair(w.y));
        o[2u * i + 1u] = vec4<f32>(bf16_pair(w.z), bf16_pair(w.w));
    }
    return o;
}


//@ load_block_q8_0: scale_f16
fn load_block_q8_0_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let qi = qrow + b * 2u;
    let d = scale_f16_S(srow + b);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 2u; i++) {
        let w = wq_S(qi + i);
        o[4u * i] = i8x4(w.x) * d;
        o[4u * i + 1u] = i8x4(w.y) * d;
        o[4u * i + 2u] = i8x4(w.z) * d;
        o[4u * i + 3u] = i8x4(w.w) * d;
    }
    return o;
}


//@ load_block_q4_0: scale_f16
fn load_block_q4_0_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let d = scale_f16_S(srow + b);
    let w = wq_S(qrow + b);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = (nibbles_lo(w[i]) - 8.0) * d;
        o[4u + i] = (nibbles_hi(w[i]) - 8.0) * d;
    }
    return o;
}

//@ load_block_q4_1
fn load_block_q4_1_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let dm = unpack2x16float(ws_S((srow >> 1u) + b));
    let w = wq_S(qrow + b);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = nibbles_lo(w[i]) * dm.x + dm.y;
        o[4u + i] = nibbles_hi(w[i]) * dm.x + dm.y;
    }
    return o;
}

//@ load_block_q5_0: half_at
// Q5_0: halves d, qh_lo, qh_hi per block (bit j of qh = fifth bit of value j).
fn load_block_q5_0_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let si = srow + 3u * b;
    let d = unpack2x16float(half_at_S(si)).x;
    let h = half_at_S(si + 1u) | (half_at_S(si + 2u) << 16u);
    let w = wq_S(qrow + b);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = (nibbles_lo(w[i]) + bits16(h, 4u * i) - 16.0) * d;
        o[4u + i] = (nibbles_hi(w[i]) + bits16(h, 16u + 4u * i) - 16.0) * d;
    }
    return o;
}

//@ load_block_q5_1
// Q5_1: halves d, m, qh_lo, qh_hi per block (two aligned words).
fn load_block_q5_1_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let wi = (srow >> 1u) + 2u * b;
    let dm = unpack2x16float(ws_S(wi));
    let h = ws_S(wi + 1u);
    let w = wq_S(qrow + b);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = (nibbles_lo(w[i]) + bits16(h, 4u * i)) * dm.x + dm.y;
        o[4u + i] = (nibbles_hi(w[i]) + bits16(h, 16u + 4u * i)) * dm.x + dm.y;
    }
    return o;
}

//@ kbyte
// ---- K-quants: 256-value super-blocks, sub-block j = b % 8 of super-block b / 8 ----

// Byte k of the block starting at vec4 `qi`.
fn kbyte_S(qi: u32, k: u32) -> u32 {
    return (wq_S(qi + k / 16u)[(k / 4u) % 4u] >> (8u * (k % 4u))) & 0xffu;
}

//@ scale_min_k4: kbyte
// ggml's get_scale_min_k4 over the 12 scale bytes at block bytes 4..16.
fn scale_min_k4_S(qi: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(kbyte_S(qi, 4u + j) & 63u), f32(kbyte_S(qi, 8u + j) & 63u));
    }
    let a = kbyte_S(qi, 8u + j);
    let sc = (a & 0xfu) | ((kbyte_S(qi, j) >> 6u) << 4u);
    let m = (a >> 4u) | ((kbyte_S(qi, 4u + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

//@ k_scale_min: scale_min_k4
// d·sc and dmin·m of sub-block j (f32 products, as ggml).
fn k_scale_min_S(qi: u32, j: u32) -> vec2<f32> {
    let dd = unpack2x16float(wq_S(qi).x);
    let sm = scale_min_k4_S(qi, j);
    return vec2<f32>(dd.x * sm.x, dd.y * sm.y);
}

//@ load_block_q4_k: k_scale_min
// Q4_K (9 vec4): d dmin | scales[12] | qs[128]; sub-blocks 2c, 2c+1 share qs[32c..32c+32].
fn load_block_q4_k_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let qi = qrow + (b / 8u) * 9u;
    let j = b % 8u;
    let s = k_scale_min_S(qi, j);
    let q0 = wq_S(qi + 1u + 2u * (j / 2u));
    let q1 = wq_S(qi + 2u + 2u * (j / 2u));
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        if ((j & 1u) == 0u) {
            o[i] = nibbles_lo(q0[i]) * s.x - s.y;
            o[4u + i] = nibbles_lo(q1[i]) * s.x - s.y;
        } else {
            o[i] = nibbles_hi(q0[i]) * s.x - s.y;
            o[4u + i] = nibbles_hi(q1[i]) * s.x - s.y;
        }
    }
    return o;
}


//@ load_block_q5_k: k_scale_min
// Q5_K (11 vec4): d dmin | scales[12] | qh[32] | qs[128].
fn load_block_q5_k_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let qi = qrow + (b / 8u) * 11u;
    let j = b % 8u;
    let s = k_scale_min_S(qi, j);
    let h0 = wq_S(qi + 1u);
    let h1 = wq_S(qi + 2u);
    let q0 = wq_S(qi + 3u + 2u * (j / 2u));
    let q1 = wq_S(qi + 4u + 2u * (j / 2u));
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        var l0 = nibbles_lo(q0[i]);
        var l1 = nibbles_lo(q1[i]);
        if ((j & 1u) == 1u) {
            l0 = nibbles_hi(q0[i]);
            l1 = nibbles_hi(q1[i]);
        }
        o[i] = (l0 + byte_bits16(h0[i], j)) * s.x - s.y;
        o[4u + i] = (l1 + byte_bits16(h1[i], j)) * s.x - s.y;
    }
    return o;
}

//@ load_block_q6_k: scale_f16
// Q6_K (13 vec4 + d in ws): ql[128] | qh[64] | scales[16] (i8). Values 128h + 32k + l take
// their low 4 bits from ql[64h + 32(k % 2) + l] (low nibble for k < 2) and 2 high bits from
// bits 2k of qh[32h + l]; scale index 8h + 2k + l / 16.
fn load_block_q6_k_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let qi = qrow + (b / 8u) * 13u;
    let d = scale_f16_S(srow + b / 8u);
    let j = b % 8u;
    let h = j / 4u;
    let k = j % 4u;
    let scw = wq_S(qi + 12u)[h * 2u + k / 2u];
    let sh = 16u * (k % 2u);
    let s0 = d * f32((bitcast<i32>(scw << (24u - sh)) >> 24u));
    let s1 = d * f32((bitcast<i32>(scw << (16u - sh)) >> 24u));
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let lw = wq_S(qi + 4u * h + 2u * (k % 2u) + i / 4u)[i % 4u];
        let hw = wq_S(qi + 8u + 2u * h + i / 4u)[i % 4u];
        var lo = (vec4<u32>(lw) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(15u);
        if (k >= 2u) {
            lo = (vec4<u32>(lw) >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(15u);
        }
        let hi = (vec4<u32>(hw) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(2u * k))) & vec4<u32>(3u);
        let q = vec4<f32>(lo | (hi << vec4<u32>(4u))) - 32.0;
        o[i] = q * select(s0, s1, i >= 4u);
    }
    return o;
}

//@ load_block_q2_k: kbyte
// Q2_K (5 vec4 + d dmin in ws): scales[16] (4-bit scale | 4-bit min per 16 values) | qs[64].
// Value 128h + 32j + l is bits 2j of qs[32h + l]; its scale byte is value / 16.
fn load_block_q2_k_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let qi = qrow + (b / 8u) * 5u;
    let dm = unpack2x16float(ws_S((srow >> 1u) + b / 8u));
    let j32 = b % 8u;
    let h = j32 / 4u;
    let j = j32 % 4u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let sc = kbyte_S(qi, 2u * j32 + i / 4u);
        let dl = dm.x * f32(sc & 0xfu);
        let ml = dm.y * f32(sc >> 4u);
        let w = wq_S(qi + 1u + 2u * h + i / 4u)[i % 4u];
        let q = (vec4<u32>(w) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(2u * j))) & vec4<u32>(3u);
        o[i] = dl * vec4<f32>(q) - ml;
    }
    return o;
}

//@ sc_byte
// Byte k of the scale array (Q3_K's scales sit in 7 halves per block, not word-aligned).
fn sc_byte_S(k: u32) -> u32 {
    return (ws_S(k >> 2u) >> (8u * (k & 3u))) & 0xffu;
}

//@ load_block_q3_k: scale_f16 sc_byte
// Q3_K (6 vec4 + 7 halves in ws): hmask[32] | qs[64] in wq, scales[12] | d in ws. Value
// 128h + 32j + l is bits 2j of qs[32h + l], minus 4 where bit 4h + j of hmask[l] is clear;
// its 6-bit scale (value / 16 = g) takes 4 bits from byte g (g < 8) or the high nibble of
// byte g − 8, and 2 bits from bits 2(g / 4) of byte 8 + g % 4.
fn load_block_q3_k_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let qi = qrow + (b / 8u) * 6u;
    let s0 = 2u * (srow + (b / 8u) * 7u);
    let d = scale_f16_S(srow + (b / 8u) * 7u + 6u);
    let j32 = b % 8u;
    let h = j32 / 4u;
    let j = j32 % 4u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let g = 2u * j32 + i / 4u;
        var lo = sc_byte_S(s0 + g) & 0xfu;
        if (g >= 8u) {
            lo = sc_byte_S(s0 + g - 8u) >> 4u;
        }
        let sc = lo | (((sc_byte_S(s0 + 8u + g % 4u) >> (2u * (g / 4u))) & 3u) << 4u);
        let dl = d * f32(i32(sc) - 32);
        let sh = vec4<u32>(0u, 8u, 16u, 24u);
        let w = wq_S(qi + 2u + 2u * h + i / 4u)[i % 4u];
        let m = wq_S(qi + i / 4u)[i % 4u];
        let q = (vec4<u32>(w) >> (sh + vec4<u32>(2u * j))) & vec4<u32>(3u);
        let hb = (vec4<u32>(m) >> (sh + vec4<u32>(4u * h + j))) & vec4<u32>(1u);
        o[i] = dl * vec4<f32>(vec4<i32>(q + 4u * hb) - vec4<i32>(4));
    }
    return o;
}

//@ load_block_iq4_nl: scale_f16
// IQ4_NL: d | qs[16] as Q4_0, the nibbles indexing kvalues_iq4nl.
fn load_block_iq4_nl_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let d = scale_f16_S(srow + b);
    let w = wq_S(qrow + b);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = d * iq4_levels(nib_lo(w[i]));
        o[4u + i] = d * iq4_levels(nib_hi(w[i]));
    }
    return o;
}

//@ load_block_iq4_xs
// IQ4_XS (8 vec4 + 4 halves in ws: d, scales_h, scales_l[4]): sub-block ib's 16 bytes as an
// IQ4_NL block under d·(ls − 32), ls = 4 bits of scales_l[ib / 2] | 2 bits of scales_h.
fn load_block_iq4_xs_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let ib = b % 8u;
    let wi = (srow >> 1u) + 2u * (b / 8u);
    let w0 = ws_S(wi);
    let w1 = ws_S(wi + 1u);
    let ls = ((w1 >> (4u * ib)) & 0xfu) | (((w0 >> (16u + 2u * ib)) & 3u) << 4u);
    let dl = unpack2x16float(w0).x * f32(i32(ls) - 32);
    let w = wq_S(qrow + (b / 8u) * 8u + ib);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = dl * iq4_levels(nib_lo(w[i]));
        o[4u + i] = dl * iq4_levels(nib_hi(w[i]));
    }
    return o;
}
