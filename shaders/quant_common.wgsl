// Pure bit helpers of the weight decoders (quant.wgsl).

fn bf16_pair(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

// Four signed bytes of a word (arithmetic shifts sign-extend).
fn i8x4(w: u32) -> vec4<f32> {
    let s = bitcast<i32>(w);
    return vec4<f32>(vec4<i32>((s << 24u) >> 24u, (s << 16u) >> 24u, (s << 8u) >> 24u, s >> 24u));
}

// Byte j of a 32-value block holds element j (low nibble) and j + 16 (high nibble), so
// word i gives elements 4i..4i+3 from its low nibbles and 16+4i.. from its high nibbles.
fn nibbles_lo(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(15u));
}

fn nibbles_hi(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(w) >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(15u));
}

// Bits s, s+1, s+2, s+3 of `h` as 0/16 (Q5_0/Q5_1: the fifth bit of four values).
fn bits16(h: u32, s: u32) -> vec4<f32> {
    return vec4<f32>(((vec4<u32>(h) >> (vec4<u32>(s) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u)) * 16u);
}

// Bit j of the four bytes of `h`, as 0/16 (Q5_K: qh[l] bit j = fifth bit of value l).
fn byte_bits16(h: u32, j: u32) -> vec4<f32> {
    return vec4<f32>(((vec4<u32>(h) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(j))) & vec4<u32>(1u)) * 16u);
}

// ggml's kvalues_iq4nl (IQ4_NL / IQ4_XS levels) of four 4-bit indices: the 16 signed bytes
// packed in four words, picked by index / 4 and sign-extended from byte index % 4.
fn iq4_levels(q: vec4<u32>) -> vec4<f32> {
    let t = vec4<u32>(0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u);
    let w = vec4<u32>(t[q.x >> 2u], t[q.y >> 2u], t[q.z >> 2u], t[q.w >> 2u]);
    let sh = vec4<u32>(24u) - 8u * (q & vec4<u32>(3u));
    return vec4<f32>(bitcast<vec4<i32>>(w << sh) >> vec4<u32>(24u));
}

// The low / high nibbles of a word's four bytes as indices (IQ4: byte j holds value j and j + 16).
fn nib_lo(w: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(15u);
}

fn nib_hi(w: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(15u);
}
