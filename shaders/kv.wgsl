// Reading the KV cache: raw u32 words holding, per cached position, the n_kv head rows of
// `head_dim` values in the cache's type (kv.rs): f32, f16 halves (unpack2x16float, no
// shader-f16 needed), or ggml's q8_0 (f16 d, 32 × i8) and q4_0 (f16 d, 16 bytes: value j in
// byte j's low nibble, value j + 16 in its high one) blocks, each a head row's whole blocks.
// Blocks are 34 or 18 bytes, so a row may start at any even byte: reads go through rd32.
// `kv_unit(v, base, u)` decodes unit u (4 values; q4_0: 8) of the head row at byte `base` of
// K (v = false) or V (attention.wgsl stages it with kv_put); `kv4(v, base, c)` decodes values
// 4c..4c+3 (attention_cpu.wgsl). `word(v, i)` is the kernel's.

fn rd32(v: bool, b: u32) -> u32 {
    let i = b >> 2u;
    let s = (b & 3u) * 8u;
    let w0 = word(v, i);
    if (s == 0u) {
        return w0;
    }
    return (w0 >> s) | (word(v, i + 1u) << (32u - s));
}

// The f16 at even byte b.
fn rd_half(v: bool, b: u32) -> f32 {
    return unpack2x16float(word(v, b >> 2u) >> ((b & 2u) * 8u)).x;
}

fn kv_unit_f32(v: bool, base: u32, u: u32) -> array<f32, 4> {
    let w = base / 4u + 4u * u;
    return array<f32, 4>(
        bitcast<f32>(word(v, w)),
        bitcast<f32>(word(v, w + 1u)),
        bitcast<f32>(word(v, w + 2u)),
        bitcast<f32>(word(v, w + 3u)),
    );
}

fn kv_unit_f16(v: bool, base: u32, u: u32) -> array<f32, 4> {
    let w = base / 4u + 2u * u;
    let a = unpack2x16float(word(v, w));
    let b = unpack2x16float(word(v, w + 1u));
    return array<f32, 4>(a.x, a.y, b.x, b.y);
}

fn kv_unit_q8_0(v: bool, base: u32, u: u32) -> array<f32, 4> {
    let bb = base + (u / 8u) * 34u;
    let d = rd_half(v, bb);
    let w = bitcast<i32>(rd32(v, bb + 2u + 4u * (u % 8u)));
    return array<f32, 4>(
        f32(extractBits(w, 0u, 8u)) * d,
        f32(extractBits(w, 8u, 8u)) * d,
        f32(extractBits(w, 16u, 8u)) * d,
        f32(extractBits(w, 24u, 8u)) * d,
    );
}

// Unit u of a q4_0 row: bytes 4(u % 4).. of block u / 4, i.e. values 4(u % 4) + i (low
// nibbles, entries 0..3) and 16 + 4(u % 4) + i (high nibbles, entries 4..7).
fn kv_unit_q4_0(v: bool, base: u32, u: u32) -> array<f32, 8> {
    let bb = base + (u / 4u) * 18u;
    let d = rd_half(v, bb);
    let w = rd32(v, bb + 2u + 4u * (u % 4u));
    var r: array<f32, 8>;
    for (var i = 0u; i < 4u; i++) {
        let byte = (w >> (8u * i)) & 0xffu;
        r[i] = (f32(byte & 15u) - 8.0) * d;
        r[i + 4u] = (f32(byte >> 4u) - 8.0) * d;
    }
    return r;
}

fn kv4_f32(v: bool, base: u32, c: u32) -> vec4<f32> {
    let w = base / 4u + 4u * c;
    return bitcast<vec4<f32>>(vec4<u32>(word(v, w), word(v, w + 1u), word(v, w + 2u), word(v, w + 3u)));
}

fn kv4_f16(v: bool, base: u32, c: u32) -> vec4<f32> {
    let w = base / 4u + 2u * c;
    return vec4<f32>(unpack2x16float(word(v, w)), unpack2x16float(word(v, w + 1u)));
}

fn kv4_q8_0(v: bool, base: u32, c: u32) -> vec4<f32> {
    let bb = base + (c / 8u) * 34u;
    let w = bitcast<i32>(rd32(v, bb + 2u + 4u * (c % 8u)));
    let q = vec4<i32>(extractBits(w, 0u, 8u), extractBits(w, 8u, 8u), extractBits(w, 16u, 8u), extractBits(w, 24u, 8u));
    return vec4<f32>(q) * rd_half(v, bb);
}

// Values 4c..4c+3 of a q4_0 row: chunk cc = c % 8 of block c / 8 is the low (cc < 4) or high
// nibbles of bytes 4(cc % 4)..
fn kv4_q4_0(v: bool, base: u32, c: u32) -> vec4<f32> {
    let bb = base + (c / 8u) * 18u;
    let cc = c % 8u;
    let w = rd32(v, bb + 2u + 4u * (cc % 4u)) >> select(0u, 4u, cc >= 4u);
    let q = vec4<u32>(w & 15u, (w >> 8u) & 15u, (w >> 16u) & 15u, (w >> 24u) & 15u);
    return (vec4<f32>(q) - 8.0) * rd_half(v, bb);
}
