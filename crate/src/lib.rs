//! llama-webgpu: Llama 3 inference on WebGPU through wgpu and our own WGSL kernels.
//!
//! Data flow: a [`gguf::ByteSource`] (file, HTTP ranges, Blob) → [`gguf::GgufFile`] (header
//! only) → [`model::LlamaModel`] (weights streamed into GPU buffers) → [`session::Session`]
//! (KV cache, sampling, chat) → text.

pub mod bench;
pub mod chat;
pub mod error;
pub mod gbnf;
pub mod gguf;
pub mod gpu;
pub mod grammar;
pub mod kernels;
pub mod model;
pub mod quantize;
pub mod sampler;
pub mod session;
pub mod synth;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, Result};
