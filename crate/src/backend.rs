//! Which executor runs the model: the GPU ([`LlamaModel`], WebGPU / wgpu) or the CPU
//! ([`CpuModel`]). `auto` takes the CPU where the GPU would be a CPU anyway: no adapter, a
//! fallback (software) adapter, or natively an adapter whose device type is CPU (lavapipe).
//! Sessions and the bench drive either through [`Forward`].

use crate::cpu::{CpuModel, CpuOptions};
use crate::error::Result;
use crate::gguf::{AsyncByteSource, GgufFile, LlamaConfig};
use crate::gpu::model::{LlamaModel, LoadOptions};
use crate::graph::Logits;
use crate::graph::Progress;
use crate::kv::KvType;

/// A forward pass over the KV cache: what sessions and the bench need from a model.
#[allow(async_fn_in_trait)]
pub trait Forward {
    /// KV cache capacity in tokens.
    fn context(&self) -> usize;
    fn config(&self) -> &LlamaConfig;
    /// Logits of `tokens` at positions `pos..` (all positions, or the last one).
    async fn forward(&mut self, tokens: &[u32], pos: usize, logits: Logits) -> Result<Vec<f32>>;
}

impl Forward for LlamaModel {
    fn context(&self) -> usize {
        self.held.context
    }
    fn config(&self) -> &LlamaConfig {
        &self.cfg
    }
    async fn forward(&mut self, tokens: &[u32], pos: usize, logits: Logits) -> Result<Vec<f32>> {
        LlamaModel::forward(self, tokens, pos, logits).await
    }
}

impl Forward for CpuModel {
    fn context(&self) -> usize {
        self.held.context
    }
    fn config(&self) -> &LlamaConfig {
        &self.cfg
    }
    async fn forward(&mut self, tokens: &[u32], pos: usize, logits: Logits) -> Result<Vec<f32>> {
        CpuModel::forward(self, tokens, pos, logits)
    }
}

/// What the user asked for (and, never `Auto`, what [`choose`] picked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl crate::named::Named for Backend {
    const WHAT: &'static str = "backend";
    const NAMES: &'static [(Self, &'static [&'static str])] =
        &[(Self::Auto, &["auto"]), (Self::Gpu, &["gpu", "webgpu"]), (Self::Cpu, &["cpu"])];
}
crate::named::named!(Backend);

/// The backend picked and why (reported by `info`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Choice {
    /// `Gpu` or `Cpu`, never `Auto`.
    pub backend: Backend,
    pub reason: String,
}

/// What `auto` sees of the adapter.
#[derive(Debug, Clone)]
pub struct AdapterProbe {
    pub name: String,
    /// wgpu's device type (`Cpu` for lavapipe / llvmpipe / SwiftShader natively); the
    /// browser does not say.
    pub device_type: Option<wgpu::DeviceType>,
    /// The browser's `isFallbackAdapter` (a software adapter).
    pub fallback: bool,
}

/// The decision of `auto` (and the reason an explicit choice records).
pub fn choose(asked: Backend, adapter: Option<&AdapterProbe>) -> Choice {
    let cpu = |reason: String| Choice { backend: Backend::Cpu, reason };
    let gpu = |reason: String| Choice { backend: Backend::Gpu, reason };
    match (asked, adapter) {
        (Backend::Cpu, _) => cpu("asked for the CPU backend".into()),
        (Backend::Gpu, _) => gpu("asked for the GPU backend".into()),
        (Backend::Auto, None) => cpu("auto: no WebGPU adapter".into()),
        (Backend::Auto, Some(a)) if a.fallback => {
            cpu(format!("auto: adapter '{}' is a fallback (software) adapter", a.name))
        }
        (Backend::Auto, Some(a)) if a.device_type == Some(wgpu::DeviceType::Cpu) => {
            cpu(format!("auto: adapter '{}' is a CPU device (software rasterizer)", a.name))
        }
        (Backend::Auto, Some(a)) => match a.device_type {
            Some(t) => gpu(format!("auto: adapter '{}' ({t:?})", a.name)),
            None => gpu(format!("auto: adapter '{}'", a.name)),
        },
    }
}

/// The adapter wgpu would give us, without creating a device.
pub async fn probe_adapter() -> Option<AdapterProbe> {
    let adapter = crate::gpu::request_adapter().await.ok()?;
    let info = adapter.get_info();
    Some(AdapterProbe { name: info.name, device_type: Some(info.device_type), fallback: false })
}

/// What a loaded model holds, the same on both executors (reported in [`ModelStats`]).
#[derive(Debug, Clone)]
pub struct Footprint {
    /// KV cache capacity in tokens.
    pub context: usize,
    /// Weight types by tensor count.
    pub tensor_types: Vec<(String, usize)>,
    /// Bytes of weights the executor holds (on the CPU the file's, as they are).
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    pub kv_type: KvType,
}

impl Footprint {
    /// The stats of a model of `cfg` holding this, with what only its executor knows.
    pub fn stats<'a>(
        &'a self,
        cfg: &'a LlamaConfig,
        weight_bytes_per_token: u64,
        dispatches_per_token: usize,
        device: String,
    ) -> ModelStats<'a> {
        let &Footprint { context, ref tensor_types, weight_bytes, kv_bytes, kv_type } = self;
        ModelStats {
            cfg,
            context,
            tensor_types,
            weight_bytes,
            kv_bytes,
            kv_type,
            weight_bytes_per_token,
            dispatches_per_token,
            device,
        }
    }
}

/// What a loaded model reports, the same on both executors ([`Footprint`]'s fields and the
/// executor's own).
#[derive(Debug, Clone)]
pub struct ModelStats<'a> {
    pub cfg: &'a LlamaConfig,
    pub context: usize,
    pub tensor_types: &'a [(String, usize)],
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    pub kv_type: KvType,
    /// Weight bytes one decoded token reads (every matrix once, one embedding row).
    pub weight_bytes_per_token: u64,
    /// GPU dispatches per decoded token (0 on the CPU).
    pub dispatches_per_token: usize,
    /// The device that runs the model, in words.
    pub device: String,
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
        if choice.backend == Backend::Cpu {
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

    /// What the model reports (`info`, `bench`, the package's `ModelInfo`): one match here,
    /// each executor filling the same struct.
    pub fn stats(&self) -> ModelStats<'_> {
        match self {
            Model::Gpu(m) => m.stats(),
            Model::Cpu(m) => m.stats(),
        }
    }

    pub fn cfg(&self) -> &LlamaConfig {
        // not through stats(): it formats the device and sums the weights, and this is asked
        // per token
        match self {
            Model::Gpu(m) => &m.cfg,
            Model::Cpu(m) => &m.cfg,
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_blocking(&mut self, tokens: &[u32], pos: usize, logits: Logits) -> Result<Vec<f32>> {
        pollster::block_on(Forward::forward(self, tokens, pos, logits))
    }
}

impl Forward for Model {
    fn context(&self) -> usize {
        match self {
            Model::Gpu(m) => m.held.context,
            Model::Cpu(m) => m.held.context,
        }
    }
    fn config(&self) -> &LlamaConfig {
        self.cfg()
    }
    async fn forward(&mut self, tokens: &[u32], pos: usize, logits: Logits) -> Result<Vec<f32>> {
        match self {
            Model::Gpu(m) => m.forward(tokens, pos, logits).await,
            Model::Cpu(m) => m.forward(tokens, pos, logits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(device_type: Option<wgpu::DeviceType>, fallback: bool) -> AdapterProbe {
        AdapterProbe { name: "x".into(), device_type, fallback }
    }
    use wgpu::DeviceType::{Cpu, DiscreteGpu};

    #[test]
    fn auto_takes_the_cpu_without_a_real_gpu() {
        assert_eq!(choose(Backend::Auto, None).backend, Backend::Cpu);
        assert_eq!(choose(Backend::Auto, Some(&probe(Some(Cpu), false))).backend, Backend::Cpu);
        assert_eq!(choose(Backend::Auto, Some(&probe(None, true))).backend, Backend::Cpu);
        assert_eq!(choose(Backend::Auto, Some(&probe(None, false))).backend, Backend::Gpu);
        assert_eq!(choose(Backend::Auto, Some(&probe(Some(DiscreteGpu), false))).backend, Backend::Gpu);
        assert_eq!(choose(Backend::Gpu, Some(&probe(Some(Cpu), false))).backend, Backend::Gpu);
        assert_eq!(choose(Backend::Cpu, Some(&probe(Some(DiscreteGpu), false))).backend, Backend::Cpu);
        assert!(choose(Backend::Auto, Some(&probe(Some(Cpu), false))).reason.contains("CPU device"));
        assert!("tpu".parse::<Backend>().is_err());
        assert_eq!("webgpu".parse::<Backend>().unwrap(), Backend::Gpu);
    }
}
