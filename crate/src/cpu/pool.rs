//! Threads for the CPU executor: work is split into chunks of an output slice (matmul rows,
//! attention heads) that run in parallel. Natively `threads − 1` workers plus the calling
//! thread (all cores by default); in wasm one thread (threads sharing one memory need wasm
//! threads, which stable Rust's wasm32 target cannot build: see BENCHMARKS.md; the browser's
//! extra threads are row shards in workers of their own instead, [`super::shards`]).
//!
//! Why not rayon: a decoded token is ~240 parallel sections of 10–50 µs each, and rayon's
//! `install` from outside the pool parks the caller on a futex and wakes a sleeping worker
//! for every one of them; measured, that was a third of the decode time on 2 cores. Here the
//! caller takes chunks too, and idle workers spin for a while (`SPIN`) before they sleep, as
//! ggml's thread pool does, so a section starts and ends in well under a microsecond.

/// How long an idle worker polls for the next section before it sleeps: longer than the gaps
/// inside a token (norms, rope: microseconds), short enough not to burn a core while the
/// caller samples, streams text or waits for the user. It sleeps sooner once another pool of
/// the process starts a section (a speculative draft model's, beside the target's).
#[cfg(not(target_arch = "wasm32"))]
const SPIN: std::time::Duration = std::time::Duration::from_millis(2);

pub struct Pool {
    threads: usize,
    #[cfg(not(target_arch = "wasm32"))]
    crew: Option<crew::Crew>,
}

impl Pool {
    /// `threads = 0`: every core the machine has.
    pub fn new(threads: usize) -> Pool {
        #[cfg(not(target_arch = "wasm32"))]
        return Self::with_spin(threads, SPIN);
        #[cfg(target_arch = "wasm32")]
        {
            let _ = threads;
            Pool { threads: 1 }
        }
    }

    /// [`Pool::new`] whose idle workers poll for `spin` before they sleep.
    #[cfg(not(target_arch = "wasm32"))]
    fn with_spin(threads: usize, spin: std::time::Duration) -> Pool {
        {
            let threads =
                if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
            // one thread needs no workers; workers that cannot start leave the caller alone
            let crew = (threads > 1).then(|| crew::Crew::start(threads - 1, spin)).flatten();
            let threads = crew.as_ref().map_or(1, |c| c.workers() + 1);
            Pool { threads, crew }
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
        let (len, tasks) = (out.len(), out.len().div_ceil(size));
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(c) = self.crew.as_ref().filter(|_| tasks > 1) {
            let base = out.as_mut_ptr() as usize;
            c.run(tasks, &|i| {
                let start = i * size;
                let n = size.min(len - start);
                // SAFETY: every task index is handed out once (`Crew::run`), so the chunks
                // are disjoint parts of `out`, which outlives the run.
                let chunk = unsafe { std::slice::from_raw_parts_mut((base as *mut f32).add(start), n) };
                f(i, chunk);
            });
            return;
        }
        let _ = (len, tasks);
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

#[cfg(not(target_arch = "wasm32"))]
mod crew {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    /// The section being run: a borrowed task body, valid until every worker has left it.
    #[derive(Clone, Copy)]
    struct Job {
        f: *const (dyn Fn(usize) + Sync),
        tasks: usize,
    }
    // SAFETY: `f` is `Sync`, and `Crew::run` keeps it alive until no worker uses it.
    unsafe impl Send for Job {}

    struct Shared {
        /// Bumped once per section (after `job` and `next` are set).
        epoch: AtomicU64,
        job: Mutex<Option<Job>>,
        /// The next task index to hand out.
        next: AtomicUsize,
        /// Workers not yet done with the current section.
        busy: AtomicUsize,
        /// Sleeping workers wait here for the next epoch.
        sleep: Mutex<()>,
        wake: Condvar,
        stop: AtomicBool,
        panicked: AtomicBool,
        /// Held by the thread running a section: a second thread calling `run` meanwhile
        /// works alone rather than replacing the job under the workers.
        section: Mutex<()>,
        /// How long an idle worker polls before it sleeps (`super::SPIN`).
        spin: Duration,
        /// Workers asleep (waiting for `wake`).
        asleep: AtomicUsize,
    }

    impl Shared {
        fn work(&self, job: Job) {
            loop {
                let i = self.next.fetch_add(1, AcqRel);
                if i >= job.tasks {
                    return;
                }
                // SAFETY: see `Job`.
                let f = unsafe { &*job.f };
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i))).is_err() {
                    self.panicked.store(true, Release);
                }
            }
        }
    }

    /// Sections started by every crew of the process. Two models with pools of their own (a
    /// speculative target and its draft model) take turns on the same cores: an idle worker
    /// of one that went on polling while the other runs takes a core from the busy crew's
    /// threads, and each of that crew's sections then ends only when the scheduler gets back
    /// to its descheduled thread. So an idle worker sleeps as soon as another crew starts a
    /// section.
    static SECTIONS: AtomicU64 = AtomicU64::new(0);

    thread_local! {
        /// Set on workers, and on a caller inside `run`: a section started from a task runs
        /// on that thread alone instead of waiting for itself.
        static INSIDE: Cell<bool> = const { Cell::new(false) };
    }

    pub struct Crew {
        shared: Arc<Shared>,
        handles: Vec<std::thread::JoinHandle<()>>,
    }

    impl Crew {
        /// `None` when no worker thread could be started.
        pub fn start(workers: usize, spin: Duration) -> Option<Crew> {
            let shared = Arc::new(Shared {
                epoch: AtomicU64::new(0),
                job: Mutex::new(None),
                next: AtomicUsize::new(0),
                busy: AtomicUsize::new(0),
                sleep: Mutex::new(()),
                wake: Condvar::new(),
                stop: AtomicBool::new(false),
                panicked: AtomicBool::new(false),
                section: Mutex::new(()),
                spin,
                asleep: AtomicUsize::new(0),
            });
            let mut handles = Vec::new();
            for i in 0..workers {
                let s = shared.clone();
                match std::thread::Builder::new().name(format!("cpu-{i}")).spawn(move || worker(&s)) {
                    Ok(h) => handles.push(h),
                    Err(_) => break,
                }
            }
            let crew = Crew { shared, handles };
            (!crew.handles.is_empty()).then_some(crew)
        }

        pub fn workers(&self) -> usize {
            self.handles.len()
        }

        /// Workers asleep now.
        #[cfg(test)]
        pub fn asleep(&self) -> usize {
            self.shared.asleep.load(Acquire)
        }

        /// Runs `f(0..tasks)` on the workers and the calling thread; returns when all are done.
        pub fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
            let s = &*self.shared;
            let section = if INSIDE.get() { Err(std::sync::TryLockError::WouldBlock) } else { s.section.try_lock() };
            let section = match section {
                Ok(g) => Some(g),
                Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            let Some(section) = section else {
                (0..tasks).for_each(f);
                return;
            };
            INSIDE.set(true);
            // SAFETY (lifetime erased): this function does not return before `busy` is 0,
            // i.e. before every worker has stopped using `f`.
            let f_static: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
            *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(Job { f: f_static, tasks });
            s.next.store(0, Release);
            s.busy.store(self.handles.len(), Release);
            s.epoch.fetch_add(1, AcqRel);
            // after the epoch: this crew's workers that see the count move see their section
            SECTIONS.fetch_add(1, Release);
            {
                let _g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
                s.wake.notify_all();
            }
            s.work(Job { f: f_static, tasks });
            while s.busy.load(Acquire) != 0 {
                std::hint::spin_loop();
            }
            INSIDE.set(false);
            let panicked = s.panicked.swap(false, AcqRel);
            drop(section);
            if panicked {
                panic!("a CPU worker task panicked");
            }
        }
    }

    fn worker(s: &Shared) {
        INSIDE.set(true);
        let mut seen = 0u64;
        loop {
            // poll for the next section, then sleep
            let (since, sections) = (Instant::now(), SECTIONS.load(Acquire));
            let mut spins = 0u32;
            while s.epoch.load(Acquire) == seen && !s.stop.load(Acquire) {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(256) && (SECTIONS.load(Acquire) != sections || since.elapsed() > s.spin) {
                    let mut g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
                    while s.epoch.load(Acquire) == seen && !s.stop.load(Acquire) {
                        s.asleep.fetch_add(1, AcqRel);
                        g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                        s.asleep.fetch_sub(1, AcqRel);
                    }
                }
            }
            if s.stop.load(Acquire) {
                return;
            }
            seen = s.epoch.load(Acquire);
            let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(job) = job {
                s.work(job);
            }
            s.busy.fetch_sub(1, AcqRel);
        }
    }

    impl Drop for Crew {
        fn drop(&mut self) {
            self.shared.stop.store(true, Release);
            {
                let _g = self.shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
                self.shared.wake.notify_all();
            }
            for h in self.handles.drain(..) {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pool;

    #[test]
    fn every_chunk_runs_once_with_its_own_index() {
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads);
            for (n, size) in [(0, 4), (1, 4), (37, 4), (1000, 7), (64, 64)] {
                let mut out = vec![0f32; n];
                pool.chunks(&mut out, size, |i, c| {
                    for (j, v) in c.iter_mut().enumerate() {
                        *v += (i * size + j) as f32 + 1.0;
                    }
                });
                let want: Vec<f32> = (0..n).map(|k| k as f32 + 1.0).collect();
                assert_eq!(out, want, "threads {threads}, n {n}, size {size}");
            }
        }
    }

    #[test]
    fn a_section_inside_a_task_runs_on_that_thread() {
        let pool = Pool::new(2);
        let mut out = vec![0f32; 8];
        pool.chunks(&mut out, 2, |_, c| {
            let mut inner = vec![0f32; 4];
            pool.chunks(&mut inner, 1, |k, v| v[0] = k as f32);
            c.fill(inner.iter().sum());
        });
        assert_eq!(out, vec![6.0; 8]);
    }

    /// An idle worker sleeps once another pool starts a section (a speculative target and
    /// its draft model take turns on the same cores), not only after its polling time: here
    /// that time is an hour, so only the other pool's section can put it to sleep.
    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn an_idle_worker_sleeps_while_another_pool_works() {
        let idle = Pool::with_spin(2, std::time::Duration::from_secs(3600));
        let busy = Pool::new(2);
        let Some(crew) = idle.crew.as_ref() else { return };
        let mut out = vec![0f32; 64];
        idle.chunks(&mut out, 4, |i, c| c.fill(i as f32));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // the worker's polling may have begun after a section of `busy`: run more
        while crew.asleep() == 0 && std::time::Instant::now() < deadline {
            busy.chunks(&mut out, 4, |i, c| c.fill(i as f32));
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(crew.asleep(), 1, "the idle pool's worker still polls");
        // and wakes for its own pool's next section
        idle.chunks(&mut out, 1, |i, c| c.fill(i as f32));
        assert_eq!(out, (0..64).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[test]
    fn two_threads_sharing_a_pool_both_get_every_chunk() {
        let pool = Pool::new(2);
        std::thread::scope(|sc| {
            for k in 0..2 {
                let pool = &pool;
                sc.spawn(move || {
                    for round in 0..200 {
                        let mut out = vec![0f32; 64];
                        pool.chunks(&mut out, 4, |i, c| c.fill((i + k + round) as f32));
                        let want: Vec<f32> = (0..64).map(|j| (j / 4 + k + round) as f32).collect();
                        assert_eq!(out, want);
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_pool_still_works() {
        let pool = Pool::new(2);
        let mut out = vec![0f32; 16];
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.chunks(&mut out, 1, |i, _| assert!(i != 9, "task 9"));
        }));
        assert!(r.is_err());
        pool.chunks(&mut out, 4, |_, c| c.fill(2.0));
        assert_eq!(out, vec![2.0; 16]);
    }
}
