// The npm dicomweb-client (unmodified, its UMD build) in headless Chromium (Debian's, through
// playwright-core), as a viewer uses it: storeInstances() sends Part-10 files to a DICOMweb
// server (cross-origin: the server must allow the page's origin), then searchForInstances()
// looks for each. Prints JSON: the status and body of the store response, and the SOP Instance
// UIDs each search found.
//   node tests/browser/dwc_store.mjs SERVICE_ROOT FILE...
import { chromium } from "playwright-core";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const [root, ...files] = process.argv.slice(2);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const client = fs.readFileSync(path.join(repo, "node_modules/dicomweb-client/build/dicomweb-client.js"));

// The page and the files, from another origin than the server's.
const site = http.createServer((req, res) => {
  if (req.url === "/") {
    res.setHeader("Content-Type", "text/html");
    res.end('<!doctype html><script src="/dicomweb-client.js"></script>');
  } else if (req.url === "/dicomweb-client.js") {
    res.setHeader("Content-Type", "text/javascript");
    res.end(client);
  } else if (req.url.startsWith("/file/")) {
    const i = Number(req.url.slice(6));
    res.setHeader("Content-Type", "application/octet-stream");
    res.end(fs.readFileSync(files[i]));
  } else {
    res.statusCode = 404;
    res.end();
  }
});
await new Promise((r) => site.listen(0, "127.0.0.1", r));
const page_url = `http://127.0.0.1:${site.address().port}/`;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "wado-dwc-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});
try {
  const page = await ctx.newPage();
  await page.goto(page_url);
  const out = await page.evaluate(async ({ root, n }) => {
    const buffers = [];
    for (let i = 0; i < n; i++) {
      buffers.push(await (await fetch(`/file/${i}`)).arrayBuffer());
    }
    const dwc = new DICOMwebClient.api.DICOMwebClient({ url: root });
    let stored;
    try {
      const body = await dwc.storeInstances({ datasets: buffers });
      stored = { ok: true, body: typeof body === "string" ? body : new TextDecoder().decode(body) };
    } catch (e) {
      stored = { ok: false, error: String(e), status: e.status };
    }
    const found = await dwc.searchForInstances({ queryParams: { limit: "1000" } });
    return { stored, found: found.map((r) => r["00080018"].Value[0]) };
  }, { root, n: files.length });
  console.log(JSON.stringify(out));
} finally {
  await ctx.close();
  site.close();
}
