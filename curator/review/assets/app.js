"use strict";
// The review page: every text is placed with textContent (never parsed as HTML).
const config = JSON.parse(document.getElementById("config").textContent);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const reviewer = new URLSearchParams(location.search).get("reviewer");
const PAGE = 50;
const $ = (id) => document.getElementById(id);
let current = null, item = null, mode = "view", reason = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

async function api(path, body) {
  const opts = body === undefined ? {} : {method: "POST", body: JSON.stringify(body),
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}};
  const response = await fetch(path, opts);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

const query = (path, extra) => path + "?" + new URLSearchParams({reviewer, ...(extra || {})});

function flash(text, error) {
  $("flash").textContent = text;
  $("flash").className = error ? "error" : "";
}

async function loadList(offset) {
  const data = await api(query("/api/queue", {offset, limit: PAGE}));
  const list = $("queue");
  list.replaceChildren();
  for (const it of data.items) {
    const state = it.mine ? "done-" + it.mine : (it.open ? "open" : "closed");
    const li = el("li", null, state + (it.index === current ? " current" : ""));
    li.dataset.index = it.index;
    const label = it.mine || (it.open ? it.why : "done by " + it.others.join(", "));
    li.append(el("span", "#" + (it.index + 1), "n"), el("span", it.cell.join(" / "), "cell"), el("span", label, "state"));
    li.addEventListener("click", () => show(it.index));
    list.append(li);
  }
  $("pager").textContent = `${offset + 1}–${offset + data.items.length} of ${data.total}`;
  $("pager").dataset.offset = offset;
}

function render(it) {
  $("position").textContent = `pair ${it.index + 1} of ${config.total}`;
  $("pair-id").textContent = it.id;
  $("cell").textContent = it.cell.join(" × ");
  $("why").textContent = it.why + (it.sample ? " (random sample)" : "") + (it.want > 1 ? `, asked of ${it.want} reviewers` : "");
  $("status").textContent = it.status;
  const mine = it.decision;
  $("verdict").textContent = mine ? mine.decision + (mine.reason ? ": " + mine.reason : "") + (mine.note ? " — " + mine.note : "") : "undecided";
  $("verdict").className = "verdict" + (mine ? " " + mine.decision : "");
  $("others").textContent = it.others.length ? "(also reviewed by " + it.others.join(", ") + ")" : "";
  const prov = $("provenance");
  prov.replaceChildren();
  for (const [key, value] of Object.entries(it.provenance)) {
    if (value === null || value === undefined) continue;
    const tr = el("tr");
    tr.append(el("th", key), el("td", value));
    prov.append(tr);
  }
  const findings = $("findings");
  findings.replaceChildren();
  if (!it.findings.length) findings.append(el("li", "none"));
  for (const f of it.findings) {
    const score = f.score !== null ? ` (score ${f.score}, threshold ${f.threshold})` : "";
    const line = f.flagged ? `flagged by ${f.check}: ${f.detail}${score}` : `${f.check}${score}`;
    findings.append(el("li", line, f.flagged ? "flagged" : ""));
  }
  const conversation = $("conversation");
  conversation.replaceChildren();
  for (const m of it.messages) {
    const box = el("div", null, "msg " + m.role);
    box.append(el("div", m.role, "role"), el("pre", m.content, "content"));
    conversation.append(box);
  }
  if (mine && mine.diff) conversation.append(el("pre", mine.diff, "diff"));
}

function setMode(next) {
  mode = next;
  $("reject-panel").hidden = next !== "reject";
  $("edit-panel").hidden = next !== "edit";
}

async function show(index) {
  if (index === null || index === undefined || index < 0 || index >= config.total) return;
  current = index;
  setMode("view");
  item = await api(query("/api/item/" + index));
  render(item);
  await loadList(Math.floor(index / PAGE) * PAGE);
  document.body.dataset.shown = index;
}

async function send(path, body) {
  try {
    const r = await api(path, {reviewer, ...body});
    flash(`${r.decision} recorded (#${r.seq})`);
    await show(r.decision === "undo" ? r.index : (r.next !== null ? r.next : current));
    document.body.dataset.seq = r.seq;
  } catch (e) {
    flash(e.message, true);
  }
}

function startReject() {
  setMode("reject");
  reason = null;
  const list = $("reasons");
  list.replaceChildren(...config.reasons.map((text) => el("li", text)));
  $("note").value = "";
}

function chooseReason(n) {
  if (n < 1 || n > config.reasons.length) return;
  reason = config.reasons[n - 1];
  [...$("reasons").children].forEach((li, i) => li.classList.toggle("chosen", i === n - 1));
  $("note").focus();
}

function startEdit(field) {
  setMode("edit");
  const role = field === "response" ? "assistant" : "user";
  const turn = [...item.messages].reverse().find((m) => m.role === role);
  $("edit-field").textContent = field;
  $("edit-text").dataset.field = field;
  $("edit-text").value = turn ? turn.content : "";
  $("edit-text").focus();
}

function onKey(event) {
  if (event.key === "Escape") { setMode("view"); document.activeElement.blur(); return; }
  if (mode === "edit") {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      send("/api/decide", {index: current, decision: "edit", field: $("edit-text").dataset.field, text: $("edit-text").value});
    }
    return;
  }
  if (mode === "reject") {
    if (event.key === "Enter" && reason !== null) {
      event.preventDefault();
      send("/api/decide", {index: current, decision: "reject", reason, note: $("note").value});
    } else if (document.activeElement !== $("note") && /^[1-9]$/.test(event.key)) {
      event.preventDefault();
      chooseReason(Number(event.key));
    } else if (document.activeElement === $("note") && reason === null && /^[1-9]$/.test(event.key)) {
      event.preventDefault();
      chooseReason(Number(event.key));
    }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || current === null) return;
  const actions = {
    a: () => send("/api/decide", {index: current, decision: "accept"}),
    r: startReject,
    e: () => startEdit("response"),
    i: () => startEdit("instruction"),
    j: () => show(current + 1), ArrowRight: () => show(current + 1), ArrowDown: () => show(current + 1),
    k: () => show(current - 1), ArrowLeft: () => show(current - 1), ArrowUp: () => show(current - 1),
    n: async () => show((await api(query("/api/next", {after: current}))).index),
    u: () => send("/api/undo", {}),
  };
  if (actions[event.key]) { event.preventDefault(); actions[event.key](); }
}

async function start() {
  if (!reviewer) {
    $("who").hidden = false;
    $("who").addEventListener("submit", (event) => {
      event.preventDefault();
      location.search = "?" + new URLSearchParams({reviewer: $("who-name").value.trim()});
    });
    return;
  }
  $("reviewer-name").textContent = "reviewer: " + reviewer;
  $("app").hidden = false;
  document.addEventListener("keydown", onKey);
  $("prev-page").addEventListener("click", () => loadList(Math.max(0, Number($("pager").dataset.offset) - PAGE)));
  $("next-page").addEventListener("click", () => {
    const next = Number($("pager").dataset.offset) + PAGE;
    if (next < config.total) loadList(next);
  });
  const first = (await api(query("/api/next", {after: -1}))).index;
  if (first === null) flash("nothing left to review for " + reviewer);
  await show(first === null ? 0 : first);
}

start().catch((e) => flash(e.message, true));
