//! Which executor runs the model: the GPU ([`LlamaModel`], WebGPU / wgpu) or the CPU
//! ([`CpuModel`]). `auto` takes the CPU where the GPU would be a CPU anyway: no adapter, a
//! fallback (software) adapter, or natively an adapter whose device type is CPU (lavapipe).
//! Sessions and the bench drive either through [`Forward`].

use crate::cpu::{CpuModel, CpuOptions};
use crate::error::{Error, Result};
use crate::gguf::{AsyncByteSource, GgufFile, LlamaConfig};
use crate::gpu::model::{LlamaModel, LoadOptions};
use crate::graph::Progress;
use crate::kv::KvType;

/// A forward pass over the KV cache: what sessions and the bench need from a model.
#[allow(async_fn_in_trait)]
pub trait Forward {
    /// KV cache capacity in tokens.
    fn context(&self) -> usize;
    fn config(&self) -> &LlamaConfig;
    /// Logits of `tokens` at positions `pos..` (all positions, or the last one).
    async fn forward(&mut self, tokens: &[u32], pos: usize, all: bool) -> Result<Vec<f32>>;
}

impl Forward for LlamaModel {
    fn context(&self) -> usize {
        self.context
    }
    fn config(&self) -> &LlamaConfig {
        &self.cfg
    }
    async fn forward(&mut self, tokens: &[u32], pos: usize, all: bool) -> Result<Vec<f32>> {
        LlamaModel::forward(self, tokens, pos, all).await
    }
}

impl Forward for CpuModel {
    fn context(&self) -> usize {
        self.context
    }
    fn config(&self) -> &LlamaConfig {
        &self.cfg
    }
    async fn forward(&mut self, tokens: &[u32], pos: usize, all: bool) -> Result<Vec<f32>> {
        CpuModel::forward(self, tokens, pos, all)
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "gpu" | "webgpu" => Ok(Self::Gpu),
            "cpu" => Ok(Self::Cpu),
            _ => Err(Error::InvalidArgument(format!("backend must be auto, gpu (webgpu) or cpu, got '{s}'"))),
        }
    }
}

/// The backend picked and why (reported by `info`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Choice {
    /// "gpu" or "cpu".
    pub backend: &'static str,
    pub reason: String,
}

/// What `auto` sees of the adapter.
#[derive(Debug, Clone)]
pub struct AdapterProbe {
    pub name: String,
    /// wgpu's device type (`Cpu` for lavapipe / llvmpipe / SwiftShader natively).
    pub device_type: String,
    /// The browser's `isFallbackAdapter` (a software adapter).
    pub fallback: bool,
}

/// The decision of `auto` (and the reason an explicit choice records).
pub fn choose(asked: Backend, adapter: Option<&AdapterProbe>) -> Choice {
    let cpu = |reason: String| Choice { backend: "cpu", reason };
    let gpu = |reason: String| Choice { backend: "gpu", reason };
    match (asked, adapter) {
        (Backend::Cpu, _) => cpu("asked for the CPU backend".into()),
        (Backend::Gpu, _) => gpu("asked for the GPU backend".into()),
        (Backend::Auto, None) => cpu("auto: no WebGPU adapter".into()),
        (Backend::Auto, Some(a)) if a.fallback => {
            cpu(format!("auto: adapter '{}' is a fallback (software) adapter", a.name))
        }
        (Backend::Auto, Some(a)) if a.device_type == "Cpu" => {
            cpu(format!("auto: adapter '{}' is a CPU device (software rasterizer)", a.name))
        }
        (Backend::Auto, Some(a)) => gpu(format!("auto: adapter '{}' ({})", a.name, a.device_type)),
    }
}

/// The adapter wgpu would give us, without creating a device.
pub async fn probe_adapter() -> Option<AdapterProbe> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        })
        .await
        .ok()?;
    let info = adapter.get_info();
    Some(AdapterProbe { name: info.name, device_type: format!("{:?}", info.device_type), fallback: false })
}

/// A loaded model on one of the two executors.
// one per engine, never moved in a loop: the size difference does not matter
#[allow(clippy::large_enum_variant)]
pub enum Model {
    Gpu(LlamaModel),
    Cpu(CpuModel),
}

impl Model {
    /// Loads on the backend `choice` names (see [`choose`]).
    pub async fn load<S: AsyncByteSource + ?Sized>(
        src: &S,
        file: &GgufFile,
        choice: &Choice,
        opts: &LoadOptions,
        cpu: &CpuOptions,
        progress: impl FnMut(Progress),
    ) -> Result<Model> {
        if choice.backend == "cpu" {
            let cpu = CpuOptions {
                context: opts.context,
                chunk_bytes: opts.chunk_bytes,
                kv_type: opts.kv_type,
                ..cpu.clone()
            };
            Ok(Model::Cpu(CpuModel::load(src, file, &cpu, progress).await?))
        } else {
            Ok(Model::Gpu(LlamaModel::load(src, file, opts, progress).await?))
        }
    }

    pub fn cfg(&self) -> &LlamaConfig {
        match self {
            Model::Gpu(m) => &m.cfg,
            Model::Cpu(m) => &m.cfg,
        }
    }

    pub fn tensor_types(&self) -> &[(String, usize)] {
        match self {
            Model::Gpu(m) => &m.tensor_types,
            Model::Cpu(m) => &m.tensor_types,
        }
    }

    pub fn weight_bytes(&self) -> u64 {
        match self {
            Model::Gpu(m) => m.weight_bytes,
            Model::Cpu(m) => m.weight_bytes,
        }
    }

    pub fn kv_bytes(&self) -> u64 {
        match self {
            Model::Gpu(m) => m.kv_bytes,
            Model::Cpu(m) => m.kv_bytes,
        }
    }

    /// The KV cache's element type.
    pub fn kv_type(&self) -> KvType {
        match self {
            Model::Gpu(m) => m.kv_type,
            Model::Cpu(m) => m.kv_type,
        }
    }

    pub fn weight_bytes_per_token(&self) -> u64 {
        match self {
            Model::Gpu(m) => m.weight_bytes_per_token(),
            Model::Cpu(m) => m.weight_bytes_per_token(),
        }
    }

    /// GPU dispatches per token (0 on the CPU).
    pub fn dispatches_per_token(&self) -> usize {
        match self {
            Model::Gpu(m) => m.dispatches_per_token(),
            Model::Cpu(_) => 0,
        }
    }

    /// The device that runs the model, in words.
    pub fn device(&self) -> String {
        match self {
            Model::Gpu(m) => format!("{} ({})", m.gpu.adapter.name, m.gpu.adapter.backend),
            Model::Cpu(m) => format!("CPU, {} thread(s), {}, {} dot", m.threads(), m.simd.name(), m.dot),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_blocking(&mut self, tokens: &[u32], pos: usize, all: bool) -> Result<Vec<f32>> {
        pollster::block_on(Forward::forward(self, tokens, pos, all))
    }
}

impl Forward for Model {
    fn context(&self) -> usize {
        match self {
            Model::Gpu(m) => m.context,
            Model::Cpu(m) => m.context,
        }
    }
    fn config(&self) -> &LlamaConfig {
        self.cfg()
    }
    async fn forward(&mut self, tokens: &[u32], pos: usize, all: bool) -> Result<Vec<f32>> {
        match self {
            Model::Gpu(m) => m.forward(tokens, pos, all).await,
            Model::Cpu(m) => m.forward(tokens, pos, all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(device_type: &str, fallback: bool) -> AdapterProbe {
        AdapterProbe { name: "x".into(), device_type: device_type.into(), fallback }
    }

    #[test]
    fn auto_takes_the_cpu_without_a_real_gpu() {
        assert_eq!(choose(Backend::Auto, None).backend, "cpu");
        assert_eq!(choose(Backend::Auto, Some(&probe("Cpu", false))).backend, "cpu");
        assert_eq!(choose(Backend::Auto, Some(&probe("Other", true))).backend, "cpu");
        assert_eq!(choose(Backend::Auto, Some(&probe("DiscreteGpu", false))).backend, "gpu");
        assert_eq!(choose(Backend::Gpu, Some(&probe("Cpu", false))).backend, "gpu");
        assert_eq!(choose(Backend::Cpu, Some(&probe("DiscreteGpu", false))).backend, "cpu");
        assert!(choose(Backend::Auto, Some(&probe("Cpu", false))).reason.contains("CPU device"));
        assert!("tpu".parse::<Backend>().is_err());
        assert_eq!("webgpu".parse::<Backend>().unwrap(), Backend::Gpu);
    }
}
