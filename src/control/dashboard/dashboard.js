// The dashboard: reads GET /status/stream (or polls GET /status), draws the stages as a graph
// with their live figures and the last minute as plots, shows the preview of an image field, and
// scales or swaps a stage through the routes `micromodels ctl` uses.
// Every text from the server is set as text (never as HTML).
// About 850 lines in one file: the page loads it as it is, with no build step, and its parts (the
// graph, the plots, the preview, scale and swap) share the last status document.
"use strict";

// /status's figures cover the last second. The stream sends one every 750 ms, so a change shows
// within a second; a page polling (no stream) asks as often, a hidden tab every 5 s.
const POLL_MS = 750, HIDDEN_POLL_MS = 5000;
const HISTORY_S = 60;         // what the plots show
const CARD_W = 290, GAP_X = 48, GAP_Y = 18, ROW_GAP = 44;
const TOKEN_KEY = "micromodels.token";
// 16 colours told apart at a glance, for the plots' lines: a stage's is chosen by colorOf.
const COLORS = ["#2760c4", "#c62828", "#3a8f5c", "#d08a1e", "#7b3fb5", "#00838f", "#ad1457",
                "#5d6875", "#8d6e3f", "#7cb342", "#f06292", "#29b6f6", "#ffb300", "#283593",
                "#00bfa5", "#9e9d24"];

const $ = (id) => document.getElementById(id);
const svgNS = "http://www.w3.org/2000/svg";

let latest = null;            // the last /status document
let layoutKey = "";           // the graph drawn: stages and their inputs
let history = [];             // {t, throughput, service: {stage: ms}, age: {stage: ms}}
let swapStage = "";
let placed = "";              // the cards' heights when the graph was last placed
let colorIndex = new Map();   // stage -> its colour's index (colorOf)

// --- talking to the endpoint -----------------------------------------------------------------

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const h = {};
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

class Refused extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Sends a request; a refusal throws Refused with the server's own message.
async function call(method, path, body) {
  const init = { method, headers: headers(), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 10000);
  init.signal = controller.signal;
  let reply;
  try {
    reply = await fetch(path, init);
  } finally {
    clearTimeout(timer);
  }
  const text = await reply.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON: the text is the message */ }
  if (!reply.ok) {
    const message = json && json.error ? json.error : `HTTP ${reply.status}: ${text}`;
    if (reply.status === 401 || reply.status === 403) askForToken(message);
    throw new Refused(reply.status, message);
  }
  return json;
}

function askForToken(message) {
  // Without a valid token the page keeps nothing of the run on screen.
  stopWatching();
  stopPreview();
  $("preview-image").hidden = true;
  latest = null;
  layoutKey = "";
  placed = "";
  history = [];
  $("view").hidden = true;
  $("pipeline").textContent = "";
  for (const id of ["elapsed", "packets-in", "packets-out", "in-flight", "throughput", "bottleneck"]) {
    $(id).textContent = "–";
  }
  $("token-reason").textContent = message;
  $("connection").textContent = "needs a token";
  $("connection").classList.remove("lost");
  const form = $("token-form");
  if (form.hidden) {
    form.hidden = false;
    $("token").focus();
  }
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token").value = "";
  $("token-form").hidden = true;
  poll();
});

function showMessage(text, ok) {
  const m = $("message");
  m.textContent = text;
  m.classList.toggle("ok", !!ok);
  m.hidden = !text;
}

// Every /status document comes from GET /status/stream (server-sent events, read with fetch so
// that the token goes in the header, every 750 ms): the page is told rather than asking, which
// saves the browser a request each time. A hidden tab asks GET /status every 5 s instead, and a
// page without a stream asks every 750 ms until the next answer lets it open one.
// When the run ends, the stream's last document says so (`ended`): the page shows its final
// figures, says "run ended", and only asks every 5 s, quietly, whether a new run answers.
let pollTimer = 0;
let unanswered = 0;           // polls in a row that got no answer
let stream = null;            // the open status stream's AbortController
let noStreamUntil = 0;        // after a refused stream, poll until then
let runEnded = false;         // the last document was the run's last

function received(status) {
  unanswered = 0;
  runEnded = status.ended === true;
  $("token-form").hidden = true;
  setText($("connection"), runEnded ? "run ended" : "live");
  $("connection").classList.remove("lost");
  $("connection").classList.toggle("ended", runEnded);
  show(status);
  if (runEnded) {
    stopPreview();
    previewState("the run has ended");
  }
}

async function poll() {
  clearTimeout(pollTimer);
  try {
    received(await call("GET", "/status"));
    if (!document.hidden && !stream && !runEnded && Date.now() >= noStreamUntil) {
      watch();
      return;
    }
  } catch (e) {
    // One lost poll on a busy machine is no news; two in a row are, unless the run said it ended.
    if (!(e instanceof Refused) && ++unanswered >= 2 && !runEnded) {
      $("connection").textContent = "no answer: has the run ended? retrying…";
      $("connection").classList.add("lost");
    }
  }
  // While the token is asked for, nothing is polled: the form's submit polls again.
  if ($("token-form").hidden && !stream) {
    pollTimer = setTimeout(poll, document.hidden || runEnded ? HIDDEN_POLL_MS : POLL_MS);
  }
}

async function watch() {
  const controller = new AbortController();
  stream = controller;
  try {
    const reply = await fetch("/status/stream", { headers: headers(), cache: "no-store",
                                                  signal: controller.signal });
    if (!reply.ok) noStreamUntil = Date.now() + 10000;  // too many streams: poll a while
    const reader = reply.ok ? reply.body.getReader() : null;
    const decoder = new TextDecoder();
    let text = "";
    while (reader) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      for (let end; (end = text.indexOf("\n\n")) >= 0; text = text.slice(end + 2)) {
        const data = text.slice(0, end).split("\n").filter((l) => l.startsWith("data: "))
          .map((l) => l.slice(6)).join("\n");
        if (data) received(JSON.parse(data));
      }
    }
  } catch (e) {
    // Aborted, or the connection broke: polling takes over below.
  }
  if (stream === controller) stream = null;
  // The stream ended: ask, and open another if answered; after the run's end, in a while.
  if (!controller.signal.aborted) {
    if (runEnded) pollTimer = setTimeout(poll, HIDDEN_POLL_MS);
    else poll();
  }
}

function stopWatching() {
  if (stream) stream.abort();
  stream = null;
}

// A hidden tab polls slowly; a tab shown again is brought up to date at once.
document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    stopWatching();
    clearTimeout(pollTimer);
    if ($("token-form").hidden) pollTimer = setTimeout(poll, HIDDEN_POLL_MS);
  } else if ($("token-form").hidden) {
    poll();
  }
});

// --- formatting ------------------------------------------------------------------------------

function count(n) { return n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en"); }
function rate(n) { return n === null || n === undefined ? "–" : (n < 10 ? n.toFixed(1) : count(n)) + "/s"; }
function duration(us) {
  if (us === null || us === undefined || us === 0) return "–";
  if (us < 1000) return us.toFixed(us < 10 ? 1 : 0) + " µs";
  if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 2 : 1) + " ms";
  return (us / 1e6).toFixed(2) + " s";
}
function clock(s) {
  const m = Math.floor(s / 60), r = Math.floor(s % 60);
  return `${m}:${String(r).padStart(2, "0")}`;
}
function percent(share) { return share === null || share === undefined ? "–" : Math.round(share * 100) + "%"; }

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

// A stage's colour: by its place among the names of every stage the page knows (its own, the
// broker's, their inputs) in alphabetical order, so that it is the same on the run's page and
// on each worker's (they know the same pipeline) and no two of up to 16 stages share one.
function colorOf(name) {
  const i = colorIndex.has(name) ? colorIndex.get(name) : 0;
  return COLORS[i % COLORS.length];
}

function knowStages(drawn) {
  const names = new Set();
  for (const s of drawn) {
    names.add(s.name);
    for (const input of s.inputs || []) names.add(input);
  }
  const sorted = [...names].sort();
  if (sorted.join("\n") === [...colorIndex.keys()].join("\n")) return;
  colorIndex = new Map(sorted.map((n, i) => [n, i]));
  $("legend-service").dataset.names = "";  // drawn again in the new colours
  for (const swatch of document.querySelectorAll(".stage .swatch")) {
    swatch.style.background = colorOf(swatch.closest(".stage").dataset.stage);
  }
}

// --- the graph -------------------------------------------------------------------------------

// Depth of each stage: 0 for one without inputs, else one more than its deepest input; the
// dead-letter stage that of the deepest. Inputs that do not run in this process (a worker's) are
// drawn as "elsewhere" nodes.
function depths(stages) {
  const byName = new Map(stages.map((s) => [s.name, s]));
  const depth = new Map();
  const visit = (name, seen) => {
    if (depth.has(name)) return depth.get(name);
    const s = byName.get(name);
    let d = 0;
    if (s && s.inputs && !seen.has(name)) {
      seen.add(name);
      for (const input of s.inputs) d = Math.max(d, visit(input, seen) + 1);
    }
    depth.set(name, d);
    return d;
  };
  const graphKnown = stages.some((s) => Array.isArray(s.inputs));
  stages.forEach((s, i) => {
    if (!graphKnown) depth.set(s.name, i);  // no graph given: the stages in a row, no edges
    else visit(s.name, new Set());
  });
  // A dead-letter stage reads no stage (failures come to it from any), but it is where packets
  // end, not where they start: drawn with the last stages, not beside the sources.
  const deadLetter = (s) => s.source === false && Array.isArray(s.inputs) && s.inputs.length === 0;
  const last = Math.max(0, ...stages.filter((s) => !deadLetter(s)).map((s) => depth.get(s.name) || 0));
  for (const s of stages) if (deadLetter(s)) depth.set(s.name, last);
  return depth;
}

// A card for stage `name`; `elsewhere`: it runs in another process (the broker's figures only);
// `source`: a source, which cannot be scaled or swapped (no buttons).
function makeCard(name, elsewhere, source) {
  const card = el("div", "stage" + (elsewhere ? " elsewhere" : ""));
  card.dataset.stage = name;
  const title = el("div", "title");
  // The stage's colour, as its lines in the plots have it.
  const swatch = el("span", "swatch");
  swatch.style.background = colorOf(name);
  title.append(swatch, el("span", "name", name), el("span", "type", elsewhere ? "runs elsewhere" : ""));
  card.append(title);
  const row = (label, ...children) => {
    const r = el("div", "row");
    r.append(el("span", "label", label), ...children);
    card.append(r);
    return r;
  };
  const value = (field) => { const v = el("span", "value"); v.dataset.field = field; return v; };
  // On a distributed run: the broker's figures over every process (hidden until it has some).
  const broker = [row("all procs", value("broker-consumers")), row("backlog", value("backlog")),
    row("all done", value("broker-done")), row("all lost", value("broker-lost"))];
  for (const r of broker) {
    r.classList.add("broker");
    r.hidden = true;
  }
  if (elsewhere) return card;
  const badge = el("span", "badge", "bottleneck");
  badge.hidden = true;
  title.append(badge);

  const bar = (field, extra) => {
    const b = el("div", "bar" + (extra ? " " + extra : ""));
    const fill = el("span");
    fill.dataset.field = field;
    b.append(fill);
    return b;
  };
  if (source) {
    row("consumers", value("consumers"));
  } else {
    const minus = el("button", "scale-down", "−");
    minus.title = "one consumer less";
    minus.addEventListener("click", () => scaleBy(name, -1));
    const plus = el("button", "scale-up", "+");
    plus.title = "one consumer more";
    plus.addEventListener("click", () => scaleBy(name, +1));
    const swap = el("button", "swap", "swap…");
    swap.addEventListener("click", () => openSwap(name));
    row("consumers", value("consumers"), minus, plus, swap);
  }
  row("queue", value("queue"), bar("queue-fill", "queue"));
  row("rate", value("rate"));
  row("p50 · p99", value("latency"));
  row("busy", value("busy"), bar("busy-fill"));
  row("lost", value("lost"));
  card.append(...broker);
  return card;
}

// The stages to draw: this process's, and on a distributed run the broker's others, each with
// its inputs when known.
function graphStages(status) {
  const stages = status.stages.map((s) => ({ name: s.name, inputs: s.inputs, source: s.source }));
  const here = new Set(stages.map((s) => s.name));
  for (const b of status.broker || []) {
    if (!here.has(b.stage)) stages.push({ name: b.stage, inputs: b.inputs, elsewhere: true });
  }
  return stages;
}

// Builds a card per stage (and per input that runs elsewhere) when the set of stages changes.
function build(stages) {
  const graph = $("graph");
  for (const card of graph.querySelectorAll(".stage")) card.remove();
  const known = new Set(stages.map((s) => s.name));
  const names = stages.map((s) => s.name);
  for (const s of stages) {
    for (const input of s.inputs || []) {
      if (!known.has(input) && !names.includes(input)) names.push(input);
    }
  }
  for (const name of names) {
    const s = stages.find((x) => x.name === name);
    // A dead-letter stage has no inputs either, but its consumers scale like any stage's.
    const source = !!s && (typeof s.source === "boolean" ? s.source
                                                         : Array.isArray(s.inputs) && s.inputs.length === 0);
    graph.append(makeCard(name, !s || s.elsewhere, source));
  }
}

// Places the cards in columns by depth and draws the edges; after every update, since a
// card's height follows its text. A pipeline deeper than the page is wide wraps: its columns go
// on in a row below.
// An edge never crosses a card, so that it cannot be read as coming from another one: from a
// card to the next column of its row it is a curve; into the first card of a column of the next
// row it turns back along the gap below its row and enters the card from the top; any other
// (into a card below another, a row further down, or a column further along the same row) runs
// along the gap below its row and then down or up the free lane between the columns, and enters
// the card from the side (the left, or in the first column the right). Each path names its
// stages in data-from and data-to.
function place(stages) {
  const graph = $("graph");
  const cards = new Map([...graph.querySelectorAll(".stage")].map((c) => [c.dataset.stage, c]));
  const depth = depths(stages);
  const columns = [];
  for (const [name, card] of cards) {
    const d = depth.has(name) ? depth.get(name) : 0;
    (columns[d] = columns[d] || []).push(card);
  }
  const room = graph.parentElement.clientWidth;
  let perRow = Math.max(1, Math.floor((room + GAP_X) / (CARD_W + GAP_X)));
  // Rows: room is kept right of the last column for the edge that turns back to the next row.
  if (columns.length > perRow) perRow = Math.max(1, Math.floor((room + GAP_X / 2) / (CARD_W + GAP_X)));
  const heights = layoutKey + perRow + [...cards.values()].map((c) => c.offsetHeight).join(",");
  if (heights === placed) return;
  placed = heights;
  const depthOf = (card) => depth.get(card.dataset.stage) || 0;
  const rowOf = (card) => Math.floor(depthOf(card) / perRow);
  const rowBottom = [];
  let top = 0, width = 0;
  for (let first = 0; first < columns.length; first += perRow) {
    let bottom = top;
    for (let c = 0; c < perRow && first + c < columns.length; c++) {
      let y = top;
      for (const card of columns[first + c] || []) {
        card.style.left = c * (CARD_W + GAP_X) + "px";
        card.style.top = y + "px";
        y += card.offsetHeight + GAP_Y;
      }
      bottom = Math.max(bottom, y - GAP_Y);
      width = Math.max(width, (c + 1) * (CARD_W + GAP_X) - GAP_X);
    }
    rowBottom.push(bottom);
    top = bottom + ROW_GAP;
  }
  let height = Math.max(0, top - ROW_GAP);
  const paths = [];
  for (const s of stages) {
    for (const input of s.inputs || []) {
      const from = cards.get(input), to = cards.get(s.name);
      if (!from || !to) continue;
      const x1 = from.offsetLeft + from.offsetWidth, y1 = from.offsetTop + from.offsetHeight / 2;
      const x2 = to.offsetLeft, y2 = to.offsetTop + to.offsetHeight / 2;
      const firstInColumn = columns[depthOf(to)][0] === to;
      let d;
      if (rowOf(to) === rowOf(from) && depthOf(to) === depthOf(from) + 1) {
        const mid = (x1 + x2) / 2;
        d = `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2 - 2} ${y2}`;
      } else {
        // Out to the right, down to the gap below the row, along it.
        const gap = rowBottom[rowOf(from)] + ROW_GAP / 2;
        height = Math.max(height, gap + 2);
        const out = x1 + GAP_X / 2;
        if (rowOf(to) === rowOf(from) + 1 && firstInColumn) {
          // Down into the card's top.
          const into = to.offsetLeft + to.offsetWidth / 2;
          d = `M ${x1} ${y1} H ${out} V ${gap} H ${into} V ${to.offsetTop - 2}`;
        } else if (to.offsetLeft > 0) {
          // Along the lane left of the card's column, into its left side.
          const lane = to.offsetLeft - GAP_X / 2;
          d = `M ${x1} ${y1} H ${out} V ${gap} H ${lane} V ${y2} H ${x2 - 2}`;
        } else {
          // The first column has no lane on its left: the one on its right, into the right side.
          const right = to.offsetLeft + to.offsetWidth, lane = right + GAP_X / 2;
          d = `M ${x1} ${y1} H ${out} V ${gap} H ${lane} V ${y2} H ${right + 2}`;
        }
      }
      const path = document.createElementNS(svgNS, "path");
      path.setAttribute("class", "edge");
      path.setAttribute("d", d);
      path.setAttribute("marker-end", "url(#arrow)");
      path.dataset.from = input;
      path.dataset.to = s.name;
      paths.push(path);
    }
  }
  graph.style.height = height + "px";
  graph.style.width = width + "px";
  const edges = $("edges");
  edges.setAttribute("width", width);
  edges.setAttribute("height", height);
  for (const path of edges.querySelectorAll("path.edge")) path.remove();
  edges.append(...paths);
}

// Writes only what changed: the browser then lays out and paints only that.
function setText(e, text) {
  if (e && e.textContent !== text) e.textContent = text;
  return e;
}

function fill(card, field, text) {
  return setText(card.querySelector(`[data-field="${field}"]`), text);
}

function width(card, field, share) {
  const e = card.querySelector(`[data-field="${field}"]`);
  const value = (Math.max(0, Math.min(1, share || 0)) * 100).toFixed(1) + "%";
  if (e && e.style.width !== value) e.style.width = value;
}

function show(status) {
  latest = status;
  $("view").hidden = false;
  setText($("pipeline"), status.pipeline);
  setText($("elapsed"), clock(status.elapsed_s));
  setText($("packets-in"), count(status.packets_in));
  setText($("packets-out"), count(status.packets_out));
  setText($("in-flight"), count(status.in_flight));
  // After the run's end its rates are over the whole run, and say so.
  const over = status.ended ? " over the run" : "";
  setText($("throughput"), rate(status.throughput_per_s) + over);
  // No bottleneck once there is a window: nothing moved in it (/status's idle rule).
  setText($("bottleneck"), status.bottleneck !== null ? status.bottleneck
    : status.window_s !== null && !status.ended ? "none: idle" : "–");
  $("bottleneck").classList.toggle("alarm", status.bottleneck !== null && !status.ended);

  const drawn = graphStages(status);
  knowStages(drawn);
  showAgeNote(status, drawn);
  const key = JSON.stringify(drawn);
  if (key !== layoutKey) {
    layoutKey = key;
    build(drawn);
  }
  const graph = $("graph");
  for (const b of status.broker || []) {
    const card = graph.querySelector(`.stage[data-stage="${CSS.escape(b.stage)}"]`);
    if (!card) continue;
    for (const r of card.querySelectorAll(".broker")) r.hidden = false;
    fill(card, "broker-consumers", `${b.consumers} consumer${b.consumers === 1 ? "" : "s"}`);
    fill(card, "backlog", `${count(b.backlog)} · pending ${count(b.pending)}`);
    // The broker adds up each process's counts four times a second: until this process's first
    // have reached it, its own are the better lower bound.
    const here = status.stages.find((s) => s.name === b.stage);
    const atLeast = (field) => Math.max(b[field], here ? here[field] : 0);
    fill(card, "broker-done", count(atLeast("processed")));
    fill(card, "broker-lost", `dropped ${count(atLeast("dropped"))} · failed ${count(atLeast("failed"))}`);
  }
  for (const s of status.stages) {
    const card = $("graph").querySelector(`.stage[data-stage="${CSS.escape(s.name)}"]`);
    if (!card) continue;
    setText(card.querySelector(".type"), s.type);
    const limit = s.name === status.bottleneck;
    card.classList.toggle("bottleneck", limit);
    card.querySelector(".badge").hidden = !limit;
    fill(card, "consumers", String(s.consumers));
    fill(card, "queue", s.queue_capacity > 0 ? `${s.queue_depth}/${s.queue_capacity}` : "–");
    width(card, "queue-fill", s.queue_capacity > 0 ? s.queue_depth / s.queue_capacity : 0);
    fill(card, "rate", rate(s.rate_per_s) + over);
    fill(card, "latency", `${duration(s.service_us.p50)} · ${duration(s.service_us.p99)}`);
    const busy = s.recent_busy_share !== null ? s.recent_busy_share : s.busy_share;
    fill(card, "busy", percent(busy));
    width(card, "busy-fill", busy);
    const lost = fill(card, "lost",
      `dropped ${count(s.dropped)} · failed ${count(s.failed)}` +
      (s.dead_lettered > 0 ? ` · dead-lettered ${count(s.dead_lettered)}` : "") +
      Object.entries(s.events || {}).map(([event, n]) => ` · ${event} ${count(n)}`).join(""));
    lost.classList.toggle("bad", s.dropped + s.failed + s.dead_lettered > 0);
  }
  place(drawn);
  showProcesses(status.processes);
  // The plots are of the last seconds: the whole run's figures at the end are no point on them.
  if (!status.ended) record(status);
  previewStages(status);
  startPreview();
}

// Age is measured where packets leave the pipeline, at its last stages (those no stage reads):
// a process that serves none of them (a worker) has no age to plot, and says why instead.
function showAgeNote(status, drawn) {
  const read = new Set(drawn.flatMap((s) => s.inputs || []));
  const graphKnown = drawn.some((s) => Array.isArray(s.inputs));
  const last = drawn.filter((s) => !read.has(s.name)).map((s) => s.name);
  const here = new Set(status.stages.map((s) => s.name));
  const none = graphKnown && status.stages.length > 0 && !last.some((n) => here.has(n));
  $("plot-age").toggleAttribute("hidden", none);  // an <svg> has no `hidden` property
  $("age-note").hidden = !none;
  if (none) {
    setText($("age-note"), `Age is measured where packets leave the pipeline, at its last stages ` +
      `(${last.join(", ")}), which run in other processes: see their page.`);
  }
}

// On a distributed run, a row per live process: what it serves and how fresh its heartbeat is.
function showProcesses(processes) {
  const box = $("processes");
  box.hidden = !Array.isArray(processes);
  if (box.hidden) return;
  const key = JSON.stringify(processes);
  if (box.dataset.shown === key) return;
  box.dataset.shown = key;
  $("processes-body").replaceChildren(...processes.map((w) => {
    const row = el("tr");
    const stages = Object.entries(w.consumers);
    const total = stages.reduce((sum, [, n]) => sum + n, 0);
    row.append(el("td", "", w.id),
      el("td", "", stages.map(([stage, n]) => `${stage} ×${n}`).join(", ")),
      el("td", "number", count(total)),
      el("td", "number", `${w.heartbeat_age_s.toFixed(1)} s ago`));
    return row;
  }));
}

// --- the plots -------------------------------------------------------------------------------

function record(status) {
  const t = status.elapsed_s;
  if (history.length && t < history[history.length - 1].t) history = [];  // another run
  const service = {};
  const age = {};
  for (const s of status.stages) {
    if (s.recent_service_mean_us !== null) service[s.name] = s.recent_service_mean_us / 1000;
    if (s.recent_age_mean_us !== null && s.recent_age_mean_us !== undefined) {
      age[s.name] = s.recent_age_mean_us / 1000;
    }
  }
  history.push({ t, throughput: status.throughput_per_s, service, age });
  while (history.length && history[0].t < t - HISTORY_S) history.shift();
  const names = status.stages.map((s) => s.name);
  plot($("plot-throughput"), [{ color: COLORS[0], get: (h) => h.throughput }], t);
  plot($("plot-service"),
    names.map((n) => ({ name: n, color: colorOf(n), get: (h) => h.service[n] })), t);
  // The age of what the last stages finished (capture to done): one line per last stage, in the
  // colour of its service-time line.
  plot($("plot-age"), names.map((n) => ({ name: n, color: colorOf(n), get: (h) => h.age[n] })), t);
  const legend = $("legend-service");
  if (legend.dataset.names !== names.join("\n")) {
    legend.dataset.names = names.join("\n");
    legend.replaceChildren(...names.map((n) => {
      const li = el("li", "", n);
      li.dataset.stage = n;
      li.style.setProperty("--swatch", colorOf(n));
      return li;
    }));
  }
}

function plot(svg, series, now) {
  const W = 600, H = 150, top = 14, bottom = 4;
  let max = 0;
  for (const h of history) for (const s of series) max = Math.max(max, s.get(h) || 0);
  max = niceCeiling(max);
  const x = (t) => ((t - (now - HISTORY_S)) / HISTORY_S) * W;
  const y = (v) => H - bottom - (v / max) * (H - top - bottom);
  const parts = [];
  for (const f of [0.5, 1]) {
    const line = document.createElementNS(svgNS, "line");
    line.setAttribute("class", "grid");
    line.setAttribute("x1", 0); line.setAttribute("x2", W);
    line.setAttribute("y1", y(max * f)); line.setAttribute("y2", y(max * f));
    parts.push(line);
  }
  const label = document.createElementNS(svgNS, "text");
  label.setAttribute("x", 4); label.setAttribute("y", 12);
  label.textContent = max.toLocaleString("en");
  parts.push(label);
  for (const s of series) {
    const points = history.filter((h) => s.get(h) !== undefined && s.get(h) !== null)
      .map((h) => `${x(h.t).toFixed(1)},${y(s.get(h)).toFixed(1)}`);
    if (points.length < 2) continue;
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("stroke", s.color);
    parts.push(line);
  }
  svg.replaceChildren(...parts);
}

function niceCeiling(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// --- the preview -----------------------------------------------------------------------------

// GET /preview/FIELD?stage=NAME is MJPEG: parts of "headers, blank line, Content-Length bytes of
// JPEG". It is read with fetch rather than an <img src>, so that the token goes in the
// Authorization header as on every other route, and each JPEG is shown as a blob.
const PREVIEW_FPS = 10, PREVIEW_RETRY_MS = 3000;
const preview = { key: "", controller: null, frames: 0, retry: 0 };

function previewState(text, bad) {
  setText($("preview-state"), text);
  $("preview-state").classList.toggle("bad", !!bad);
}

// Offers the stages served here, the last one first chosen (what leaves the pipeline).
function previewStages(status) {
  const select = $("preview-stage");
  const names = status.stages.map((s) => s.name);
  if (select.dataset.names === names.join("\n")) return;
  const chosen = select.value;
  select.dataset.names = names.join("\n");
  select.replaceChildren(...names.map((n) => el("option", "", n)));
  select.value = names.includes(chosen) ? chosen : names[names.length - 1] || "";
}

function stopPreview() {
  clearTimeout(preview.retry);
  if (preview.controller) preview.controller.abort();
  preview.controller = null;
  preview.key = "";
}

// Starts the stream of the chosen stage and field, unless it plays already, was refused, or
// waits to be asked again (`again`: ask now).
function startPreview(again) {
  const stage = $("preview-stage").value;
  const field = $("preview-field").value.trim();
  if (!stage || !field || document.hidden || !$("token-form").hidden || runEnded) return;
  const key = stage + "\n" + field;
  if (key === preview.key && again !== true) return;
  stopPreview();
  preview.key = key;
  const controller = new AbortController();
  preview.controller = controller;
  const path = `/preview/${encodeURIComponent(field)}?stage=${encodeURIComponent(stage)}` +
    `&fps=${PREVIEW_FPS}`;
  readPreview(path, controller.signal).then(({ why, retry, fine }) => {
    if (controller.signal.aborted) return;
    previewState(why, !fine);
    preview.controller = null;
    // A run still starting (503) or a stream that ended is asked again; a field or stage the
    // server refused waits for the user to choose another.
    if (retry && !runEnded) preview.retry = setTimeout(() => startPreview(true), PREVIEW_RETRY_MS);
  }, (e) => {
    if (controller.signal.aborted || runEnded) return;
    previewState(`no preview: ${e.message}`, true);
    preview.controller = null;
    preview.retry = setTimeout(() => startPreview(true), PREVIEW_RETRY_MS);
  });
}

function indexOf(bytes, pattern, from) {
  outer: for (let i = from; i + pattern.length <= bytes.length; i++) {
    for (let j = 0; j < pattern.length; j++) if (bytes[i + j] !== pattern[j]) continue outer;
    return i;
  }
  return -1;
}

// The image fields of the chosen stage, offered in the field's list.
function offerFields(fields) {
  $("preview-fields").replaceChildren(...fields.map((f) => { const o = el("option"); o.value = f; return o; }));
}

// Reads the stream until it ends; resolves with why it ended (for the panel), whether to ask
// again, and whether that is fine rather than an error.
async function readPreview(path, signal) {
  const reply = await fetch(path, { headers: headers(), cache: "no-store", signal });
  if (!reply.ok) {
    const text = await reply.text();
    let body = {};
    try { body = JSON.parse(text); } catch (e) { /* not JSON */ }
    const message = body.error || `HTTP ${reply.status}`;
    if (reply.status === 401 || reply.status === 403) askForToken(message);
    // A stage whose packets carry no image at all is not an error: there is nothing to show.
    if (Array.isArray(body.image_fields)) {
      offerFields(body.image_fields);
      if (body.image_fields.length === 0) {
        $("preview-image").hidden = true;
        return { why: `stage '${$("preview-stage").value}' sends no images: nothing to preview`,
                 retry: false, fine: true };
      }
    }
    return { why: `no preview: ${message}`, retry: reply.status === 503 };
  }
  offerFields((reply.headers.get("X-Preview-Image-Fields") || "").split(",").filter((f) => f));
  previewState(`${$("preview-stage").value} · ${$("preview-field").value.trim()}: starting…`);
  const reader = reply.body.getReader();
  const blank = new Uint8Array([13, 10, 13, 10]);
  const decoder = new TextDecoder();
  let buffer = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return { why: "the stream ended: has the run ended?", retry: true };
    const joined = new Uint8Array(buffer.length + value.length);
    joined.set(buffer);
    joined.set(value, buffer.length);
    buffer = joined;
    let start = 0;
    for (;;) {
      const end = indexOf(buffer, blank, start);
      if (end < 0) break;
      const length = /Content-Length:\s*(\d+)/i.exec(decoder.decode(buffer.subarray(start, end)));
      if (!length) throw new Error("a part without Content-Length");
      const body = end + 4, next = body + Number(length[1]) + 2;  // the JPEG, then CRLF
      if (buffer.length < next) break;
      showFrame(buffer.slice(body, next - 2));
      start = next;
    }
    buffer = buffer.slice(start);
  }
}

function showFrame(jpeg) {
  const image = $("preview-image");
  const old = image.src;
  image.src = URL.createObjectURL(new Blob([jpeg], { type: "image/jpeg" }));
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  image.hidden = false;
  preview.frames++;
  image.dataset.frames = String(preview.frames);
  image.onload = () => previewState(
    `${$("preview-stage").value} · ${$("preview-field").value.trim()}: ` +
    `${image.naturalWidth}×${image.naturalHeight}, at most ${PREVIEW_FPS} frames/s`);
}

$("preview-stage").addEventListener("change", () => startPreview(true));
$("preview-field").addEventListener("change", () => startPreview(true));
$("preview-form").addEventListener("submit", (event) => {
  event.preventDefault();
  startPreview(true);
});
// A hidden tab streams nothing.
document.addEventListener("visibilitychange", () => {
  if (document.hidden) stopPreview();
  else startPreview();
});

// --- scale and swap, through the routes `ctl` uses -------------------------------------------

// Clicks add up: each asks for one more (or less) than the count asked for last, not than the
// count last shown, which is stale until the server's figures catch up; and the requests go one
// after another, so that they reach the server in the order of the clicks.
const scaling = new Map();    // stage -> {consumers: the count asked for last, pending: requests}
let scaleQueue = Promise.resolve();

function scaleBy(name, delta) {
  const s = latest && latest.stages.find((x) => x.name === name);
  if (!s) return;
  const asked = scaling.get(name) || { consumers: s.consumers, pending: 0 };
  asked.consumers += delta;
  asked.pending++;
  scaling.set(name, asked);
  const consumers = asked.consumers;
  scaleQueue = scaleQueue.then(async () => {
    try {
      const answer = await call("POST", `/stages/${encodeURIComponent(name)}/scale`, { consumers });
      showMessage(`scaled ${name}: ${answer.consumers_before} → ${answer.consumers} consumers`, true);
      // Shown at once; the next status confirms it.
      const shown = latest && latest.stages.find((x) => x.name === name);
      if (shown) shown.consumers = answer.consumers;
      const card = $("graph").querySelector(`.stage[data-stage="${CSS.escape(name)}"]`);
      if (card) fill(card, "consumers", String(answer.consumers));
      poll();
    } catch (e) {
      showMessage(`scale ${name}: ${e.message}`);
      asked.consumers -= delta;  // refused: nothing changed
    } finally {
      if (--asked.pending === 0) scaling.delete(name);
    }
  });
}

function openSwap(name) {
  swapStage = name;
  $("swap-stage").textContent = name;
  $("swap-type").value = "";
  $("swap-params").value = "";
  $("swap-message").hidden = true;
  $("swap-dialog").showModal();
}

$("swap-cancel").addEventListener("click", () => $("swap-dialog").close());

$("swap-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const params = {};
  const lines = $("swap-params").value.split("\n").map((l) => l.trim()).filter((l) => l);
  for (const [i, line] of lines.entries()) {
    const eq = line.indexOf("=");
    if (eq <= 0) {
      $("swap-message").textContent = `line ${i + 1}: '${line}' is not name=value`;
      $("swap-message").hidden = false;
      return;
    }
    params[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();  // as text, as ctl sends it
  }
  const request = { params };
  const type = $("swap-type").value.trim();
  if (type) request.type = type;
  $("swap-submit").disabled = true;
  try {
    const answer = await call("POST", `/stages/${encodeURIComponent(swapStage)}/swap`, request);
    $("swap-dialog").close();
    const changes = Object.entries(answer.params).map(([k, v]) => ` ${k}=${v}`).join("");
    showMessage(`swapped ${swapStage}: ${answer.status.type}${changes}`, true);
    poll();
  } catch (e) {
    $("swap-message").textContent = e.message;
    $("swap-message").hidden = false;
  } finally {
    $("swap-submit").disabled = false;
  }
});

poll();
