// The parameters of both attention kernels (attention.wgsl, attention_cpu.wgsl): one layout,
// kernels.rs's typed params.

struct Params {
    n_head: u32,
    n_kv: u32,
    head_dim: u32,
    ctx: u32,    // scratch row length (cache capacity)
    scale: f32,  // 1 / sqrt(head_dim)
}
