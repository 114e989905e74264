// Weight decoding: 32-element block `b` of a row → 8 × vec4<f32>, from GGUF's own block
// bytes. At upload (kernels.rs) each block is only regrouped, never expanded: its
// vec4-aligned part goes to the quant array (`wq_S`, `qs_v4` vec4<u32> per GGUF block), its
// remaining f16 fields (d, m; Q5's qh as two halves; Q6_K's d) to the scale array (`ws_S`,
// `sc_h` halves per GGUF block, two per u32). Q4_K/Q5_K stay whole in the quant array
// (144 / 176 bytes). Values are computed as ggml's `dequantize_row_*` computes them.
// `qrow` / `srow` are the row's first vec4 / half index.
//
// A template: kernels.rs instantiates the functions a kernel needs once per weight binding,
// `_S` becoming `_0`, `_1`, …, with `wq_S` / `ws_S` reading that binding. Helpers: quant_common.wgsl.

fn half_at_S(si: u32) -> u32 {
    return (ws_S(si >> 1u) >> (16u * (si & 1u))) & 0xffffu;
}

fn scale_f16_S(si: u32) -> f32 {
    return unpack2x16float(ws_S(si >> 1u))[si & 1u];
}

fn load_block_f32_S(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {
    let qi = qrow + b * 8u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = bitcast<vec4<f32>>(wq_S(qi + i));
    }
    return o;
}

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

// ---- K-quants: 256-value super-blocks, sub-block j = b % 8 of super-block b / 8 ----

// Byte k of the block starting at vec4 `qi`.
fn kbyte_S(qi: u32, k: u32) -> u32 {
    return (wq_S(qi + k / 16u)[(k / 4u) % 4u] >> (8u * (k % 4u))) & 0xffu;
}

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

// d·sc and dmin·m of sub-block j (f32 products, as ggml).
fn k_scale_min_S(qi: u32, j: u32) -> vec2<f32> {
    let dd = unpack2x16float(wq_S(qi).x);
    let sm = scale_min_k4_S(qi, j);
    return vec2<f32>(dd.x * sm.x, dd.y * sm.y);
}

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
