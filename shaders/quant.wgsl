// Weight decoding: one 32-element block of a row → 8 × vec4<f32>.
// Weights are repacked at upload (see kernels.rs): quant bits in `wq` (vec4<u32> aligned,
// QS_V4 per block), f16 scales apart in `ws` (two per u32). `qi` indexes wq, `si` indexes
// the f16 scale array. The including kernel declares `wq` and `ws`.

fn scale_f16(si: u32) -> f32 {
    return unpack2x16float(ws[si >> 1u])[si & 1u];
}

fn load_block_f32(qi: u32, si: u32) -> array<vec4<f32>, 8> {
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = bitcast<vec4<f32>>(wq[qi + i]);
    }
    return o;
}

fn load_block_f16(qi: u32, si: u32) -> array<vec4<f32>, 8> {
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let w = wq[qi + i];
        o[2u * i] = vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
        o[2u * i + 1u] = vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));
    }
    return o;
}

fn bf16_pair(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

fn load_block_bf16(qi: u32, si: u32) -> array<vec4<f32>, 8> {
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let w = wq[qi + i];
        o[2u * i] = vec4<f32>(bf16_pair(w.x), bf16_pair(w.y));
        o[2u * i + 1u] = vec4<f32>(bf16_pair(w.z), bf16_pair(w.w));
    }
    return o;
}

// Four signed bytes of a word (arithmetic shifts sign-extend).
fn i8x4(w: u32) -> vec4<f32> {
    let s = bitcast<i32>(w);
    return vec4<f32>(vec4<i32>((s << 24u) >> 24u, (s << 16u) >> 24u, (s << 8u) >> 24u, s >> 24u));
}

fn load_block_q8_0(qi: u32, si: u32) -> array<vec4<f32>, 8> {
    let d = scale_f16(si);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 2u; i++) {
        let w = wq[qi + i];
        o[4u * i] = d * i8x4(w.x);
        o[4u * i + 1u] = d * i8x4(w.y);
        o[4u * i + 2u] = d * i8x4(w.z);
        o[4u * i + 3u] = d * i8x4(w.w);
    }
    return o;
}

// Q4_0/Q4_1 byte j holds element j (low nibble) and j + 16 (high nibble), so word i gives
// elements 4i..4i+3 from its low nibbles and 16+4i.. from its high nibbles.
fn nibbles_lo(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(15u));
}
fn nibbles_hi(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(w) >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(15u));
}

fn load_block_q4_0(qi: u32, si: u32) -> array<vec4<f32>, 8> {
    let d = scale_f16(si);
    let w = wq[qi];
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = d * (nibbles_lo(w[i]) - 8.0);
        o[4u + i] = d * (nibbles_hi(w[i]) - 8.0);
    }
    return o;
}

fn load_block_q4_1(qi: u32, si: u32) -> array<vec4<f32>, 8> {
    let dm = unpack2x16float(ws[si >> 1u]);
    let w = wq[qi];
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = dm.x * nibbles_lo(w[i]) + dm.y;
        o[4u + i] = dm.x * nibbles_hi(w[i]) + dm.y;
    }
    return o;
}

// K-quants, unpacked at upload into 32-value sub-blocks: f32 scale and min (as ggml
// computes them: d·sc, dmin·m) in ws, so v = scale · q − min matches ggml exactly.
fn f32_at(si: u32) -> f32 {
    return bitcast<f32>(ws[si >> 1u]);
}

fn load_block_q4_k(qi: u32, si: u32) -> array<vec4<f32>, 8> {
    let d = f32_at(si);
    let m = f32_at(si + 2u);
    let w = wq[qi];
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = d * nibbles_lo(w[i]) - m;
        o[4u + i] = d * nibbles_hi(w[i]) - m;
    }
    return o;
}

// Fifth bits of values s..s+3, from a word holding one bit per value.
fn bits4(h: u32, s: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(h) >> (vec4<u32>(s) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u));
}

fn load_block_q5_k(qi: u32, si: u32) -> array<vec4<f32>, 8> {
    let d = f32_at(si);
    let m = f32_at(si + 2u);
    let h = ws[(si >> 1u) + 2u];
    let w = wq[qi];
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = d * (nibbles_lo(w[i]) + 16.0 * bits4(h, 4u * i)) - m;
        o[4u + i] = d * (nibbles_hi(w[i]) + 16.0 * bits4(h, 16u + 4u * i)) - m;
    }
    return o;
}

// Q6_K: signed bytes (q − 32) and one scale per 16 values.
fn load_block_q6_k(qi: u32, si: u32) -> array<vec4<f32>, 8> {
    let s0 = f32_at(si);
    let s1 = f32_at(si + 2u);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 2u; i++) {
        let w = wq[qi + i];
        let s = select(s0, s1, i == 1u);
        o[4u * i] = s * i8x4(w.x);
        o[4u * i + 1u] = s * i8x4(w.y);
        o[4u * i + 2u] = s * i8x4(w.z);
        o[4u * i + 3u] = s * i8x4(w.w);
    }
    return o;
}
