// The parameters, bindings and cache access shared by the flash-attention kernels
// (attention.wgsl, attention_cpu.wgsl): FlashParams in kernels/attention.rs.

struct Params {
    n_head: u32,
    n_kv: u32,
    pos0: u32,        // first cache position held by this part's buffers
    part_len: u32,    // positions held by this part
    pos_bytes: u32,   // bytes per cached position (all KV heads)
    row_bytes: u32,   // bytes per head row
    splits: u32,      // key splits per (KV head, query block)
    slice0: u32,      // first partial slice of this launch
    direct: u32,      // 1: normalised output to `o`; 0: partials
    rows_stride: u32, // partial rows per slice
    ml0: u32,         // float offset of the (m, l) pairs in `o`
    scale: f32,
}

// Bindings q, kc, vc, o (read_write), p, step: FLASH_SLOTS in gpu/kernels/attention.rs.

const NEG: f32 = -1.0e30;

fn word(v: bool, i: u32) -> u32 {
    if (v) {
        return vc[i];
    }
    return kc[i];
}
