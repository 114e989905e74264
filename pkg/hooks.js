// @ts-check
// Test hooks: off in the published package. `scripts/build-pkg.sh --test` builds the engine
// with the cargo feature `test-hooks` into tests/.cache/pkg-test/ and replaces this file there
// with one that sets TEST_HOOKS and re-exports the wasm's trap functions (deliberate traps,
// for the dead-engine tests). Nothing here reaches the wasm module, so bundlers see no
// missing export.
export const TEST_HOOKS = false;
export const testTrapSync = null;
export const testTrapAsync = null;
