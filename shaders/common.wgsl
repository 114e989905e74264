// Per-forward-pass values shared by every kernel of the pass (one small uniform buffer,
// rewritten once per pass, so bind groups never change between tokens).
struct Step {
    n_tokens: u32, // tokens in this pass (1 when decoding)
    pos: u32,      // absolute position of the first token of the pass
    kv_len: u32,   // pos + n_tokens: cache entries valid after this pass
    _pad: u32,
}
