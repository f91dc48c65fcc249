// Drives the real OHIF viewer (npm @ohif/app, its prebuilt dist/) in headless Chromium
// (Debian's, through playwright-core) against a DICOMweb server, with nothing in between:
// OHIF is served here as static files (SPA fallback to index.html) with an app-config.js
// pointing at the server, as a user deploys it. Prints JSON: per study, whether the viewport
// drew and the pixels of its canvas, and the server's thumbnail images it shows; the study
// list's text for a patient-name filter; every request OHIF made to the server, with its status.
//   node tests/browser/ohif.mjs OHIF_DIST SERVICE_ROOT '{"studies":[...],"patientName":"doe",
//        "thumbnailRendering":"wadors"|"thumbnailDirect"|"rendered","token":"ws1..."}'
// With a token (a share link's), each study is opened as the link does:
// /viewer?StudyInstanceUIDs=...&token=..., and each request says whether it carried it.
// Progressive loading (issue 27): "stackRetrieveOptions" goes into the data source as a site
// writes it (cornerstone's retrieve stages and options for stack viewports), "throttle"
// ({"mbit", "rttMs"}) emulates the link in Chromium, "warmup" is a study opened first and not
// reported (the viewer's code and codecs then in the browser's cache, as for a user who opened
// a study before), and "progressive": true waits, per study, for the first frame at full
// quality and reports the frame requests (range, status, bytes) and every image the viewport
// showed (cornerstone's quality status, width), in ms from the first frame request.
import { chromium } from "playwright-core";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";

const [distArg, root, specText] = process.argv.slice(2);
const dist = path.resolve(distArg);
const spec = JSON.parse(specText || "{}");

// The configuration a site deploying OHIF in front of wado writes (docs/OHIF.md).
const appConfig = `window.config = {
  routerBasename: null,
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  defaultDataSourceName: 'wado',
  dataSources: [{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'wado',
    configuration: {
      friendlyName: 'wado',
      name: 'wado',
      wadoUriRoot: ${JSON.stringify(root)},
      qidoRoot: ${JSON.stringify(root)},
      wadoRoot: ${JSON.stringify(root)},
      qidoSupportsIncludeField: true,
      imageRendering: 'wadors',
      thumbnailRendering: ${JSON.stringify(spec.thumbnailRendering || 'wadors')},
      enableStudyLazyLoad: true,
      supportsFuzzyMatching: false,
      supportsWildcard: true,
      staticWado: false,
      singlepart: 'bulkdata,video',
      bulkDataURI: { enabled: true },
      omitQuotationForMultipartRequest: true,
      ${spec.stackRetrieveOptions ? `stackRetrieveOptions: ${JSON.stringify(spec.stackRetrieveOptions)},` : ""}
    },
  }],
};`;

const types = {
  ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
  ".wasm": "application/wasm", ".json": "application/json", ".svg": "image/svg+xml",
  ".png": "image/png", ".ico": "image/x-icon", ".woff2": "font/woff2", ".woff": "font/woff",
};
const site = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/app-config.js") {
    res.writeHead(200, { "content-type": "text/javascript" });
    return res.end(appConfig);
  }
  let file = path.join(dist, path.normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, ""));
  if (!file.startsWith(path.resolve(dist)) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    file = path.join(dist, "index.html"); // the SPA's routes (/viewer, /)
  }
  // The viewer's content-hashed files are cached as a site serves them (immutable): a viewer
  // opened before has its code and codecs, and what the link carries is the images.
  const hashed = /[0-9a-f]{16}[.](js|wasm|css)$/.test(file);
  res.writeHead(200, {
    "content-type": types[path.extname(file)] || "application/octet-stream",
    ...(hashed ? { "cache-control": "public, max-age=31536000, immutable" } : {}),
  });
  fs.createReadStream(file).pipe(res);
});
await new Promise((r) => site.listen(0, "127.0.0.1", r));
const base = `http://127.0.0.1:${site.address().port}`;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "wado-ohif-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const requests = [];
const out = { studies: {}, requests, consoleErrors: [] };
try {
  const page = await ctx.newPage();
  if (spec.progressive) {
    // Every image a stack viewport is given, in the page's clock (the same as this process's).
    await page.addInitScript(() => {
      window.__shown = [];
      document.addEventListener("CORNERSTONE_STACK_NEW_IMAGE", (e) => {
        const image = e.detail && e.detail.image;
        if (image) window.__shown.push({ t: Date.now(), imageId: image.imageId,
          quality: image.imageQualityStatus, width: image.width });
      }, true);
    });
  }
  if (spec.throttle) {
    const cdp = await ctx.newCDPSession(page);
    await cdp.send("Network.enable");
    const bytesPerSecond = (spec.throttle.mbit * 1e6) / 8;
    await cdp.send("Network.emulateNetworkConditions", { offline: false,
      latency: spec.throttle.rttMs, downloadThroughput: bytesPerSecond, uploadThroughput: bytesPerSecond });
  }
  // The frame requests of the study being opened, and each one's entry by its request.
  let frameRequests = [];
  const frameEntry = new WeakMap();
  page.on("pageerror", (e) => out.consoleErrors.push(String(e)));
  if (process.env.OHIF_DEBUG) {
    page.on("console", (m) => process.stderr.write(`console ${m.type()}: ${m.text().slice(0, 400)}\n`));
    page.on("response", (r) => process.stderr.write(`${r.status()} ${r.url().slice(0, 200)}\n`));
  }
  page.on("console", (m) => { if (m.type() === "error") out.consoleErrors.push(m.text()); });
  page.on("response", async (r) => {
    if (!r.url().startsWith(root)) return;
    const entry = frameEntry.get(r.request());
    if (entry) {
      Object.assign(entry, { status: r.status(), contentRange: r.headers()["content-range"] || "" });
      entry.bytes = await r.body().then((b) => b.length, () => -1);
      entry.done = Date.now();
    }
    const method = r.request().method();
    const authorization = r.request().headers().authorization || "";
    requests.push({ url: r.url(), status: r.status(), method, t: Date.now(),
      withToken: spec.token !== undefined && authorization === `Bearer ${spec.token}` });
  });
  // Requests asked and not answered yet (any origin: the app's own files too), for a report of
  // what a study that did not show was waiting for.
  const pending = new Map();
  page.on("request", (r) => {
    pending.set(r, Date.now());
    if (spec.progressive && r.url().startsWith(root) && r.url().includes("/frames/")) {
      const entry = { asked: Date.now(), url: r.url(), range: r.headers().range || "" };
      frameEntry.set(r, entry);
      frameRequests.push(entry);
    }
  });
  page.on("requestfinished", (r) => pending.delete(r));
  page.on("requestfailed", (r) => {
    pending.delete(r);
    if (r.url().startsWith(root)) requests.push({ url: r.url(), status: 0, failure: r.failure()?.errorText || "" });
  });

  if (spec.patientName !== undefined) {
    // The work list, filtered as a user types into it (OHIF keeps the filter in the URL).
    await page.goto(`${base}/?patientName=${encodeURIComponent(spec.patientName)}`);
    const rows = () => page.$$eval("table tbody tr", (trs) =>
      trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.innerText.trim())).filter((r) => r.length > 1));
    let last = null;
    const started = Date.now();
    while (Date.now() - started < 90000) {
      await page.waitForTimeout(500);
      const now = JSON.stringify(await rows());
      // The search answered a second ago and the table has not changed since.
      const searched = requests.some((r) => r.url.includes("/studies?") && Date.now() - r.t > 1000);
      if (searched && now === last && now !== "[]") break;
      last = now;
    }
    out.studyList = JSON.parse(last || "[]");
  }

  // Each study: a UID (it must draw), or {uid, expect: "document"} (shown embedded, a PDF) or
  // {uid, expect: "open"} (a kind OHIF has no viewport for: opened, its metadata read).
  const open = async (uid, expect) => {
    const started = Date.now();
    frameRequests = [];
    const token = spec.token ? `&token=${encodeURIComponent(spec.token)}` : "";
    await page.goto(`${base}/viewer?StudyInstanceUIDs=${uid}${token}`);
    let result = { drawn: false, shown: false };
    while (Date.now() - started < 60000) {
      await page.waitForTimeout(250);
      result = await page.evaluate(() => {
        const notFound = document.querySelector('[data-cy="study-not-found-message"]');
        if (notFound) return { drawn: false, shown: false, notFound: true };
        const panes = [...document.querySelectorAll('[data-cy="viewport-pane"]')];
        const canvases = panes.flatMap((p) => [...p.querySelectorAll("canvas")])
          .filter((c) => c.width >= 32 && c.height >= 32);
        for (const c of canvases) {
          let data;
          try { data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data; } catch { continue; }
          let nonBlack = 0, min = 255, max = 0;
          for (let i = 0; i < data.length; i += 4) {
            const v = Math.max(data[i], data[i + 1], data[i + 2]);
            if (v > 0) nonBlack++;
            if (v < min) min = v;
            if (v > max) max = v;
          }
          if (nonBlack > 0 && max > min) {
            return { drawn: true, shown: true, width: c.width, height: c.height, nonBlack, min, max };
          }
        }
        // Documents and reports: a PDF in an embedded viewer, video, a structured report's text.
        const embedded = panes.some((p) => p.querySelector("iframe, object, embed, video"));
        const text = panes.map((p) => p.innerText.trim()).join(" ");
        return { drawn: false, shown: embedded, embedded, text: text.slice(0, 200), canvases: canvases.length };
      });
      if (result.drawn || result.notFound || (result.shown && Date.now() - started > 3000)) break;
      const metadataRead = requests.some((r) => r.url.includes(`/studies/${uid}/series/`) && r.url.endsWith("/metadata"));
      if (expect === "open" && metadataRead && Date.now() - started > 5000) break;
      // A study the viewer must not get: given ten seconds to show anything.
      if (expect === "absent" && Date.now() - started > 10000) break;
    }
    if (spec.progressive && result.drawn) {
      // Until the viewport shows a frame at full quality (cornerstone's FULL_RESOLUTION, 8).
      let shown = [];
      while (Date.now() - started < 90000) {
        shown = await page.evaluate(() => window.__shown);
        if (shown.some((s) => s.quality === 8)) break;
        await page.waitForTimeout(250);
      }
      const t0 = frameRequests.length ? frameRequests[0].asked : started;
      result.progress = {
        frames: frameRequests.map((f) => ({ ...f, asked: f.asked - t0, done: f.done - t0 })),
        shown: shown.map((s) => ({ ...s, t: s.t - t0 })),
      };
    }
    result.ms = Date.now() - started;
    return result;
  };
  if (spec.warmup) await open(spec.warmup, "image");
  const showed = (r, expect) =>
    expect === "image" ? r.drawn : expect === "document" ? r.shown
      : expect === "absent" ? true : !r.notFound;
  for (const entry of spec.studies || []) {
    const uid = typeof entry === "string" ? entry : entry.uid;
    const expect = typeof entry === "string" ? "image" : entry.expect;
    let result = await open(uid, expect);
    if (!showed(result, expect)) {
      // Once in a few hundred openings on a loaded 2-core machine, the page stays blank for
      // the whole minute. What it waited for is kept for the report, and the study is opened
      // again, as a user would reload: a server that does not answer fails both times.
      const now = Date.now();
      result.page = (await page.evaluate(() => document.body.innerText).catch(() => "")).slice(0, 300);
      result.pending = [...pending].map(([r, t]) => `${r.method()} ${r.url().slice(0, 200)} (${now - t} ms)`);
      const first = result;
      result = await open(uid, expect);
      result.firstTry = first;
    }
    // Let the viewer finish what it asked for (thumbnails, the rest of the series).
    await page.waitForTimeout(1500);
    // The study browser's thumbnails that are images from the server (thumbnailDirect):
    // loaded and decoded by the browser, or broken.
    result.thumbnails = await page.evaluate((root) => [...document.querySelectorAll("img")]
      .filter((i) => i.src.startsWith(root))
      .map((i) => ({ src: i.src, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight })), root);
    result.expect = expect;
    out.studies[uid] = result;
  }
  process.stdout.write(JSON.stringify(out));
} catch (e) {
  // What the page showed, for the failure's report.
  const page = ctx.pages()[0];
  if (page) {
    const text = await page.evaluate(() => document.body.innerText).catch(() => "");
    process.stderr.write(`page text: ${text.slice(0, 2000)}\n`);
    if (process.env.OHIF_DEBUG) await page.screenshot({ path: process.env.OHIF_DEBUG }).catch(() => {});
  }
  process.stderr.write(`requests: ${JSON.stringify(requests).slice(0, 4000)}\n`);
  throw e;
} finally {
  await ctx.close();
  site.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
