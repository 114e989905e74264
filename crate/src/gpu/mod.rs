//! GPU runtime on wgpu: device setup from the adapter's own limits, buffers, bounded uploads,
//! pipeline cache, readback, and error/device-loss capture as typed errors.
//!
//! The same code drives Vulkan/Metal/DX12 natively and WebGPU in the browser; the only
//! difference is how we wait for the GPU (`poll` natively, the event loop on the web).

pub mod kernels;
pub mod model;

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Numeric precision of the KV cache and f16-capable kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f16 where the adapter has `shader-f16`, else f32.
    #[default]
    Auto,
    F32,
    F16,
}

impl crate::named::Named for Precision {
    const WHAT: &'static str = "precision";
    const NAMES: &'static [(Self, &'static [&'static str])] =
        &[(Self::Auto, &["auto"]), (Self::F32, &["f32"]), (Self::F16, &["f16"])];
}
crate::named::named!(Precision);

/// Which kernel family runs the matmuls and attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// The adapter's own: CPU adapters (lavapipe, SwiftShader, any browser fallback adapter)
    /// take matmul_cpu.wgsl / attention_cpu.wgsl, 4 lanes per row and the matvec prefill;
    /// GPUs take matmul.wgsl at 16 lanes per row and matmul_tiled.wgsl for prefill.
    #[default]
    Auto,
    /// The family real GPUs run, on whatever adapter (a diagnostic: it makes a fallback
    /// adapter compile and run the kernels every GPU user gets). The `LLAMA_WEBGPU_*` variables
    /// still override single choices natively.
    Gpu,
}

impl crate::named::Named for Kernels {
    const WHAT: &'static str = "kernels";
    const NAMES: &'static [(Self, &'static [&'static str])] = &[(Self::Auto, &["auto"]), (Self::Gpu, &["gpu"])];
}
crate::named::named!(Kernels);

#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    pub precision: Precision,
    /// Cap on any single buffer binding, below the device's own limit (to reproduce
    /// small-limit browsers). `None` = device limit.
    pub max_binding_size: Option<u64>,
    /// The adapter is a CPU rasterizer (lavapipe, SwiftShader): fewer threads per matmul row
    /// run faster there. Native adapters report their type; browsers only say "fallback".
    pub cpu_adapter: bool,
    /// The kernel family: the adapter's own, or the GPU one everywhere.
    pub kernels: Kernels,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

/// Errors reported asynchronously by wgpu (validation, OOM, device loss) land here and are
/// turned into `Error`s at the next check instead of panicking.
#[derive(Default)]
struct ErrorSink {
    error: Option<Error>,
    lost: Option<String>,
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    /// Features enabled on the device.
    pub features: wgpu::Features,
    /// Everything the adapter offers (reported to users; `features` is what we enabled).
    pub adapter_features: wgpu::Features,
    pub limits: wgpu::Limits,
    /// Use f16 storage (KV cache) and f16 kernels.
    pub use_f16: bool,
    /// Largest binding we allow (device limit, possibly capped by the user).
    pub max_binding: u64,
    /// Matmul threads per weight row. CPU adapters (lavapipe) pay for every workgroup
    /// reduction step, so they get few lanes per row (measured: 4 is ~2x faster than 16 on
    /// lavapipe); GPUs get 16 for coalesced loads. `LLAMA_WEBGPU_MM_TPR` overrides (1..64, power of 2).
    pub matmul_tpr: u32,
    /// Reduce matmul lanes with subgroup shuffles: the adapter has SUBGROUP (enabled on the
    /// device then) and `LLAMA_WEBGPU_SUBGROUPS` is not `0`. A plain field, so tests can force
    /// the workgroup-memory fallback. In the browser this is a feature check too: wgpu 30's
    /// WebGPU backend does not report `subgroups` yet, so it stays false there until it does.
    pub subgroups: bool,
    /// Smallest subgroup the adapter may run (lanes of a row must fit in one).
    pub subgroup_min_size: u32,
    /// Largest subgroup the adapter may run.
    pub subgroup_max_size: u32,
    /// Passes of several tokens use the tiled prefill matmul (32 × 32 tiles through workgroup
    /// memory) on GPUs; CPU adapters (and `LLAMA_WEBGPU_TILED=0`) take the matvec with
    /// 8-token tiles; `LLAMA_WEBGPU_TILED=1` forces the tiles.
    pub tiled_prefill: bool,
    /// CPU adapters take matmul_cpu.wgsl: one weight row per invocation, so activation loads
    /// are the same in every lane (one broadcast load on a SIMD CPU) and nothing is reduced
    /// across lanes. `LLAMA_WEBGPU_CPU_MATMUL=0|1` forces it off or on.
    pub cpu_matmul: bool,
    sink: Arc<Mutex<ErrorSink>>,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
}

/// The adapter we run on (and `auto` probes): high performance, no fallback forced.
pub async fn request_adapter() -> std::result::Result<wgpu::Adapter, wgpu::RequestAdapterError> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        })
        .await
}

impl Gpu {
    pub async fn new(opts: &GpuOptions) -> Result<Gpu> {
        let adapter =
            request_adapter().await.map_err(|e| Error::NoAdapter(format!("{e} (is WebGPU / Vulkan available?)")))?;
        let info = adapter.get_info();
        let available = adapter.features();
        let use_f16 = match opts.precision {
            Precision::F32 => false,
            Precision::Auto => available.contains(wgpu::Features::SHADER_F16),
            Precision::F16 if available.contains(wgpu::Features::SHADER_F16) => true,
            Precision::F16 => {
                return Err(Error::InvalidArgument(format!(
                    "precision f16 requested but adapter '{}' lacks shader-f16",
                    info.name
                )))
            }
        };
        let mut features = wgpu::Features::empty();
        if use_f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        let subgroups = available.contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size >= 2
            && std::env::var("LLAMA_WEBGPU_SUBGROUPS").map_or(true, |v| v != "0");
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        // Ask for everything the adapter offers: the defaults (128 MiB bindings, 256 MiB
        // buffers) are far below what real adapters allow.
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("llama-webgpu"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Device(format!("request_device failed: {e}")))?;

        let sink = Arc::new(Mutex::new(ErrorSink::default()));
        let s = sink.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let err = match e {
                wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory(format!("GPU: {e}")),
                _ => Error::Device(e.to_string()),
            };
            if let Ok(mut g) = s.lock() {
                g.error.get_or_insert(err);
            }
        }));
        let s = sink.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut g) = s.lock() {
                g.lost = Some(format!("{reason:?}: {msg}"));
            }
        });

        let device_max = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let max_binding = opts.max_binding_size.map_or(device_max, |m| m.min(device_max));
        // the CPU-adapter kernel family, unless the GPU one is asked for
        let cpu_family =
            opts.kernels == Kernels::Auto && (opts.cpu_adapter || info.device_type == wgpu::DeviceType::Cpu);
        if max_binding < 1 << 20 {
            return Err(Error::LimitsTooSmall(format!("max binding size {max_binding} bytes is below 1 MiB")));
        }
        Ok(Gpu {
            device,
            queue,
            adapter: AdapterSummary {
                name: info.name,
                backend: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
                driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            },
            features,
            adapter_features: available,
            limits,
            use_f16,
            max_binding,
            matmul_tpr: matmul_tpr(cpu_family),
            subgroups,
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            // measured on lavapipe: the 8-token matvec prefills 1.6x faster than the tiles there
            tiled_prefill: match std::env::var("LLAMA_WEBGPU_TILED").as_deref() {
                Ok("0") => false,
                Ok(_) => true,
                Err(_) => !cpu_family,
            },
            cpu_matmul: match std::env::var("LLAMA_WEBGPU_CPU_MATMUL").as_deref() {
                Ok("0") => false,
                Ok(_) => true,
                Err(_) => cpu_family,
            },
            sink,
            pipelines: Mutex::new(HashMap::new()),
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(opts: &GpuOptions) -> Result<Gpu> {
        pollster::block_on(Self::new(opts))
    }

    /// Turns errors wgpu reported asynchronously into a typed error (once).
    pub fn check(&self) -> Result<()> {
        let mut g = self.sink.lock().map_err(|_| Error::Device("error sink poisoned".into()))?;
        if let Some(l) = &g.lost {
            return Err(Error::DeviceLost(l.clone()));
        }
        match g.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A storage buffer of `size` bytes (rounded up to 4), zero-initialized by wgpu.
    pub fn storage(&self, label: &str, size: u64) -> Result<wgpu::Buffer> {
        let size = size.max(4).next_multiple_of(4);
        if size > self.limits.max_buffer_size {
            return Err(Error::LimitsTooSmall(format!(
                "buffer '{label}' needs {size} bytes, device max_buffer_size is {}",
                self.limits.max_buffer_size
            )));
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }))
    }

    /// A uniform buffer holding `params` (a kernel's `Params` struct, mirrored in its WGSL).
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, params: &T) -> wgpu::Buffer {
        let bytes = bytemuck::bytes_of(params);
        let size = (bytes.len() as u64).max(16).next_multiple_of(16);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buf, 0, bytes);
        buf
    }

    /// Storage buffer initialised from `data` (small things: norms, test inputs).
    pub fn storage_from(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer> {
        let buf = self.storage(label, data.len() as u64)?;
        self.write(&buf, 0, data);
        Ok(buf)
    }

    /// Writes `data` at `offset`; pads the tail to the 4-byte copy alignment.
    pub fn write(&self, buf: &wgpu::Buffer, offset: u64, data: &[u8]) {
        if data.len().is_multiple_of(4) {
            self.queue.write_buffer(buf, offset, data);
        } else {
            let mut v = data.to_vec();
            v.resize(data.len().next_multiple_of(4), 0);
            self.queue.write_buffer(buf, offset, &v);
        }
    }

    /// Compiles (once per key) a compute pipeline with the explicit layout of `slots` (the
    /// same list whose [`decls`] the source declares).
    pub fn pipeline(&self, key: &str, source: &str, slots: &[Slot]) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = self.pipelines.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(p);
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(key),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match b.access {
                    Binding::Read => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Binding::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: false },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Binding::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let bgl = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(key), entries: &entries });
        let layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(key),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(key),
            layout: Some(&layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: None,
        });
        if let Some(e) = block_on_scope(scope.pop()) {
            return Err(Error::Device(format!("compiling kernel '{key}': {e}")));
        }
        let p = Arc::new(pipeline);
        if let Ok(mut m) = self.pipelines.lock() {
            m.insert(key.to_string(), p.clone());
        }
        Ok(p)
    }

    pub fn bind_group(&self, pipeline: &wgpu::ComputePipeline, buffers: &[BufSlice<'_>]) -> wgpu::BindGroup {
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buffer,
                    offset: b.offset,
                    size: b.size.and_then(wgpu::BufferSize::new),
                }),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries })
    }

    /// Copies `size` bytes at `offset` of `src` back to the host.
    pub async fn read(&self, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let size4 = size.next_multiple_of(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: size4.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, offset, &staging, 0, size4);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.check()?;
                return Err(Error::Device(format!("readback failed: {e}")));
            }
            Err(_) => return Err(Error::Device("readback cancelled".into())),
        }
        let out = match staging.slice(..).get_mapped_range() {
            Ok(view) => view[..size as usize].to_vec(),
            Err(e) => return Err(Error::Device(format!("readback mapping: {e}"))),
        };
        staging.unmap();
        self.check()?;
        Ok(out)
    }

    pub async fn read_f32(&self, src: &wgpu::Buffer, offset: u64, len: usize) -> Result<Vec<f32>> {
        let bytes = self.read(src, offset, len as u64 * 4).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Submits pending `write_buffer` copies and (natively) waits, so their staging memory
    /// is released; browsers copy at `writeBuffer` time already.
    pub fn flush_writes(&self) -> Result<()> {
        self.queue.submit([]);
        self.wait()
    }

    /// Blocks until submitted work finishes (native); the browser resolves mapping on its own.
    pub fn wait(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Device(format!("poll: {e}")))?;
        self.check()
    }
}

fn matmul_tpr(cpu_family: bool) -> u32 {
    let env = std::env::var("LLAMA_WEBGPU_MM_TPR").ok().and_then(|v| v.parse::<u32>().ok());
    match env {
        Some(t) if t.is_power_of_two() && t <= 64 => t,
        _ if cpu_family => 4,
        _ => 16,
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn block_on_scope<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// On the web the scope result arrives asynchronously; errors surface through the
/// uncaptured-error sink instead (checked after each step).
#[cfg(target_arch = "wasm32")]
fn block_on_scope<F: std::future::Future<Output = Option<wgpu::Error>>>(_f: F) -> Option<wgpu::Error> {
    None
}

/// How a kernel sees each binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Read,
    ReadWrite,
    Uniform,
}

/// One binding of a kernel: how it is accessed, its WGSL variable and type. A kernel's slots,
/// in binding order, make both its WGSL declarations ([`decls`]) and its pipeline layout
/// ([`Gpu::pipeline`]); its bind groups list buffers in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub access: Binding,
    pub name: &'static str,
    pub ty: &'static str,
}

impl Slot {
    pub const fn read(name: &'static str, ty: &'static str) -> Self {
        Slot { access: Binding::Read, name, ty }
    }
    pub const fn read_write(name: &'static str, ty: &'static str) -> Self {
        Slot { access: Binding::ReadWrite, name, ty }
    }
    pub const fn uniform(name: &'static str, ty: &'static str) -> Self {
        Slot { access: Binding::Uniform, name, ty }
    }
}

/// The WGSL `@binding` declarations of `slots`, numbered in order.
pub fn decls(slots: &[Slot]) -> String {
    let mut s = String::new();
    for (i, b) in slots.iter().enumerate() {
        let space = match b.access {
            Binding::Read => "storage, read",
            Binding::ReadWrite => "storage, read_write",
            Binding::Uniform => "uniform",
        };
        s.push_str(&format!("@group(0) @binding({i}) var<{space}> {}: {};\n", b.name, b.ty));
    }
    s
}

/// A (part of a) buffer to bind.
#[derive(Clone, Copy)]
pub struct BufSlice<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: Option<u64>,
}

impl<'a> From<&'a wgpu::Buffer> for BufSlice<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> Self {
        BufSlice { buffer, offset: 0, size: None }
    }
}
