// The wado demo: talks WADO-RS to a service root, parses every multipart response with
// wado-core's parser and decodes frames with wado-core's decoders, both compiled to wasm.
// Deep links: ?root=URL&study=UID&series=UID&instance=UID&frame=N&wc=C&ww=W&decode=server
import init, { parseMultipart, displayInfo, renderFrame, keyword, canDecode } from "./pkg/wado_web_demo.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { root: "", study: null, series: null, instances: [], instance: null, display: null, frame: 1 };

function setStatus(text, kind = "") {
  $("status").textContent = text;
  $("status").className = kind;
  document.body.dataset.state = kind || "busy";
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

function param(contentType, name) {
  const m = new RegExp(`;\\s*${name}\\s*=\\s*("([^"]*)"|[^;\\s]+)`, "i").exec(contentType || "");
  return m ? (m[2] ?? m[1]) : null;
}

// One request: timed, logged with what was negotiated, multipart bodies split by the core.
async function wado(url, accept) {
  const t0 = performance.now();
  const resp = await fetch(url, { headers: { Accept: accept } });
  const body = new Uint8Array(await resp.arrayBuffer());
  const ms = performance.now() - t0;
  const contentType = resp.headers.get("Content-Type") || "";
  let parts = null;
  if (resp.ok && contentType.toLowerCase().startsWith("multipart/")) {
    parts = JSON.parse(parseMultipart(contentType, body)).map((p) => ({
      headers: Object.fromEntries(p.headers.map(([k, v]) => [k.toLowerCase(), v])),
      body: body.subarray(p.start, p.end),
    }));
  }
  const media = parts ? `${param(contentType, "type") || "?"} ×${parts.length}` : contentType.split(";")[0];
  const syntaxes = parts
    ? [...new Set(parts.map((p) => param(p.headers["content-type"], "transfer-syntax")).filter(Boolean))].join(" ")
    : param(contentType, "transfer-syntax") || "";
  const path = url.startsWith(state.root) ? url.slice(state.root.length) || "/" : url;
  $("log").tBodies[0].prepend(el("tr", {}, el("td", { title: url }, `GET ${path}`), el("td", {}, resp.status),
    el("td", {}, media), el("td", {}, syntaxes), el("td", {}, body.length), el("td", {}, ms.toFixed(1))));
  if (!resp.ok) {
    const reason = new TextDecoder().decode(body).trim();
    throw new Error(`${resp.status} for ${path}: ${reason}`);
  }
  return { contentType, body, parts };
}

async function json(url) {
  const r = await wado(url, "application/dicom+json");
  return JSON.parse(new TextDecoder().decode(r.body));
}

const first = (obj, tag) => obj?.[tag]?.Value?.[0];
const text = (obj, tag) => {
  const v = first(obj, tag);
  return v && typeof v === "object" ? (v.Alphabetic ?? "") : (v ?? "");
};

function selectRow(table, row) {
  for (const r of table.tBodies[0].rows) r.classList.toggle("selected", r === row);
}

async function loadStudies() {
  const tbody = $("studies").tBodies[0];
  tbody.replaceChildren();
  try {
    const list = await json(`${state.root}/studies`);
    for (const s of list) {
      const uid = text(s, "0020000D");
      const row = el("tr", { "data-uid": uid }, el("td", {}, text(s, "00100010")), el("td", {}, text(s, "00080020")),
        el("td", {}, text(s, "00081030")), el("td", {}, (s["00080061"]?.Value || []).join(" ")),
        el("td", {}, text(s, "00201206")), el("td", {}, text(s, "00201208")));
      row.onclick = () => openStudy(uid).catch(fail);
      tbody.append(row);
    }
    setStatus(`${list.length} studies`, "ready");
  } catch (e) {
    setStatus(`no study list (${e.message}); enter a Study UID`, "ready");
  }
}

async function openStudy(uid) {
  state.study = uid;
  $("study").value = uid;
  for (const r of $("studies").tBodies[0].rows) r.classList.toggle("selected", r.dataset.uid === uid);
  setStatus(`study ${uid}`);
  const instances = await json(`${state.root}/studies/${uid}/metadata`);
  const series = new Map();
  for (const i of instances) {
    const se = text(i, "0020000E");
    if (!series.has(se)) series.set(se, { number: text(i, "00200011"), modality: text(i, "00080060"), description: text(i, "0008103E"), count: 0 });
    series.get(se).count += 1;
  }
  const tbody = $("series").tBodies[0];
  tbody.replaceChildren();
  $("instances").tBodies[0].replaceChildren();
  const sorted = [...series.entries()].sort((a, b) => Number(a[1].number) - Number(b[1].number));
  for (const [se, s] of sorted) {
    const row = el("tr", { "data-uid": se }, el("td", {}, s.number), el("td", {}, s.modality), el("td", {}, s.description), el("td", {}, s.count));
    row.onclick = () => openSeries(se).catch(fail);
    tbody.append(row);
  }
  setStatus(`study ${uid}: ${series.size} series`, "ready");
  const want = params.get("series") || (sorted.length === 1 ? sorted[0][0] : null);
  if (want) await openSeries(want);
}

async function openSeries(uid) {
  state.series = uid;
  for (const r of $("series").tBodies[0].rows) r.classList.toggle("selected", r.dataset.uid === uid);
  const list = await json(`${state.root}/studies/${state.study}/series/${uid}/metadata`);
  list.sort((a, b) => Number(text(a, "00200013")) - Number(text(b, "00200013")));
  state.instances = list;
  const tbody = $("instances").tBodies[0];
  tbody.replaceChildren();
  for (const i of list) {
    const sop = text(i, "00080018");
    const size = first(i, "00280010") ? `${first(i, "00280011")}×${first(i, "00280010")}` : "";
    const row = el("tr", { "data-uid": sop }, el("td", {}, text(i, "00200013")), el("td", {}, sop), el("td", {}, size),
      el("td", {}, text(i, "00280008") || (size ? 1 : "")), el("td", {}, text(i, "00280004")));
    row.onclick = () => openInstance(sop).catch(fail);
    tbody.append(row);
  }
  setStatus(`series ${uid}: ${list.length} instances`, "ready");
  const want = params.get("instance") || (list.length ? text(list[0], "00080018") : null);
  if (want) await openInstance(want);
}

function valueText(a) {
  if (a.vr === "SQ") return `${(a.Value || []).length} item(s)`;
  if (a.BulkDataURI) return `bulk data: ${a.BulkDataURI}`;
  if (a.InlineBinary) return `${Math.floor(a.InlineBinary.length * 3 / 4)} bytes inline`;
  return (a.Value || []).map((v) => (v && typeof v === "object" ? v.Alphabetic ?? JSON.stringify(v) : v)).join("\\");
}

async function openInstance(sop) {
  const inst = state.instances.find((i) => text(i, "00080018") === sop);
  if (!inst) throw new Error(`instance ${sop} is not in this series`);
  state.instance = inst;
  for (const r of $("instances").tBodies[0].rows) r.classList.toggle("selected", r.dataset.uid === sop);
  const tbody = $("attrs").tBodies[0];
  tbody.replaceChildren();
  for (const tag of Object.keys(inst).sort()) {
    const a = inst[tag];
    tbody.append(el("tr", { "data-tag": tag }, el("td", {}, `(${tag.slice(0, 4)},${tag.slice(4)})`), el("td", {}, keyword(tag)),
      el("td", {}, a.vr), el("td", { className: "value" }, valueText(a))));
  }
  state.display = null;
  try {
    state.display = JSON.parse(displayInfo(JSON.stringify(inst)));
  } catch {
    setStatus(`instance ${sop}: no image to draw`, "ready");
    return;
  }
  const frames = state.display.pixel.number_of_frames;
  $("frame").max = frames;
  const f = Math.min(Number(params.get("frame") || 1), frames);
  $("frame").value = f;
  const [c, w] = state.display.window || ["", ""];
  $("wc").value = params.get("wc") ?? c;
  $("ww").value = params.get("ww") ?? w;
  await drawFrame(f);
}

async function drawFrame(n) {
  const inst = state.instance;
  const sop = text(inst, "00080018");
  state.frame = n;
  $("frame-no").textContent = `${n} / ${state.display.pixel.number_of_frames}`;
  const url = `${state.root}/studies/${state.study}/series/${state.series}/instances/${sop}/frames/${n}`;
  const here = $("decode-here").checked;
  let r = await wado(url, here ? 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    : 'multipart/related; type="application/octet-stream"');
  let part = r.parts?.[0] ?? { headers: { "content-type": r.contentType }, body: r.body };
  let ts = param(part.headers["content-type"], "transfer-syntax") || "1.2.840.10008.1.2.1";
  let where = "in the browser";
  if (!canDecode(ts)) {
    // A syntax this build cannot decode in wasm: the server decodes it instead.
    r = await wado(url, 'multipart/related; type="application/octet-stream"');
    part = r.parts?.[0] ?? { headers: { "content-type": r.contentType }, body: r.body };
    ts = param(part.headers["content-type"], "transfer-syntax") || "1.2.840.10008.1.2.1";
    where = "by the server";
  }
  const wc = parseFloat($("wc").value);
  const ww = parseFloat($("ww").value);
  const t0 = performance.now();
  const rgba = renderFrame(JSON.stringify(inst), ts, part.body, wc, ww);
  const ms = performance.now() - t0;
  const { rows, columns } = state.display.pixel;
  const canvas = $("canvas");
  canvas.width = columns;
  canvas.height = rows;
  canvas.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer, rgba.byteOffset, rgba.length), columns, rows), 0, 0);
  canvas.dataset.transferSyntax = ts;
  setStatus(`frame ${n} of ${sop}: ${ts}, decoded ${where} and drawn in ${ms.toFixed(1)} ms`, "drawn");
}

function fail(e) {
  console.error(e);
  setStatus(String(e.message || e), "error");
}

async function main() {
  await init();
  const root = params.get("root") || `${location.origin}/dcm4chee-arc/aets/DCM4CHEE/rs`;
  $("root").value = root;
  state.root = root.replace(/\/$/, "");
  if (params.get("decode") === "server") $("decode-here").checked = false;
  $("source").onsubmit = (ev) => {
    ev.preventDefault();
    state.root = $("root").value.replace(/\/$/, "");
    const study = $("study").value.trim();
    (study ? openStudy(study) : loadStudies()).catch(fail);
  };
  $("frame").oninput = () => drawFrame(Number($("frame").value)).catch(fail);
  $("wc").onchange = $("ww").onchange = () => drawFrame(state.frame).catch(fail);
  await loadStudies();
  const study = params.get("study");
  if (study) await openStudy(study);
}

main().catch(fail);
