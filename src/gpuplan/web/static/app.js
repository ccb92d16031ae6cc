// gpuplan page: forms built from the declared options (/api/v1/options: labels, help, units, choices in English and
// Chinese), results from the JSON API, charts drawn here as SVG (nothing loaded from elsewhere: it works offline).
// No framework, no build step. State lives in the URL so that a link reproduces the result.
"use strict";
(function () {
  const API = "api/v1"; // relative: the page also works behind a proxy under a sub-path
  const TABS = ["train", "infer", "time", "plan"];
  const STACK_TABS = new Set(["train", "infer", "plan"]); // the commands that read a launch config
  const DIM_OPTS = ["layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "experts", "top_k", "params"];
  const SHARED = new Set(["gpu", ...DIM_OPTS]);
  const AUTO_ON = new Set(["explain"]); // always asked for: the page shows every number's explanation
  // The few options shown open on each tab (by name); every other option is in its declared group, folded.
  const ESSENTIAL = {
    train: ["method", "precision", "batch", "seq", "gpus", "recompute", "advise"],
    infer: ["weights", "kv_dtype", "batch", "context", "engine", "tp", "advise"],
    time: ["tokens", "gpus", "days", "mfu", "price"],
    plan: ["gpus", "tokens", "days", "seq", "global_batch", "rank"],
  };
  // Options that join the essentials when another option has a value: option -> value -> option names.
  const REVEALS = {
    method: { lora: ["lora_rank", "lora_targets"], qlora: ["lora_rank", "lora_targets", "qlora_base"], freeze: ["trainable"] },
    engine: { vllm: ["gpu_memory_utilization", "max_num_seqs"] },
  };
  // First values on a tab's first visit, so it shows a result at once (visible and editable); a link's values win.
  const STARTERS = { time: { tokens: "2T" }, plan: { gpus: "8" } };
  const COMP_KEYS = ["weights_bytes", "gradients_bytes", "optimizer_bytes", "master_weights_bytes",
    "activations_bytes", "logits_bytes", "kv_cache_bytes", "buffers_bytes"];
  const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#edc948", "#76b7b2", "#9c755f"];
  const GiB = 1024 ** 3;

  const st = {
    lang: "en", tab: "train", mode: "preset", model: "", config: "", stack: "",
    shared: {}, perTab: { train: {}, infer: {}, time: {}, plan: {} }, started: new Set(),
    options: {}, presets: [], gpus: [], seq: 0, ctrl: null, timer: 0, lastResult: null, pinned: null,
  };
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
      else if (k === "style") e.style.cssText = v; // CSSOM, allowed by the page's Content-Security-Policy
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    return e;
  };

  // ---------- language ----------
  function t(key) {
    const d = window.GP_I18N[st.lang] || window.GP_I18N.en;
    return d[key] !== undefined ? d[key] : (window.GP_I18N.en[key] !== undefined ? window.GP_I18N.en[key] : key);
  }
  // Help in the page's language: the option's own help_zh (from /api/v1/options), else its English help.
  function optHelp(o) { return (st.lang === "zh" && o.help_zh) || o.help; }
  function compLabel(k) { return (t("comp") || {})[k] || k.replace(/_bytes$/, "").replace(/_/g, " "); }
  function applyLang() {
    document.documentElement.lang = st.lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-i18n]").forEach((n) => { n.textContent = t(n.dataset.i18n); });
    document.querySelectorAll("[data-i18n-ph]").forEach((n) => { n.placeholder = t(n.dataset.i18nPh); });
    $("lang-toggle").textContent = st.lang === "zh" ? "English" : "中文";
    $("gpu").options[0].textContent = t("no_gpu");
  }

  // ---------- formatting ----------
  const fmt = {
    gib: (b) => (b / GiB).toLocaleString(undefined, { maximumFractionDigits: 2, minimumFractionDigits: 2 }) + " GiB",
    bytes: (b) => Math.abs(b) >= GiB / 100 || b === 0 ? fmt.gib(b)
      : Math.abs(b) >= 1024 ** 2 ? (b / 1024 ** 2).toFixed(2) + " MiB" : (b / 1024).toFixed(2) + " KiB",
    count: (n) => {
      const a = Math.abs(n);
      for (const [d, s] of [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "k"]]) if (a >= d) return (n / d).toFixed(2) + s;
      return String(n);
    },
    short: (n) => { // an axis tick: 4096 -> 4k, 131072 -> 128k (binary steps read as k)
      if (n >= 1024 && n % 1024 === 0) return (n / 1024) + "k";
      return String(n);
    },
    seconds: (s) => s >= 86400 ? (s / 86400).toFixed(1) + (st.lang === "zh" ? " 天" : " days")
      : s >= 3600 ? (s / 3600).toFixed(1) + " h" : s >= 1 ? s.toFixed(2) + " s" : (s * 1000).toFixed(2) + " ms",
  };
  function fmtValue(key, v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "boolean") return v ? t("yes") : t("no");
    if (typeof v !== "number") return Array.isArray(v) ? v.join(", ") : (typeof v === "object" ? JSON.stringify(v) : String(v));
    const path = String(key);
    const k = path.split(".").pop();
    if (/_bytes_per_s($|_)/.test(k)) return (v / 1e9).toLocaleString(undefined, { maximumFractionDigits: 1 }) + " GB/s";
    if (/_flop_per_s($|_)/.test(k)) return (v / 1e12).toLocaleString(undefined, { maximumFractionDigits: 1 }) + " TFLOP/s";
    if (/_per_s($|_)/.test(k)) return v.toLocaleString(undefined, { maximumFractionDigits: 1 }) + " /s";
    if (k === "mfu" || k.endsWith("_fraction") || k.endsWith("_utilization")) return (v * 100).toFixed(1) + " %";
    if (v === 0) return "0";
    if (/(^|_)bytes($|_)/.test(k) || /(^|_)bytes(_[a-z_]+)?\./.test(path) || k === "bytes") return fmt.bytes(v);
    if (k.endsWith("_flop")) return v.toExponential(2) + " FLOP";
    if (k.endsWith("_usd")) return "$" + v.toLocaleString(undefined, { maximumFractionDigits: 0 });
    if (k.endsWith("_s") || k === "seconds") return fmt.seconds(v);
    if (k === "days") return v.toLocaleString(undefined, { maximumFractionDigits: 1 });
    if (k.endsWith("_hours")) return v.toLocaleString(undefined, { maximumFractionDigits: 0 });
    if (Number.isInteger(v) && Math.abs(v) >= 1e5) return fmt.count(v) + " (" + v.toLocaleString() + ")";
    return Number.isInteger(v) ? v.toLocaleString() : v.toLocaleString(undefined, { maximumSignificantDigits: 4 });
  }

  // ---------- values: the GPU and raw dimensions are shared by the tabs, every other option is per tab ----------
  function getVal(name) { return SHARED.has(name) ? st.shared[name] : st.perTab[st.tab][name]; }
  function setVal(name, v) { if (SHARED.has(name)) st.shared[name] = v; else st.perTab[st.tab][name] = v; }

  // ---------- URL state ----------
  function b64encode(text) {
    const bytes = new TextEncoder().encode(text);
    let s = ""; bytes.forEach((b) => { s += String.fromCharCode(b); });
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function b64decode(text) {
    const s = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
    return new TextDecoder().decode(Uint8Array.from(s, (c) => c.charCodeAt(0)));
  }
  function readUrl() {
    const q = new URLSearchParams(location.search);
    const nav = (navigator.language || "en").toLowerCase();
    st.lang = q.get("lang") || (nav.startsWith("zh") ? "zh" : "en");
    if (!window.GP_I18N[st.lang]) st.lang = "en";
    st.tab = TABS.includes(q.get("tab")) ? q.get("tab") : "train";
    st.model = q.get("model") || "";
    st.mode = st.model ? "preset" : (DIM_OPTS.some((k) => q.has(k)) ? "dims" : "preset");
    for (const [k, v] of q.entries()) if (!["lang", "tab", "model"].includes(k)) setVal(k, v);
    if ([...q.keys()].some((k) => !["lang", "tab", "model", "gpu"].includes(k))) st.started.add(st.tab);
    const h = new URLSearchParams(location.hash.slice(1));
    if (h.get("cfg")) {
      try { st.config = b64decode(h.get("cfg")); st.mode = "config"; } catch (e) { /* ignore a broken link */ }
    }
    if (!st.model && st.mode === "preset") st.model = "llama-3.1-8b";
  }
  function writeUrl() {
    const q = new URLSearchParams();
    q.set("tab", st.tab);
    q.set("lang", st.lang);
    if (st.mode === "preset" && st.model) q.set("model", st.model);
    const cmd = st.options[st.tab];
    const names = new Set(cmd ? cmd.options.map((o) => o.name) : []);
    names.add("gpu");
    for (const [k, v] of Object.entries(Object.assign({}, st.shared, st.perTab[st.tab]))) {
      if (v === "" || v === undefined) continue;
      if (DIM_OPTS.includes(k) && st.mode !== "dims") continue;
      if (names.has(k)) q.set(k, v);
    }
    let url = "?" + q.toString();
    if (st.mode === "config" && st.config.trim()) {
      try { url += "#cfg=" + b64encode(JSON.stringify(JSON.parse(st.config))); } catch (e) { /* invalid JSON */ }
    }
    history.replaceState(null, "", url);
  }

  // ---------- requests ----------
  async function getJSON(path) {
    const r = await fetch(API + path);
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }
  function requestBody(cmd) {
    const body = {};
    if (st.mode === "preset") body.model = st.model;
    else if (st.mode === "config") {
      try { body.config = JSON.parse(st.config || "null"); } catch (e) { return { error: t("config_bad_json") }; }
    } else if (st.mode === "stack") {
      if (!STACK_TABS.has(st.tab)) return { error: t("stack_tab") };
      body.stack_config = st.stack;
      // a DeepSpeed JSON or an accelerate YAML names no model: it applies to the chosen preset
      if (st.model && (/^\s*\{/.test(st.stack) || /^\s*distributed_type\s*:/m.test(st.stack))) body.model = st.model;
    }
    for (const o of cmd.options) {
      if (o.name === "query") continue;
      if (DIM_OPTS.includes(o.name) && st.mode !== "dims") continue;
      if (AUTO_ON.has(o.name) && o.kind === "bool") { body[o.name] = true; continue; }
      const raw = getVal(o.name);
      if (raw === undefined || raw === "") continue;
      if (o.kind === "bool") { if ((raw === "1" || raw === "true") !== Boolean(o.default)) body[o.name] = raw === "1" || raw === "true"; continue; }
      if (o.kind === "int") body[o.name] = Number(raw);
      else if (o.kind === "float") body[o.name] = Number(raw);
      else if (o.kind === "count") body[o.name] = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : raw.trim();
      else if (o.kind === "choice") body[o.name] = o.choices.find((c) => String(c) === raw) ?? raw;
      else if (o.kind === "list") body[o.name] = raw.split(",").map((s) => s.trim()).filter(Boolean);
      else body[o.name] = raw;
    }
    return { body };
  }
  function cliLine(cmd, body) {
    const parts = ["gpuplan", st.tab];
    if (body.model) parts.push(body.model);
    if (body.config) parts.push("./config.json");
    if (body.stack_config) parts.push(body.model ? "--from ./launch-config" : "./launch-config");
    for (const o of cmd.options) {
      if (!(o.name in body) || AUTO_ON.has(o.name)) continue;
      const v = body[o.name];
      if (o.kind === "bool") parts.push(o.flag);
      else if (Array.isArray(v)) parts.push(o.flag, v.join(","));
      else parts.push(o.flag, /[\s"']/.test(String(v)) ? JSON.stringify(String(v)) : String(v));
    }
    return parts.join(" ");
  }
  function schedule() {
    clearTimeout(st.timer);
    st.timer = setTimeout(compute, 120);
    writeUrl();
  }
  async function compute() {
    const cmd = st.options[st.tab];
    const out = $("result");
    $("cli-box").hidden = !cmd;
    if (!cmd) { out.replaceChildren(el("p", { class: "muted", text: t("not_available") })); return; }
    const { body, error } = requestBody(cmd);
    if (error) { showError({ field: "config", rule: error }); return; }
    $("cli").textContent = cliLine(cmd, body);
    if (st.ctrl) st.ctrl.abort();
    st.ctrl = new AbortController();
    const mySeq = ++st.seq;
    $("status").textContent = t("computing");
    document.body.classList.add("busy");
    try {
      const r = await fetch(API + "/" + st.tab, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: st.ctrl.signal,
      });
      const data = await r.json();
      if (mySeq !== st.seq) return;
      if (!r.ok) { st.lastResult = null; st.lastError = data; showError(data); return; }
      clearInvalid();
      st.lastResult = data; st.lastError = null;
      render(data);
      $("status").textContent = "";
    } catch (e) {
      if (e.name !== "AbortError") showError({ field: "network", rule: String(e) });
    } finally {
      if (mySeq === st.seq) document.body.classList.remove("busy");
    }
  }
  function clearInvalid() { document.querySelectorAll(".invalid").forEach((n) => n.classList.remove("invalid")); }
  function showError(err) {
    clearInvalid();
    const field = String(err.field || "").split(".")[0];
    const input = document.querySelector(`[data-opt="${CSS.escape(field)}"]`) ||
      (field === "model" ? $("model-search") : field === "config" ? $("config-text") : null);
    if (input) input.classList.add("invalid");
    $("status").textContent = "";
    document.body.classList.remove("busy");
    const fieldOpt = ((st.options[st.tab] || {}).options || []).find((o) => o.name === field);
    const box = el("div", { class: "error", role: "alert" },
      el("strong", { text: t("error") + ": " }),
      fieldOpt ? optLabel(fieldOpt) + " " : "", el("code", { text: err.field || "" }),
      err.value !== undefined && err.value !== null ? " = " + JSON.stringify(err.value) : "",
      el("div", { text: err.rule || err.message || "" }), err.hint ? el("div", { class: "muted", text: err.hint }) : null);
    $("result").replaceChildren(box);
  }

  // ---------- result rendering ----------
  function table(headers, rows, cls) {
    return el("div", { class: "table-wrap" }, el("table", { class: cls || "" },
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => c instanceof Node ? el("td", {}, c) : el("td", { text: c })))))));
  }
  function section(titleKey, ...kids) {
    return el("section", { class: "block", "data-block": titleKey }, el("h3", { text: t(titleKey) }), ...kids);
  }
  function gpuSpec() { return st.gpus.find((g) => g.id === st.shared.gpu); }
  const NS = "http://www.w3.org/2000/svg";
  function svgEl(tag, a, text) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(a || {})) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }
  // Charts are drawn at the width they are shown at, so their text keeps its size on a phone.
  function chartWidth() { return Math.max(300, Math.min(760, ($("result").clientWidth || 640))); }
  function capacityOf(data) {
    if (data && typeof data.capacity_bytes === "number") return data.capacity_bytes;
    const gpu = gpuSpec();
    return gpu ? gpu.memory_usable_bytes : 0;
  }
  function capLabel(cap) { return (st.shared.gpu ? st.shared.gpu + " " : "") + t("capacity") + " " + fmt.gib(cap); }

  // Components are sizes (each exists at some point of the step), the peak is a phase: one bar per component on the
  // same scale, the allocated peak and the device total below, a marker at the peak and a line at the capacity.
  function memoryChart(mem, cap) {
    const comps = COMP_KEYS.filter((k) => mem[k] > 0);
    const total = mem.total_bytes || 0, peak = mem.allocated_peak_bytes || 0;
    const biggest = Math.max(total, peak, cap, ...comps.map((k) => mem[k]), 1);
    const W = chartWidth(), L = W < 500 ? 104 : 138, R = 70, ROW = 22;
    const rows = comps.length + 2;
    const H = rows * ROW + 34;
    const x = (b) => L + (b / biggest) * (W - L - R);
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart mem", role: "img", "aria-label": t("memory_title") });
    const bar = (i, label, bytes, fill, key, x0) => {
      const y = 6 + i * ROW;
      svg.append(svgEl("text", { x: 4, y: y + 14, class: "lbl" }, label));
      const r = svgEl("rect", { x: x0 === undefined ? L : x(x0), y, width: Math.max(0.5, x(bytes) - L), height: ROW - 6, fill, "data-key": key });
      r.append(svgEl("title", {}, label + ": " + fmt.gib(bytes)));
      svg.append(r);
      return y;
    };
    comps.forEach((k, i) => {
      const y = bar(i, compLabel(k), mem[k], COLORS[COMP_KEYS.indexOf(k)], k);
      svg.append(svgEl("text", { x: x(mem[k]) + 4, y: y + 13, class: "val" }, fmt.gib(mem[k])));
    });
    const yPeak = bar(comps.length, t("allocated_peak"), peak, "#5b6270", "allocated_peak_bytes");
    svg.append(svgEl("text", { x: x(peak) + 4, y: yPeak + 13, class: "val" }, fmt.gib(peak)));
    const yTot = bar(comps.length + 1, t("device_total"), peak, "#5b6270", "total_peak");
    const over = svgEl("rect", { x: x(peak), y: yTot, width: Math.max(0, x(total) - x(peak)), height: ROW - 6, fill: "#b9bec7", "data-key": "overhead" });
    over.append(svgEl("title", {}, t("overhead") + ": " + fmt.gib(Math.max(0, total - peak))));
    svg.append(over, svgEl("text", { x: x(total) + 4, y: yTot + 13, class: "val" }, fmt.gib(total)));
    const bottom = rows * ROW + 2;
    svg.append(svgEl("line", { x1: x(peak), x2: x(peak), y1: 2, y2: bottom, class: "peak-mark" }));
    svg.append(svgEl("text", { x: Math.min(x(peak), W - 4), y: bottom + 12, class: "peak-lbl", "text-anchor": "end" }, t("peak") + " " + fmt.gib(peak)));
    if (cap) {
      svg.append(svgEl("line", { x1: x(cap), x2: x(cap), y1: 2, y2: bottom + 16, class: "cap" }));
      svg.append(svgEl("text", { x: Math.min(x(cap), W - 4), y: bottom + 26, class: "cap-lbl", "text-anchor": "end" }, capLabel(cap)));
    }
    return el("div", { class: "chart-wrap" }, svg, el("p", { class: "note", text: t("components_note") }));
  }

  // The memory of each phase of the step, in order, the peak phase marked; the capacity as a line.
  function phaseChart(phases, peakPhase, cap) {
    const vals = phases.map((p) => p.bytes || 0);
    const top = Math.max(cap, ...vals, 1) * 1.05;
    const W = chartWidth(), H = 170, B = 40, T = 16;
    const step = (W - 8) / phases.length;
    const y = (b) => H - B - (b / top) * (H - B - T);
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart phases", role: "img", "aria-label": t("phases") });
    phases.forEach((p, i) => {
      const isPeak = p.phase === peakPhase;
      const r = svgEl("rect", { x: 4 + i * step + step * 0.15, y: y(p.bytes), width: step * 0.7, height: Math.max(0.5, H - B - y(p.bytes)),
        fill: isPeak ? "#e15759" : "#4e79a7", "data-phase": p.phase, class: isPeak ? "peak" : "" });
      r.append(svgEl("title", {}, p.phase + ": " + fmt.gib(p.bytes)));
      svg.append(r, svgEl("text", { x: 4 + i * step + step / 2, y: y(p.bytes) - 3, class: "val", "text-anchor": "middle" }, (p.bytes / GiB).toFixed(1)));
      const words = String(p.phase);
      svg.append(svgEl("text", { x: 4 + i * step + step / 2, y: H - B + 14, class: "lbl small", "text-anchor": "middle" }, words.length > 18 ? words.slice(0, 17) + "…" : words));
    });
    if (cap) {
      svg.append(svgEl("line", { x1: 4, x2: W - 4, y1: y(cap), y2: y(cap), class: "cap" }));
      svg.append(svgEl("text", { x: W - 6, y: y(cap) - 4, class: "cap-lbl", "text-anchor": "end" }, capLabel(cap)));
    }
    svg.append(svgEl("text", { x: 6, y: H - 6, class: "lbl small" }, t("phase_axis")));
    return el("div", { class: "chart-wrap" }, svg);
  }

  // A line chart of memory against a swept value (from the sweep command): device total and allocated peak, the
  // capacity as a line, points that do not fit in red.
  function sweepChart(sweep, axisLabel) {
    const rows = sweep.rows.filter((r) => r.memory);
    const W = chartWidth(), H = 200, L = 48, R = 12, T = 14, B = 36;
    const cap = sweep.capacity_bytes || 0;
    if (!rows.length) return el("p", { class: "muted", text: t("none") });
    const top = Math.max(cap, ...rows.map((r) => r.memory.total_bytes)) * 1.08;
    const xs = rows.map((r) => Math.log2(r.value));
    const x0 = Math.min(...xs), x1 = Math.max(...xs);
    const x = (v) => L + (x1 === x0 ? 0.5 : (Math.log2(v) - x0) / (x1 - x0)) * (W - L - R);
    const y = (b) => T + (1 - b / top) * (H - T - B);
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart sweep", role: "img", "data-over": sweep.over, "aria-label": axisLabel });
    for (let g = 0; g <= 4; g++) {
      const b = top / 1.08 * g / 4;
      svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(b), y2: y(b), class: "grid" }),
        svgEl("text", { x: L - 4, y: y(b) + 4, class: "lbl small", "text-anchor": "end" }, (b / GiB).toFixed(0)));
    }
    for (const [key, cls] of [["allocated_peak_bytes", "line peak-line"], ["total_bytes", "line total-line"]]) {
      svg.append(svgEl("polyline", { points: rows.map((r) => `${x(r.value)},${y(r.memory[key])}`).join(" "), class: cls }));
    }
    rows.forEach((r) => {
      const c = svgEl("circle", { cx: x(r.value), cy: y(r.memory.total_bytes), r: 3.5, class: r.fits === false ? "pt bad" : "pt", "data-value": r.value });
      c.append(svgEl("title", {}, fmt.count(r.value) + ": " + fmt.gib(r.memory.total_bytes)));
      svg.append(c, svgEl("text", { x: x(r.value), y: H - B + 14, class: "lbl small", "text-anchor": "middle" }, fmt.short(r.value)));
    });
    if (cap) {
      svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(cap), y2: y(cap), class: "cap" }));
      svg.append(svgEl("text", { x: W - R, y: y(cap) - 4, class: "cap-lbl", "text-anchor": "end" }, capLabel(cap)));
    }
    svg.append(svgEl("text", { x: L, y: H - 4, class: "lbl small" }, axisLabel + " →"),
      svgEl("text", { x: 4, y: 10, class: "lbl small" }, "GiB"));
    return el("div", { class: "chart-wrap" }, svg, el("ul", { class: "legend" },
      el("li", {}, el("span", { class: "sw total" }), t("device_total")),
      el("li", {}, el("span", { class: "sw peak" }), t("allocated_peak")),
      cap ? el("li", {}, el("span", { class: "sw cap" }), t("capacity")) : null));
  }

  // Horizontal bars, one per item: [label, value, text, bad?]; a capacity line when cap is given (bytes).
  function barChart(items, cap, cls) {
    const W = chartWidth(), ROW = 24, L = W < 500 ? 120 : 190, R = 90;
    const H = items.length * ROW + (cap ? 22 : 6);
    const top = Math.max(cap || 0, ...items.map((i) => i[1]), 1e-30);
    const x = (v) => L + (v / top) * (W - L - R);
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart bars " + (cls || ""), role: "img" });
    items.forEach(([label, v, text, bad], i) => {
      const yy = 4 + i * ROW;
      svg.append(svgEl("text", { x: 4, y: yy + 14, class: "lbl" }, label.length > 28 ? label.slice(0, 27) + "…" : label));
      const r = svgEl("rect", { x: L, y: yy, width: Math.max(0.5, x(v) - L), height: ROW - 8, fill: bad ? "#e15759" : "#4e79a7", "data-label": label });
      r.append(svgEl("title", {}, label + ": " + text));
      svg.append(r, svgEl("text", { x: x(v) + 4, y: yy + 13, class: "val" }, text));
    });
    if (cap) {
      svg.append(svgEl("line", { x1: x(cap), x2: x(cap), y1: 0, y2: H - 14, class: "cap" }));
      svg.append(svgEl("text", { x: Math.min(x(cap), W - 4), y: H - 3, class: "cap-lbl", "text-anchor": "end" }, capLabel(cap)));
    }
    return el("div", { class: "chart-wrap" }, svg);
  }

  const HEADLINE = {
    time: ["days", "gpus", "gpu_hours", "cost_usd", "total_flop", "mfu"],
    infer: ["max_batch", "max_context", "kv_cache_bytes_per_token", "speed.ttft_s", "speed.decode_tokens_per_s",
      "speed.decode_tokens_per_s_per_seq"],
    plan: ["plans.0.step_s", "plans.0.mfu", "plans.0.tokens_per_s_per_gpu", "plans.0.memory_total_bytes", "plans.0.days",
      "plans.0.cost_usd", "evaluated"],
    train: [],
  };
  // plan --serve: the cheapest deployment that meets the targets
  const SERVE_HEADLINE = ["serve_plans.0.cost_usd_per_million_output_tokens", "serve_plans.0.gpus",
    "serve_plans.0.output_tokens_per_s", "serve_plans.0.ttft_s", "serve_plans.0.tpot_s", "serve_plans.0.limited_by"];
  const pick = (data, k) => k.split(".").reduce((o, p) => (o && typeof o === "object" ? o[p] : undefined), data);
  function keyLabel(k) {
    const keys = t("keys") || {};
    if (keys[k]) return keys[k];
    const last = String(k).split(".").pop();
    if (keys[last]) return keys[last];
    if ((t("comp") || {})[last]) return t("comp")[last];
    return last.replace(/_bytes$/, "").replace(/_usd$/, " (USD)").replace(/_s$/, " (s)").replace(/_/g, " ");
  }
  function card(key, value, label, cls, sub) {
    return el("div", { class: "stat " + (cls || ""), "data-key": key },
      el("div", { class: "stat-v", text: value }), el("div", { class: "stat-k", text: label }),
      sub ? el("div", { class: "stat-s", text: sub }) : null);
  }
  function memoryCards(data) {
    const mem = data.memory;
    const cap = capacityOf(data);
    const phase = data.peak_phase || mem.peak_phase;
    const cards = [
      card("allocated_peak_bytes", fmt.gib(mem.allocated_peak_bytes), t("allocated_peak"), "", t("peak_sub")),
      card("total_bytes", fmt.gib(mem.total_bytes), t("device_total"), "", cap ? t("of") + " " + fmt.gib(cap) + " " + t("usable") : t("per_gpu")),
    ];
    if (data.fits === true || data.fits === false) {
      const free = cap - mem.total_bytes;
      cards.push(card("fits", data.fits ? "✓ " + t("fits") : "✗ " + t("not_fits"), data.fits ? t("free") : t("over_by"),
        data.fits ? "ok" : "bad", fmt.gib(Math.abs(free))));
    } else cards.push(card("fits", "—", t("no_gpu_fit"), ""));
    if (phase) cards.push(card("peak_phase", String(phase), t("peak_phase"), "phase"));
    return el("div", { class: "stats cards" }, cards);
  }
  function summary(data) {
    const mem = data.memory;
    if (!mem || typeof mem.total_bytes !== "number") return [];
    let badge;
    if (data.fits === true) badge = el("span", { class: "badge ok", text: "✓ " + t("fits") });
    else if (data.fits === false) badge = el("span", { class: "badge bad", text: "✗ " + t("not_fits") });
    else badge = el("span", { class: "badge", text: t("no_gpu_fit") });
    const gpu = gpuSpec();
    return [el("div", { class: "summary" }, badge, el("span", { class: "big" }, fmt.gib(mem.total_bytes)),
      el("span", { class: "muted" }, " " + t("per_gpu") + (gpu ? " · " + gpu.name : "")))];
  }
  function headline(data) {
    const keys = (Array.isArray(data.serve_plans) ? SERVE_HEADLINE : HEADLINE[st.tab] || []).filter((k) => pick(data, k) !== undefined && pick(data, k) !== null && typeof pick(data, k) !== "object");
    if (!keys.length) return null;
    return el("div", { class: "stats" }, keys.map((k) => card(k, fmtValue(k, pick(data, k)), keyLabel(k))));
  }

  // A list of objects (ranks, plans) as a table with human headers; nested memory shows its total and peak.
  function objectsTable(list) {
    const cols = [];
    list.forEach((r) => Object.keys(r).forEach((k) => { if (!cols.includes(k) && (typeof r[k] !== "object" || r[k] === null)) cols.push(k); }));
    const memCols = list.some((r) => r.memory && typeof r.memory === "object") ? ["total_bytes", "allocated_peak_bytes"] : [];
    const shown = cols.filter((c) => list.some((r) => r[c] !== null && r[c] !== undefined));
    const cell = (c, v) => (typeof v === "string" && v.length > 48 ? el("code", { class: "long", text: v }) : fmtValue(c, v));
    return table(shown.concat(memCols).map((h) => keyLabel(h) + unitSuffix(h)), list.map((r) =>
      shown.map((c) => cell(c, r[c])).concat(memCols.map((k) => fmtValue(k, (r.memory || {})[k])))), "num");
  }
  function unitSuffix(k) { return /_bytes$/.test(k) ? " (GiB)" : ""; }

  // Advice rows carry the CLI options of the change: "apply" sets them on the page.
  function applyOptions(argv) {
    const cmd = st.options[st.tab];
    if (!cmd || !Array.isArray(argv)) return;
    for (let i = 0; i < argv.length; i++) {
      const [flag, inline] = String(argv[i]).split("=", 2);
      const o = cmd.options.find((x) => x.flag === flag);
      if (!o) continue;
      if (o.kind === "bool") { setVal(o.name, o.default ? "0" : "1"); continue; }
      const v = inline !== undefined ? inline : argv[++i];
      if (v !== undefined) setVal(o.name, String(v));
    }
    if (cmd.options.some((o) => o.name === "gpu")) fillGpus();
    buildOptions();
    schedule();
  }
  function adviceTable(list) {
    return table([t("change"), t("size"), t("fits"), t("time_factor"), ""], list.map((a) => [
      a.change, fmtValue("total_bytes", a.total_bytes), a.fits ? "✓" : "✗",
      typeof a.time_factor === "number" ? "×" + a.time_factor.toFixed(2) : "—",
      Array.isArray(a.options) ? el("button", { type: "button", class: "apply", onclick: () => applyOptions(a.options), text: t("apply") }) : "",
    ]), "num advice");
  }

  function termsBlock(terms) {
    const list = Array.isArray(terms) ? terms : Object.entries(terms).map(([k, v]) => Object.assign({ key: k }, typeof v === "object" ? v : { value: v }));
    return el("div", { class: "terms" }, list.map((term) => el("details", { class: "term" },
      el("summary", {}, el("code", { text: term.key }), " = ", el("strong", { text: fmtValue(term.key, term.value) })),
      term.formula ? el("div", {}, el("span", { class: "muted", text: t("formula") + ": " }), el("code", { text: term.formula })) : null,
      term.inputs && Object.keys(term.inputs).length ? el("div", {}, el("span", { class: "muted", text: t("inputs") + ": " }),
        Object.entries(term.inputs).map(([k, v]) => el("code", { class: "inp", text: k + "=" + (typeof v === "number" ? v.toLocaleString() : JSON.stringify(v)) }))) : null,
      term.source ? el("div", {}, el("span", { class: "muted", text: t("source") + ": " }), term.source) : null)));
  }

  // Every number of the answer, by its JSON key (what the CSV download holds): [key, value] pairs.
  function flatRows(data) {
    const rows = [];
    const walk = (prefix, v) => {
      if (v !== null && typeof v === "object" && !Array.isArray(v)) {
        for (const [k, x] of Object.entries(v)) walk(prefix ? prefix + "." + k : k, x);
      } else if (Array.isArray(v) && v.length && typeof v[0] === "object") {
        v.forEach((x, i) => walk(prefix + "." + i, x));
      } else rows.push([prefix, v]);
    };
    walk("", data);
    return rows;
  }
  function rawBlock(data) {
    const rows = flatRows(data).filter(([k]) => !/^(terms|explain|assumptions)(\.|$)/.test(k));
    return el("details", { class: "raw", "data-block": "raw" }, el("summary", { text: t("details") + " (" + rows.length + ")" }),
      table([t("json_key"), t("value")], rows.map(([k, v]) => [el("code", { text: k }), fmtValue(k, v)]), "kv"));
  }

  // The pinned scenario next to the current one: the headline numbers of both and their difference.
  const COMPARE_KEYS = ["memory.allocated_peak_bytes", "memory.total_bytes", "fits", "peak_phase", "memory.peak_phase",
    "max_batch", "speed.decode_tokens_per_s", "days", "gpus", "cost_usd", "plans.0.step_s", "plans.0.memory_total_bytes"];
  function compareBlock(data) {
    const pin = st.pinned;
    if (!pin || pin.tab !== st.tab) return null;
    const rows = COMPARE_KEYS.filter((k) => pick(pin.data, k) !== undefined || pick(data, k) !== undefined).map((k) => {
      const a = pick(pin.data, k), b = pick(data, k);
      let diff = "";
      if (typeof a === "number" && typeof b === "number") {
        diff = (b - a >= 0 ? "+" : "−") + fmtValue(k, Math.abs(b - a)).replace(/^-/, "");
        if (a) diff += " (" + (b >= a ? "+" : "−") + Math.abs((b - a) / a * 100).toFixed(1) + " %)";
      }
      return [keyLabel(k), fmtValue(k, a), fmtValue(k, b), diff];
    });
    return el("section", { class: "block compare", "data-block": "compare" },
      el("h3", {}, t("comparison") + " ", el("button", { type: "button", class: "apply", id: "unpin", text: t("unpin"),
        onclick: () => { st.pinned = null; if (st.lastResult) render(st.lastResult); } })),
      el("div", { class: "cli-pair" }, el("div", {}, el("span", { class: "muted", text: t("pinned") + ": " }), el("code", { text: pin.cli })),
        el("div", {}, el("span", { class: "muted", text: t("current") + ": " }), el("code", { text: $("cli").textContent }))),
      table(["", t("pinned"), t("current"), t("change")], rows, "num"));
  }

  function render(data) {
    const out = [];
    if (Array.isArray(data)) { $("result").replaceChildren(objectsTable(data)); return; }
    const cmp = compareBlock(data);
    if (cmp) out.push(cmp);
    out.push(...summary(data));
    if (data.memory && typeof data.memory.total_bytes === "number") out.push(memoryCards(data));
    const head = headline(data);
    if (head) out.push(head);
    if (Array.isArray(data.warnings) && data.warnings.length) {
      out.push(section("warnings", el("ul", { class: "warnings" }, data.warnings.map((w) => el("li", { text: typeof w === "string" ? w : JSON.stringify(w) })))));
    }
    if (Array.isArray(data.advice) && data.advice.length) out.push(section("advice", adviceTable(data.advice)));
    const cap = capacityOf(data);
    if (data.memory && typeof data.memory.total_bytes === "number") {
      out.push(section("memory_title", memoryChart(data.memory, cap)));
      const phase = data.peak_phase || data.memory.peak_phase;
      if (Array.isArray(data.phases) && data.phases.length) out.push(section("phases", phaseChart(data.phases, phase, cap)));
    }
    for (const key of ["per_rank", "ranks", "stages"]) {
      const list = data[key];
      if (!Array.isArray(list) || !list.length) continue;
      const bars = list.every((r) => typeof r.total_bytes === "number") ? barChart(list.map((r, i) =>
        [t("stage") + " " + (r.stage ?? i) + (r.layers ? " · " + r.layers : ""), r.total_bytes, fmt.gib(r.total_bytes), cap && r.total_bytes > cap]), cap, "ranks") : null;
      out.push(section("per_rank", bars, objectsTable(list)));
    }
    if (Array.isArray(data.plans)) {
      if (data.plans.length) {
        const plans = data.plans.concat((data.alternatives || []).filter((a) => typeof a.memory_total_bytes === "number"));
        const name = (p) => p.label ? p.label.replace(/^[^:]*:\s*/, "") : layoutName(p);
        out.push(section("plan_compare",
          el("h4", { text: t("step_time") }), barChart(data.plans.map((p) => [layoutName(p), p.step_s || 0, fmtValue("step_s", p.step_s)]), 0, "plan-time"),
          el("h4", { text: t("memory_per_gpu") }), barChart(plans.map((p) => [name(p), p.memory_total_bytes, fmt.gib(p.memory_total_bytes), cap && p.memory_total_bytes > cap]), cap, "plan-mem")));
      }
      out.push(section("plans", data.plans.length ? objectsTable(data.plans) : el("p", { class: "muted", text: t("none") })));
      if (Array.isArray(data.why) && data.why.length) out.push(section("why", el("ul", { class: "notes" }, data.why.map((x) => el("li", { text: x })))));
    }
    if (Array.isArray(data.serve_plans)) {
      // a disaggregated plan's prefill pool is a nested object: shown as its own columns
      const rows = data.serve_plans.map((p) => (p.prefill_pool ? Object.assign({}, p, {
        prefill_gpus: p.prefill_pool.gpus, prefill_tp: p.prefill_pool.tp, prefill_replicas: p.prefill_pool.replicas,
        prefill_util: p.prefill_pool.util, kv_transfer_s: p.prefill_pool.kv_transfer_s }) : p));
      const pools = (p) => (p.prefill_pool ? "P TP" + p.prefill_pool.tp + " x" + p.prefill_pool.replicas + " + D " : "");
      if (rows.length) {
        out.push(section("serve_compare", barChart(rows.map((p) => [p.gpus + " x " + p.gpu + " " + pools(p) + "TP" + p.tp + (p.pp > 1 ? " PP" + p.pp : "") + " x" + p.dp,
          p.cost_usd_per_million_output_tokens || 0, fmtValue("cost_usd_per_million_output_tokens", p.cost_usd_per_million_output_tokens)]), 0, "serve-cost")));
      }
      out.push(section("serve_plans", rows.length ? objectsTable(rows) : el("p", { class: "muted", text: t("none") })));
      const why = Array.isArray(data.why) ? data.why : [];
      if (why.length) out.push(section("why", el("ul", { class: "notes" }, why.map((x) => el("li", { text: typeof x === "string" ? x : JSON.stringify(x) })))));
      if (Array.isArray(data.rejected) && data.rejected.length) out.push(el("details", { class: "raw", "data-block": "rejected" },
        el("summary", { text: t("serve_rejected") + " (" + data.rejected.length + ")" }), objectsTable(data.rejected)));
    }
    if (data.memory && (st.tab === "train" || st.tab === "infer")) {
      out.push(el("section", { class: "block", "data-block": "sweeps", id: "sweeps" }, el("h3", { text: t("charts") }),
        el("div", { class: "sweep-grid" }, el("div", { id: "sweep-a", class: "sweep-box muted", text: t("computing") }), el("div", { id: "sweep-b", class: "sweep-box muted", text: t("computing") }))));
      if (st.tab === "infer") out.push(el("section", { class: "block", "data-block": "dtypes", id: "dtypes" }, el("h3", { text: t("dtype_compare") }), el("div", { id: "dtype-box", class: "muted", text: t("computing") })));
    }
    const terms = data.terms || data.explain || (data.memory && data.memory.terms);
    if (terms && (Array.isArray(terms) ? terms.length : Object.keys(terms).length)) {
      out.push(el("details", { class: "raw", "data-block": "explanation" }, el("summary", { text: t("explanation") }), termsBlock(terms)));
    }
    const assumptions = data.assumptions || (data.memory && data.memory.assumptions);
    if (Array.isArray(assumptions) && assumptions.length) {
      out.push(el("details", { class: "raw", "data-block": "assumptions" }, el("summary", { text: t("assumptions") + " (" + assumptions.length + ")" }),
        el("ul", { class: "assumptions" }, assumptions.map((w) => el("li", { text: typeof w === "string" ? w : JSON.stringify(w) })))));
    }
    out.push(rawBlock(data));
    $("result").replaceChildren(...out);
    if (data.memory && (st.tab === "train" || st.tab === "infer")) extras(data);
  }
  function layoutName(p) {
    const parts = [["tp", "TP"], ["pp", "PP"], ["dp", "DP"], ["cp", "CP"], ["ep", "EP"]].filter(([k]) => p[k] > 1 || k === "dp").map(([k, n]) => n + p[k]);
    if (p.zero) parts.push("ZeRO-" + p.zero);
    if (p.micro_batch) parts.push("mb" + p.micro_batch);
    return parts.join(" ");
  }

  // ---------- charts that need more answers: sweeps (the sweep command) and a weight-format comparison ----------
  const SWEEPS = {
    train: [["seq", [512, 1024, 2048, 4096, 8192, 16384, 32768]], ["batch", [1, 2, 4, 8, 16, 32]]],
    infer: [["context", [1024, 4096, 16384, 32768, 65536, 131072]], ["batch", [1, 4, 16, 64, 128, 256]]],
  };
  const DTYPES = ["bf16", "fp8", "int8", "int4", "awq"];
  // The requests behind the charts say so in a header (the answer is the same; tests and logs tell them apart).
  async function postJSON(command, body, signal) {
    const r = await fetch(API + "/" + command, { method: "POST", headers: { "content-type": "application/json", "x-gpuplan-chart": "1" }, body: JSON.stringify(body), signal });
    const data = await r.json();
    if (!r.ok) throw Object.assign(new Error(data.message || "HTTP " + r.status), { data });
    return data;
  }
  async function extras(data) {
    const tab = st.tab, cmd = st.options[tab], sweepCmd = st.options.sweep, seq = st.seq;
    const { body } = requestBody(cmd);
    if (!body) return;
    const signal = st.ctrl ? st.ctrl.signal : undefined;
    const jobs = [];
    if (sweepCmd) {
      const accepted = new Set(sweepCmd.options.map((o) => o.name));
      SWEEPS[tab].forEach(([over, values], i) => {
        const b = { over, values: values.join(","), mode: tab };
        if (body.model) b.model = body.model;
        if (body.config) b.config = body.config;
        for (const [k, v] of Object.entries(body)) if (accepted.has(k) && !["over", "values", "mode", over].includes(k)) b[k] = v;
        if (over === "context") delete b.prompt;
        const box = $("sweep-" + "ab"[i]);
        const label = optLabelByName(tab, over);
        jobs.push(postJSON("sweep", b, signal).then((sw) => {
          if (seq !== st.seq) return;
          box.className = "sweep-box";
          box.replaceChildren(el("h4", { text: t("memory_vs") + " " + label }), sweepChart(sw, label));
        }).catch((e) => { if (e.name !== "AbortError" && seq === st.seq) box.replaceChildren(el("p", { class: "muted", text: label + ": " + e.message })); }));
      });
    }
    if (tab === "infer") {
      const box = $("dtype-box");
      jobs.push(Promise.all(DTYPES.map((w) => postJSON("infer", Object.assign({}, body, { weights: w, explain: false }), signal)
        .then((d) => [w, d]).catch((e) => [w, null, e]))).then((list) => {
        if (seq !== st.seq) return;
        const cap = capacityOf(data);
        const ok = list.filter(([, d]) => d && d.memory);
        box.className = "";
        box.replaceChildren(barChart(ok.map(([w, d]) => [w + (typeof d.max_batch === "number" ? " · " + t("max_batch_short") + " " + d.max_batch : ""),
          d.memory.total_bytes, fmt.gib(d.memory.total_bytes), d.fits === false]), cap, "dtype"),
        el("p", { class: "note", text: t("dtype_note") }));
      }));
    }
    await Promise.all(jobs);
  }
  function optLabelByName(tab, name) {
    const o = (st.options[tab] || { options: [] }).options.find((x) => x.name === name);
    return o ? optLabel(o) : name;
  }

  // ---------- downloads ----------
  function download(name, type, text) {
    const a = el("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 5000);
  }
  function csvText(data) {
    const q = (v) => { const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v); return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; };
    return "key,value\n" + flatRows(data).map(([k, v]) => q(k) + "," + q(v)).join("\n") + "\n";
  }
  function fileBase() { return "gpuplan-" + st.tab + (st.mode === "preset" && st.model ? "-" + st.model : ""); }

  // ---------- inputs ----------
  function optLabel(o) { return (st.lang === "zh" ? o.label_zh : o.label) || o.label || o.name; }
  function unitText(o) { return o.unit ? ((t("units") || {})[o.unit] || o.unit) : ""; }
  function control(o) {
    const id = "opt-" + o.name;
    const val = getVal(o.name);
    let input;
    const onChange = (e) => {
      const tgt = e.target;
      setVal(o.name, tgt.type === "checkbox" ? (tgt.checked === Boolean(o.default) ? "" : (tgt.checked ? "1" : "0")) : tgt.value);
      if (REVEALS[o.name]) { buildOptions(); const again = $(id); if (again) again.focus(); }
      schedule();
    };
    const help = optHelp(o);
    if (o.kind === "bool") {
      const on = val === undefined || val === "" ? Boolean(o.default) : (val === "1" || val === "true");
      input = el("input", { type: "checkbox", id, "data-opt": o.name, checked: on, onchange: onChange });
      return el("div", { class: "field check", "data-field": o.name }, input, el("label", { for: id, text: optLabel(o), title: help || null }));
    }
    const list = o.choices || o.suggest;
    if (list) {
      const def = o.default !== null && o.default !== undefined ? String(o.default) : "";
      const values = list.map(String).filter((c) => c !== def);
      if (val && !list.map(String).includes(val)) values.push(val); // a value typed elsewhere (a link, the CLI)
      input = el("select", { id, "data-opt": o.name, onchange: onChange },
        el("option", { value: "", text: (def || "—") + " (" + t("default_word") + ")" }),
        values.map((c) => el("option", { value: c, text: c, selected: val !== undefined && val !== "" && c === val })));
    } else {
      input = el("input", {
        id, "data-opt": o.name, type: "text", value: val || "", autocomplete: "off", spellcheck: "false",
        inputmode: ["int", "count", "float"].includes(o.kind) ? (o.kind === "float" ? "decimal" : "text") : null,
        placeholder: o.default !== null && o.default !== undefined && o.default !== false && !(Array.isArray(o.default) && !o.default.length) ? String(o.default) : "",
        oninput: onChange,
      });
    }
    const unit = unitText(o);
    return el("div", { class: "field", "data-field": o.name },
      el("label", { for: id, text: optLabel(o) }),
      unit ? el("div", { class: "with-unit" }, input, el("span", { class: "unit-tag", text: unit })) : input,
      help ? el("small", { class: "help", text: help, title: help }) : null);
  }
  function phone() { return window.matchMedia("(max-width: 820px)").matches; }
  // group titles come with the options (group / group_zh, from the catalog's group.* entries)
  const groupZh = {};
  function groupLabel(g) {
    if (!g) return t("other_options");
    if (st.lang === "zh" && groupZh[g]) return groupZh[g];
    return g[0].toUpperCase() + g.slice(1);
  }
  function buildOptions() {
    const box = $("options");
    const cmd = st.options[st.tab];
    if (!cmd) { box.replaceChildren(el("p", { class: "muted", text: t("not_available") })); return; }
    const opts = cmd.options.filter((o) => !SHARED.has(o.name) && !AUTO_ON.has(o.name) && !o.positional && o.kind !== "object");
    if (!st.started.has(st.tab)) {
      st.started.add(st.tab);
      Object.assign(st.perTab[st.tab], STARTERS[st.tab] || {});
    }
    const names = [...(ESSENTIAL[st.tab] || [])];
    for (const [name, byValue] of Object.entries(REVEALS)) {
      if (names.includes(name)) names.push(...((byValue[getVal(name)] || []).filter((n) => !names.includes(n))));
    }
    const main = names.map((n) => opts.find((o) => o.name === n)).filter(Boolean);
    const groups = new Map();
    for (const o of opts) {
      if (main.includes(o)) continue;
      if (o.group_zh) groupZh[o.group] = o.group_zh;
      if (!groups.has(o.group)) groups.set(o.group, []);
      groups.get(o.group).push(o);
    }
    box.replaceChildren(
      el("h2", { class: "opt-title", text: t("options") }),
      el("div", { class: "grid essentials" }, main.map(control)),
      // a group holding a value opens, except on a phone: there the result comes first
      ...[...groups.entries()].map(([g, list]) => el("details", { class: "more", "data-group": g || "other", open: !phone() && list.some((o) => getVal(o.name)) },
        el("summary", { text: groupLabel(g) + " (" + list.length + ")" }),
        el("div", { class: "grid" }, list.map(control)))));
    const dims = $("mode-dims");
    const dimOpts = DIM_OPTS.map((n) => cmd.options.find((o) => o.name === n)).filter(Boolean);
    dims.replaceChildren(el("div", { class: "grid" }, dimOpts.map(control)));
    const hasGpu = cmd.options.some((o) => o.name === "gpu");
    $("gpu-card").hidden = !hasGpu;
  }
  function buildTabs() {
    document.querySelectorAll("#tabs button").forEach((b) => {
      const on = b.dataset.tab === st.tab;
      b.classList.toggle("active", on);
      b.setAttribute("aria-selected", on ? "true" : "false");
      b.classList.toggle("missing", !st.options[b.dataset.tab]);
    });
  }
  function setMode(mode) {
    st.mode = mode;
    document.querySelectorAll("input[name=mode]").forEach((r) => { r.checked = r.value === mode; });
    for (const m of ["preset", "config", "dims", "stack"]) $("mode-" + m).hidden = m !== mode;
  }

  // model search-as-you-type: every word in the id, Hugging Face id, family, release date or modality (in either
  // English and in the page's language: "vision", and on the Chinese page "视觉" too, find the vision-language presets)
  function modalityText(p) { return p.modality ? t("modality_" + p.modality) : ""; }
  function matches(q) {
    const words = q.toLowerCase().split(/\s+/).filter(Boolean);
    const hits = st.presets.filter((p) => {
      const hay = [p.id, p.hf_id || "", p.family, p.released || "", p.modality || "", modalityText(p)].join(" ").toLowerCase();
      return words.every((w) => hay.includes(w));
    });
    const q0 = words[0] || "";
    hits.sort((a, b) => (b.id.startsWith(q0) - a.id.startsWith(q0)) || a.params - b.params);
    return hits.slice(0, 30);
  }
  let active = -1;
  function showList() {
    const q = $("model-search").value;
    const list = $("model-list");
    const hits = matches(q === st.model ? "" : q);
    active = -1;
    list.replaceChildren(...(hits.length ? hits.map((p, i) => el("li", {
      role: "option", "data-id": p.id, id: "m-" + i,
      onmousedown: (e) => { e.preventDefault(); pickModel(p.id); },
    }, el("span", { class: "mid", text: p.id }), el("span", { class: "mmeta", text: fmt.count(p.params) + (p.active !== p.params ? " / " + fmt.count(p.active) : "") + " · " + p.family + (p.released ? " · " + p.released : "") + (p.modality && p.modality !== "text" ? " · " + modalityText(p) : "") })))
      : [el("li", { class: "muted", text: t("no_match") })]));
    list.hidden = false;
    $("model-search").setAttribute("aria-expanded", "true");
  }
  function hideList() { $("model-list").hidden = true; $("model-search").setAttribute("aria-expanded", "false"); }
  function pickModel(id) {
    st.model = id;
    $("model-search").value = id;
    hideList();
    showModelInfo();
    schedule();
  }
  function showModelInfo() {
    const p = st.presets.find((x) => x.id === st.model);
    $("model-info").textContent = p ? `${p.hf_id || p.id} · ${fmt.count(p.params)} ${t("params_total")}` +
      (p.active !== p.params ? ` · ${fmt.count(p.active)} ${t("params_active")}` : "") +
      // the release date and modality on wider screens: on a phone the line stays one row, the result first
      (p.released && !phone() ? ` · ${t("released")} ${p.released}` : "") +
      (p.modality && !phone() ? ` · ${modalityText(p)}` : "") : "";
  }
  function onSearchKey(e) {
    const items = [...$("model-list").querySelectorAll("li[data-id]")];
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if ($("model-list").hidden) showList();
      active = Math.max(0, Math.min(items.length - 1, active + (e.key === "ArrowDown" ? 1 : -1)));
      items.forEach((li, i) => li.classList.toggle("hl", i === active));
      if (items[active]) { items[active].scrollIntoView({ block: "nearest" }); $("model-search").setAttribute("aria-activedescendant", items[active].id); }
    } else if (e.key === "Enter") {
      e.preventDefault();
      const pick = items[active >= 0 ? active : 0];
      if (pick) pickModel(pick.dataset.id);
    } else if (e.key === "Escape") { hideList(); $("model-search").value = st.model; }
  }

  function fillGpus() {
    const sel = $("gpu");
    const groups = {};
    st.gpus.forEach((g) => { (groups[g.vendor] = groups[g.vendor] || []).push(g); });
    sel.replaceChildren(el("option", { value: "", text: t("no_gpu") }),
      ...Object.entries(groups).map(([vendor, list]) => el("optgroup", { label: vendor },
        list.map((g) => el("option", { value: g.id, selected: g.id === st.shared.gpu, text: `${g.name} · ${fmt.gib(g.memory_usable_bytes)}` })))));
  }

  async function init() {
    readUrl();
    $("lang-toggle").addEventListener("click", () => { st.lang = st.lang === "zh" ? "en" : "zh"; applyLang(); buildOptions(); showModelInfo(); writeUrl(); if (st.lastResult) render(st.lastResult); else if (st.lastError) showError(st.lastError); });
    document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => {
      st.tab = b.dataset.tab; st.lastResult = null; buildTabs(); buildOptions();
      if (st.options[st.tab]) schedule(); else { writeUrl(); compute(); }
    }));
    document.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", () => { setMode(r.value); schedule(); }));
    const search = $("model-search");
    search.addEventListener("input", showList);
    search.addEventListener("focus", () => { search.select(); showList(); });
    search.addEventListener("blur", () => { hideList(); search.value = st.model; });
    search.addEventListener("keydown", onSearchKey);
    $("config-text").addEventListener("input", (e) => {
      st.config = e.target.value;
      let ok = true; try { JSON.parse(st.config); } catch (err) { ok = false; }
      $("config-status").textContent = st.config.trim() ? (ok ? t("config_ok") : t("config_bad_json")) : "";
      if (ok) schedule();
    });
    $("stack-text").addEventListener("input", (e) => { st.stack = e.target.value; if (st.stack.trim()) schedule(); });
    $("gpu").addEventListener("change", (e) => { st.shared.gpu = e.target.value; schedule(); });
    $("dl-json").addEventListener("click", () => { if (st.lastResult) download(fileBase() + ".json", "application/json", JSON.stringify(st.lastResult, null, 2) + "\n"); });
    $("dl-csv").addEventListener("click", () => { if (st.lastResult) download(fileBase() + ".csv", "text/csv", csvText(st.lastResult)); });
    $("pin").addEventListener("click", () => {
      if (!st.lastResult) return;
      st.pinned = { data: st.lastResult, cli: $("cli").textContent, tab: st.tab };
      render(st.lastResult);
    });
    $("copy-link").addEventListener("click", async () => {
      writeUrl();
      try { await navigator.clipboard.writeText(location.href); } catch (e) { /* no clipboard permission */ }
      $("copy-link").textContent = t("copied");
      setTimeout(() => { $("copy-link").textContent = t("copy_link"); }, 1500);
    });
    const [options, presets, gpus] = await Promise.all([getJSON("/options"), getJSON("/models"), getJSON("/gpus")]);
    st.options = options; st.presets = presets; st.gpus = gpus;
    if (st.shared.gpu === undefined) st.shared.gpu = "h100-sxm";
    if (!st.gpus.some((g) => g.id === st.shared.gpu)) st.shared.gpu = "";
    fillGpus();
    applyLang();
    setMode(st.mode);
    search.value = st.model;
    $("config-text").value = st.config;
    $("stack-text").value = st.stack;
    showModelInfo();
    buildTabs();
    buildOptions();
    document.body.dataset.ready = "1";
    compute();
    writeUrl();
  }
  window.addEventListener("DOMContentLoaded", () => { init().catch((e) => showError({ field: "page", rule: String(e) })); });
})();
