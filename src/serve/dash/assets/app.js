// ralf-sh dashboard: live runs list, live run status, plan graph and log (server-sent events).
// No framework and no build step; served by the binary.
"use strict";

function text(s) { return document.createTextNode(s == null ? "" : String(s)); }

function cell(tr, content, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (content instanceof Node) td.appendChild(content); else td.appendChild(text(content));
  tr.appendChild(td);
}

let lastRuns = null;
async function refreshRuns() {
  const r = await fetch("/api/runs", { headers: { "Accept": "application/json" } });
  if (!r.ok) return;
  const raw = await r.text();
  if (raw === lastRuns) return;
  lastRuns = raw;
  const runs = JSON.parse(raw);
  const body = document.querySelector("#runs tbody");
  const rows = document.createDocumentFragment();
  for (const run of runs) {
    const tr = document.createElement("tr");
    tr.dataset.runId = run.id;
    tr.className = "st-" + run.status;
    const a = document.createElement("a");
    a.href = "/runs/" + encodeURIComponent(run.id);
    a.appendChild(text(run.id));
    cell(tr, a);
    cell(tr, run.status, "status");
    cell(tr, run.script_name + " " + run.args);
    cell(tr, run.user);
    cell(tr, run.started_at);
    cell(tr, run.duration);
    rows.appendChild(tr);
  }
  body.replaceChildren(rows);
}

function answerForm(gate, answer) {
  const f = document.createElement("form");
  f.method = "post";
  f.action = "/gates/" + encodeURIComponent(gate) + "/" + answer;
  const c = document.createElement("input");
  c.type = "hidden";
  c.name = "csrf";
  c.value = document.body.dataset.csrf;
  const b = document.createElement("button");
  b.dataset.answer = answer;
  b.appendChild(text(answer));
  f.append(c, b);
  return f;
}

let lastGates = null;
async function refreshGates() {
  const r = await fetch("/api/gates");
  if (!r.ok) return;
  const body = await r.text();
  // Rebuild only on a change (the buttons stay under the pointer otherwise).
  if (body === lastGates) return;
  const gates = JSON.parse(body);
  // The first time, keep the rows the server rendered when they show the same gates (a button
  // replaced under the pointer would swallow the click).
  const shown = Array.from(document.querySelectorAll("#gates tbody tr")).map((r) => r.dataset.gateId);
  const first = lastGates === null;
  lastGates = body;
  if (first && shown.join(",") === gates.map((g) => g.id).join(",")) return;
  const rows = document.createDocumentFragment();
  for (const g of gates) {
    const tr = document.createElement("tr");
    tr.dataset.gateId = g.id;
    cell(tr, g.id);
    const q = document.createElement("span");
    q.appendChild(text(g.question));
    if (g.plan) {
      const plan = document.createElement("div");
      plan.className = "plan";
      plan.appendChild(text("plan " + g.plan + ": approving approves this plan only"));
      q.appendChild(plan);
    }
    if (g.details) {
      const pre = document.createElement("pre");
      pre.className = "details";
      pre.appendChild(text(g.details));
      q.appendChild(pre);
    }
    cell(tr, q);
    const a = document.createElement("a");
    a.href = "/runs/" + encodeURIComponent(g.run_id);
    a.appendChild(text(g.run_id));
    cell(tr, a);
    cell(tr, g.asked_via);
    cell(tr, g.until);
    const td = document.createElement("td");
    td.append(answerForm(g.id, "approve"), answerForm(g.id, "deny"));
    tr.appendChild(td);
    rows.appendChild(tr);
  }
  document.querySelector("#gates tbody").replaceChildren(rows);
  document.getElementById("gates-section").hidden = gates.length === 0;
}

async function refreshRun(id) {
  const r = await fetch("/api/runs/" + encodeURIComponent(id));
  if (!r.ok) return null;
  const run = await r.json();
  const st = document.getElementById("status");
  st.textContent = run.status;
  st.className = "badge st-" + run.status;
  document.querySelector("button[data-action=resume]").disabled = !run.resumable;
  document.querySelector("button[data-action=stop]").disabled = !run.stoppable;
  const rows = document.createDocumentFragment();
  for (const s of run.steps) {
    const tr = document.createElement("tr");
    tr.className = "st-" + s.status;
    cell(tr, s.key);
    if (s.service) {
      const a = document.createElement("a");
      a.href = "/services/" + encodeURIComponent(s.service);
      a.appendChild(text(s.service));
      cell(tr, a);
    } else cell(tr, "");
    cell(tr, s.attempt);
    cell(tr, s.status);
    cell(tr, s.started_at);
    cell(tr, s.ended_at);
    cell(tr, s.error);
    rows.appendChild(tr);
  }
  document.querySelector("#steps tbody").replaceChildren(rows);
  const g = await fetch("/runs/" + encodeURIComponent(id) + "/graph.svg");
  if (g.ok) document.getElementById("graph").innerHTML = await g.text();
  return run;
}

function followLog(id) {
  const log = document.getElementById("log");
  const es = new EventSource("/runs/" + encodeURIComponent(id) + "/log");
  es.addEventListener("line", (e) => {
    const div = document.createElement("div");
    div.className = "line";
    div.dataset.id = e.lastEventId;
    div.appendChild(text(e.data));
    log.appendChild(div);
    log.scrollTop = log.scrollHeight;
  });
  es.addEventListener("end", () => { es.close(); refreshRun(id); });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "runs") {
    setInterval(() => { refreshRuns(); refreshGates(); }, 700);
  } else if (page === "run") {
    const id = document.body.dataset.runId;
    followLog(id);
    const timer = setInterval(async () => {
      const run = await refreshRun(id);
      if (run && run.status !== "running") clearInterval(timer);
    }, 1000);
  }
});
