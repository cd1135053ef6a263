// The page's glue: values pushed over a WebSocket are written into the elements of their PV
// suffix (data-pv); buttons post requests (the server checks every one of them).
"use strict";
const me = { user: document.body.dataset.user, role: document.body.dataset.role };
const state = { values: {}, control: null, tiled: "", seen: {}, hooks: [] };
window.teststand = state; // read by the tests and the benchmark
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const PREFIXES = [[1e-12, "p"], [1e-9, "n"], [1e-6, "µ"], [1e-3, "m"], [1, ""]];

function engineering(value, units) {
  const size = Math.abs(value);
  if (size === 0) return "0 " + units;
  let [scale, prefix] = PREFIXES[0];
  for (const [s, p] of PREFIXES) if (size >= s) [scale, prefix] = [s, p];
  return (value / scale).toPrecision(3) + " " + prefix + units;
}

function format(value, units) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  if (units === "A") return engineering(value, units);
  const text = Math.abs(value) >= 100 ? value.toFixed(1) : Number(value.toPrecision(4)).toString();
  return units ? text + " " + units : text;
}

function showPV(suffix, pv) {
  const at = performance.timeOrigin + performance.now();
  state.seen[suffix] = { value: pv.v, at: at };
  for (const element of document.querySelectorAll(`[data-pv="${CSS.escape(suffix)}"]`)) {
    element.textContent = format(pv.v, element.dataset.units || "");
    element.classList.remove("sev-1", "sev-2", "sev-3");
    if (pv.s) element.classList.add("sev-" + pv.s);
    if (suffix === "STATE") element.dataset.state = pv.v;
  }
  if (suffix === "PAUSE:REMAINING") showPausedHV(pv.v);
  for (const hook of state.hooks) hook(suffix, pv, at / 1000); // s, as Python's time.time()
}

function banner(id, text) {
  const element = document.getElementById(id);
  element.textContent = text || "";
  element.hidden = !text;
}

// The IOC counts down while a paused plan holds HV (-1: none): then the watchdog ramps it down.
function showPausedHV(remaining) {
  const held = typeof remaining === "number" && remaining >= 0;
  banner("paused-hv", held
    ? `a paused plan holds HV: resume or abort it; the watchdog ramps HV down in ${Math.round(remaining)} s`
    : "");
}

function holdsControl() {
  return me.role === "operator" && state.control !== null && state.control.user === me.user;
}

function showControl(control) {
  state.control = control;
  const holder = document.getElementById("control-holder");
  holder.textContent = control
    ? `${control.user} (${control.host}) since ${new Date(control.since * 1000).toLocaleTimeString()}`
    : "nobody";
  for (const element of document.querySelectorAll(".needs-control")) element.disabled = !holdsControl();
  for (const element of document.querySelectorAll(".operator-only"))
    element.disabled = me.role !== "operator" || control !== null;
}

function itemLine(item) {
  const li = document.createElement("li");
  li.dataset.uid = item.uid;
  const status = item.exit_status ? `[${item.exit_status}] ` : "";
  li.textContent = `${status}${item.call} — ${item.user} (${item.uid.slice(0, 8)})`;
  if (item.message) {
    const message = document.createElement("div");
    message.className = "item-message";
    message.textContent = item.message;
    li.appendChild(message);
  }
  for (const verdict of item.verdicts || []) {
    const line = document.createElement("div");
    line.className = "verdict verdict-" + verdict.verdict;
    const href = state.tiled ? `${state.tiled}/api/v1/metadata/${verdict.uid}` : "#";
    line.append(`${verdict.test}: ${verdict.verdict ?? "—"} (${verdict.modules.join(", ")}) `,
      link(href, `run ${verdict.uid.slice(0, 8)}`));
    li.appendChild(line);
  }
  return li;
}

function showQueue(queue) {
  document.getElementById("queue-state").textContent = queue.manager_state;
  document.getElementById("queue-env").textContent = queue.environment_open ? "open" : "closed";
  const running = queue.running;
  document.getElementById("queue-running").textContent = running
    ? `${running.call} — ${running.user} (${running.uid.slice(0, 8)})` : "-";
  document.getElementById("queue-items").replaceChildren(...queue.queue.map(itemLine));
  document.getElementById("queue-history").replaceChildren(...queue.history.map(itemLine));
}

function showIV(iv) {
  document.getElementById("iv-title").textContent = iv.name ? `${iv.name} ${iv.item.slice(0, 8)}` : "";
  const canvas = document.getElementById("iv-plot");
  const g = canvas.getContext("2d");
  const [w, h, m] = [canvas.width, canvas.height, 50];
  g.clearRect(0, 0, w, h);
  const series = Object.entries(iv.slots || {});
  const all = series.flatMap(([, points]) => points);
  const vmax = Math.max(1, ...all.map((p) => Math.abs(p[0])));
  const imax = Math.max(1e-9, ...all.map((p) => Math.abs(p[1])));
  g.strokeStyle = "#444";
  g.strokeRect(m, 10, w - m - 10, h - m - 10);
  g.fillStyle = "#444";
  g.font = "11px sans-serif";
  g.fillText(format(vmax, "V"), w - 60, h - m + 15);
  g.fillText("bias", w / 2, h - 10);
  g.fillText(engineering(imax, "A"), 2, 20);
  const points = [];
  series.forEach(([slot, list], index) => {
    g.strokeStyle = COLOURS[index % COLOURS.length];
    g.beginPath();
    list.forEach(([v, i], n) => {
      const x = m + (Math.abs(v) / vmax) * (w - m - 10);
      const y = h - m - (Math.abs(i) / imax) * (h - m - 10);
      n ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
    g.fillStyle = g.strokeStyle;
    g.fillText("slot " + slot, m + 10 + index * 60, 25);
    const last = list[list.length - 1];
    if (last) points.push(`slot ${slot}: ${format(last[0], "V")}, ${engineering(last[1], "A")}`);
  });
  document.getElementById("queue-point").textContent = points.join("; ") || "-";
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

// Each module: its report (if written) and the latest verdict of its runs in the history.
function showReports() {
  const modules = {};
  for (const report of state.values.reports || []) modules[report.module] = { report: report.href };
  const history = (state.values.queue || {}).history || [];
  for (const item of [...history].reverse())
    for (const run of item.verdicts || [])
      for (const module of run.modules)
        modules[module] = { ...modules[module], verdict: run.verdict, test: run.test, run: run.uid };
  document.getElementById("report-list").replaceChildren(...Object.keys(modules).sort().map((name) => {
    const entry = modules[name];
    const li = document.createElement("li");
    li.dataset.module = name;
    li.append(entry.report ? link(entry.report, name) : name);
    if (entry.verdict !== undefined) {
      const verdict = document.createElement("span");
      verdict.className = "verdict verdict-" + entry.verdict;
      verdict.textContent = ` ${entry.test}: ${entry.verdict ?? "—"} `;
      li.append(verdict);
      if (state.tiled) li.append(link(`${state.tiled}/api/v1/metadata/${entry.run}`, "run in Tiled"));
    }
    return li;
  }));
}

function apply(key, value) {
  state.values[key] = value;
  if (key.startsWith("pv:")) showPV(key.slice(3), value);
  else if (key === "health.ioc") banner("health-ioc", value);
  else if (key === "health.queue") banner("health-queue", value);
  else if (key === "control") showControl(value);
  else if (key === "queue") { showQueue(value); showReports(); }
  else if (key === "iv") showIV(value);
  else if (key === "reports") showReports();
  else if (key === "tiled") state.tiled = value;
  else if (key === "stand") document.getElementById("stand-name").textContent = value.name;
}

function connect() {
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  socket.onopen = () => banner("health-connection", "");
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    for (const [key, value] of Object.entries(message.values)) apply(key, value);
  };
  socket.onclose = (event) => {
    if (event.code === 4401) {
      location.href = "/login?message=" + encodeURIComponent(event.reason || "log in again");
      return;
    }
    banner("health-connection", "the page's server does not answer; reconnecting ...");
    setTimeout(connect, 1000);
  };
}

function say(text, error) {
  const element = document.getElementById("action-message");
  element.textContent = text;
  element.className = error ? "message error" : "message";
}

async function post(path, body) {
  try {
    const response = await fetch(path, {
      method: "POST",
      headers: { "X-Teststand": "1", "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    const reply = await response.json();
    say(reply.ok ? reply.message : reply.error, !reply.ok);
    if (response.status === 401) location.href = "/login?message=" + encodeURIComponent(reply.error);
  } catch (error) {
    say(`the page's server does not answer: ${error}`, true);
  }
}

document.getElementById("estop").onclick = () => post("/api/estop");
document.getElementById("take-control").onclick = () => post("/api/control/take");
document.getElementById("release-control").onclick = () => post("/api/control/release");
document.getElementById("stand-reset").onclick = () => post("/api/reset");
for (const action of ["start", "pause", "resume", "abort"])
  document.getElementById("queue-" + action).onclick = () => post("/api/queue/" + action);
document.getElementById("add-form").onsubmit = (event) => {
  event.preventDefault();
  post("/api/queue/add", Object.fromEntries(new FormData(event.target)));
};
showControl(null);
connect();
