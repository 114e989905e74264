// The f32 / f16 KV-cache write (rope.wgsl's kv_store): the cache bound as array<u32>.

// f32 / f16 caches: lane i writes pair i of K and of V (whole words: no lane shares one).
fn kv_store_f32(i: u32, krow: u32, lp: u32, pos: u32) {
    let kv_dim = p.n_kv * p.head_dim;
    if (i < kv_dim / 2u) {
        let r = rotate(qkv[krow + 2u * i], qkv[krow + 2u * i + 1u], i % (p.head_dim / 2u), pos);
        let w = lp * p.pos_bytes / 4u + 2u * i;
        kc[w] = bitcast<u32>(r.x);
        kc[w + 1u] = bitcast<u32>(r.y);
        vc[w] = bitcast<u32>(qkv[krow + kv_dim + 2u * i]);
        vc[w + 1u] = bitcast<u32>(qkv[krow + kv_dim + 2u * i + 1u]);
    }
}

fn kv_store_f16(i: u32, krow: u32, lp: u32, pos: u32) {
    let kv_dim = p.n_kv * p.head_dim;
    if (i < kv_dim / 2u) {
        let r = rotate(qkv[krow + 2u * i], qkv[krow + 2u * i + 1u], i % (p.head_dim / 2u), pos);
        let w = lp * p.pos_bytes / 4u + i;
        kc[w] = pack2x16float(r);
        vc[w] = pack2x16float(vec2<f32>(qkv[krow + kv_dim + 2u * i], qkv[krow + kv_dim + 2u * i + 1u]));
    }
}
