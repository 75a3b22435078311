// Jet console: renders four views from the node's JSON routes. Plain JavaScript, no build step.
// Every view sets data-loaded on <main> once rendered, so a headless browser test can tell a
// finished page from a page still loading.
"use strict";

const main = document.getElementById("main");
const BINARY = "application/vnd.kafka.binary.v2+json";
let timer = null;
let lastTotals = null;

function esc(v) {
  return String(v === null || v === undefined ? "" : v)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

async function getJson(url, opts) {
  const resp = await fetch(url, opts);
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { message: text }; }
  if (!resp.ok) {
    throw new Error((body && body.message) || resp.status + " " + resp.statusText);
  }
  return body;
}

function utf8ToBase64(s) {
  const bytes = new TextEncoder().encode(s);
  let bin = "";
  bytes.forEach((b) => { bin += String.fromCharCode(b); });
  return btoa(bin);
}

function base64ToText(b64) {
  if (b64 === null || b64 === undefined) return null;
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder("utf-8", { fatal: false }).decode(bytes);
}

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function table(headers, rows, numeric) {
  const num = new Set(numeric || []);
  const head = headers.map((h, i) => `<th class="${num.has(i) ? "num" : ""}">${esc(h)}</th>`).join("");
  const body = rows.length
    ? rows.map((r) => "<tr>" + r.map((c, i) => `<td class="${num.has(i) ? "num" : ""}">${c}</td>`).join("") + "</tr>").join("")
    : `<tr><td colspan="${headers.length}" class="muted">none</td></tr>`;
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function done(view) { main.setAttribute("data-loaded", view); }

function fail(e) {
  main.innerHTML = `<p class="bad">Error: ${esc(e.message)}</p>`;
  done("error");
}

async function overview() {
  const o = await getJson("/console/api/overview");
  const now = Date.now();
  let produceRate = "…", fetchRate = "…";
  if (o.totals && lastTotals) {
    const secs = Math.max((now - lastTotals.at) / 1000, 0.001);
    produceRate = fmtBytes(Math.max(o.totals.produced_bytes - lastTotals.produced_bytes, 0) / secs) + "/s";
    fetchRate = fmtBytes(Math.max(o.totals.fetched_bytes - lastTotals.fetched_bytes, 0) / secs) + "/s";
  }
  if (o.totals) lastTotals = Object.assign({ at: now }, o.totals);
  const nodes = o.nodes.map((n) => [
    esc(n.node_id) + (n.this_node ? " <span class=\"muted\">(this node)</span>" : ""),
    `<span class="${n.state === "alive" ? "ok" : "bad"}">${esc(n.state)}</span>`,
    esc(n.host + ":" + n.port), esc(n.rack || "—"),
  ]);
  const shards = o.shards.map((s) => [
    esc(s.shard), esc(s.kind), s.leader === null ? "<span class=\"bad\">none</span>" : esc(s.leader),
    esc(s.replicas.join(", ")), esc(s.term), esc(s.lag),
  ]);
  main.innerHTML = `
    <h1>Cluster <span class="muted">${esc(o.cluster_id)}</span></h1>
    <div class="cards">
      <div class="card"><div class="label">Produce rate</div><div class="value" id="produce-rate">${esc(produceRate)}</div></div>
      <div class="card"><div class="label">Fetch rate</div><div class="value" id="fetch-rate">${esc(fetchRate)}</div></div>
      <div class="card"><div class="label">Produced since start</div><div class="value" id="produced-total">${o.totals ? esc(fmtBytes(o.totals.produced_bytes)) : "—"}</div></div>
      <div class="card"><div class="label">Requests since start</div><div class="value">${o.totals ? esc(o.totals.requests) : "—"}</div></div>
    </div>
    <h2>Nodes</h2>${table(["Node", "State", "Kafka address", "Rack"], nodes)}
    <h2>Shards</h2>${table(["Shard", "Kind", "Leader", "Replicas", "Term", "Lag"], shards, [0, 4, 5])}`;
  done("overview");
}

async function topics(message) {
  const list = await getJson("/console/api/topics");
  const rows = list.map((t) => [
    `<a href="#/topics/${encodeURIComponent(t.name)}">${esc(t.name)}</a>`, esc(t.partitions), esc(t.records),
  ]);
  main.innerHTML = `
    <h1>Topics</h1>
    ${message ? `<p class="msg ok" id="message">${esc(message)}</p>` : ""}
    ${table(["Topic", "Partitions", "Records"], rows, [1, 2])}
    <h2>Create a topic</h2>
    <form id="create">
      <label>Name<input name="name" required pattern="[a-zA-Z0-9._-]+"></label>
      <label>Partitions<input name="partitions" type="number" min="1" value="1"></label>
      <label>Configs (key=value per line)<textarea name="configs" placeholder="retention.ms=86400000"></textarea></label>
      <button type="submit">Create</button>
    </form><p id="create-error" class="bad"></p>`;
  document.getElementById("create").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const configs = {};
    String(f.get("configs") || "").split("\n").map((l) => l.trim()).filter(Boolean).forEach((l) => {
      const i = l.indexOf("=");
      if (i > 0) configs[l.slice(0, i).trim()] = l.slice(i + 1).trim();
    });
    try {
      await getJson("/console/api/topics", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: f.get("name"), partitions: Number(f.get("partitions")), configs }),
      });
      await topics(`created topic ${f.get("name")}`);
    } catch (e) {
      document.getElementById("create-error").textContent = e.message;
    }
  });
  done("topics");
}

async function topic(name) {
  const enc = encodeURIComponent(name);
  const [desc, parts, shards] = await Promise.all([
    getJson(`/topics/${enc}`), getJson(`/topics/${enc}/partitions`),
    getJson(`/console/api/topics/${enc}/shards`),
  ]);
  const rows = parts.map((p) => [
    esc(p.partition), esc(p.leader), esc(p.replicas.map((r) => r.broker).join(", ")),
    esc(shards.shards[p.partition]), esc(p.beginning_offset), esc(p.end_offset),
    esc(Math.max(p.end_offset - p.beginning_offset, 0)),
    shards.sizes[p.partition] == null ? "—" : `${esc(shards.sizes[p.partition])} B`,
  ]);
  const configs = Object.keys(desc.configs).sort().map((k) => [esc(k), esc(desc.configs[k])]);
  main.innerHTML = `
    <h1>Topic <span id="topic-name">${esc(name)}</span></h1>
    <h2>Partitions</h2>
    ${table(["Partition", "Leader", "Replicas", "Shard", "Beginning", "End", "Records", "Size"], rows, [0, 4, 5, 6, 7])}
    <h2>Publish a message</h2>
    <form id="publish">
      <label>Key<input name="key"></label>
      <label>Value<textarea name="value" required></textarea></label>
      <label>Partition<input name="partition" type="number" min="0" placeholder="any"></label>
      <button type="submit">Publish</button>
    </form><p id="publish-result" class="msg"></p>
    <h2>Messages</h2>
    <form id="browse">
      <label>Partition<input name="partition" type="number" min="0" value="0"></label>
      <label>From offset<input name="offset" type="number" min="0" value="${esc(parts.length ? parts[0].beginning_offset : 0)}"></label>
      <label>Count<input name="count" type="number" min="1" max="1000" value="20"></label>
      <button type="submit">Browse</button>
    </form>
    <div id="messages"></div>
    <h2>Configs</h2>${table(["Config", "Value"], configs)}`;
  const browse = async () => {
    const f = new FormData(document.getElementById("browse"));
    const url = `/topics/${enc}/partitions/${Number(f.get("partition"))}/records?offset=${Number(f.get("offset"))}&count=${Number(f.get("count"))}`;
    const out = document.getElementById("messages");
    try {
      const recs = await getJson(url, { headers: { Accept: BINARY } });
      out.innerHTML = table(["Offset", "Key", "Value", "Timestamp"], recs.map((r) => [
        esc(r.offset), `<pre>${esc(base64ToText(r.key))}</pre>`, `<pre>${esc(base64ToText(r.value))}</pre>`,
        esc(new Date(r.timestamp).toISOString()),
      ]), [0]);
    } catch (e) {
      out.innerHTML = `<p class="bad">${esc(e.message)}</p>`;
    }
  };
  document.getElementById("browse").addEventListener("submit", (ev) => { ev.preventDefault(); browse(); });
  document.getElementById("publish").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const record = { value: utf8ToBase64(String(f.get("value"))) };
    if (f.get("key")) record.key = utf8ToBase64(String(f.get("key")));
    if (f.get("partition") !== "") record.partition = Number(f.get("partition"));
    const result = document.getElementById("publish-result");
    try {
      const r = await getJson(`/topics/${enc}`, {
        method: "POST", headers: { "Content-Type": BINARY }, body: JSON.stringify({ records: [record] }),
      });
      const o = r.offsets[0];
      result.className = o.error ? "msg bad" : "msg ok";
      result.textContent = o.error ? o.error : `published to partition ${o.partition} at offset ${o.offset}`;
      browse();
    } catch (e) {
      result.className = "msg bad";
      result.textContent = e.message;
    }
  });
  await browse();
  done("topic");
}

async function groups() {
  const list = await getJson("/console/api/groups");
  const sections = list.map((g) => {
    const lag = g.offsets.reduce((s, o) => s + o.lag, 0);
    const members = g.members.map((m) => [
      esc(m.member_id), esc(m.client_id), esc(m.client_host),
      esc(m.assignment.map(([t, ps]) => `${t}: ${ps.join(",")}`).join("; ")),
    ]);
    const offsets = g.offsets.map((o) => [esc(o.topic), esc(o.partition), esc(o.committed), esc(o.end), esc(o.lag)]);
    return `<h2 class="group">${esc(g.group)} <span class="muted">${esc(g.state)}, ${g.members.length} member(s), total lag ${esc(lag)}</span></h2>
      ${table(["Member", "Client id", "Host", "Assignment"], members)}
      ${table(["Topic", "Partition", "Committed", "End", "Lag"], offsets, [1, 2, 3, 4])}`;
  });
  main.innerHTML = `<h1>Consumer groups</h1>${sections.join("") || "<p class=\"muted\">No consumer groups.</p>"}`;
  done("groups");
}

async function route() {
  if (timer) { clearInterval(timer); timer = null; }
  main.removeAttribute("data-loaded");
  const hash = location.hash.replace(/^#/, "") || "/";
  const parts = hash.split("/").filter(Boolean);
  document.querySelectorAll("header nav a").forEach((a) => {
    a.classList.toggle("active", a.dataset.view === (parts[0] || "overview"));
  });
  try {
    if (parts[0] === "topics" && parts[1]) {
      await topic(decodeURIComponent(parts[1]));
    } else if (parts[0] === "topics") {
      await topics();
    } else if (parts[0] === "groups") {
      await groups();
      timer = setInterval(() => groups().catch(fail), 5000);
    } else {
      await overview();
      timer = setInterval(() => overview().catch(fail), 2000);
    }
  } catch (e) {
    fail(e);
  }
}

window.addEventListener("hashchange", route);
route();
