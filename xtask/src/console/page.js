// The console page: renders SNAPSHOT (inlined by the server or the demo) and, when LIVE,
// polls the server for a new one every second. Read-only: it only ever GETs.
"use strict";

let snapshot = SNAPSHOT;
const query = new URLSearchParams(location.search);
let wanted = query.get("execution");
// The consumer picked (an attachment's id, or `built-in`, as the operator command names them),
// kept in the URL so that a reload keeps it; empty: all of them.
let picked = query.get("consumer") || "";

const byId = (id) => document.getElementById(id);
const text = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
const clock = (ms) => (ms ? new Date(ms).toISOString().slice(11, 19) : "-");
const seconds = (from, to) => (from ? `${((to - from) / 1000).toFixed(1)} s` : "-");

// The executions of the consumer picked, newest first.
function shown() {
  return (snapshot.executions || []).filter((e) => !picked || e.consumer === picked);
}

function selected() {
  const all = shown();
  return all.find((e) => e.arn === wanted) || all[0];
}

// A link to this page with `changes` to its query (null removes a parameter).
function linkTo(changes) {
  const next = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(changes)) {
    if (value) next.set(key, value);
    else next.delete(key);
  }
  const search = next.toString();
  return search ? `?${search}` : location.pathname;
}

function pick(consumer) {
  picked = consumer;
  // The execution shown may be another consumer's: then the newest of this one's is.
  if (!shown().some((e) => e.arn === wanted)) wanted = null;
  try {
    history.replaceState(null, "", linkTo({ consumer: picked, execution: wanted }));
  } catch {
    // A saved page opened from disk may refuse it: the choice holds until a reload.
  }
  render();
}

// The graph scrolls down, not the page: when the lit state changes and is out of the
// graph's view, the graph scrolls to it.
let litState = null;
function keepLitInView(execution) {
  const name = execution ? execution.current : null;
  if (name === litState) return;
  litState = name;
  const node = document.querySelector("#graph g.state.current");
  if (!node) return;
  const box = node.getBoundingClientRect();
  const view = byId("graph").getBoundingClientRect();
  if (box.top < view.top || box.bottom > view.bottom) {
    byId("graph").scrollTop += box.top - view.top - view.height / 2;
  }
}

function renderGraph(execution) {
  const passed = new Set(execution ? execution.passed : []);
  for (const node of document.querySelectorAll("#graph g.state")) {
    const name = node.dataset.state;
    node.classList.remove("current", "passed", "running", "succeeded", "failed", "aborted", "timed_out");
    if (passed.has(name)) node.classList.add("passed");
    if (execution && execution.current === name) {
      node.classList.add("current", execution.status.toLowerCase());
    }
  }
  // The transitions taken: from each state entered to the next one entered.
  const entered = execution
    ? execution.history.filter((e) => e.kind.endsWith("StateEntered")).map((e) => e.state)
    : [];
  const taken = new Set(entered.slice(1).map((to, i) => `${entered[i]}>${to}`));
  for (const edge of document.querySelectorAll("#graph g.edge")) {
    edge.classList.toggle("passed", taken.has(`${edge.dataset.from}>${edge.dataset.to}`));
  }
  keepLitInView(execution);
  byId("selected-name").textContent = execution ? execution.name : "no execution yet";
  byId("selected-status").textContent = execution ? execution.status : "";
  byId("selected-status").className = `status ${execution ? execution.status : ""}`;
  byId("current-state").textContent = execution ? execution.current || "" : "";
}

function renderFleet() {
  const rows = snapshot.consumers || [];
  const depth = (d) => (d ? `${d.visible} visible, ${d.in_flight} in flight, ${d.delayed} delayed` : "-");
  byId("fleet").innerHTML = rows.length
    ? rows
        .map((c) => `<tr data-consumer="${text(c.id)}" class="${c.open ? "open" : ""} ${c.id === picked ? "picked" : ""}">
      <td>${text(c.id)}</td><td>${text(c.function)}</td>
      <td>${text(c.queue)}</td><td class="circuit" title="${text(c.circuit_reason)}">${text(c.circuit)}</td>
      <td>${text(c.alarm || "-")}</td><td>${depth(c.depth)}${c.problem ? ` <span class="problem">${text(c.problem)}</span>` : ""}</td></tr>`)
        .join("")
    : `<tr><td colspan="6" class="none">no consumer read yet</td></tr>`;
  // The picker offers every consumer listed, and any other an execution was for (one
  // detached since, say).
  const ids = [...new Set([...rows.map((c) => c.id), ...(snapshot.executions || []).map((e) => e.consumer), picked])]
    .filter(Boolean);
  const select = byId("consumer");
  const options = ["", ...ids];
  if ([...select.options].map((o) => o.value).join("\n") !== options.join("\n")) {
    select.innerHTML = options
      .map((id) => `<option value="${text(id)}">${id ? text(id) : "all consumers"}</option>`)
      .join("");
  }
  select.value = picked;
}

function renderExecutions(current) {
  const now = snapshot.updated_ms;
  byId("executions-of").textContent = picked ? `of ${picked}` : "";
  byId("executions").innerHTML = shown()
    .map((e) => `<tr class="${e === current ? "selected" : ""}" data-consumer="${text(e.consumer)}">
      <td><a href="${text(linkTo({ execution: e.arn }))}">${text(e.name)}</a></td>
      <td>${e.consumer ? text(e.consumer) : `<span title="no controller routes its input">-</span>`}</td>
      <td class="status ${text(e.status)}">${text(e.status)}</td>
      <td>${clock(e.start_ms)}</td><td>${seconds(e.start_ms, e.stop_ms || now)}</td></tr>`)
    .join("");
}

let shownHistory = "";
function renderHistory(execution) {
  // Redrawn only when it grew, so an opened input or output stays open.
  const key = execution ? `${execution.arn}:${execution.history.length}` : "";
  if (key === shownHistory) return;
  shownHistory = key;
  const start = execution ? execution.start_ms : 0;
  const data = (label, value) =>
    value ? `<details><summary>${label}</summary><pre>${text(pretty(value))}</pre></details>` : "";
  byId("history").innerHTML = (execution ? execution.history : [])
    .map((e) => `<tr><td>${e.id}</td><td>${text(e.kind)}</td><td>${text(e.state)}</td>
      <td>${clock(e.at_ms)} (+${seconds(start, e.at_ms)})</td>
      <td>${data("input", e.input)}${data("output", e.output)}${text(e.error)}</td></tr>`)
    .join("");
}

function pretty(json) {
  try {
    return JSON.stringify(JSON.parse(json), null, 2);
  } catch {
    return json;
  }
}

function renderDepth() {
  const points = snapshot.depth || [];
  const chart = byId("depth");
  if (points.length < 2) {
    chart.innerHTML = "";
    byId("depth-top").textContent = "";
    return;
  }
  const t0 = points[0].at_ms;
  const span = Math.max(1, points[points.length - 1].at_ms - t0);
  const top = Math.max(1, ...points.map((p) => Math.max(p.visible, p.in_flight, p.delayed)));
  const line = (field, color) => {
    const xy = points.map((p) => `${((p.at_ms - t0) / span) * 400},${105 - (p[field] / top) * 100}`);
    return `<polyline class="${field}" stroke="${color}" points="${xy.join(" ")}"/>`;
  };
  chart.innerHTML =
    line("visible", "#0073bb") + line("in_flight", "#ec7211") + line("delayed", "#8b5ba5");
  byId("depth-top").textContent =
    `top ${top} messages, last ${Math.round(span / 1000)} s`;
}

function renderBreaker() {
  const c = snapshot.circuit;
  byId("circuit").textContent = c ? `${c.state}: ${c.reason}` : "no circuit yet";
  const m = snapshot.mapping;
  byId("mapping").textContent = m ? m.state : "-";
  byId("concurrency").textContent =
    m && m.maximum_concurrency != null ? `MaximumConcurrency ${m.maximum_concurrency}` : "not set";
  const a = snapshot.alarm;
  byId("alarm").textContent = a ? a.state : "-";
  byId("alarm").title = a ? a.reason : "";
  const d = (snapshot.depth || []).at(-1);
  byId("queue").textContent = d
    ? `visible ${d.visible}, in flight ${d.in_flight}, delayed ${d.delayed}`
    : "-";
  renderDepth();
  const events = snapshot.events || [];
  byId("events").innerHTML = events.length
    ? events.map((e) => `<li>${clock(e.at_ms)} <b>${text(e.kind)}</b> ${text(e.reason)}</li>`).join("")
    : `<li class="none">none seen (the demo feeds them from its tap on the bus)</li>`;
}

function render() {
  const execution = selected();
  byId("stack").textContent = `${snapshot.stack} ${LIVE ? "(live)" : "(snapshot)"}`;
  byId("updated").textContent = `read ${clock(snapshot.updated_ms)} UTC`;
  byId("error").textContent = snapshot.error || "";
  renderFleet();
  renderGraph(execution);
  renderExecutions(execution);
  renderHistory(execution);
  renderBreaker();
}

// Transitions say what takes them (a Choice rule, Default, a Catch) on hover.
for (const edge of document.querySelectorAll("#graph g.edge[data-label]")) {
  if (edge.dataset.label) edge.insertAdjacentHTML("afterbegin", `<title>${text(edge.dataset.label)}</title>`);
}
// Error paths: the Catch transitions from and to the state under the pointer and the one
// clicked (a second click, or one outside the states, lets it go), or all of them.
const graph = byId("graph");
let pointed = null;
let chosen = null;
const stateAt = (event) => event.target.closest("g.state")?.dataset.state ?? null;
function showCatches() {
  for (const edge of graph.querySelectorAll("g.edge.catch")) {
    const ends = [edge.dataset.from, edge.dataset.to];
    edge.classList.toggle("shown", [pointed, chosen].some((s) => s && ends.includes(s)));
  }
  for (const node of graph.querySelectorAll("g.state")) {
    node.classList.toggle("selected", node.dataset.state === chosen);
  }
}
graph.addEventListener("mouseover", (event) => {
  pointed = stateAt(event);
  showCatches();
});
graph.addEventListener("mouseleave", () => {
  pointed = null;
  showCatches();
});
graph.addEventListener("click", (event) => {
  const state = stateAt(event);
  chosen = state === chosen ? null : state;
  showCatches();
});
byId("consumer").addEventListener("change", (event) => pick(event.target.value));
byId("fleet").addEventListener("click", (event) => {
  const row = event.target.closest("tr[data-consumer]");
  if (row) pick(row.dataset.consumer === picked ? "" : row.dataset.consumer);
});
byId("all-errors").addEventListener("change", (event) => {
  graph.classList.toggle("all-errors", event.target.checked);
});
render();
if (LIVE) {
  setInterval(async () => {
    try {
      const response = await fetch("snapshot.json", { cache: "no-store" });
      snapshot = await response.json();
      render();
    } catch (e) {
      byId("error").textContent = `console server unreachable: ${e}`;
    }
  }, 1000);
}
