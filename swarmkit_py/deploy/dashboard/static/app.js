// swarmkit-py dashboard: renders the snapshots the server pushes (server-sent events).
"use strict";

const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

function nodeColumn(n, tasks) {
  const down = n.answering === false || (n.status && n.status !== "Ready" && n.status !== "Not joined");
  const col = el("div", "node");
  col.dataset.node = n.hostname;
  col.dataset.status = down ? "down" : n.status === "Not joined" ? "unjoined" : "up";
  if (down) col.classList.add("down");
  else if (n.status === "Not joined") col.classList.add("unjoined");
  else if (n.availability === "Drain") col.classList.add("drain");
  const head = el("header");
  const name = el("span", "name", n.hostname);
  head.append(name);
  if (n.manager === "Leader") head.append(el("span", "leader", "leader"));
  const why = n.answering === false ? "no answer" : n.status;
  head.append(el("div", "meta", `${n.role || "-"} · ${n.manager || "worker"}`));
  if (n.raft) head.append(el("div", "meta raft", `term ${n.raft.term} · commit ${n.raft.commit}`));
  head.append(el("div", "meta status", `${why} · ${n.availability || "-"}`));
  col.append(head);
  const ul = el("ul");
  for (const t of tasks) {
    const li = el("li", `task ${t.state}`, `${t.service}.${t.slot ?? ""} ${t.state}`);
    li.dataset.task = t.id;
    li.title = t.message || "";
    ul.append(li);
  }
  col.append(ul);
  return col;
}

function render(s) {
  const err = document.getElementById("error");
  err.hidden = !s.error;
  err.textContent = s.error || "";
  const managers = s.nodes.filter(n => n.role === "manager");
  const reachable = managers.filter(n => n.manager === "Leader" || n.manager === "Reachable");
  document.getElementById("summary").textContent =
    `leader ${s.leader || "none"}` + (s.term != null ? ` · term ${s.term}` : "") +
    ` · managers ${reachable.length}/${managers.length} reachable` +
    ` (quorum ${Math.floor(managers.length / 2) + 1}) · ${s.nodes.length} nodes · via ${s.via || "-"}`;
  document.getElementById("updated").textContent =
    `updated ${new Date(s.time * 1000).toLocaleTimeString()} (${s.took_ms} ms)`;

  const tbody = document.querySelector("#services tbody");
  tbody.replaceChildren(...s.services.map(sv => {
    const tr = el("tr", sv.desired != null && sv.running < sv.desired ? "short" : "");
    tr.dataset.service = sv.name;
    tr.append(el("td", "", sv.name),
              el("td", "replicas", `${sv.running}/${sv.desired ?? "global"}`),
              el("td", "", sv.image));
    return tr;
  }));

  const byNode = {};
  for (const t of s.tasks) (byNode[t.node] ||= []).push(t);
  for (const ts of Object.values(byNode)) ts.sort((a, b) => (a.service + a.slot).localeCompare(b.service + b.slot));
  document.getElementById("nodes").replaceChildren(...s.nodes.map(n => nodeColumn(n, byNode[n.id] || [])));
  document.body.dataset.version = String(s.time);
}

function connect() {
  const es = new EventSource("/api/events");
  es.onmessage = ev => render(JSON.parse(ev.data));
  es.onerror = () => {
    document.getElementById("summary").textContent = "dashboard server not answering; retrying…";
  };
}

connect();
