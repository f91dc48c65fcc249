// The worker's entry: instantiate the wasm module once per isolate, hand every request to the
// Rust handler (`#[event(fetch)]` in edge/src/lib.rs). Written by hand so the build needs no
// worker-build download (see docs/WASM.md).
import wasmModule from "./dist/index_bg.wasm";
import { initSync, fetch as wasmFetch, scheduled as wasmScheduled } from "./dist/index.js";

initSync({ module: wasmModule });

export default {
  async fetch(request, env, ctx) {
    return wasmFetch(request, env, ctx);
  },
  // The cron trigger: a read-through cache follows its origin's change feed.
  async scheduled(event, env, ctx) {
    return wasmScheduled(event, env, ctx);
  },
};
