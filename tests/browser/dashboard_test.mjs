// The dashboard in a real browser: `micromodels run --listen` serves it, headless Chromium
// (driven by puppeteer-core) opens it, and every effect is checked through /status, not
// through the page. Saves screenshots in out/test-logs/ (dashboard.png, dashboard-token.png).
//
// Also dashboard-preview.png: a 12-stage video pipeline in rows, and its preview playing;
// dashboard-fanout.png: a wrapped graph whose last column has two sinks of one input;
// dashboard-ended.png: a run's page after its end; on Redis, dashboard-redis.png and
// dashboard-worker.png (a worker's page, idle after the run).
//
//   node tests/browser/dashboard_test.mjs    (ctest -L browser sets the variables below; run as
//   a plain script, not under `node --test`, so that its skip, exit 77, reaches ctest)
//
// MICROMODELS_CLI_PATH   the tool
// MICROMODELS_PUPPETEER  puppeteer-core's folder, inside the cache ($MICROMODELS_CACHE, default
//                        $MICROMODELS_SOURCE_DIR/.cache/micromodels) where fetch_media.sh puts it
// MICROMODELS_CHROMIUM   the browser (default /usr/bin/chromium)
// MICROMODELS_LOG_DIR    where the screenshots go (default out/test-logs)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const tool = process.env.MICROMODELS_CLI_PATH;
const cache = process.env.MICROMODELS_CACHE ||
  path.join(process.env.MICROMODELS_SOURCE_DIR || ".", ".cache", "micromodels");
const puppeteerDir = path.resolve(cache, process.env.MICROMODELS_PUPPETEER || "");
const chromium = process.env.MICROMODELS_CHROMIUM || "/usr/bin/chromium";
const logDir = process.env.MICROMODELS_LOG_DIR || "out/test-logs";
// Without the browser or puppeteer-core the test skips (exit 77), unless the media and tools
// are required (MICROMODELS_REQUIRE_MEDIA=1, as scripts/test.sh sets it): then it fails.
for (const [name, value, hint] of [
  ["MICROMODELS_CLI_PATH", tool, "build the tool first"],
  ["MICROMODELS_PUPPETEER", puppeteerDir, "scripts/fetch_media.sh fetches puppeteer-core"],
  ["MICROMODELS_CHROMIUM", chromium, "scripts/deps.sh installs chromium"]]) {
  if (!value || !fs.existsSync(value)) {
    const message = `${name} must name an existing path (got '${value}'): ${hint}`;
    if (process.env.MICROMODELS_REQUIRE_MEDIA === "1") throw new Error(message);
    console.log(`skipped: ${message}`);
    process.exit(77);
  }
}
const puppeteer = createRequire(import.meta.url)(puppeteerDir);
fs.mkdirSync(logDir, { recursive: true });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dashboard-test-"));

// A pipeline with a branch, so that the graph has depth and more than one edge into a column:
// source -> decode -> work -> sink, and source -> audit. `work` sleeps 5 ms a packet on one
// consumer: it is the bottleneck, and one more consumer shows at once.
const pipelineFile = path.join(dir, "demo.yaml");
fs.writeFileSync(pipelineFile, `pipeline: dashboard_demo
stages:
  - name: source
    type: synthetic.source
    params: { count: 100000000 }
  - name: decode
    type: model.spin
    params: { service_ms: 0.05 }
  - name: work
    type: model.sleep
    params: { service_ms: 5 }
  - name: sink
    type: sink.jsonl
    params: { path: ${JSON.stringify(path.join(dir, "out.jsonl"))} }
  - name: audit
    type: model.spin
    inputs: [source]
    params: { service_ms: 0.01 }
`);
const stageNames = ["source", "decode", "work", "sink", "audit"];

// Starts `micromodels run` (or, with `args`, another command) with a control endpoint and
// resolves with its URL.
function startRun(listen, env = {}, args = ["run", pipelineFile, "-q"]) {
  const child = spawn(tool, [...args, "--listen", listen], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  const url = new Promise((resolve, reject) => {
    child.stderr.on("data", (chunk) => {
      err += chunk;
      const m = err.match(/control: (http:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`the run ended (exit ${code}) before its endpoint: ${err}`)));
  });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no 'control:' line in 20 s: ${err}`)), 20000);
  });
  return { child, url: Promise.race([url, timeout]).finally(() => clearTimeout(timer)) };
}

async function get(url, pathname, token) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const reply = await fetch(url + pathname, { headers });
  return { status: reply.status, text: await reply.text(), headers: reply.headers };
}

async function status(url, token) {
  const reply = await get(url, "/status", token);
  assert.equal(reply.status, 200, reply.text);
  return JSON.parse(reply.text);
}

const stageOf = (document, name) => document.stages.find((s) => s.name === name);

async function until(what, predicate, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// A non-loopback address of this machine, for the listener that needs a token.
function outsideAddress() {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list || []) if (!a.internal && a.family === "IPv4") return a.address;
  }
  return "0.0.0.0";  // no other interface: all of them, still not loopback
}

let browser;
const runs = [];

before(async () => {
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  if (browser) await browser.close();
  for (const run of runs) run.kill("SIGKILL");
  fs.rmSync(dir, { recursive: true, force: true });
});

// Stops a run as an operator does (Ctrl-C) and expects it to drain and end.
async function stop(child) {
  const ended = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  child.kill("SIGINT");
  const result = await ended;
  assert.equal(result.code, 130, `the run ended with ${JSON.stringify(result)} after Ctrl-C`);
}

test("the dashboard shows the run live, and scales and swaps through the routes", async () => {
  const run = startRun("127.0.0.1:0");
  runs.push(run.child);
  const url = await run.url;
  const page = await browser.newPage();
  await page.setViewport({ width: 1360, height: 900 });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  const requested = [];
  page.on("request", (r) => requested.push(new URL(r.url()).pathname));
  await page.goto(url + "/", { waitUntil: "load" });

  // Every stage is drawn, once, with its edges, laid out by depth.
  await page.waitForFunction((n) => document.querySelectorAll(".stage").length === n, { timeout: 10000 },
                             stageNames.length);
  const drawn = await page.$$eval(".stage", (cards) => cards.map((c) => ({
    name: c.dataset.stage, left: c.offsetLeft, type: c.querySelector(".type").textContent })));
  assert.deepEqual(drawn.map((d) => d.name).sort(), [...stageNames].sort());
  const left = Object.fromEntries(drawn.map((d) => [d.name, d.left]));
  assert.ok(left.source < left.decode && left.decode < left.work && left.work < left.sink,
            `columns by depth: ${JSON.stringify(left)}`);
  assert.equal(left.audit, left.decode, "audit reads the source: the same depth as decode");
  assert.equal(drawn.find((d) => d.name === "work").type, "model.sleep");
  assert.equal(await page.$$eval("path.edge", (edges) => edges.length), 4);

  // The numbers change while the pipeline runs.
  const packetsOut = () => page.$eval("#packets-out", (e) => e.textContent);
  const first = await packetsOut();
  await new Promise((r) => setTimeout(r, 1500));
  const second = await packetsOut();
  assert.notEqual(first, second, "packets out did not change in 1.5 s");
  // The figures come from the status stream: one /status to start, then no polling.
  assert.equal(requested.filter((p) => p === "/status/stream").length, 1, requested.join(" "));
  assert.ok(requested.filter((p) => p === "/status").length <= 1, requested.join(" "));
  assert.match(await page.$eval('.stage[data-stage="work"] [data-field="rate"]', (e) => e.textContent),
               /^[0-9.,]+\/s$/);

  // The bottleneck /status names is the one highlighted.
  await until("the bottleneck to be work", async () => (await status(url)).bottleneck === "work");
  await page.waitForFunction(() => {
    const marked = [...document.querySelectorAll(".stage.bottleneck")].map((c) => c.dataset.stage);
    return marked.length === 1 && marked[0] === "work" && document.querySelector("#bottleneck").textContent === "work";
  }, { timeout: 5000 });

  // The scale button changes the consumers: checked through /status, and the page follows.
  const before = stageOf(await status(url), "work").consumers;
  const clicked = Date.now();
  await page.click('.stage[data-stage="work"] .scale-up');
  await until("work's consumers to grow", async () => stageOf(await status(url), "work").consumers === before + 1);
  await page.waitForFunction((n) => document.querySelector('.stage[data-stage="work"] [data-field="consumers"]')
    .textContent === String(n), { timeout: 5000 }, before + 1);
  console.log(`# the page showed the new consumer count ${Date.now() - clicked} ms after the click`);
  assert.match(await page.$eval("#message", (e) => e.textContent), /scaled work: 1 → 2 consumers/);

  // Two quick clicks add up: 3 → 5, not two requests for 4.
  const post = await fetch(url + "/stages/work/scale", { method: "POST", body: JSON.stringify({ consumers: 3 }),
                                                         headers: { "Content-Type": "application/json" } });
  assert.equal(post.status, 200, await post.text());
  await page.waitForFunction(() => document.querySelector('.stage[data-stage="work"] [data-field="consumers"]')
    .textContent === "3", { timeout: 5000 });
  await page.click('.stage[data-stage="work"] .scale-up');
  await page.click('.stage[data-stage="work"] .scale-up');
  await until("work's consumers to reach 5", async () => stageOf(await status(url), "work").consumers === 5);
  await page.waitForFunction(() => document.querySelector('.stage[data-stage="work"] [data-field="consumers"]')
    .textContent === "5" && /scaled work: 4 → 5 consumers/.test(document.querySelector("#message").textContent),
  { timeout: 5000 });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(stageOf(await status(url), "work").consumers, 5, "no third request");

  // A source cannot be scaled or swapped: its card has no buttons.
  assert.equal(await page.$$eval('.stage[data-stage="source"] button', (b) => b.length), 0,
               "the source's card has no scale or swap buttons");
  // A refusal shows the server's message and changes nothing: audit below one consumer.
  await page.click('.stage[data-stage="audit"] .scale-down');
  await page.waitForFunction(() => /scale audit: /.test(document.querySelector("#message").textContent),
                             { timeout: 5000 });
  const refusal = await page.$eval("#message", (e) => e.textContent);
  assert.match(refusal, /at least 1/, refusal);
  assert.equal(stageOf(await status(url), "audit").consumers, 1);

  // Swap from the page: the server's refusal is shown in the dialog; a good swap takes over.
  await page.click('.stage[data-stage="work"] .swap');
  await page.type("#swap-type", "model.nosuch");
  await page.click("#swap-submit");
  await page.waitForFunction(() => !document.querySelector("#swap-message").hidden, { timeout: 5000 });
  assert.match(await page.$eval("#swap-message", (e) => e.textContent), /unknown stage type 'model.nosuch'/);
  assert.equal(stageOf(await status(url), "work").type, "model.sleep");
  await page.$eval("#swap-type", (e) => { e.value = ""; });
  // From 5 ms to 1 ms: a sleep overshoots on a loaded machine, so the new figure must stand
  // well clear of the old one (after a swap to 2 ms the check once failed while a build ran).
  await page.type("#swap-params", "service_ms=1");
  await page.click("#swap-submit");
  await page.waitForFunction(() => /swapped work: model.sleep service_ms=1/.test(
    document.querySelector("#message").textContent), { timeout: 10000 });
  await until("work's service time to follow the swap", async () => {
    const mean = stageOf(await status(url), "work").recent_service_mean_us;
    return mean !== null && mean < 3500;
  });

  // A pipeline without images: the preview panel says so, in its plain colour, not as an error.
  await page.waitForFunction(() => /^stage '\w+' sends no images: nothing to preview$/.test(
    document.querySelector("#preview-state").textContent), { timeout: 15000 });
  assert.equal(await page.$eval("#preview-state", (e) => e.classList.contains("bad")), false);
  assert.equal(await page.$eval("#preview-image", (e) => e.hidden), true);

  // A run in one process has its last stages here: the age plot, no note about it.
  assert.equal(await page.$eval("#age-note", (e) => e.offsetHeight), 0);
  assert.ok(await page.$eval("#plot-age", (e) => e.getBoundingClientRect().height) > 100);
  // The plots fill in; then the screenshot (the artifact).
  await page.waitForFunction(() => document.querySelectorAll("#plot-throughput polyline").length === 1 &&
    document.querySelectorAll("#plot-service polyline").length >= 3 &&
    document.querySelectorAll("#plot-age polyline").length >= 1, { timeout: 10000 });  // the last stages'
  await new Promise((r) => setTimeout(r, 2000));
  await page.screenshot({ path: path.join(logDir, "dashboard.png"), fullPage: true });
  assert.deepEqual(pageErrors, []);
  await page.close();
  await stop(run.child);
});

// A 12-stage video pipeline, as long as eye_contact.yaml: source, ten stages in a line (one of
// them paces the frames at 50 a second), and a video sink.
function videoPipeline(media) {
  const middle = [];
  for (let i = 1; i <= 10; i++) {
    middle.push(i === 5
      ? `  - name: stage${i}\n    type: model.sleep\n    params: { service_ms: 20 }`
      : `  - name: stage${i}\n    type: pass`);
  }
  const file = path.join(dir, "video.yaml");
  fs.writeFileSync(file, `pipeline: dashboard_video
stages:
  - name: source
    type: video.source
    params: { path: ${JSON.stringify(media)} }
${middle.join("\n")}
  - name: sink
    type: video.sink
    ordered: true
    params: { path: ${JSON.stringify(path.join(dir, "video.mp4"))} }
`);
  return file;
}

// What the preview's <img> shows, as a few numbers: the mean of each of 64 blocks of its pixels.
const previewPixels = (page) => page.$eval("#preview-image", (image) => {
  const canvas = document.createElement("canvas");
  canvas.width = 8;
  canvas.height = 8;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0, 8, 8);
  return Array.from(context.getImageData(0, 0, 8, 8).data).join(",");
});

test("a long pipeline wraps into rows, and the preview panel plays a stage's frames", async (t) => {
  const media = path.join(cache, "media", "franck.mp4");
  if (!fs.existsSync(media)) {
    if (process.env.MICROMODELS_REQUIRE_MEDIA === "1") throw new Error(`missing ${media}`);
    t.skip(`missing ${media}: scripts/fetch_media.sh fetches it`);
    return;
  }
  const run = startRun("127.0.0.1:0", {}, ["run", videoPipeline(media), "-q"]);
  runs.push(run.child);
  const url = await run.url;
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 1100 });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(url + "/", { waitUntil: "load" });
  await page.waitForFunction(() => document.querySelectorAll(".stage").length === 12, { timeout: 10000 });

  // Every stage fits the width: rows, not a line to scroll along; each edge is drawn.
  const layout = await page.evaluate(() => ({
    scroll: document.querySelector(".graph-scroll").scrollWidth,
    width: document.querySelector(".graph-scroll").clientWidth,
    cards: [...document.querySelectorAll(".stage")].map((c) => {
      const box = c.getBoundingClientRect();
      return { name: c.dataset.stage, left: box.left, right: box.right, top: box.top };
    }),
  }));
  assert.ok(layout.scroll <= layout.width, `the graph scrolls sideways: ${layout.scroll} > ${layout.width}`);
  for (const card of layout.cards) assert.ok(card.right <= 1400, `${card.name} is cut off: ${JSON.stringify(card)}`);
  const rows = new Set(layout.cards.map((c) => Math.round(c.top))).size;
  assert.ok(rows >= 3, `the 12 stages take ${rows} rows`);
  const byName = Object.fromEntries(layout.cards.map((c) => [c.name, c]));
  assert.ok(byName.stage4.top > byName.source.top && byName.stage4.left < byName.stage3.left,
            `stage4 starts the next row: ${JSON.stringify(layout.cards)}`);
  assert.equal(await page.$$eval("path.edge", (edges) => edges.length), 11);

  // The preview: the last stage's frame by default, frames that change.
  await page.waitForFunction(() => Number(document.querySelector("#preview-image").dataset.frames || 0) >= 3 &&
    document.querySelector("#preview-image").naturalWidth === 360, { timeout: 20000 });
  assert.equal(await page.$eval("#preview-stage", (e) => e.value), "sink");
  const first = await previewPixels(page);
  await page.waitForFunction((n) => Number(document.querySelector("#preview-image").dataset.frames) >= n + 5,
                             { timeout: 10000 }, Number(await page.$eval("#preview-image", (e) => e.dataset.frames)));
  const later = await previewPixels(page);
  assert.notEqual(first, later, "the preview's picture did not change");
  assert.match(await page.$eval("#preview-state", (e) => e.textContent), /^sink · frame: 360×288/);
  assert.deepEqual(await page.$$eval("#preview-fields option", (o) => o.map((x) => x.value)), ["frame"]);
  await page.screenshot({ path: path.join(logDir, "dashboard-preview.png") });

  // Another stage from the picker; then a field its packets do not have: the server's message.
  await page.select("#preview-stage", "stage3");
  const shown = Number(await page.$eval("#preview-image", (e) => e.dataset.frames));
  await page.waitForFunction((n) => Number(document.querySelector("#preview-image").dataset.frames) >= n + 3 &&
    /^stage3 · frame: 360×288/.test(document.querySelector("#preview-state").textContent),
  { timeout: 10000 }, shown);
  await page.$eval("#preview-field", (e) => {
    e.value = "nope";
    e.dispatchEvent(new Event("change"));
  });
  await page.waitForFunction(() => /no preview: the packets leaving stage 'stage3' have no field 'nope'; its image fields: frame/
    .test(document.querySelector("#preview-state").textContent), { timeout: 15000 });
  assert.deepEqual(pageErrors, []);
  await page.close();
  await stop(run.child);
});

// source, p1..p11 in a line (p5 sleeps), then two sinks that both read p11: at 1400 px the
// graph wraps, and the two sinks share the last column, one below the other.
function fanOutPipeline() {
  const middle = [];
  for (let i = 1; i <= 11; i++) {
    middle.push(i === 5
      ? `  - name: p${i}\n    type: model.sleep\n    params: { service_ms: 1 }`
      : `  - name: p${i}\n    type: pass`);
  }
  const sink = (name) => `  - name: ${name}\n    type: sink.jsonl\n    inputs: [p11]\n` +
    `    params: { path: ${JSON.stringify(path.join(dir, name + ".jsonl"))} }`;
  const file = path.join(dir, "fanout.yaml");
  fs.writeFileSync(file, `pipeline: dashboard_fanout
stages:
  - name: source
    type: synthetic.source
    params: { count: 100000000, rate: 200 }
${middle.join("\n")}
${sink("sink_a")}
${sink("sink_b")}
`);
  return file;
}

// Each edge the page draws: the stages it joins (data-from, data-to), where it starts and ends,
// and the cards other than those two that one of its points (every 3 px) falls inside.
const drawnEdges = (page) => page.evaluate(() => {
  const boxes = [...document.querySelectorAll(".stage")].map((c) => ({
    name: c.dataset.stage, left: c.offsetLeft, top: c.offsetTop,
    right: c.offsetLeft + c.offsetWidth, bottom: c.offsetTop + c.offsetHeight }));
  return [...document.querySelectorAll("path.edge")].map((p) => {
    const length = p.getTotalLength();
    const crossed = new Set();
    for (let at = 0; at <= length; at += 3) {
      const { x, y } = p.getPointAtLength(at);
      for (const b of boxes) {
        if (b.name !== p.dataset.from && b.name !== p.dataset.to &&
            x > b.left + 1 && x < b.right - 1 && y > b.top + 1 && y < b.bottom - 1) crossed.add(b.name);
      }
    }
    const start = p.getPointAtLength(0), end = p.getPointAtLength(length);
    return { from: p.dataset.from, to: p.dataset.to, crossed: [...crossed],
             start: { x: start.x, y: start.y }, end: { x: end.x, y: end.y } };
  });
});

test("in a wrapped graph, every edge comes from its real input and crosses no other card", async () => {
  const run = startRun("127.0.0.1:0", {}, ["run", fanOutPipeline(), "-q"]);
  runs.push(run.child);
  const url = await run.url;
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 1300 });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(url + "/", { waitUntil: "load" });
  await page.waitForFunction(() => document.querySelectorAll(".stage").length === 14 &&
    document.querySelectorAll("path.edge").length === 13, { timeout: 10000 });
  await new Promise((r) => setTimeout(r, 1000));  // the cards' figures filled in, placed again

  const cards = Object.fromEntries(await page.$$eval(".stage", (all) => all.map((c) => [c.dataset.stage,
    { left: c.offsetLeft, top: c.offsetTop, right: c.offsetLeft + c.offsetWidth, bottom: c.offsetTop + c.offsetHeight }])));
  // The case: the graph wraps, and sink_b sits below sink_a in the next row.
  assert.ok(cards.p4.top > cards.source.top, `no wrap: ${JSON.stringify(cards)}`);
  assert.equal(cards.sink_b.left, cards.sink_a.left);
  assert.ok(cards.sink_b.top > cards.sink_a.bottom && cards.sink_a.top > cards.p11.bottom,
            JSON.stringify(cards));

  // Exactly the edges /status gives (each stage from its inputs), each leaving its input's card
  // at its right side, ending at its own card's border and passing through no other card.
  const doc = await status(url);
  const expected = doc.stages.flatMap((s) => s.inputs.map((input) => `${input} -> ${s.name}`)).sort();
  const edges = await drawnEdges(page);
  assert.deepEqual(edges.map((e) => `${e.from} -> ${e.to}`).sort(), expected);
  const near = (a, b) => Math.abs(a - b) <= 3;
  for (const e of edges) {
    const from = cards[e.from], to = cards[e.to];
    assert.deepEqual(e.crossed, [], `${e.from} -> ${e.to} runs through ${e.crossed}`);
    assert.ok(near(e.start.x, from.right) && e.start.y > from.top && e.start.y < from.bottom,
              `${e.from} -> ${e.to} does not start at ${e.from}: ${JSON.stringify(e)}`);
    const onLeftOrRight = (near(e.end.x, to.left) || near(e.end.x, to.right)) && e.end.y > to.top && e.end.y < to.bottom;
    const onTop = near(e.end.y, to.top) && e.end.x > to.left && e.end.x < to.right;
    assert.ok(onLeftOrRight || onTop, `${e.from} -> ${e.to} does not end at ${e.to}: ${JSON.stringify(e)}`);
  }
  await page.screenshot({ path: path.join(logDir, "dashboard-fanout.png"), fullPage: true });
  assert.deepEqual(pageErrors, []);
  await page.close();
  await stop(run.child);
});

// A short run that fails one packet in ten at `work` into a dead letter, watched to its end.
test("at the run's end the page shows its final totals and says it ended", async () => {
  const packets = 600;
  const file = path.join(dir, "short.yaml");
  fs.writeFileSync(file, `pipeline: dashboard_short
dead_letter: failed
stages:
  - name: source
    type: synthetic.source
    params: { count: ${packets}, rate: 200 }
  - name: work
    type: model.sleep
    params: { service_ms: 1, fail_every: 10 }
  - name: sink
    type: sink.jsonl
    inputs: [work]
    params: { path: ${JSON.stringify(path.join(dir, "short.jsonl"))} }
  - name: failed
    type: sink.jsonl
    params: { path: ${JSON.stringify(path.join(dir, "failed.jsonl"))} }
`);
  const run = startRun("127.0.0.1:0", {}, ["run", file, "-q"]);
  runs.push(run.child);
  const url = await run.url;
  const exited = new Promise((resolve) => run.child.on("exit", (code) => resolve(code)));
  const page = await browser.newPage();
  await page.setViewport({ width: 1360, height: 900 });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(url + "/", { waitUntil: "load" });
  await page.waitForFunction(() => document.querySelector("#connection").textContent === "live", { timeout: 10000 });
  assert.equal(await exited, 0);

  // The last event's figures: every packet out, rates over the whole run, "run ended".
  await page.waitForFunction(() => document.querySelector("#connection").textContent === "run ended",
                             { timeout: 5000 });
  const shown = () => page.evaluate(() => ({
    connection: document.querySelector("#connection").textContent,
    lost: document.querySelector("#connection").classList.contains("lost"),
    in: document.querySelector("#packets-in").textContent,
    out: document.querySelector("#packets-out").textContent,
    inFlight: document.querySelector("#in-flight").textContent,
    throughput: document.querySelector("#throughput").textContent,
    rate: document.querySelector('.stage[data-stage="work"] [data-field="rate"]').textContent,
    workLost: document.querySelector('.stage[data-stage="work"] [data-field="lost"]').textContent,
  }));
  const end = await shown();
  assert.equal(end.in, String(packets));
  assert.equal(end.out, String(packets));
  assert.equal(end.inFlight, "0");
  assert.match(end.throughput, /^[0-9.,]+\/s over the run$/);
  assert.match(end.rate, /^[0-9.,]+\/s over the run$/);
  assert.equal(end.workLost, `dropped 0 · failed ${packets / 10} · dead-lettered ${packets / 10}`);
  // The dead-letter stage reads no other stage, as a source does, but scales like any stage.
  const buttons = await page.evaluate(() => ({
    failed: !!document.querySelector('.stage[data-stage="failed"] .scale-up'),
    source: !!document.querySelector('.stage[data-stage="source"] .scale-up'),
  }));
  assert.deepEqual(buttons, { failed: true, source: false });
  // It is drawn with the last stages (where packets end), not in the sources' column.
  const left = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll(".stage")]
    .map((c) => [c.dataset.stage, Math.round(c.getBoundingClientRect().left)])));
  assert.equal(left.failed, left.sink, JSON.stringify(left));
  assert.ok(left.failed > left.source, JSON.stringify(left));
  assert.equal(end.lost, false);
  // No alarm and no retrying out loud afterwards: still the same a while later.
  await new Promise((r) => setTimeout(r, 2500));
  assert.deepEqual(await shown(), end);

  // Nothing runs past its card (the losses wrap).
  const overflowing = await page.$$eval(".stage", (cards) => cards.flatMap((card) => {
    const box = card.getBoundingClientRect();
    return [...card.querySelectorAll(".value, .row")].filter((e) => e.getBoundingClientRect().right > box.right + 0.5)
      .map((e) => `${card.dataset.stage}: ${e.textContent}`);
  }));
  assert.deepEqual(overflowing, []);
  await page.screenshot({ path: path.join(logDir, "dashboard-ended.png"), fullPage: true });
  assert.deepEqual(pageErrors, []);
  await page.close();
});

test("off loopback, a page without the token gets nothing of the run", async () => {
  const token = "dashboard-s3cret";
  const address = outsideAddress();
  const run = startRun(`${address}:0`, { MICROMODELS_TOKEN: token });
  runs.push(run.child);
  const url = await run.url;
  assert.ok(!url.includes("127.0.0.1"), url);

  // Every route with data or an action: 401 without the token, and with a wrong one.
  for (const pathname of ["/status", "/status/stream", "/metrics", "/nothing", "/stages/work/scale", "/preview/frame"]) {
    for (const wrong of [undefined, "not-the-token"]) {
      const reply = await get(url, pathname, wrong);
      assert.equal(reply.status, 401, `${pathname}: ${reply.text}`);
      assert.ok(!reply.text.includes("dashboard_demo") && !reply.text.includes("decode"), reply.text);
    }
  }
  // The page's own files are served (the same for every run), with nothing of this run in them.
  const shell = await get(url, "/");
  assert.equal(shell.status, 200);
  for (const name of ["dashboard_demo", ...stageNames.filter((n) => n !== "source")]) {
    assert.ok(!shell.text.includes(name), `the page's file names '${name}'`);
  }
  assert.equal(shell.headers.get("set-cookie"), null);

  const page = await browser.newPage();
  await page.setViewport({ width: 1360, height: 700 });
  await page.goto(url + "/", { waitUntil: "load" });
  await page.waitForFunction(() => !document.querySelector("#token-form").hidden, { timeout: 10000 });
  assert.match(await page.$eval("#token-reason", (e) => e.textContent), /needs a token/);
  const shown = await page.evaluate(() => ({ text: document.body.innerText, stages: document.querySelectorAll(".stage").length }));
  assert.equal(shown.stages, 0);
  assert.ok(!shown.text.includes("dashboard_demo"), "the pipeline's name is on the page without the token");
  await page.screenshot({ path: path.join(logDir, "dashboard-token.png") });

  // A wrong token: the server's message, still nothing shown.
  await page.type("#token", "not-the-token");
  await page.click('#token-form button[type="submit"]');
  await page.waitForFunction(() => /wrong token/.test(document.querySelector("#token-reason").textContent) &&
    !document.querySelector("#token-form").hidden, { timeout: 10000 });
  assert.equal(await page.$$eval(".stage", (c) => c.length), 0);

  // The right one: the run appears; the token stays in this tab's sessionStorage, no cookie.
  await page.type("#token", token);
  await page.click('#token-form button[type="submit"]');
  await page.waitForFunction((n) => document.querySelectorAll(".stage").length === n, { timeout: 10000 },
                             stageNames.length);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("micromodels.token")), token);
  assert.equal(await page.evaluate(() => document.cookie), "");
  assert.equal((await page.cookies()).length, 0);

  // The page sends the token with its actions too.
  const before = stageOf(await status(url, token), "work").consumers;
  await page.click('.stage[data-stage="work"] .scale-up');
  await until("work's consumers to grow", async () => stageOf(await status(url, token), "work").consumers === before + 1);
  await page.close();
  await stop(run.child);
});

test("on Redis, the run's page shows the stages its workers serve, as the broker sees them", async (t) => {
  const redis = process.env.MICROMODELS_REDIS_URL;
  if (!redis) {
    if (process.env.MICROMODELS_REQUIRE_REDIS === "1") throw new Error("MICROMODELS_REDIS_URL is not set");
    t.skip("MICROMODELS_REDIS_URL is not set (scripts/test.sh starts a redis-server)");
    return;
  }
  // Its own pipeline name, so that nothing of another run on this Redis is mixed in.
  const file = path.join(dir, "redis.yaml");
  fs.writeFileSync(file, fs.readFileSync(pipelineFile, "utf8")
    .replace("pipeline: dashboard_demo", `pipeline: dashboard_redis_${process.pid}`));
  const worker = startRun("127.0.0.1:0", {},
    ["worker", file, "--broker", redis, "--stages", "decode,work", "--consumers", "2"]);
  runs.push(worker.child);
  const workerUrl = await worker.url;
  const run = startRun("127.0.0.1:0", {}, ["run", file, "-q", "--broker", redis, "--serve", "none"]);
  runs.push(run.child);
  const url = await run.url;

  const page = await browser.newPage();
  await page.setViewport({ width: 1360, height: 760 });
  await page.goto(url + "/", { waitUntil: "load" });
  // Every stage is drawn: the run's own and, dashed, those its worker serves, with the worker's
  // consumers and the backlog from the broker.
  await page.waitForFunction((n) => document.querySelectorAll(".stage").length === n &&
    document.querySelector('.stage[data-stage="work"] [data-field="broker-consumers"]')?.textContent === "2 consumers" &&
    /^[0-9,]+ · pending [0-9,]+$/.test(document.querySelector('.stage[data-stage="work"] [data-field="backlog"]').textContent) &&
    /^[0-9,]+$/.test(document.querySelector('.stage[data-stage="work"] [data-field="broker-done"]').textContent) &&
    document.querySelector('.stage[data-stage="work"] [data-field="broker-lost"]').textContent === "dropped 0 · failed 0",
  { timeout: 20000 }, stageNames.length);
  const elsewhere = await page.$$eval(".stage.elsewhere", (cards) => cards.map((c) => c.dataset.stage).sort());
  assert.deepEqual(elsewhere, ["decode", "work"]);
  const doc = await status(url);
  assert.equal(stageOf({ stages: doc.broker.map((b) => ({ ...b, name: b.stage })) }, "work").consumers, 2);
  assert.equal(await page.$$eval("path.edge", (edges) => edges.length), 4);
  // Each live process: the worker with its two stages and their consumers, and the run process.
  await page.waitForFunction(() => [...document.querySelectorAll("#processes-body tr")]
    .some((row) => row.cells[1].textContent === "decode ×2, work ×2"), { timeout: 10000 });
  const processes = await page.$$eval("#processes-body tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.ok(processes.length >= 2, JSON.stringify(processes));
  for (const [id, , total, heartbeat] of processes) {
    assert.match(id, /^.+:\d+/);
    assert.match(total, /^\d+$/);
    assert.match(heartbeat, /^\d+\.\d s ago$/);
  }
  assert.deepEqual(doc.processes.find((w) => w.consumers.work !== undefined).consumers, { decode: 2, work: 2 });
  // A stage the run serves itself: "all done" is never below what this process has done, even
  // before its counts reached the broker (four times a second).
  const auditDone = await page.$eval('.stage[data-stage="audit"] [data-field="broker-done"]',
    (e) => Number(e.textContent.replace(/,/g, "")));
  const auditHere = await page.$eval('.stage[data-stage="audit"] [data-field="rate"]', (e) => e.textContent);
  assert.ok(auditDone > 0, `audit processes packets (${auditHere}), its "all done" is ${auditDone}`);
  await page.screenshot({ path: path.join(logDir, "dashboard-redis.png") });

  // The worker's page: its stages in the colours the run's page gives them; no age plot (its
  // stages are not last ones), but why.
  const workerPage = await browser.newPage();
  await workerPage.setViewport({ width: 1360, height: 900 });
  const workerErrors = [];
  workerPage.on("pageerror", (e) => workerErrors.push(String(e)));
  await workerPage.goto(workerUrl + "/", { waitUntil: "load" });
  await workerPage.waitForFunction((n) => document.querySelectorAll(".stage").length === n &&
    document.querySelectorAll(".stage.elsewhere").length === 3, { timeout: 20000 }, stageNames.length);
  const swatches = (p) => p.$$eval(".stage", (cards) => Object.fromEntries(cards.map((c) =>
    [c.dataset.stage, getComputedStyle(c.querySelector(".swatch")).backgroundColor])));
  const onRun = await swatches(page), onWorker = await swatches(workerPage);
  assert.deepEqual(onWorker, onRun);
  assert.equal(new Set(Object.values(onRun)).size, stageNames.length, `two stages share a colour: ${JSON.stringify(onRun)}`);
  await workerPage.waitForFunction(() => document.querySelector("#age-note").offsetHeight > 0 &&
    document.querySelector("#plot-age").getBoundingClientRect().height === 0, { timeout: 5000 });
  assert.match(await workerPage.$eval("#age-note", (e) => e.textContent), /at its last stages \(.*sink.*\), which run in other processes/);
  await page.close();
  await stop(run.child);

  // The run is over: nothing moves at the worker, which names no bottleneck.
  await workerPage.waitForFunction(() => document.querySelector("#bottleneck").textContent === "none: idle" &&
    document.querySelectorAll(".stage.bottleneck").length === 0 &&
    !document.querySelector("#bottleneck").classList.contains("alarm"), { timeout: 10000 });
  await workerPage.screenshot({ path: path.join(logDir, "dashboard-worker.png"), fullPage: true });
  assert.deepEqual(workerErrors, []);
  await workerPage.close();
  worker.child.kill("SIGTERM");
});
