// The diagrammar playground: the checker and SVG renderer under Pyodide, in the page, offline.
//
// runtime.js holds Pyodide's loader, wasm, standard library and lock file, app-data.js the lark
// and diagrammar wheels, the zoo and the Python glue (playground.py). Everything is loaded by
// classic <script> tags, never fetched, so the page works from a static server and from disk.
"use strict";

const R = globalThis.DIAGRAMMAR_RUNTIME;
const APP = globalThis.DIAGRAMMAR_APP;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));

// what tests and the latency benchmark read
const state = globalThis.playground = {ready: false, busy: false, runs: 0, timings: [], error: null, last: null};

let py = null;               // check(text) and draw(circuit, depth), answered by the worker
let chosen = null;           // the circuit shown
let depth = "all";
let running = false, dirty = false, inputAt = null;

function status(text, bad) { $("status").textContent = text; $("status").className = bad ? "bad" : ""; }

function bytes(b64) {
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(b64);
  const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// ---------------------------------------------------------------- the source in the URL

function toBase64Url(u8) {
  let s = "";
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function fromBase64Url(t) {
  t = t.replace(/-/g, "+").replace(/_/g, "/");
  return bytes(t + "===".slice((t.length + 3) % 4));
}
async function pipe(u8, stream) {
  return new Uint8Array(await new Response(new Blob([u8]).stream().pipeThrough(stream)).arrayBuffer());
}
async function encodeSource(text) {
  const raw = new TextEncoder().encode(text);
  if (typeof CompressionStream === "function") return "c=" + toBase64Url(await pipe(raw, new CompressionStream("deflate-raw")));
  return "src=" + toBase64Url(raw);
}
async function decodeSource(hash) {
  const p = new URLSearchParams(hash.replace(/^#/, ""));
  if (p.get("c")) return new TextDecoder().decode(await pipe(fromBase64Url(p.get("c")), new DecompressionStream("deflate-raw")));
  if (p.get("src")) return new TextDecoder().decode(fromBase64Url(p.get("src")));
  return null;
}
let hashTimer = null;
function saveToUrl() {
  clearTimeout(hashTimer);
  hashTimer = setTimeout(async () => {
    const text = $("editor").value;
    const params = new URLSearchParams(await encodeSource(text));
    if (chosen) params.set("circuit", chosen);
    history.replaceState(null, "", "#" + params.toString());
    state.linked = text;  // the text the address now holds
  }, 250);
}

// ---------------------------------------------------------------- Pyodide, in a worker

// Python runs in a Web Worker, so typing never waits for a figure. The worker is made from a
// Blob (a worker script file cannot be loaded from file://) and gets Pyodide's loader, its
// runtime and the wheels by message.
const WORKER = `
"use strict";
let py = null;
function bytes(b64) {
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(b64);
  const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
async function init(m) {
  // Pyodide refuses classic workers (it tells them apart by trying importScripts) because it would
  // load its ES module there; it is handed that module (createPyodideModule) instead. So
  // importScripts is hidden, and the loader and the module run by a global eval.
  self.importScripts = () => { throw new Error("not a classic worker for Pyodide"); };
  for (const code of [m.loader, m.asm]) (0, eval)(code);
  const real = self.fetch.bind(self);
  const served = {"pyodide.asm.wasm": ["application/wasm", m.wasm], "python_stdlib.zip": ["application/zip", m.stdlib]};
  self.fetch = async (url, opts) => {
    const u = String(url);
    for (const [name, [type, b64]] of Object.entries(served)) {
      if (u.endsWith(name)) return new Response(bytes(b64), {headers: {"Content-Type": type}});
    }
    return real(url, opts);
  };
  self.__diagrammarAsmUrl = m.base + "pyodide.asm.js";
  let pyodide;
  try {
    pyodide = await loadPyodide({indexURL: m.base, lockFileContents: m.lock, createPyodideModule: self._createPyodideModule,
                                 stdout: () => {}, stderr: (s) => console.warn(s)});
  } finally {
    self.fetch = real;
  }
  pyodide.FS.mkdirTree("/tmp/wheels");
  for (const w of m.wheels) pyodide.FS.writeFile("/tmp/wheels/" + w.name, bytes(w.data));
  pyodide.FS.writeFile("/tmp/numpy_stub.py", m.numpy_stub);
  pyodide.runPython(m.install);
  pyodide.runPython(m.glue);
  py = {check: pyodide.globals.get("check"), draw: pyodide.globals.get("draw")};
}
self.onmessage = async (e) => {
  const m = e.data;
  try {
    if (m.type === "init") { await init(m); postMessage({id: m.id, ok: true}); }
    else if (m.type === "check") postMessage({id: m.id, json: py.check(m.text)});
    else if (m.type === "draw") postMessage({id: m.id, json: py.draw(m.circuit, m.depth)});
  } catch (err) {
    postMessage({id: m.id, error: String((err && err.stack) || err)});
  }
};
`;

let worker = null, nextId = 0;
const waiting = new Map();

function call(msg) {
  return new Promise((ok, bad) => {
    const id = ++nextId;
    waiting.set(id, {ok, bad});
    worker.postMessage({...msg, id});
  });
}

async function start() {
  worker = new Worker(URL.createObjectURL(new Blob([WORKER], {type: "text/javascript"})));
  worker.onmessage = (e) => {
    const w = waiting.get(e.data.id);
    if (!w) return;
    waiting.delete(e.data.id);
    if (e.data.error) w.bad(new Error(e.data.error)); else w.ok(e.data.json);
  };
  worker.onerror = (e) => { state.error = e.message; status("the Python worker failed: " + e.message, true); };
  await call({type: "init", base: new URL("pyodide/", location.href).href, loader: R.loader, asm: R.asm,
              wasm: R.wasm, stdlib: R.stdlib, lock: R.lock, wheels: APP.wheels, numpy_stub: APP.numpy_stub,
              install: APP.install, glue: APP.glue});
  return {check: (text) => call({type: "check", text}), draw: (circuit, d) => call({type: "draw", circuit, depth: d})};
}

// ---------------------------------------------------------------- drawing the result

function lineOffsets(text) {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === "\n") starts.push(i + 1);
  return starts;
}
function selectRange(line, col, endLine, endCol) {
  const ed = $("editor"), starts = lineOffsets(ed.value);
  const a = (starts[line - 1] ?? 0) + col - 1;
  const b = endLine ? (starts[endLine - 1] ?? 0) + endCol - 1 : (starts[line] ?? ed.value.length + 1) - 1;
  ed.focus();
  ed.setSelectionRange(Math.max(a, 0), Math.max(b, a));
  const lh = parseFloat(getComputedStyle(ed).lineHeight) || 19;
  ed.scrollTop = Math.max((line - 5) * lh, 0);
}

function showDiagnostics(res, text) {  // res.render_error is shown too once drawn
  const lines = text.split("\n");
  let html = res.diagnostics.map((d) => {
    const src = lines[d.line - 1] ?? "";
    const width = d.end_line === d.line ? Math.max(d.end_column - d.column, 1) : Math.max(src.trimEnd().length - d.column + 1, 1);
    const parts = [`playground.circuit:${d.line}:${d.column}: error: ${d.message}`, "    " + src,
                   "    " + " ".repeat(Math.max(d.column - 1, 0)) + "^".repeat(width)];
    (d.detail || []).forEach((r) => parts.push("  " + r));
    if (d.hint) parts.push("  hint: " + d.hint);
    return `<div class="diag" data-line="${d.line}" data-column="${d.column}" data-end-line="${d.end_line}" data-end-column="${d.end_column}">${esc(parts.join("\n"))}</div>`;
  }).join("");
  if (res.render_error) html += `<div class="diag loud">${esc(res.render_error)}</div>`;
  $("diagnostics").innerHTML = html;
}

function showCircuits(res) {
  $("circuit").innerHTML = res.circuits.map((c) =>
    `<option value="${esc(c.name)}"${c.name === res.circuit ? " selected" : ""}${c.ok ? "" : " disabled"}>${esc(c.name)}${c.ok ? "" : " (errors)"}</option>`).join("");
  const c = res.circuits.find((x) => x.name === res.circuit);
  $("summary").textContent = c && c.ok ? `${c.summary} · ${c.flops ?? "?"} FLOPs forward (batch 1)` : "";
}

async function run() {
  if (!py) return;
  if (running) { dirty = true; state.busy = true; return; }
  running = state.busy = true;
  try {
    await update();
  } catch (e) {
    state.error = String(e);
    status("internal error: " + e, true);
  }
  running = false;
  if (dirty) { dirty = false; run(); } else state.busy = false;
}

async function update() {
  const t0 = inputAt ?? performance.now();
  inputAt = null;
  const text = $("editor").value;
  const res = JSON.parse(await py.check(text));
  const n = res.diagnostics.length;
  if ($("editor").value === text) {  // not already out of date: show the errors before the figure
    showDiagnostics(res, text);
    status(n ? `${n} error${n > 1 ? "s" : ""}` : `checked in ${Math.round(res.timings.check * 1000)} ms, drawing…`, n > 0);
  }
  const t1 = performance.now();
  const fig = JSON.parse(await py.draw(chosen, depth));
  const t2 = performance.now();
  res.circuit = fig.circuit; res.svg = fig.svg; res.render_error = fig.render_error;
  res.timings.render = fig.timings.render;
  const shown = res.circuits.find((c) => c.name === fig.circuit);
  if (shown) shown.flops = fig.flops;
  state.last = res;
  state.text = text;  // the text the page now shows the results of
  if (fig.circuit) chosen = fig.circuit;
  showDiagnostics(res, text);
  showCircuits(res);
  // the shown circuit's figure stays on screen, dimmed, while it has errors or the text does not
  // parse; it is replaced when the circuit checks again
  if (fig.svg) $("figure").innerHTML = fig.svg.replace(/^<\?xml[^>]*>\s*/, "");
  else if (res.syntax_ok && !res.circuits.some((c) => c.name === fig.circuit)) $("figure").innerHTML = "";
  $("figure").classList.toggle("stale", !fig.svg);
  if (!n) status(`checked in ${Math.round(res.timings.check * 1000)} ms, drawn in ${Math.round(fig.timings.render * 1000)} ms`, false);
  state.runs += 1;
  document.body.dataset.runs = String(state.runs);
  saveToUrl();
  const t3 = performance.now();
  // the figure is on screen after the next frame is painted
  await new Promise((ok) => requestAnimationFrame(() => setTimeout(ok, 0)));
  state.timings.push({total: performance.now() - t0, check: res.timings.check * 1000, render: fig.timings.render * 1000,
                      to_checked: t1 - t0, draw_call: t2 - t1, dom: t3 - t2, paint: performance.now() - t3});
  document.body.dataset.painted = String(state.timings.length);
}

// ---------------------------------------------------------------- events

function loadExample(file) {
  const ex = APP.zoo.find((z) => z.file === file);
  if (!ex) return;
  $("editor").value = ex.text;
  chosen = null;
  inputAt = performance.now();
  run();
}

$("editor").addEventListener("input", () => { inputAt = inputAt ?? performance.now(); run(); });
$("editor").addEventListener("keydown", (e) => {
  if (e.key === "Tab") {  // indent, do not leave the editor
    e.preventDefault();
    const ed = e.target, a = ed.selectionStart;
    ed.setRangeText("    ", a, ed.selectionEnd, "end");
    ed.dispatchEvent(new Event("input"));
  }
});
$("zoo").addEventListener("change", (e) => loadExample(e.target.value));
$("circuit").addEventListener("change", (e) => { chosen = e.target.value; run(); });
$("depth").addEventListener("change", (e) => { depth = e.target.value; run(); });
$("diagnostics").addEventListener("click", (e) => {
  const el = e.target.closest("[data-line]");
  if (el) selectRange(+el.dataset.line, +el.dataset.column, +el.dataset.endLine, +el.dataset.endColumn);
});
$("figure").addEventListener("click", (e) => {
  const el = e.target.closest("[data-line]");
  if (!el) return;
  document.querySelectorAll("#figure .picked").forEach((x) => x.classList.remove("picked"));
  el.classList.add("picked");
  selectRange(+el.getAttribute("data-line"), 1, 0, 0);
});
$("share").addEventListener("click", async () => {
  const h = await encodeSource($("editor").value);
  const params = new URLSearchParams(h);
  if (chosen) params.set("circuit", chosen);
  const url = location.href.split("#")[0] + "#" + params.toString();
  history.replaceState(null, "", url);
  try { await navigator.clipboard.writeText(url); status("link copied"); } catch (_) { status("link in the address bar"); }
});

(async function main() {
  $("zoo").innerHTML += APP.zoo.map((z) => `<option value="${esc(z.file)}">${esc(z.file)}</option>`).join("");
  let text = null;
  try { text = await decodeSource(location.hash); } catch (e) { console.warn("bad link", e); }
  const fromLink = new URLSearchParams(location.hash.replace(/^#/, "")).get("circuit");
  if (fromLink) chosen = fromLink;
  if (text === null) {
    const first = APP.zoo.find((z) => z.file === APP.default_example) || APP.zoo[0];
    text = first ? first.text : "";
    $("zoo").value = first ? first.file : "";
  }
  $("editor").value = text;
  try {
    const t = performance.now();
    py = await start();
    state.startup = performance.now() - t;
  } catch (e) {
    state.error = String(e);
    status("could not start Python: " + e, true);
    throw e;
  }
  state.ready = true;
  document.body.dataset.ready = "1";
  run();
})();
