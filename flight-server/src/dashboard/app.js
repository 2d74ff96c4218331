// The FerrisStreams dashboard (docs/dashboard.md): every view reads the server's JSON API.
// Statements run through POST /api/v1/query, whose rows come back as Server-Sent Events
// while they are made: a pull query ends, a push query over a stream goes on until stopped.
"use strict";

const TOKEN_KEY = "ferris-token";
const KEEP_ROWS = 200;

// --- the API -------------------------------------------------------------------------------

class Unauthorized extends Error {}

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...options.headers } });
  if (response.status === 401) {
    document.getElementById("token-form").hidden = false;
    throw new Unauthorized("this server needs its auth token");
  }
  return response;
}

async function json(path, options) {
  const response = await api(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// Runs `sql`; calls onSchema(columns) once, then onRows(rows) per batch. Resolves with the row
// count when the result ends; rejects with the engine's error. `signal` stops it.
async function query(sql, { onSchema = () => {}, onRows = () => {}, signal } = {}) {
  const response = await api("/api/v1/query", { method: "POST", body: sql, signal });
  if (!response.ok) throw new Error((await response.json()).error || response.statusText);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the server closed the stream");
    buffered += value;
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (!data) continue; // a keep-alive comment
      const payload = JSON.parse(data);
      if (name === "schema") onSchema(payload);
      else if (name === "rows") onRows(payload);
      else if (name === "end") return payload.rows;
      else if (name === "error") throw new Error(payload.error);
    }
  }
}

// A bounded query's columns and rows.
async function collect(sql) {
  let columns = [];
  const rows = [];
  await query(sql, { onSchema: (c) => (columns = c), onRows: (r) => rows.push(...r) });
  return { columns, rows };
}

function quoted(text) {
  return `'${String(text).replaceAll("'", "''")}'`;
}

function identifier(name) {
  return `"${String(name).replaceAll('"', '""')}"`;
}

// Zone-less timestamps from the API are UTC.
function utcMillis(text) {
  return Date.parse(/[zZ]|[+-]\d\d:\d\d$/.test(text) ? text : `${text}Z`);
}

// --- rendering -----------------------------------------------------------------------------

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

const NUMERIC = /^(Int|UInt|Float|Decimal)/;

function cellText(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

// Fills `table` with `columns` and `rows`; cells whose value changed since the last time the
// same key (the first `keyColumns` values) was shown are marked.
function renderRows(table, columns, rows, keyColumns = 0) {
  const before = new Map();
  if (keyColumns > 0) {
    for (const tr of table.querySelectorAll("tbody tr")) before.set(tr.dataset.key, tr.dataset.values);
  }
  const head = element("tr", {}, ...columns.map((c) => element("th", { title: c.type }, c.name)));
  const body = element("tbody");
  for (const row of rows) {
    const values = columns.map((c) => cellText(row[c.name]));
    const key = values.slice(0, keyColumns).join("\u0000");
    const old = before.has(key) ? before.get(key).split("\u0000") : null;
    const tr = element("tr", { "data-key": key, "data-values": values.join("\u0000") });
    columns.forEach((c, i) => {
      const classes = [NUMERIC.test(c.type) ? "number" : "", old && old[i] !== values[i] ? "changed" : ""];
      tr.append(element("td", { class: classes.join(" ").trim() }, values[i]));
    });
    body.append(tr);
  }
  table.replaceChildren(element("thead", {}, head), body);
}

function message(id, text, isError = false) {
  const node = document.getElementById(id);
  node.textContent = text;
  node.className = isError ? "error" : "muted";
}

// --- views ---------------------------------------------------------------------------------

const views = {};
let current = null;

function show() {
  const name = (location.hash || "#jobs").slice(1);
  const view = views[name] ? name : "jobs";
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", link.getAttribute("href") === `#${view}`);
  }
  if (current && current !== views[view]) current.leave?.();
  current = views[view];
  current.enter();
}

// Calls `work` now and every `ms` after it finishes, until stopped. A round that was under way
// when stop() came schedules no next one, so a stop and a start never leave two loops running.
function every(ms, work) {
  let round = 0;
  let timer = null;
  const tick = async (mine) => {
    try {
      await work();
    } catch (e) {
      if (!(e instanceof Unauthorized)) console.warn(e);
    }
    if (mine === round) timer = setTimeout(() => tick(mine), ms);
  };
  return {
    start() {
      this.stop();
      tick(round);
    },
    stop() {
      round += 1;
      clearTimeout(timer);
      timer = null;
    },
  };
}

// Jobs: status and counters every two seconds, and the commands.
views.jobs = (() => {
  const body = document.querySelector("#jobs-table tbody");
  const command = async (name, verb) => {
    try {
      await json(`/api/v1/jobs/${encodeURIComponent(name)}/${verb}`, { method: "POST" });
      message("jobs-message", `${verb} ${name}: done`);
    } catch (e) {
      message("jobs-message", `${verb} ${name}: ${e.message}`, true);
    }
    refresh.start();
  };
  const refresh = every(2000, async () => {
    const jobs = await json("/api/v1/jobs");
    body.replaceChildren(...jobs.map((job) => {
      const delay = job.watermark ? `${((Date.now() - utcMillis(job.watermark)) / 1000).toFixed(1)} s` : "";
      const checkpoint = job.last_checkpoint === null || job.last_checkpoint === undefined ? ""
        : `#${job.last_checkpoint} at ${job.last_checkpoint_at ?? ""}`;
      const buttons = [["stop", job.status === "RUNNING" || job.status === "PAUSED"],
        ["start", job.status === "STOPPED" || job.status === "FAILED"],
        ["pause", job.status === "RUNNING"], ["resume", job.status === "PAUSED"]]
        .filter(([, shown]) => shown)
        .map(([verb]) => element("button", { "data-command": verb, onclick: () => command(job.name, verb) }, verb));
      return element("tr", { "data-job": job.name },
        element("td", {}, job.name), element("td", {}, job.kind ?? ""),
        element("td", { class: `status status-${job.status}` }, job.status),
        element("td", {}, job.node ?? ""),
        element("td", { class: "number" }, cellText(job.records_in)),
        element("td", { class: "number" }, cellText(job.records_out)),
        element("td", { class: "number" }, cellText(job.records_per_second)),
        element("td", {}, job.lag ?? ""), element("td", { class: "number" }, delay),
        element("td", {}, checkpoint), element("td", { class: "error" }, job.last_error ?? ""),
        element("td", {}, ...buttons));
    }));
    if (jobs.length === 0) message("jobs-message", "No jobs yet: CREATE STREAM or CREATE TABLE starts one.");
  });
  return { enter: () => refresh.start(), leave: () => refresh.stop() };
})();

// Live data: a stream followed by a push query, or a table's rows every two seconds.
views.live = (() => {
  const select = document.getElementById("live-source");
  const table = document.getElementById("live-table");
  const follow = document.getElementById("live-follow");
  const stop = document.getElementById("live-stop");
  let running = null;
  const end = () => {
    running?.stop();
    running = null;
    follow.disabled = false;
    stop.disabled = true;
  };
  const start = () => {
    end();
    const colon = select.value.indexOf(":");
    const kind = select.value.slice(0, colon);
    const name = select.value.slice(colon + 1);
    if (!name) return;
    follow.disabled = true;
    stop.disabled = false;
    if (kind === "table") {
      const refresh = every(2000, async () => {
        const { columns, rows } = await collect(`SELECT * FROM ${identifier(name)}`);
        const key = Number(select.selectedOptions[0].dataset.keyColumns || 0);
        renderRows(table, columns, rows, key);
        message("live-message", `${name}: ${rows.length} rows, as of ${new Date().toLocaleTimeString()}`);
      });
      refresh.start();
      running = refresh;
      return;
    }
    const controller = new AbortController();
    let columns = [];
    const rows = [];
    message("live-message", `following ${name}: rows appear as its job writes them`);
    query(`SELECT * FROM ${identifier(name)}`, {
      signal: controller.signal,
      onSchema: (c) => (columns = c),
      onRows: (batch) => {
        rows.unshift(...batch.reverse());
        rows.length = Math.min(rows.length, KEEP_ROWS);
        renderRows(table, columns, rows);
      },
    }).then(() => message("live-message", `${name}: its job ended`))
      .catch((e) => { if (e.name !== "AbortError") message("live-message", e.message, true); })
      .finally(() => { if (running === following) end(); });
    const following = { stop: () => controller.abort() };
    running = following;
  };
  follow.addEventListener("click", start);
  stop.addEventListener("click", end);
  const load = async () => {
    const [streams, tables] = await Promise.all([collect("SHOW STREAMS"), collect("SHOW TABLES")]);
    const chosen = select.value;
    const options = [
      ...streams.rows.filter((s) => s.kind === "stream").map((s) => element("option", { value: `stream:${s.name}` }, `stream ${s.name}`)),
      ...tables.rows.map((t) => element("option", {
        value: `table:${t.name}`, "data-key-columns": String((t.key || "").split(",").filter(Boolean).length),
      }, `table ${t.name}`)),
    ];
    select.replaceChildren(...options);
    if (chosen) select.value = chosen;
    if (options.length === 0) message("live-message", "No streams or tables yet.");
  };
  return { enter: () => load().catch((e) => message("live-message", e.message, true)), leave: end };
})();

// SQL: a statement's rows as they come; EXPLAIN's plan as a tree.
views.sql = (() => {
  const text = document.getElementById("sql-text");
  const run = document.getElementById("sql-run");
  const stop = document.getElementById("sql-stop");
  const table = document.getElementById("sql-table");
  const plan = document.getElementById("sql-plan");
  let controller = null;
  const tree = (lines) => {
    // Each level of the plan is indented by two more spaces than its parent.
    const root = element("ul");
    const stack = [{ depth: -1, list: root }];
    for (const line of lines.filter((l) => l.trim())) {
      const depth = line.length - line.trimStart().length;
      while (stack.length > 1 && stack[stack.length - 1].depth >= depth) stack.pop();
      const item = element("li", {}, line.trim());
      stack[stack.length - 1].list.append(item);
      const children = element("ul");
      item.append(children);
      stack.push({ depth, list: children });
    }
    return root;
  };
  const execute = async () => {
    controller?.abort();
    const mine = new AbortController();
    controller = mine;
    run.disabled = true;
    stop.disabled = false;
    plan.replaceChildren();
    table.replaceChildren();
    message("sql-message", "running");
    let columns = [];
    const rows = [];
    try {
      const count = await query(text.value, {
        signal: mine.signal,
        onSchema: (c) => (columns = c),
        onRows: (batch) => {
          rows.push(...batch);
          if (rows.length > 10 * KEEP_ROWS) rows.splice(0, rows.length - 10 * KEEP_ROWS);
          renderRows(table, columns, rows);
          message("sql-message", `${rows.length} rows so far`);
        },
      });
      const names = columns.map((c) => c.name).join(",");
      if (names === "plan_type,plan") {
        table.replaceChildren();
        plan.replaceChildren(...rows.flatMap((r) => [element("h2", {}, r.plan_type), tree(String(r.plan).split("\n"))]));
      } else {
        renderRows(table, columns, rows);
      }
      message("sql-message", `${count} row${count === 1 ? "" : "s"}`);
    } catch (e) {
      // A run that a newer one replaced says nothing.
      if (mine === controller) {
        message("sql-message", e.name === "AbortError" ? "stopped" : e.message, e.name !== "AbortError");
      }
    } finally {
      if (mine === controller) {
        run.disabled = false;
        stop.disabled = true;
      }
    }
  };
  run.addEventListener("click", execute);
  stop.addEventListener("click", () => controller?.abort());
  text.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) execute(); });
  // A push query left running would hold a connection and keep rendering out of sight.
  return { enter: () => {}, leave: () => controller?.abort() };
})();

// Trading: the demo's tables (demos/trading/trading.sql) as a candlestick chart with the VWAP
// line, the alerts as they come, and P&L per account.
views.trading = (() => {
  const select = document.getElementById("symbol");
  const chartNode = document.getElementById("chart");
  const alerts = document.getElementById("alerts");
  const pnl = document.getElementById("pnl-table");
  let chart = null;
  let candles = null;
  let vwap = null;
  let alertFeeds = [];
  let symbolsRead = 0;
  const seconds = (text) => Math.floor(utcMillis(text) / 1000);
  const draw = async () => {
    // The symbols, again every half minute: a symbol's first bar may come late.
    if (!select.value || Date.now() - symbolsRead > 30_000) {
      const { rows } = await collect("SELECT DISTINCT symbol FROM bars ORDER BY symbol");
      if (rows.length === 0) {
        message("trading-message", "No bars yet: the first appear when a minute of trades closes.");
        return;
      }
      const chosen = select.value || (rows.some((r) => r.symbol === "AAPL") ? "AAPL" : rows[0].symbol);
      select.replaceChildren(...rows.map((r) => element("option", { value: r.symbol }, r.symbol)));
      select.value = chosen;
      symbolsRead = Date.now();
      message("trading-message", "one-minute bars, and the VWAP of the five minutes before");
    }
    const symbol = quoted(select.value);
    const [bars, line] = await Promise.all([
      collect(`SELECT minute, open, high, low, close FROM bars WHERE symbol = ${symbol} ORDER BY minute`),
      collect(`SELECT as_of, vwap FROM vwap_5m WHERE symbol = ${symbol} ORDER BY as_of`),
    ]);
    candles.setData(bars.rows.map((b) => ({
      time: seconds(b.minute), open: Number(b.open), high: Number(b.high), low: Number(b.low), close: Number(b.close),
    })));
    vwap.setData(line.rows.map((v) => ({ time: seconds(v.as_of) - 60, value: Number(v.vwap) })));
    // Every bar in view when one is added or the symbol changes; the user's zoom otherwise.
    if (chartNode.dataset.bars !== String(bars.rows.length) || chartNode.dataset.symbol !== select.value) {
      chart.timeScale().fitContent();
    }
    chartNode.dataset.bars = String(bars.rows.length);
    chartNode.dataset.symbol = select.value;
  };
  const positions = async () => {
    const { columns, rows } = await collect(
      "SELECT account, COUNT(*) AS instruments, SUM(fills) AS fills, SUM(pnl_usd) AS pnl_usd " +
      "FROM positions GROUP BY account ORDER BY account");
    renderRows(pnl, columns, rows, 1);
  };
  const refresh = every(2000, async () => {
    await Promise.all([draw(), positions()]);
  });
  const followAlerts = (stream, describe) => {
    const controller = new AbortController();
    query(`SELECT * FROM ${stream}`, {
      signal: controller.signal,
      onRows: (rows) => {
        for (const row of rows) {
          alerts.prepend(element("li", { "data-stream": stream }, describe(row)));
        }
        while (alerts.children.length > KEEP_ROWS) alerts.lastChild.remove();
      },
    }).catch((e) => { if (e.name !== "AbortError") console.warn(stream, e); });
    return controller;
  };
  select.addEventListener("change", () => draw().catch(console.warn));
  return {
    enter() {
      if (!chart) {
        chart = LightweightCharts.createChart(chartNode, {
          autoSize: true,
          layout: { background: { color: "#11151c" }, textColor: "#d8dee9" },
          grid: { vertLines: { color: "#2c3442" }, horzLines: { color: "#2c3442" } },
          timeScale: { timeVisible: true, secondsVisible: false },
        });
        candles = chart.addSeries(LightweightCharts.CandlestickSeries);
        vwap = chart.addSeries(LightweightCharts.LineSeries, { color: "#f0883e", lineWidth: 2 });
      }
      alertFeeds = [
        followAlerts("price_spikes", (r) => `${r.minute} ${r.symbol}: traded ${r.low} to ${r.high} around a VWAP of ${r.vwap}`),
        followAlerts("risk_breaches", (r) => `${r.minute} ${r.account}: ${r.gross_usd} USD filled, over its limit of ${r.limit_usd}`),
      ];
      refresh.start();
    },
    leave() {
      refresh.stop();
      for (const feed of alertFeeds) feed.abort();
    },
  };
})();

// --- start ---------------------------------------------------------------------------------

document.getElementById("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value);
  document.getElementById("token-form").hidden = true;
  show();
});

async function ready() {
  const response = await fetch("/ready");
  message("server-status", response.ok ? "server ready" : "server restoring its jobs");
}

window.addEventListener("hashchange", show);
ready().catch(() => message("server-status", "server unreachable", true));
show();
