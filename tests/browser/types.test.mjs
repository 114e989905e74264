// pkg/index.d.ts type-checks the documented usage (tests/types/usage.ts) with TypeScript.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");

test("TypeScript declarations check the documented usage and reject misuse", () => {
  const r = spawnSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(ROOT, "tests/types/tsconfig.json")], { encoding: "utf8" });
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`);
});

// The package's own JS (`// @ts-check` in each file) against index.d.ts and the DOM/worker
// libraries: JSDoc types and the index.d.ts types it imports (tests/types/tsconfig.pkg.json).
test("the package's JS type-checks (// @ts-check against index.d.ts)", () => {
  const r = spawnSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(ROOT, "tests/types/tsconfig.pkg.json")], { encoding: "utf8" });
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`);
});
