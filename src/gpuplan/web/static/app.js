// gpuplan page: forms built from the CLI's options (/api/v1/options), results from the JSON API.
// No framework, no build step. State lives in the URL so that a link reproduces the result.
"use strict";
(function () {
  const API = "api/v1"; // relative: the page also works behind a proxy under a sub-path
  const TABS = ["train", "infer", "time", "plan"];
  const DIM_OPTS = ["layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "experts", "top_k", "params"];
  const SHARED = new Set(["gpu", ...DIM_OPTS]);
  const AUTO_ON = new Set(["explain"]); // always asked for: the page shows every number's explanation
  const MAIN_OPTS = {
    train: ["method", "precision", "optimizer", "batch", "seq", "grad_accum", "recompute", "attention", "framework",
      "zero", "gpus", "dp", "tp", "pp", "ep", "cp", "lora_rank", "per_rank", "advise"],
    infer: ["weights", "kv_dtype", "batch", "context", "engine", "tp", "advise"],
    time: ["tokens", "gpus", "days", "mfu", "price", "seq"],
    plan: ["gpus", "tokens", "days", "seq", "global_batch", "objective", "top"],
  };
  // First values on a tab's first visit, so it shows a result at once (visible and editable); a link's values win.
  const STARTERS = { time: { tokens: "2T" }, plan: { gpus: "8" } };
  const COMP_KEYS = ["weights_bytes", "gradients_bytes", "optimizer_bytes", "master_weights_bytes",
    "activations_bytes", "logits_bytes", "kv_cache_bytes", "buffers_bytes"];
  const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#edc948", "#76b7b2", "#9c755f"];
  const GiB = 1024 ** 3;

  const st = {
    lang: "en", tab: "train", mode: "preset", model: "", config: "",
    shared: {}, perTab: { train: {}, infer: {}, time: {}, plan: {} }, started: new Set(),
    options: {}, presets: [], gpus: [], seq: 0, ctrl: null, timer: 0, lastResult: null,
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
  function optLabel(o) { return (window.GP_I18N[st.lang].opt || {})[o.name] || o.flag; }
  // Help in the page's language: a text of i18n.js, else the option's own help_zh (from /api/v1/options), else English.
  function optHelp(o) {
    return (window.GP_I18N[st.lang].help || {})[o.name] || (st.lang === "zh" && o.help_zh) || o.help;
  }
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
    seconds: (s) => s >= 86400 ? (s / 86400).toFixed(1) + (st.lang === "zh" ? " 天" : " days")
      : s >= 3600 ? (s / 3600).toFixed(1) + " h" : s >= 1 ? s.toFixed(2) + " s" : (s * 1000).toFixed(2) + " ms",
  };
  function fmtValue(key, v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "boolean") return v ? t("yes") : t("no");
    if (typeof v !== "number") return Array.isArray(v) ? v.join(", ") : (typeof v === "object" ? JSON.stringify(v) : String(v));
    const k = String(key);
    if (/_bytes_per_s($|_)/.test(k)) return (v / 1e9).toLocaleString(undefined, { maximumFractionDigits: 1 }) + " GB/s";
    if (/_flop_per_s($|_)/.test(k)) return (v / 1e12).toLocaleString(undefined, { maximumFractionDigits: 1 }) + " TFLOP/s";
    if (/_per_s($|_)/.test(k)) return v.toLocaleString(undefined, { maximumFractionDigits: 1 }) + " /s";
    if (k === "mfu" || k.endsWith("_fraction") || k.endsWith("_utilization")) return (v * 100).toFixed(1) + " %";
    if (v === 0) return "0";
    if (/(^|_)bytes($|_)/.test(k)) return fmt.bytes(v);
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
    const box = el("div", { class: "error", role: "alert" },
      el("strong", { text: t("error") + ": " }),
      el("code", { text: err.field || "" }), err.value !== undefined && err.value !== null ? " = " + JSON.stringify(err.value) : "",
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

  function memoryChart(mem) {
    const gpu = gpuSpec();
    const cap = gpu ? gpu.memory_usable_bytes : 0;
    const comps = COMP_KEYS.filter((k) => mem[k] > 0);
    const sum = comps.reduce((a, k) => a + mem[k], 0);
    const total = mem.total_bytes || 0, peak = mem.allocated_peak_bytes || 0;
    const scale = Math.max(sum, total, cap, 1) * 1.08;
    // drawn at the width it is shown at, so its text keeps its size on a phone
    const W = Math.max(300, Math.min(760, ($("result").clientWidth || 640))), L = W < 500 ? 92 : 118, R = 12;
    const BW = W - L - R, H = 118;
    const x = (b) => L + (b / scale) * BW;
    const ns = "http://www.w3.org/2000/svg";
    const s = (tag, a, text) => {
      const n = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(a)) n.setAttribute(k, v);
      if (text !== undefined) n.textContent = text;
      return n;
    };
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": t("memory_title") });
    svg.append(s("text", { x: 4, y: 32, class: "lbl" }, t("components")));
    let at = 0;
    comps.forEach((k) => {
      const i = COMP_KEYS.indexOf(k);
      const r = s("rect", { x: x(at), y: 16, width: Math.max(0.5, x(at + mem[k]) - x(at)), height: 26, fill: COLORS[i], "data-key": k });
      r.append(s("title", {}, compLabel(k) + ": " + fmt.gib(mem[k])));
      svg.append(r); at += mem[k];
    });
    svg.append(s("text", { x: 4, y: 74, class: "lbl" }, t("device_total")));
    const rp = s("rect", { x: L, y: 58, width: Math.max(0.5, x(peak) - L), height: 26, fill: "#8a8f98", "data-key": "allocated_peak_bytes" });
    rp.append(s("title", {}, t("allocated_peak") + ": " + fmt.gib(peak)));
    const ro = s("rect", { x: x(peak), y: 58, width: Math.max(0, x(total) - x(peak)), height: 26, fill: "#c9ccd1", "data-key": "overhead" });
    ro.append(s("title", {}, t("overhead") + ": " + fmt.gib(Math.max(0, total - peak))));
    svg.append(rp, ro);
    if (total) svg.append(s("text", { x: Math.min(x(total) + 4, W - 70), y: 100, class: "val" }, fmt.gib(total)));
    if (cap) {
      svg.append(s("line", { x1: x(cap), x2: x(cap), y1: 6, y2: 92, class: "cap" }));
      const label = (gpu ? gpu.id : "") + " " + t("capacity") + " " + fmt.gib(cap);
      const tx = x(cap) > W / 2 ? x(cap) - 4 : x(cap) + 4;
      svg.append(s("text", { x: tx, y: 112, class: "cap-lbl", "text-anchor": x(cap) > W / 2 ? "end" : "start" }, label));
    }
    const legend = el("ul", { class: "legend" },
      comps.map((k) => el("li", {}, el("span", { class: "sw", style: `background:${COLORS[COMP_KEYS.indexOf(k)]}` }),
        compLabel(k) + " " + fmt.gib(mem[k]))),
      el("li", {}, el("span", { class: "sw", style: "background:#8a8f98" }), t("allocated_peak") + " " + fmt.gib(peak)),
      el("li", {}, el("span", { class: "sw", style: "background:#c9ccd1" }), t("overhead") + " " + fmt.gib(Math.max(0, total - peak))));
    return el("div", { class: "chart-wrap" }, svg, legend);
  }

  function summary(data) {
    const mem = data.memory;
    const gpu = gpuSpec();
    const parts = [];
    if (mem && typeof mem.total_bytes === "number") {
      let badge;
      if (data.fits === true) badge = el("span", { class: "badge ok", text: "✓ " + t("fits") });
      else if (data.fits === false) badge = el("span", { class: "badge bad", text: "✗ " + t("not_fits") });
      else badge = el("span", { class: "badge", text: t("no_gpu_fit") });
      parts.push(el("div", { class: "summary" }, badge, el("span", { class: "big" }, fmt.gib(mem.total_bytes)),
        gpu ? el("span", { class: "muted" }, " " + t("of") + " " + fmt.gib(gpu.memory_usable_bytes) + " · " + gpu.name) : null,
        el("span", { class: "muted" }, " " + t("per_gpu"))));
    }
    return parts;
  }

  const HEADLINE = {
    time: ["days", "gpus", "gpu_hours", "cost_usd", "total_flop", "mfu"],
    infer: ["max_batch", "max_context", "kv_cache_bytes_per_token", "speed.ttft_s", "speed.decode_tokens_per_s",
      "speed.decode_tokens_per_s_per_seq"],
    plan: [],
    train: [],
  };
  function keyLabel(k) { return (t("keys") || {})[k] || k; }
  function headline(data) {
    const get = (k) => k.split(".").reduce((o, p) => (o && typeof o === "object" ? o[p] : undefined), data);
    const keys = (HEADLINE[st.tab] || []).filter((k) => get(k) !== undefined && get(k) !== null && typeof get(k) !== "object");
    if (!keys.length) return null;
    return el("div", { class: "stats" }, keys.map((k) => el("div", { class: "stat", "data-key": k },
      el("div", { class: "stat-v", text: fmtValue(k.split(".").pop(), get(k)) }), el("div", { class: "stat-k", text: keyLabel(k) }))));
  }

  function memoryTable(mem) {
    const rows = Object.keys(mem).filter((k) => typeof mem[k] === "number").map((k) => [compLabel(k), fmt.gib(mem[k]), mem[k].toLocaleString()]);
    return table([t("component"), t("size"), t("bytes")], rows, "num");
  }

  function objectsTable(list) {
    const cols = [];
    list.forEach((r) => Object.keys(r).forEach((k) => { if (!cols.includes(k) && (typeof r[k] !== "object" || r[k] === null)) cols.push(k); }));
    const memCols = list.some((r) => r.memory && typeof r.memory === "object") ? ["total_bytes", "allocated_peak_bytes"] : [];
    const headers = cols.concat(memCols.map((k) => "memory." + k));
    const cell = (c, v) => (typeof v === "string" && v.length > 48 ? el("code", { class: "long", text: v }) : fmtValue(c, v));
    return table(headers.map((h) => keyLabel(h.replace(/^memory\./, ""))), list.map((r) =>
      cols.map((c) => cell(c, r[c])).concat(memCols.map((k) => fmtValue(k, (r.memory || {})[k])))), "num");
  }

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

  function render(data) {
    const out = [];
    const used = new Set();
    if (Array.isArray(data)) { $("result").replaceChildren(objectsTable(data)); return; }
    out.push(...summary(data));
    const head = headline(data);
    if (head) out.push(head);
    if (data.memory && typeof data.memory === "object") {
      used.add("memory").add("fits");
      out.push(section("memory_title", memoryChart(data.memory), memoryTable(data.memory),
        data.peak_phase || data.memory.peak_phase ? el("p", { class: "muted", text: t("peak_phase") + ": " + (data.peak_phase || data.memory.peak_phase) }) : null));
      used.add("peak_phase");
    }
    for (const key of ["per_rank", "ranks", "stages"]) {
      if (Array.isArray(data[key]) && data[key].length) { used.add(key); out.push(section("per_rank", objectsTable(data[key]))); }
    }
    if (Array.isArray(data.plans)) {
      used.add("plans");
      out.push(section("plans", data.plans.length ? objectsTable(data.plans) : el("p", { class: "muted", text: t("none") })));
    }
    if (Array.isArray(data.advice) && data.advice.length) { used.add("advice"); out.push(section("advice", adviceTable(data.advice))); }
    const rows = [];
    const tables = [];
    const lists = [];
    const flatten = (prefix, obj) => {
      for (const [k, v] of Object.entries(obj)) {
        const key = prefix ? prefix + "." + k : k;
        if (!prefix && used.has(k)) continue;
        if (["terms", "explain", "assumptions", "warnings"].includes(k) && !prefix) continue;
        if (v !== null && typeof v === "object" && !Array.isArray(v)) flatten(key, v);
        else if (Array.isArray(v) && v.length && typeof v[0] === "object") tables.push([key, v]);
        else if (!prefix && Array.isArray(v) && v.length && typeof v[0] === "string") lists.push([key, v]);
        else if (!(prefix && Array.isArray(v) && !v.length)) rows.push([keyLabel(key), fmtValue(k, v), key]);
      }
    };
    flatten("", data);
    for (const [key, list] of lists) {
      out.push(el("section", { class: "block", "data-block": key }, el("h3", { text: keyLabel(key) }),
        el("ul", { class: "notes" }, list.map((x) => el("li", { text: x })))));
    }
    if (rows.length) out.push(section("other_numbers", table(["", ""], rows.map((r) => [r[0], r[1]]), "kv")));
    const terms = data.terms || data.explain || (data.memory && data.memory.terms);
    if (terms && (Array.isArray(terms) ? terms.length : Object.keys(terms).length)) out.push(section("explanation", termsBlock(terms)));
    used.add("terms").add("explain");
    for (const key of ["assumptions", "warnings"]) {
      const list = data[key] || (data.memory && data.memory[key]);
      used.add(key);
      if (Array.isArray(list) && list.length) out.push(section(key, el("ul", { class: key }, list.map((w) => el("li", { text: typeof w === "string" ? w : JSON.stringify(w) })))));
    }
    for (const [key, list] of tables) {   // any other list the engine added, so nothing is hidden
      out.push(el("section", { class: "block" }, el("h3", { text: keyLabel(key) }), objectsTable(list)));
    }
    $("result").replaceChildren(...out);
  }

  // ---------- inputs ----------
  function control(o) {
    const id = "opt-" + o.name;
    const val = getVal(o.name);
    let input;
    const onChange = (e) => {
      const tgt = e.target;
      setVal(o.name, tgt.type === "checkbox" ? (tgt.checked === Boolean(o.default) ? "" : (tgt.checked ? "1" : "0")) : tgt.value);
      schedule();
    };
    if (o.kind === "bool") {
      const on = val === undefined || val === "" ? Boolean(o.default) : (val === "1" || val === "true");
      input = el("input", { type: "checkbox", id, "data-opt": o.name, checked: on, onchange: onChange });
      return el("div", { class: "field check" }, input, el("label", { for: id, text: optLabel(o), title: optHelp(o) }));
    }
    if (o.kind === "choice") {
      input = el("select", { id, "data-opt": o.name, onchange: onChange },
        el("option", { value: "", text: (o.default !== null && o.default !== undefined ? String(o.default) : "—") + " (" + t("default_word") + ")" }),
        o.choices.map((c) => el("option", { value: String(c), text: String(c), selected: val !== undefined && val !== "" && String(c) === val })));
    } else {
      input = el("input", {
        id, "data-opt": o.name, type: "text", value: val || "", autocomplete: "off", spellcheck: "false",
        inputmode: ["int", "count", "float"].includes(o.kind) ? (o.kind === "float" ? "decimal" : "text") : null,
        placeholder: o.default !== null && o.default !== undefined && o.default !== false ? String(o.default) : "",
        oninput: onChange,
      });
    }
    const help = optHelp(o);
    return el("div", { class: "field" }, el("label", { for: id, text: optLabel(o), title: o.flag }), input,
      help ? el("small", { class: "help", text: help }) : null);
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
    const main = (MAIN_OPTS[st.tab] || []).map((n) => opts.find((o) => o.name === n)).filter(Boolean);
    const rest = opts.filter((o) => !main.includes(o));
    box.replaceChildren(
      el("h2", { text: t("options") }),
      el("div", { class: "grid" }, main.map(control)),
      rest.length ? el("details", { class: "more", open: rest.some((o) => getVal(o.name)) },
        el("summary", { text: t("more_options") + " (" + rest.length + ")" }),
        el("div", { class: "grid" }, rest.map(control))) : null);
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
    for (const m of ["preset", "config", "dims"]) $("mode-" + m).hidden = m !== mode;
  }

  // model search-as-you-type
  function matches(q) {
    const words = q.toLowerCase().split(/\s+/).filter(Boolean);
    const hits = st.presets.filter((p) => {
      const hay = (p.id + " " + (p.hf_id || "") + " " + p.family).toLowerCase();
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
    }, el("span", { class: "mid", text: p.id }), el("span", { class: "mmeta", text: fmt.count(p.params) + (p.active !== p.params ? " / " + fmt.count(p.active) : "") + " · " + p.family })))
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
      (p.active !== p.params ? ` · ${fmt.count(p.active)} ${t("params_active")}` : "") : "";
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
    $("gpu").addEventListener("change", (e) => { st.shared.gpu = e.target.value; schedule(); });
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
    showModelInfo();
    buildTabs();
    buildOptions();
    document.body.dataset.ready = "1";
    compute();
    writeUrl();
  }
  window.addEventListener("DOMContentLoaded", () => { init().catch((e) => showError({ field: "page", rule: String(e) })); });
})();
