//! The process's heap, counted: a global allocator over the system's that keeps the live and
//! peak bytes (`info`/`bench` report them apart from the driver's copies of GPU buffers) and
//! can bound what one thread allocates inside a scope. The bound is what stops input that
//! grows memory without bound while it is interpreted — a chat template doubling a string in a
//! loop costs a few instructions per doubling, so minijinja's fuel does not catch it.
//!
//! Only the binaries that install [`Heap`] as `#[global_allocator]` (the CLI, the wasm module)
//! get the bound; elsewhere [`with_budget`] just runs its closure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::Relaxed};

/// The counting allocator. Install it with `#[global_allocator] static A: Heap = Heap;`.
pub struct Heap;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialized and without destructors, so the allocator may touch them.
    static BUDGET: Cell<usize> = const { Cell::new(usize::MAX) };
    static USED: Cell<usize> = const { Cell::new(0) };
    static WHAT: Cell<&'static str> = const { Cell::new("") };
}

/// Called (once) when a thread goes over its budget, with what was running and the budget.
/// It must not return into the allocation if it wants the allocation to succeed: when it
/// returns, the allocation fails (the process aborts natively; wasm traps).
pub type OverBudget = fn(what: &'static str, budget: usize);
static HOOK: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());

/// Bytes live on the heap now, and at most so far (0 unless [`Heap`] is the global allocator).
pub fn live() -> usize {
    LIVE.load(Relaxed)
}
pub fn peak() -> usize {
    PEAK.load(Relaxed)
}

/// What happens when a budget is exceeded: the CLI prints a typed error and exits.
pub fn set_over_budget_hook(hook: OverBudget) {
    HOOK.store(hook as *mut (), Relaxed);
}

/// Runs `f` with this thread's live allocations bounded to `bytes` more than they were. The
/// previous budget comes back when `f` returns or unwinds (a guard, so a panic caught further
/// up cannot leave the thread bounded for good).
pub fn with_budget<T>(what: &'static str, bytes: usize, f: impl FnOnce() -> T) -> T {
    struct Restore((usize, usize, &'static str));
    impl Drop for Restore {
        fn drop(&mut self) {
            BUDGET.set(self.0 .0);
            USED.set(self.0 .1);
            WHAT.set(self.0 .2);
        }
    }
    let _restore = Restore((BUDGET.get(), USED.get(), WHAT.get()));
    BUDGET.set(bytes);
    USED.set(0);
    WHAT.set(what);
    f()
}

/// Accounts `n` more bytes; false when they take the thread over its budget.
fn grow(n: usize) -> bool {
    let budget = BUDGET.get();
    if budget != usize::MAX {
        let used = USED.get().saturating_add(n);
        if used > budget {
            BUDGET.set(usize::MAX); // the hook may allocate (its message)
            let hook = HOOK.load(Relaxed);
            if !hook.is_null() {
                // SAFETY: only `set_over_budget_hook` stores here, from an `OverBudget`.
                let hook: OverBudget = unsafe { std::mem::transmute::<*mut (), OverBudget>(hook) };
                hook(WHAT.get(), budget);
            }
            BUDGET.set(budget);
            return false;
        }
        USED.set(used);
    }
    let now = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
    true
}

fn shrink(n: usize) {
    if BUDGET.get() != usize::MAX {
        USED.set(USED.get().saturating_sub(n));
    }
    LIVE.fetch_sub(n, Relaxed);
}

/// Accounts `n` bytes around the system allocation `f`: refused over budget, given back if the
/// system fails.
fn counted(n: usize, f: impl FnOnce() -> *mut u8) -> *mut u8 {
    if !grow(n) {
        return std::ptr::null_mut();
    }
    let p = f();
    if p.is_null() {
        shrink(n);
    }
    p
}

unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        counted(l.size(), || unsafe { System.alloc(l) })
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        counted(l.size(), || unsafe { System.alloc_zeroed(l) })
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        shrink(l.size());
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() && !grow(new - l.size()) {
            return std::ptr::null_mut();
        }
        let q = unsafe { System.realloc(p, l, new) };
        match (q.is_null(), new > l.size()) {
            (true, true) => shrink(new - l.size()),
            (false, false) => shrink(l.size() - new),
            _ => {}
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_comes_back_after_a_panic() {
        let before = BUDGET.get();
        let r = std::panic::catch_unwind(|| with_budget("test", 1 << 20, || panic!("inside the budget")));
        assert!(r.is_err());
        assert_eq!(BUDGET.get(), before, "a panic inside with_budget left the thread bounded");
        assert_eq!(WHAT.get(), "");
        assert_eq!(with_budget("x", 5, || BUDGET.get()), 5);
        assert_eq!(BUDGET.get(), before);
    }
}
