// `micromodels bench dashboard` (bench/dashboard_bench.cpp starts this with node): what an open
// dashboard costs a run, and how soon the page shows a change.
//
// One `micromodels run` of a CPU-bound pipeline (its pool as busy as the machine allows) serves
// its control endpoint. Periods with the page open in headless Chromium and periods without it
// alternate (off on on off, ...), each measured after a settling time on the run's own
// packets_out; the cost is 1 - (rate with the page / rate without), from the sums of each kind.
// The throughput of a shared machine swings by more than 1 % from one period to the next, so the
// browser's own CPU time in each period is measured too (its processes' utime + stime): what
// the page costs the machine, whatever else runs on it.
// At the end of each period with the page, a scale call (POST /stages/done/scale, as ctl sends
// it) and the time until the page shows the new consumer count.
//
//   node bench/dashboard_bench.mjs TOOL PUPPETEER_DIR CHROMIUM [--quick] [--json FILE]
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const [tool, puppeteerDir, chromium, ...rest] = process.argv.slice(2);
const quick = rest.includes("--quick");
const jsonIndex = rest.indexOf("--json");
const jsonPath = jsonIndex >= 0 ? rest[jsonIndex + 1] : "";
const puppeteer = createRequire(import.meta.url)(puppeteerDir);

const PAIRS = quick ? 2 : 6;            // periods of each kind
const MEASURE_S = quick ? 2 : 5;        // measured part of a period
const SETTLE_S = 1.5;                   // after opening or closing the page
const WARM_UP_S = 4;                    // after starting the run and the browser
const TARGET_COST = 0.01;               // ≤ 1 % of throughput lost with the page open
const TARGET_UPDATE_MS = 1000;          // the page shows a change within 1 s

const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dashboard-bench-"));
const pipeline = path.join(dir, "bench.yaml");
// Two consumers of a 0.2 ms CPU stage keep the pool busy; `done` is the stage that is scaled.
fs.writeFileSync(pipeline, `pipeline: dashboard_bench
stages:
  - name: source
    type: synthetic.source
    params: { count: 1000000000 }
  - name: work
    type: model.spin
    consumers: 2
    params: { service_ms: 0.2 }
  - name: done
    type: pass
`);

const run = spawn(tool, ["run", pipeline, "-q", "--listen", "127.0.0.1:0"],
                  { stdio: ["ignore", "ignore", "pipe"] });
let stderr = "";
const url = await new Promise((resolve, reject) => {
  run.stderr.on("data", (chunk) => {
    stderr += chunk;
    const m = stderr.match(/control: (http:\/\/\S+)/);
    if (m) resolve(m[1]);
  });
  run.on("exit", (code) => reject(new Error(`the run ended (exit ${code}): ${stderr}`)));
});

async function status() {
  return (await fetch(url + "/status")).json();
}
const clock = () => performance.now() / 1000;

// CPU seconds used so far by `root` and every process below it (Chromium's renderers, GPU and
// network processes), from /proc.
const ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
function treeCpuSeconds(root) {
  const parent = new Map(), ticks = new Map();
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let stat;
    try { stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8"); } catch { continue; }  // ended
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");  // from field 3, state
    parent.set(Number(entry), Number(fields[1]));
    ticks.set(Number(entry), Number(fields[11]) + Number(fields[12]));
  }
  let sum = 0;
  for (const [pid, t] of ticks) {
    let p = pid;
    for (let depth = 0; p && p !== root && depth < 64; ++depth) p = parent.get(p);
    if (p === root) sum += t;
  }
  return sum / ticksPerSecond;
}

const browser = await puppeteer.launch({
  executablePath: chromium, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const browserPid = browser.process().pid;
const periods = [];   // {page, rate, browser_cpu_share}: browser CPU seconds per second
const updates = [];   // ms from sending a scale call to the page showing its effect
let page = null;
let consumers = 1;
try {
  await sleep(WARM_UP_S);
  // off on on off off on ...: each kind as often first as second.
  const order = [];
  for (let i = 0; i < PAIRS; ++i) order.push(...(i % 2 === 0 ? [false, true] : [true, false]));
  for (const withPage of order) {
    if (withPage && !page) {
      page = await browser.newPage();
      await page.goto(url + "/", { waitUntil: "load" });
      await page.waitForSelector('.stage[data-stage="done"]', { timeout: 10000 });
    } else if (!withPage && page) {
      await page.close();
      page = null;
    }
    await sleep(SETTLE_S);
    const a = await status(), ta = clock(), cpuA = treeCpuSeconds(browserPid);
    await sleep(MEASURE_S);
    const b = await status(), tb = clock(), cpuB = treeCpuSeconds(browserPid);
    const rate = (b.packets_out - a.packets_out) / (tb - ta);
    const browserCpu = (cpuB - cpuA) / (tb - ta);
    periods.push({ page: withPage, rate, browser_cpu_share: browserCpu });
    process.stdout.write(`  ${withPage ? "with the page   " : "without the page"}  ${rate.toFixed(0)} packets/s, ` +
                         `browser ${(browserCpu * 1000).toFixed(0)} ms CPU/s\n`);
    if (withPage) {
      // From sending the scale call to the page showing its effect.
      consumers = consumers === 1 ? 2 : 1;
      const sent = performance.now();
      const reply = await fetch(url + "/stages/done/scale", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ consumers }),
      });
      if (!reply.ok) throw new Error(`scale refused: ${await reply.text()}`);
      await page.waitForFunction((n) => document.querySelector(
        '.stage[data-stage="done"] [data-field="consumers"]').textContent === String(n),
      { polling: 5, timeout: 10000 }, consumers);
      updates.push(performance.now() - sent);
    }
  }
} finally {
  await browser.close();
  run.kill("SIGINT");
  fs.rmSync(dir, { recursive: true, force: true });
}

const mean = (xs) => xs.reduce((s, x) => s + x, 0) / xs.length;
const without = mean(periods.filter((p) => !p.page).map((p) => p.rate));
const withPage = mean(periods.filter((p) => p.page).map((p) => p.rate));
const cost = 1 - withPage / without;
const cores = os.cpus().length;
// The page's CPU: all of the browser's while the page is open (its idle share included), as a
// share of the machine.
const pageShare = mean(periods.filter((p) => p.page).map((p) => p.browser_cpu_share)) / cores;
const sorted = [...updates].sort((x, y) => x - y);
const median = sorted[Math.floor(sorted.length / 2)];
const worst = sorted[sorted.length - 1];
const load = os.loadavg().map((l) => l.toFixed(2)).join(" ");
// One figure a line; with a target, whether it was met.
const line = (name, value, target, ok) => `${name.padEnd(34)}${value.padStart(10)}` +
  (target ? `   target ${target.padEnd(10)} ${ok ? "met" : "MISSED"}` : "");
const spread = (xs) => (Math.max(...xs) - Math.min(...xs)) / mean(xs);
console.log(`\ndashboard: ${PAIRS} periods of ${MEASURE_S} s with the page and ${PAIRS} without, interleaved; load ${load} (1/5/15 min), ${cores} cores`);
console.log(line("throughput without the page", `${without.toFixed(0)}/s`));
console.log(line("throughput with the page", `${withPage.toFixed(0)}/s`));
console.log(line("spread of the periods without", `${(spread(periods.filter((p) => !p.page).map((p) => p.rate)) * 100).toFixed(1)} %`));
console.log(line("throughput lost with the page", `${(cost * 100).toFixed(2)} %`, "≤ 1 %", cost <= TARGET_COST));
console.log(line("browser CPU, page open, of machine", `${(pageShare * 100).toFixed(2)} %`, "≤ 1 %", pageShare <= TARGET_COST));
console.log(line("scale call to page, median", `${median.toFixed(0)} ms`));
console.log(line("scale call to page, worst", `${worst.toFixed(0)} ms`, "≤ 1000 ms", worst <= TARGET_UPDATE_MS));

if (jsonPath) {
  fs.writeFileSync(jsonPath, JSON.stringify({
    benchmark: "dashboard",
    quick,
    load_average: os.loadavg(),
    cores: os.cpus().length,
    periods,
    throughput_without_page_per_s: without,
    throughput_with_page_per_s: withPage,
    throughput_lost_share: cost,
    page_cpu_share_of_machine: pageShare,
    target_throughput_lost_share: TARGET_COST,
    update_ms: updates,
    update_ms_median: median,
    update_ms_worst: worst,
    target_update_ms: TARGET_UPDATE_MS,
  }, null, 2) + "\n");
  console.log(`wrote ${jsonPath}`);
}
