// Drives the demo in headless Chromium (Debian's, through playwright-core) and prints what a
// person would see, as JSON: the status line, the attribute table, the request log and the
// canvas's RGBA pixels (base64). The Rust test (tests/tests/browser.rs) compares them with
// DCMTK's rendering of the same frame.
//   node tests/browser/demo.mjs URL
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const url = process.argv[2];
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "wado-chromium-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const consoleErrors = [];
try {
  const page = await ctx.newPage();
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => ["drawn", "error"].includes(document.body.dataset.state), null, { timeout: 60000 });
  const out = await page.evaluate(() => {
    const c = document.getElementById("canvas");
    const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let bin = "";
    for (let i = 0; i < data.length; i += 0x8000) bin += String.fromCharCode(...data.subarray(i, i + 0x8000));
    const rows = (id) => [...document.getElementById(id).tBodies[0].rows];
    return {
      state: document.body.dataset.state,
      status: document.getElementById("status").textContent,
      attrs: Object.fromEntries(rows("attrs").map((r) => [r.dataset.tag, r.cells[3].textContent])),
      keywords: Object.fromEntries(rows("attrs").map((r) => [r.dataset.tag, r.cells[1].textContent])),
      log: rows("log").map((r) => [...r.cells].map((c) => c.textContent)),
      studies: rows("studies").map((r) => r.dataset.uid),
      canvas: { width: c.width, height: c.height, transferSyntax: c.dataset.transferSyntax || "", rgba: btoa(bin) },
    };
  });
  out.consoleErrors = consoleErrors;
  process.stdout.write(JSON.stringify(out));
} finally {
  await ctx.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
