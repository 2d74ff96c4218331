// The dashboard in a real browser: headless Chromium (Debian's) driven by playwright-core,
// against a server running the trading demo (demos/trading/run.sh --browser-test starts it).
// Each step checks what a user would see; a screenshot of each view goes to
// $FERRIS_SCREENSHOTS. Exits 1 at the first step that fails, naming it.
//
//   FERRIS_DASHBOARD=http://127.0.0.1:8080/ FERRIS_NODE_MODULES="$(bash scripts/browser.sh)" \
//     FERRIS_SCREENSHOTS=target/trading-demo/screenshots node tests/browser/dashboard.mjs
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(`${process.env.FERRIS_NODE_MODULES ?? "."}/`);
const { chromium } = require("playwright-core");

const url = process.env.FERRIS_DASHBOARD ?? "http://127.0.0.1:8080/";
const screenshots = process.env.FERRIS_SCREENSHOTS ?? "target/screenshots";
const WAIT = 60_000;
const DEMO_JOBS = ["bars", "vwap_5m", "price_spikes", "trades_enriched", "positions", "executions", "risk_breaches"];

mkdirSync(screenshots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.FERRIS_CHROMIUM ?? "/usr/bin/chromium",
  // Root in a container has no user namespaces for Chromium's sandbox.
  args: ["--no-sandbox"],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });

let failed = false;
async function step(name, work) {
  const started = Date.now();
  try {
    await work();
    if (problems.length) throw new Error(problems.join("; "));
    console.log(`ok: ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (e) {
    console.error(`FAILED: ${name}: ${e.message}`);
    await page.screenshot({ path: join(screenshots, "failure.png"), fullPage: true }).catch(() => {});
    failed = true;
    throw e;
  }
}

const shot = (name) => page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
const text = (selector) => page.locator(selector).innerText();

try {
  await step("the page loads and lists the demo's running jobs", async () => {
    await page.goto(`${url}#jobs`);
    const paint = await page.evaluate(() =>
      performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? null);
    console.log(`   first contentful paint: ${paint === null ? "not reported" : `${paint.toFixed(0)} ms`}`);
    for (const job of DEMO_JOBS) {
      await page.locator(`#jobs-table tr[data-job="${job}"] td.status`).filter({ hasText: "RUNNING" })
        .waitFor({ timeout: WAIT });
    }
    await shot("jobs");
  });

  await step("the candlestick chart gains bars as minutes close", async () => {
    await page.goto(`${url}#trading`);
    const bars = () => page.locator("#chart").getAttribute("data-bars").then(Number);
    await page.waitForFunction(() => Number(document.querySelector("#chart").dataset.bars) > 0, null, { timeout: WAIT });
    const first = await bars();
    await page.waitForFunction((n) => Number(document.querySelector("#chart").dataset.bars) > n, first, { timeout: WAIT });
    console.log(`   ${await page.locator("#chart").getAttribute("data-symbol")}: ${first} bars, then ${await bars()}`);
    await shot("trading");
  });

  await step("the P&L table changes", async () => {
    await page.locator("#pnl-table tbody tr").first().waitFor({ timeout: WAIT });
    const before = await text("#pnl-table tbody");
    await page.waitForFunction((old) => document.querySelector("#pnl-table tbody").innerText !== old, before, { timeout: WAIT });
    const changed = await page.locator("#pnl-table td.changed").count();
    console.log(`   ${await page.locator("#pnl-table tbody tr").count()} accounts, ${changed} cells just changed`);
  });

  await step("a statement typed in the SQL box returns rows, and EXPLAIN a plan tree", async () => {
    await page.goto(`${url}#sql`);
    await page.locator("#sql-text").fill("SELECT symbol, COUNT(*) AS minutes, SUM(volume) AS volume FROM bars GROUP BY symbol ORDER BY symbol");
    await page.locator("#sql-run").click();
    await page.locator("#sql-message").filter({ hasText: /^\d+ rows?$/ }).waitFor({ timeout: WAIT });
    const rows = await page.locator("#sql-table tbody tr").count();
    if (rows === 0) throw new Error(`no rows: ${await text("#sql-message")}`);
    const header = await text("#sql-table thead");
    if (!/symbol\s+minutes\s+volume/.test(header)) throw new Error(`columns: ${header}`);
    await shot("sql");
    await page.locator("#sql-text").fill("EXPLAIN SELECT symbol, close FROM bars WHERE symbol = 'AAPL'");
    await page.keyboard.press("Control+Enter");
    await page.locator("#sql-plan li").first().waitFor({ timeout: WAIT });
    const nested = await page.locator("#sql-plan li li").count();
    if (nested === 0) throw new Error("the plan is not a tree");
    await shot("explain");
  });

  await step("a stream is followed live", async () => {
    await page.goto(`${url}#live`);
    await page.locator('#live-source option[value="stream:trades_enriched"]').waitFor({ state: "attached", timeout: WAIT });
    await page.locator("#live-source").selectOption("stream:trades_enriched");
    await page.locator("#live-follow").click();
    await page.locator("#live-table tbody tr").first().waitFor({ timeout: WAIT });
    const header = await text("#live-table thead");
    if (!header.includes("usd_notional")) throw new Error(`columns: ${header}`);
    await shot("live");
    await page.locator("#live-stop").click();
  });

  await step("a job stopped from the page shows STOPPED, and starts again", async () => {
    await page.goto(`${url}#jobs`);
    const row = page.locator('#jobs-table tr[data-job="executions"]');
    await row.locator('button[data-command="stop"]').click();
    await row.locator("td.status").filter({ hasText: "STOPPED" }).waitFor({ timeout: WAIT });
    await shot("stopped");
    await row.locator('button[data-command="start"]').click();
    await row.locator("td.status").filter({ hasText: "RUNNING" }).waitFor({ timeout: WAIT });
  });
} catch {
  // step() said what failed.
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
