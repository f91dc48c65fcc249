// Loads a `wado import` directory into the local R2 bucket that `wrangler dev` serves
// (edge/.wrangler/state/v3/r2, bucket "wado" of wrangler.toml), through Miniflare's API,
// which wrangler itself runs on: one process for every object instead of one per object.
//
//   node edge/load-local-r2.mjs DATA_DIR [--persist DIR]
import { Miniflare } from "miniflare";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const data = args[0];
if (!data || !fs.statSync(data, { throwIfNoEntry: false })?.isDirectory()) {
  console.error("usage: node edge/load-local-r2.mjs DATA_DIR [--persist DIR]");
  process.exit(2);
}
const pi = args.indexOf("--persist");
const persist = pi >= 0 ? args[pi + 1] : path.join(here, ".wrangler/state/v3/r2");

function* walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.isFile() && !e.name.startsWith(".tmp-")) yield p;
  }
}

const mf = new Miniflare({
  modules: true,
  script: "export default { fetch() { return new Response(null, { status: 204 }); } }",
  r2Buckets: { BUCKET: "wado" },
  r2Persist: persist,
});
try {
  const bucket = await mf.getR2Bucket("BUCKET");
  let n = 0;
  let bytes = 0;
  for (const file of walk(data)) {
    const key = path.relative(data, file).split(path.sep).join("/");
    // A copy with its own ArrayBuffer: Node Buffers share pooled ones, which the proxy refuses.
    const body = new Uint8Array(fs.readFileSync(file));
    await bucket.put(key, body);
    n += 1;
    bytes += body.length;
  }
  console.log(`loaded ${n} objects (${bytes} bytes) into local R2 bucket wado at ${persist}`);
} finally {
  await mf.dispose();
}
