/* Recovery Ledger · flows page.
 *
 * Everything shown comes from this server's POST /graphql, called with the
 * token the user enters (kept in sessionStorage: this tab only, gone when it
 * closes). The server scopes every answer to the token's organisation, so a
 * participant sees what it may read and a regulator everything; the page adds
 * no access rules of its own. Data is put in the DOM with textContent only.
 *
 * After a Sankey is drawn, its element carries data-state="rendered" and
 * data-nodes (the ids of the nodes drawn, sorted, as JSON) for tests and scripts.
 */
"use strict";

const TOKEN_KEY = "rledger.token";

const $ = (id) => document.getElementById(id);
const state = { fields: new Set(), groupings: [], flows: null, charts: {} };

// --- GraphQL --------------------------------------------------------------------

class ApiFailure extends Error {}

async function gql(query, variables) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables: variables || {} }),
    });
  } catch (err) {
    throw new ApiFailure(`the server did not answer (${err.message}); check it is running and try again`);
  }
  let body;
  try {
    body = await response.json();
  } catch (_err) {
    throw new ApiFailure(`the server answered HTTP ${response.status} without JSON; try again`);
  }
  if (response.status === 401) {
    forgetToken();
    throw new ApiFailure("the token was not accepted (unknown, revoked or expired): enter a valid one");
  }
  if (body.errors && body.errors.length) {
    throw new ApiFailure(body.errors.map((e) => e.message).join("\n"));
  }
  return body.data;
}

// --- small DOM helpers ----------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function table(headers, rows, numeric) {
  const num = new Set(numeric || []);
  const head = el("tr", {}, ...headers.map((h, i) => el("th", num.has(i) ? { class: "num" } : {}, h)));
  const body = rows.map((r) => el("tr", {}, ...r.map((c, i) => el("td", num.has(i) ? { class: "num" } : {}, c))));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

function formatMass(grams) {
  const g = Number(grams);
  if (Math.abs(g) >= 1e6) return `${(g / 1e6).toLocaleString("en", { maximumFractionDigits: 2 })} t`;
  if (Math.abs(g) >= 1e3) return `${(g / 1e3).toLocaleString("en", { maximumFractionDigits: 1 })} kg`;
  return `${g} g`;
}

function formatShare(value) {
  return value === null || value === undefined ? "–" : `${(Number(value) * 100).toFixed(1)} %`;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function guarded(task) {
  showError("");
  try {
    await task();
  } catch (err) {
    if (!(err instanceof ApiFailure)) console.error(err);
    showError(err.message || String(err));
  }
}

// --- token ----------------------------------------------------------------------

function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  $("app").hidden = true;
  $("login").hidden = false;
  $("who").textContent = "";
}

async function enter() {
  const data = await gql(`{
    viewer { org roles readsEverything }
    __type(name: "Query") { fields { name args { name type { name kind ofType { name kind } } } } }
  }`);
  const v = data.viewer;
  $("who").textContent = `${v.org} (${v.roles.join(", ") || "no roles"}) · ${
    v.readsEverything ? "reads everything" : "reads what it holds or handled"}`;
  state.fields = new Set(data.__type.fields.map((f) => f.name));
  await loadGroupings(data.__type.fields);
  await loadAnomalyKinds(data.__type.fields);
  $("login").hidden = true;
  $("app").hidden = false;
  await guarded(loadFlows);
}

async function loadGroupings(fields) {
  const select = $("f-group");
  select.replaceChildren();
  const flows = fields.find((f) => f.name === "materialFlows");
  const arg = flows && flows.args.find((a) => a.name === "groupBy");
  let enumName = arg && (arg.type.name || (arg.type.ofType && arg.type.ofType.name));
  if (enumName) {
    const data = await gql(`query E($n: String!) { __type(name: $n) { enumValues { name } } }`, { n: enumName });
    state.groupings = ((data.__type && data.__type.enumValues) || []).map((e) => e.name);
  } else {
    state.groupings = [];
  }
  for (const name of state.groupings) select.append(el("option", { value: name }, name.toLowerCase()));
  $("f-group-label").hidden = state.groupings.length === 0;
}

// --- flows ----------------------------------------------------------------------

function flowFilters() {
  return {
    from: $("f-from").value || null,
    to: $("f-to").value || null,
    material: $("f-material").value.trim() || null,
    region: $("f-region").value.trim() || null,
    groupBy: $("f-group").value || null,
  };
}

async function loadFlows() {
  const chart = $("chart");
  chart.dataset.state = "loading";
  const filters = flowFilters();
  const flows = await fetchMaterialFlows(filters);
  state.flows = flows;
  renderSummary(flows);
  const label = new Map(flows.nodes.map((n) => [n.id, n.label]));
  const dropped = renderSankey("flows", chart, flows.nodes, flows.links);
  $("chart-note").textContent = dropped.length
    ? `Not drawn (a Sankey has no loops; the table and CSV have them): ${dropped
      .map((l) => `${label.get(l.source)} → ${label.get(l.target)} ${formatMass(l.massG)}`).join("; ")}.`
    : "";
  renderFlowTables(flows);
  $("f-csv").disabled = false;
}

/* materialFlows(from, to, material, region, groupBy): the server sums the grams
 * (ledger/flows.py); the page only draws them. The To date is inclusive here, so
 * the query's exclusive "to" is the next day, 00:00 UTC. */
const FLOWS_QUERY = `query Flows($from: DateTime, $to: DateTime, $material: String, $region: String, $groupBy: FlowGroupBy!) {
  materialFlows(from: $from, to: $to, material: $material, region: $region, groupBy: $groupBy) {
    groupBy
    nodes { id kind massG }
    links { source target massG }
    stages { stage massG }
    disposedByMethod { method massG }
    recoveryRate { basisPoints percent }
    reuseRate { basisPoints percent }
    disposalRate { basisPoints percent }
    months { month stages { stage massG } }
  }
}`;

function flowVariables(f) {
  return {
    from: f.from ? `${f.from}T00:00:00Z` : null,
    to: f.to ? `${nextDay(f.to)}T00:00:00Z` : null,
    material: f.material,
    region: f.region,
    groupBy: f.groupBy || "STAGE",
  };
}

async function fetchMaterialFlows(f) {
  if (!state.fields.has("materialFlows")) {
    throw new ApiFailure("this server has no materialFlows query: update the ledger server");
  }
  const mf = (await gql(FLOWS_QUERY, flowVariables(f))).materialFlows;
  const nameOf = mf.nodes.some((n) => n.kind === "organisation") ? await organisationNames() : new Map();
  const inSeries = new Set(mf.months.flatMap((m) => m.stages.filter((s) => s.massG > 0).map((s) => s.stage)));
  const stageNames = [...new Set([...mf.stages.map((s) => s.stage), ...inSeries])].filter((s) => inSeries.has(s));
  return {
    filters: f,
    nodes: mf.nodes.map((n) => ({ id: n.id, kind: n.kind, label: nameOf.get(n.id) || n.id, massG: n.massG })),
    links: mf.links,
    stages: mf.stages,
    rates: [
      { label: "recovery rate (recycled ÷ collected)", rate: mf.recoveryRate },
      { label: "reuse rate (second life ÷ collected)", rate: mf.reuseRate },
      { label: "disposal rate (disposed ÷ collected)", rate: mf.disposalRate },
    ],
    disposed: mf.disposedByMethod,
    months: mf.months,
    seriesColumns: ["month", ...stageNames],
  };
}

async function organisationNames() {
  if (!state.orgNames) {
    const data = await gql("{ organisations { id name } }");
    state.orgNames = new Map(data.organisations.map((o) => [o.id, o.name]));
  }
  return state.orgNames;
}

function nextDay(isoDate) {
  const d = new Date(`${isoDate}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

function renderSummary(flows) {
  const box = $("flows-summary");
  box.replaceChildren();
  const collected = (flows.stages.find((s) => s.stage === "collected") || { massG: 0 }).massG;
  box.append(el("div", {}, el("b", {}, formatMass(collected)), el("span", {}, "collected")));
  for (const r of flows.rates) {
    box.append(el("div", { "data-bp": String(r.rate.basisPoints) },
      el("b", {}, `${r.rate.percent.toFixed(2)} %`), el("span", {}, r.label)));
  }
  for (const d of flows.disposed) {
    box.append(el("div", {}, el("b", {}, formatMass(d.massG)), el("span", {}, `disposed: ${d.method}`)));
  }
}

function renderFlowTables(flows) {
  const label = new Map(flows.nodes.map((n) => [n.id, n.label]));
  $("flows-table").replaceChildren(
    el("h2", {}, "Stages (grams in)"),
    table(["Stage", "Mass", "Grams"], flows.stages.map((s) => [s.stage, formatMass(s.massG), s.massG]), [1, 2]),
    el("h2", {}, "Links"),
    table(
      ["From", "To", "Mass", "Grams"],
      flows.links.map((l) => [label.get(l.source) || l.source, label.get(l.target) || l.target, formatMass(l.massG), l.massG]),
      [2, 3],
    ),
  );
  const series = $("flows-series");
  series.replaceChildren();
  if (flows.months.length) {
    const cols = flows.seriesColumns;
    const rows = flows.months.map((m) => {
      const by = new Map(m.stages.map((s) => [s.stage, s.massG]));
      return [m.month, ...cols.slice(1).map((c) => formatMass(by.get(c) || 0))];
    });
    series.append(el("h2", {}, "By month (grams into each stage)"),
      table(cols, rows, cols.map((_c, i) => i).slice(1)));
  }
}

/* A Sankey must be acyclic (ECharts refuses cycles): links that close a cycle
 * (e.g. organisations trading both ways) are left out of the drawing, and named. */
function acyclic(nodes, links) {
  const out = new Map(nodes.map((n) => [n.id, []]));
  for (const l of links) if (out.has(l.source)) out.get(l.source).push(l);
  const colour = new Map(); // 1: on the path, 2: done
  const dropped = new Set();
  const visit = (id) => {
    colour.set(id, 1);
    for (const l of out.get(id) || []) {
      const c = colour.get(l.target);
      if (c === 1 || l.source === l.target) dropped.add(l);
      else if (!c) visit(l.target);
    }
    colour.set(id, 2);
  };
  for (const n of nodes) if (!colour.get(n.id)) visit(n.id);
  return { kept: links.filter((l) => !dropped.has(l)), dropped: [...dropped] };
}

function renderSankey(name, element, nodes, links) {
  if (typeof echarts === "undefined") throw new Error("the charting library did not load (/flows/echarts.min.js)");
  if (state.charts[name]) state.charts[name].dispose();
  const known = new Set(nodes.map((n) => n.id));
  const { kept, dropped } = acyclic(nodes, links.filter((l) => known.has(l.source) && known.has(l.target) && l.massG > 0));
  const used = new Set(kept.flatMap((l) => [l.source, l.target]));
  const shown = nodes.filter((n) => used.has(n.id));
  const labels = new Map(shown.map((n) => [n.id, n.label]));
  element.dataset.state = "drawing";
  const chart = echarts.init(element, null, { renderer: "svg" });
  state.charts[name] = chart;
  chart.on("finished", () => {
    element.dataset.nodes = JSON.stringify(shown.map((n) => n.id).sort());
    element.dataset.links = String(kept.length);
    element.dataset.state = "rendered";
  });
  chart.setOption({
    animation: false,
    tooltip: { trigger: "item", valueFormatter: (v) => formatMass(v) },
    series: [{
      type: "sankey",
      data: shown.map((n) => ({ name: n.id })),
      links: kept.map((l) => ({ source: l.source, target: l.target, value: l.massG })),
      emphasis: { focus: "adjacency" },
      nodeGap: 12,
      label: { fontSize: 12, formatter: (p) => labels.get(p.name) || p.name },
      lineStyle: { color: "gradient", curveness: 0.5, opacity: 0.35 },
    }],
  });
  if (!shown.length) {
    element.dataset.nodes = "[]";
    element.dataset.state = "rendered";
    chart.clear();
    chart.setOption({ title: { text: "No flows match these filters", left: "center", top: "middle", textStyle: { color: "#5f6b73", fontSize: 14 } } });
  }
  return dropped;
}

// --- CSV (RFC 4180), built from what the page fetched -----------------------------

function csvCell(value) {
  if (value === null || value === undefined) return "";
  let text = String(value);
  // A text cell starting with = + - @ would be a formula in a spreadsheet (OWASP CSV injection).
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function flowsCsv(flows) {
  const f = flows.filters;
  const label = new Map(flows.nodes.map((n) => [n.id, n.label]));
  const v = flowVariables(f);
  const lines = [["from", "to", "material", "region", "group_by", "source", "target", "source_label", "target_label", "mass_g"]];
  for (const l of flows.links) {
    lines.push([v.from, v.to, v.material, v.region, v.groupBy, l.source, l.target, label.get(l.source), label.get(l.target), l.massG]);
  }
  return lines.map((row) => row.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

function downloadCsv() {
  if (!state.flows) return;
  const f = state.flows.filters;
  const parts = ["flows", f.material, f.region, f.from, f.to].filter(Boolean).map((p) => String(p).replace(/[^A-Za-z0-9._-]+/g, "_"));
  const url = URL.createObjectURL(new Blob([flowsCsv(state.flows)], { type: "text/csv;charset=utf-8" }));
  const a = el("a", { href: url, download: `${parts.join("-")}.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// --- trace: a lot (lineage, recovered content) or a battery ------------------------

const LOT_TRACE = `query Trace($lot: ID!) {
  lot(id: $lot) { id material origin massG remainingG status custodian { name region } }
  recoveredContent(lot: $lot) {
    massG recoveredG preConsumerG postConsumerG share
    elements { element massG recoveredG share }
  }
  up: lineage(lot: $lot, direction: UPSTREAM, maxDepth: 10) {
    nodes { id material massG custodian { name } } edges { parent child massG seq } truncated
  }
  down: lineage(lot: $lot, direction: DOWNSTREAM, maxDepth: 10) {
    nodes { id material massG custodian { name } } edges { parent child massG seq } truncated
  }
}`;

const BATTERY_TRACE = `query Battery($code: String!) {
  battery(code: $code) {
    code scheme secondLifeCodes complete truncated hiddenByAccess unitsInLastLot
    events { seq at type stage status actor { name } lots }
    custodians { since lot organisation { name region } }
    elements { element initialG recoveredG heldNowG }
    downstream { lot { id material status } massG remainingG }
  }
}`;

async function trace() {
  const id = $("t-id").value.trim();
  const out = $("trace-out");
  out.replaceChildren();
  if (!id) return;
  if (id.startsWith("lot:")) {
    const data = await gql(LOT_TRACE, { lot: id });
    if (!data.lot) {
      out.append(el("p", {}, `No lot ${id} that this token may read (a lot you may not read answers like a missing one).`));
      return;
    }
    renderLotTrace(out, data);
  } else {
    const data = await gql(BATTERY_TRACE, { code: id });
    if (!data.battery) {
      out.append(el("p", {}, `No battery ${id} that this token may read.`));
      return;
    }
    renderBatteryTrace(out, data.battery);
  }
}

function renderLotTrace(out, data) {
  const lot = data.lot;
  out.append(
    el("h2", {}, `${lot.id} · ${lot.material}`),
    table(["Origin", "Mass", "Remaining", "Status", "Custodian"],
      [[lot.origin, formatMass(lot.massG), formatMass(lot.remainingG), lot.status, `${lot.custodian.name} (${lot.custodian.region})`]], [1, 2]),
  );
  const rc = data.recoveredContent;
  if (rc) {
    out.append(el("h2", {}, "Recovered content"),
      table(["Part", "Mass", "Recovered", "Share"],
        [["whole lot", formatMass(rc.massG), formatMass(rc.recoveredG), formatShare(rc.share)],
          ...rc.elements.map((e) => [e.element, formatMass(e.massG), formatMass(e.recoveredG), formatShare(e.share)])], [1, 2, 3]),
      el("p", { class: "hint" }, `pre-consumer ${formatMass(rc.preConsumerG)}, post-consumer ${formatMass(rc.postConsumerG)}`));
  }
  const nodes = new Map();
  const links = [];
  for (const part of [data.up, data.down]) {
    if (!part) continue;
    for (const n of part.nodes) nodes.set(n.id, n);
    for (const e of part.edges) links.push({ source: e.parent, target: e.child, massG: e.massG, seq: e.seq });
  }
  const chart = el("div", { id: "trace-chart", class: "chart" });
  chart.style.height = `${Math.max(360, Math.min(2000, nodes.size * 22))}px`;
  out.append(el("h2", {}, "Lineage (10 levels up and down)"), chart);
  renderSankey("trace", chart, [...nodes.values()].map((n) => ({ id: n.id, label: `${n.id} (${n.material})` })), links);
  out.append(table(["Seq", "From", "To", "Mass"], links.map((l) => [l.seq, l.source, l.target, formatMass(l.massG)]), [3]));
  if ((data.up && data.up.truncated) || (data.down && data.down.truncated)) {
    out.append(el("p", { class: "hint" }, "The lineage goes on beyond what is shown: trace a lot at its edge."));
  }
}

function renderBatteryTrace(out, b) {
  out.append(
    el("h2", {}, `${b.code} · ${b.scheme}`),
    el("p", { class: "hint" }, [
      b.secondLifeCodes.length ? `second-life codes: ${b.secondLifeCodes.join(", ")}` : "",
      b.complete ? "complete trace" : "incomplete trace",
      b.hiddenByAccess ? "some lots are not readable with this token" : "",
    ].filter(Boolean).join(" · ")),
    el("h2", {}, "Life"),
    table(["Seq", "At", "Stage", "Record", "By", "Lots"],
      b.events.map((e) => [e.seq, e.at, e.stage.toLowerCase(), e.status ? `${e.type} ${e.status}` : e.type, e.actor.name, e.lots.join(" ")]), [0]),
    el("h2", {}, "Custodians"),
    table(["Since", "Organisation", "Region", "Lot"], b.custodians.map((c) => [c.since, c.organisation.name, c.organisation.region, c.lot])),
  );
  if (b.elements.length) {
    out.append(el("h2", {}, "Elements"),
      table(["Element", "In the battery", "Recovered", "Held now"],
        b.elements.map((e) => [e.element, formatMass(e.initialG), formatMass(e.recoveredG), formatMass(e.heldNowG)]), [1, 2, 3]));
  }
  if (b.downstream.length) {
    out.append(el("h2", {}, "Downstream lots (the battery's part)"),
      table(["Lot", "Material", "Status", "Mass", "Remaining"],
        b.downstream.map((d) => [d.lot.id, d.lot.material, d.lot.status, formatMass(d.massG), formatMass(d.remainingG)]), [3, 4]));
  }
}

// --- anomalies ------------------------------------------------------------------

const ANOMALIES_QUERY = `query Anomalies($from: DateTime, $to: DateTime, $kinds: [AnomalyKind!], $transitDays: Int) {
  anomalies(from: $from, to: $to, kinds: $kinds, transitDays: $transitDays) { kind org message records lot }
}`;

async function loadAnomalies() {
  const out = $("anomalies-out");
  out.replaceChildren();
  if (!state.fields.has("anomalies")) {
    out.append(el("p", {}, "This server has no anomalies query."));
    return;
  }
  const period = flowVariables({ from: $("a-from").value || null, to: $("a-to").value || null });
  const kind = $("a-kind").value;
  const days = $("a-days").value;
  const data = await gql(ANOMALIES_QUERY, {
    from: period.from,
    to: period.to,
    kinds: kind ? [kind] : null,
    transitDays: days ? Number(days) : null,
  });
  if (data.anomalies === null) {
    out.append(el("p", {}, "Anomalies are for regulators and the operator: this token's organisation may not read them."));
    return;
  }
  const names = await organisationNames();
  out.dataset.count = String(data.anomalies.length);
  if (!data.anomalies.length) {
    out.append(el("p", {}, "No anomalies in this period."));
    return;
  }
  const rows = data.anomalies.map((a) => [
    a.kind.toLowerCase().replace(/_/g, " "),
    names.get(a.org) || a.org,
    a.lot ? traceLink(a.lot) : "",
    a.message,
    el("span", { title: a.records.join("\n") }, a.records.map((h) => h.slice(0, 12)).join(" ")),
  ]);
  out.append(el("p", { class: "hint" }, `${data.anomalies.length} found.`),
    table(["Kind", "Organisation", "Lot", "What", "Records"], rows));
}

async function loadAnomalyKinds(fields) {
  const select = $("a-kind");
  for (const option of [...select.options].slice(1)) option.remove();
  if (!fields.some((f) => f.name === "anomalies")) return;
  const data = await gql(`{ __type(name: "AnomalyKind") { enumValues { name } } }`);
  for (const { name } of (data.__type && data.__type.enumValues) || []) {
    select.append(el("option", { value: name }, name.toLowerCase().replace(/_/g, " ")));
  }
}

function traceLink(lot) {
  const button = el("button", { type: "button", class: "link" }, lot);
  button.addEventListener("click", () => {
    $("t-id").value = lot;
    showView("trace");
    guarded(trace);
  });
  return button;
}

// --- wiring ---------------------------------------------------------------------

function showView(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === name);
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  showError("");
  for (const chart of Object.values(state.charts)) chart.resize();
}

function onSubmit(id, task) {
  $(id).addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(task);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    guarded(enter).then(() => {
      if (!$("app").hidden) return;
      $("login").hidden = false;
    });
  });
  $("logout").addEventListener("click", forgetToken);
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
  onSubmit("flows-form", loadFlows);
  onSubmit("trace-form", trace);
  onSubmit("anomalies-form", loadAnomalies);
  $("f-csv").addEventListener("click", downloadCsv);
  window.addEventListener("resize", () => { for (const c of Object.values(state.charts)) c.resize(); });
  if (sessionStorage.getItem(TOKEN_KEY)) guarded(enter);
});
