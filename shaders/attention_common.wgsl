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

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<u32>;
@group(0) @binding(2) var<storage, read> vc: array<u32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

const NEG: f32 = -1.0e30;

fn word(v: bool, i: u32) -> u32 {
    if (v) {
        return vc[i];
    }
    return kc[i];
}
