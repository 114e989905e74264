//! Threads for the CPU executor: work is split into chunks of an output slice (matmul rows,
//! attention heads) that run in parallel. Natively a rayon pool of `threads` workers (all
//! cores by default); in wasm one thread (threads sharing one memory need wasm threads, which
//! stable Rust's wasm32 target cannot build: see BENCHMARKS.md; the browser's extra threads
//! are row shards in workers of their own instead, [`super::shards`]).

pub struct Pool {
    threads: usize,
    #[cfg(not(target_arch = "wasm32"))]
    pool: Option<rayon::ThreadPool>,
}

impl Pool {
    /// `threads = 0`: every core the machine has.
    pub fn new(threads: usize) -> Pool {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let threads =
                if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
            // one thread needs no pool; a pool that cannot start also runs on the caller
            let pool = (threads > 1)
                .then(|| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .thread_name(|i| format!("cpu-{i}"))
                        .build()
                        .ok()
                })
                .flatten();
            let threads = if pool.is_some() { threads } else { 1 };
            Pool { threads, pool }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = threads;
            Pool { threads: 1 }
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Calls `f(i, chunk)` for the `i`-th `size`-long chunk of `out`, in parallel.
    pub fn chunks<F>(&self, out: &mut [f32], size: usize, f: F)
    where
        F: Fn(usize, &mut [f32]) + Sync + Send,
    {
        let size = size.max(1);
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(p) = &self.pool {
            use rayon::prelude::*;
            p.install(|| out.par_chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c)));
            return;
        }
        for (i, c) in out.chunks_mut(size).enumerate() {
            f(i, c);
        }
    }

    /// A chunk size that gives every thread a few chunks of `n` items (whole `unit`s).
    pub fn split(&self, n: usize, unit: usize) -> usize {
        let units = n.div_ceil(unit.max(1));
        let per = units.div_ceil(self.threads * 4).max(1);
        per * unit.max(1)
    }
}
