// A small, offline reader of the OpenAPI schema: endpoints, their fields and an example call.
"use strict";
(async function () {
  const box = document.getElementById("doc");
  const spec = await (await fetch("openapi.json")).json();
  const el = (tag, text, cls) => { const e = document.createElement(tag); if (text) e.textContent = text; if (cls) e.className = cls; return e; };
  const resolve = (s) => (s && s.$ref ? spec.components.schemas[s.$ref.split("/").pop()] : s) || {};
  const typeOf = (s) => {
    if (!s) return "";
    if (s.$ref) return s.$ref.split("/").pop();
    if (s.anyOf) return s.anyOf.filter((x) => x.type !== "null").map(typeOf).join(" | ");
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (s.const !== undefined) return JSON.stringify(s.const);
    let t = s.type || "object";
    if (s.minimum !== undefined || s.maximum !== undefined) t += ` [${s.minimum ?? ""}..${s.maximum ?? ""}]`;
    return t;
  };
  box.replaceChildren(el("h2", spec.info.title + " " + spec.info.version), el("p", spec.info.description, "muted"));
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const sec = el("section", "", "block");
      sec.append(el("h3", method.toUpperCase() + " " + path));
      if (op.summary) sec.append(el("p", op.summary));
      if (op.description) sec.append(el("p", op.description, "muted"));
      const rows = [];
      (op.parameters || []).forEach((p) => rows.push([p.name + " (" + p.in + ")", typeOf(p.schema), p.description || ""]));
      const body = op.requestBody && resolve(op.requestBody.content["application/json"].schema);
      if (body && body.properties) Object.entries(body.properties).forEach(([k, s]) => rows.push([k, typeOf(s), s.description || ""]));
      if (rows.length) {
        const tbl = el("table");
        const head = el("tr"); ["field", "type", ""].forEach((h) => head.append(el("th", h)));
        tbl.append(head);
        rows.forEach((r) => { const tr = el("tr"); r.forEach((c, i) => { const td = el("td", c); if (i === 2) td.style.whiteSpace = "normal"; tr.append(td); }); tbl.append(tr); });
        const wrap = el("div", "", "table-wrap"); wrap.append(tbl); sec.append(wrap);
      }
      if (method === "post") {
        const ex = el("code"); ex.textContent = `curl -s -X POST localhost:8000${path} -H 'content-type: application/json' -d '{"model": "llama-3.1-8b"}'`;
        const d = el("div", "", "cli-box"); d.append(ex); sec.append(d);
      }
      box.append(sec);
    }
  }
})();
