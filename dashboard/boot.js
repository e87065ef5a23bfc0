// Loads the dashboard's WebAssembly module (wasm-bindgen's glue, app.js) and starts it.
import init from "/app.js";
const started = performance.now();
await init({ module_or_path: "/app_bg.wasm" });
window.fungiStartedMs = performance.now() - started;
