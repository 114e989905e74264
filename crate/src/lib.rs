//! llama-webgpu: Llama 3 inference on WebGPU through wgpu and our own WGSL kernels.
//!
//! Data flow: a [`gguf::ByteSource`] (file, HTTP ranges, Blob) → [`gguf::GgufFile`] (header
//! only) → [`gpu::model::LlamaModel`] (weights streamed into GPU buffers) → [`session::Session`]
//! (KV cache, sampling, chat) → text. Machines without a real GPU run the same model on the
//! CPU instead ([`cpu::CpuModel`], picked by [`backend`]).

pub mod backend;
pub mod bench;
pub mod chat;
pub mod cpu;
pub mod embed;
pub mod error;
pub mod gbnf;
pub mod gguf;
pub mod gpu;
pub mod grammar;
pub mod graph;
pub mod heap;
pub mod kv;
pub mod named;
pub mod numerics;
#[cfg(not(target_arch = "wasm32"))]
pub mod output;
pub mod plan;
pub mod quant;
pub mod quantize;
pub mod sampler;
pub mod session;
pub mod speculative;
pub mod synth;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
#[cfg(all(target_arch = "wasm32", feature = "test-hooks"))]
pub mod wasm_hooks;

pub use error::{Error, Result};
// The GPU executor's modules under their paths from before they moved into `gpu/`.
pub use gpu::{kernels, model};
