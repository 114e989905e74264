//! Test hooks for the package's dead-engine handling: deliberate WebAssembly traps, as a
//! panic or a failed allocation on hostile input would cause. Not part of the API (the JS
//! side only reaches them through `Model._crashEngine`). Built only with the cargo feature
//! `test-hooks` (`scripts/build-pkg.sh --test`), never into the published package.

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

fn trap(kind: &str) -> JsValue {
    match kind {
        "panic" => panic!("deliberate test trap"),
        "oom" => {
            // grow until the allocator fails: handle_alloc_error aborts, i.e. traps
            let mut held: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut b = Vec::with_capacity(64 << 20);
                b.push(1u8);
                held.push(b);
            }
        }
        _ => JsValue::from_str("unknown trap kind"),
    }
}

/// Traps inside the async executor (the way a trap during a load or a generation happens:
/// the call's promise never settles, the trap surfaces as an uncaught error).
#[wasm_bindgen(js_name = testTrapAsync)]
pub fn test_trap_async(kind: String) -> Promise {
    future_to_promise(async move {
        JsFuture::from(Promise::resolve(&JsValue::NULL)).await?;
        Ok(trap(&kind))
    })
}

/// Traps in a synchronous call (the call throws a `WebAssembly.RuntimeError`).
#[wasm_bindgen(js_name = testTrapSync)]
pub fn test_trap_sync(kind: String) -> JsValue {
    trap(&kind)
}
