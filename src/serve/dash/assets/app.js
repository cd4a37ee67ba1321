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

async function refreshRuns() {
  const r = await fetch("/api/runs", { headers: { "Accept": "application/json" } });
  if (!r.ok) return;
  const runs = await r.json();
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
    setInterval(refreshRuns, 700);
  } else if (page === "run") {
    const id = document.body.dataset.runId;
    followLog(id);
    const timer = setInterval(async () => {
      const run = await refreshRun(id);
      if (run && run.status !== "running") clearInterval(timer);
    }, 1000);
  }
});
