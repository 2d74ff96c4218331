//! End-to-end tests of the `ferris` binary: the quickstart, bad input, late data, errors,
//! EXPLAIN, and a watched folder stopped with Ctrl-C.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn ferris() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferris"))
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    ferris().args(args).current_dir(dir).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The exact text of each line's `key` (numbers as written, not as f64).
fn raw_fields(path: &Path, key: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let fields: BTreeMap<String, Box<serde_json::value::RawValue>> =
                serde_json::from_str(l).unwrap();
            fields[key].get().to_string()
        })
        .collect()
}

/// Cents of a `123.45` text, exactly.
fn cents(text: &str) -> i64 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, "0"));
    whole.parse::<i64>().unwrap() * 100 + format!("{frac:0<2}")[..2].parse::<i64>().unwrap()
}

#[test]
fn quickstart_writes_exact_fees_and_category_totals() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demos/quickstart");
    std::fs::create_dir_all(&demo).unwrap();
    for file in ["transactions.csv", "quickstart.sql"] {
        std::fs::copy(
            project_root().join("demos/quickstart").join(file),
            demo.join(file),
        )
        .unwrap();
    }
    let output = run_in(dir.path(), &["run", "demos/quickstart/quickstart.sql"]);
    assert!(output.status.success(), "{}", stderr(&output));

    // The expected results, from the CSV itself.
    let csv = std::fs::read_to_string(demo.join("transactions.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let large: Vec<&Vec<&str>> = rows.iter().filter(|r| cents(r[5]) > 10_000).collect();
    let path = demo.join("out/large_fees.jsonl");
    let ids = raw_fields(&path, "txn_id");
    let fees = raw_fields(&path, "fee");
    assert_eq!(fees.len(), large.len());
    for ((id, fee), row) in ids.iter().zip(&fees).zip(&large) {
        assert_eq!(id, &format!("\"{}\"", row[1]));
        // amount * 0.0150, exact to 6 places: cents * 150 = millionths.
        let millionths = cents(row[5]) * 150;
        let expected = format!("{}.{:06}", millionths / 1_000_000, millionths % 1_000_000);
        assert_eq!(fee, &expected, "{}", row[1]);
    }
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in &rows {
        let entry = totals.entry(row[3].to_string()).or_default();
        entry.0 += 1;
        entry.1 += cents(row[5]);
    }
    let path = demo.join("out/spend_by_category.jsonl");
    let spend = json_lines(&path);
    assert_eq!(spend.len(), totals.len());
    for (row, total_text) in spend.iter().zip(raw_fields(&path, "total")) {
        let (count, total) = totals[row["category"].as_str().unwrap()];
        assert_eq!(row["txns"], count);
        assert_eq!(cents(&total_text), total);
    }
    let summary = stderr(&output);
    assert!(
        summary.contains(&format!(
            "large_fees: {} in, {} out, 0 bad",
            rows.len(),
            large.len()
        )),
        "{summary}"
    );
}

const MALFORMED: &str = "ts,symbol,price,qty
2026-03-02 09:30:00,AAPL,100.5000,10
2026-03-02 09:30:01,MSFT,200.2500
2026-03-02 09:30:02,NVDA,300.0000,lots
2026-13-45 09:30:03,TSLA,400.0000,40
2026-03-02 09:30:04,AMZN,500.1250,50
";

fn malformed_job(dir: &Path, on_error: &str) -> Output {
    std::fs::write(dir.join("bad.csv"), MALFORMED).unwrap();
    // It reads every column that has a bad value (a column it did not read would not be
    // decoded, its values not checked).
    let sql = format!(
        "CREATE STREAM good AS SELECT ts, symbol, price * qty AS notional FROM trades
         WITH ('trades.type' = 'file_source', 'trades.path' = 'bad.csv',
               'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(18,4), qty BIGINT',
               'trades.on.error' = '{on_error}', 'trades.dead_letter.path' = 'dead.jsonl',
               'good.type' = 'file_sink', 'good.path' = 'good.jsonl')"
    );
    let sql = if on_error == "dead_letter" {
        sql
    } else {
        sql.replace(", 'trades.dead_letter.path' = 'dead.jsonl'", "")
    };
    run_in(dir, &["run", "-e", &sql])
}

#[test]
fn on_error_fail_stops_naming_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let output = malformed_job(dir.path(), "fail");
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("bad.csv:3: "), "{message}");
    assert!(message.contains("incorrect number of fields"), "{message}");
    assert!(
        !dir.path().join("good.jsonl").exists(),
        "a failed job commits no output"
    );
}

#[test]
fn on_error_skip_keeps_every_valid_record_and_counts_the_bad() {
    let dir = tempfile::tempdir().unwrap();
    let output = malformed_job(dir.path(), "skip");
    assert!(output.status.success(), "{}", stderr(&output));
    let notional = raw_fields(&dir.path().join("good.jsonl"), "notional");
    assert_eq!(notional, ["1005.0000", "25006.2500"]);
    assert!(
        stderr(&output).contains("good: 2 in, 2 out, 3 bad"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn on_error_dead_letter_writes_each_bad_record_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let output = malformed_job(dir.path(), "dead_letter");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json_lines(&dir.path().join("good.jsonl")).len(), 2);
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    let lines: Vec<i64> = dead.iter().map(|d| d["line"].as_i64().unwrap()).collect();
    assert_eq!(lines, [3, 4, 5]);
    assert_eq!(dead[1]["raw"], "2026-03-02 09:30:02,NVDA,300.0000,lots");
    assert!(
        dead[1]["error"].as_str().unwrap().contains("lots"),
        "{}",
        dead[1]
    );
    assert!(
        dead[2]["error"].as_str().unwrap().contains("2026-13-45"),
        "{}",
        dead[2]
    );
    assert!(
        dead.iter()
            .all(|d| d["source"] == "trades" && d["file"].as_str().unwrap().ends_with("bad.csv"))
    );
    assert!(stderr(&output).contains("3 bad"));
}

#[test]
fn late_records_are_counted_and_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ticks.csv"),
        "ts,symbol\n2026-03-02 09:30:01,A\n2026-03-02 09:30:12,A\n2026-03-02 09:30:05,A\n2026-03-02 09:30:13,A\n",
    )
    .unwrap();
    // The window names the time column; the bound still comes from the source's options.
    let sql = "CREATE STREAM counts AS SELECT symbol, _window_start AS ws, COUNT(*) AS n FROM ticks
        GROUP BY symbol WINDOW TUMBLING(ts, 10s)
        WITH ('ticks.type' = 'file_source', 'ticks.path' = 'ticks.csv',
              'ticks.watermark.max_out_of_orderness' = '1s',
              'late.data.strategy' = 'dead_letter', 'late.data.dead_letter.path' = 'late.jsonl',
              'counts.type' = 'file_sink', 'counts.path' = 'counts.jsonl')";
    let output = run_in(dir.path(), &["run", "-e", sql]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("1 late"), "{}", stderr(&output));
    let counts = json_lines(&dir.path().join("counts.jsonl"));
    assert_eq!(counts.len(), 2);
    assert_eq!(
        (counts[0]["n"].as_i64(), counts[1]["n"].as_i64()),
        (Some(1), Some(2))
    );
    let late = json_lines(&dir.path().join("late.jsonl"));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0]["_window_start"], "2026-03-02T09:30:05");
}

#[test]
fn errors_name_the_file_position_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.csv"), "a,b\n1,2\n").unwrap();
    let source = "'t.type' = 'file_source', 't.path' = 't.csv'";
    let cases = [
        (
            format!("SELECT\n  nope FROM t WITH ({source})"),
            "<-e>:2:3: ",
        ),
        (
            format!("SELECT a FROM t WITH ({source}, 't.formt' = 'csv')"),
            "unknown option 't.formt'",
        ),
        (
            format!("SELECT a FROM t WITH ({source}, 't.batch.size' = 'many')"),
            "expected a whole number above 0",
        ),
        (
            "SELECT a FROM t WITH ('t.type' = 'file_source')".to_string(),
            "missing option 't.path'",
        ),
        (
            format!("SELECT a FROM t WINDOW TUMBLING(10s) WITH ({source})"),
            "<-e>:1:8: 't.a' must appear in GROUP BY",
        ),
        (
            format!("SELECT COUNT(*) FROM t WINDOW TUMBLING(ts, 10s) WITH ({source})"),
            "time column 'ts' is not a column of source 't'",
        ),
        ("CREATE STREAM s AS SELECT 1".to_string(), "'s' has no sink"),
        (
            format!(
                "SELECT COUNT(*) FROM t WINDOW TUMBLING(10s) WITH ({source}, 'state.ttl' = '1h')"
            ),
            "'state.ttl' is how long a table's key (a GROUP BY without a window, a Top-N's key) or a row of a join of two streams without time bounds is kept; this query keeps neither",
        ),
        (
            format!(
                "SELECT COUNT(*) FROM (SELECT a FROM t UNION ALL SELECT a FROM u) AS x WINDOW TUMBLING(1s) WITH ({source}, 't.event.time.field' = 'b', 'u.type' = 'file_source', 'u.path' = 't.csv')"
            ),
            "the streams a window reads must all have event time or all go by processing time: 'u' differs from 't'",
        ),
        (
            format!("SELECT SUM(COUNT(*)) FROM t WITH ({source})"),
            "<-e>:1:1: Aggregate function calls cannot be nested",
        ),
        (
            format!("SELECT a FROM t WHERE SUM(b) > 1 GROUP BY a WITH ({source})"),
            "<-e>:1:1: Aggregate functions are not allowed in the WHERE clause",
        ),
        (
            format!("SELECT a FROM t WITH ({source}, 'x.type' = 'kinesis_source')"),
            "expected one of file_source, file_sink, kafka_source, kafka_sink",
        ),
        (
            format!(
                "SELECT COUNT(*) FROM t GROUP BY ROLLUP(a) WINDOW TUMBLING(b, 1s) WITH ({source})"
            ),
            "ROLLUP are not supported",
        ),
        (
            format!(
                "SELECT COUNT(*) FROM t WINDOW TUMBLING(1s) WITH ({source}, 'event.time.field' = 'tss')"
            ),
            "'event.time.field' = 'tss': no source of this statement has that column",
        ),
        (
            format!(
                "CREATE TABLE top AS SELECT a, b FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) AS rn FROM t) WHERE rn <= 2 EMIT CHANGES WITH ({source}, 'top.type' = 'file_sink', 'top.path' = 'top.jsonl')"
            ),
            "<-e>:1:21: CREATE TABLE top needs a key: a Top-N of 2 rows per key must select its ROW_NUMBER() column",
        ),
        (
            format!(
                "SELECT * FROM (SELECT a, COUNT(*) AS n, ROW_NUMBER() OVER (ORDER BY COUNT(*) DESC) AS rn FROM t GROUP BY a) WHERE rn <= 1 EMIT CHANGES WITH ({source})"
            ),
            "ROW_NUMBER() over an aggregate's rows is not supported on a stream",
        ),
        (
            "CREATE FUNCTION fee(x BIGINT) RETURNS BIGINT AS 'x +* 2'".to_string(),
            "<-e>:1:1: CREATE FUNCTION fee: in its body 'x +* 2': SQL error: ParserError(\"Expected: an expression, found: * at Line: 1, Column: 4\")",
        ),
        (
            "CREATE FUNCTION fee(x BIGINT) RETURNS BIGINT AS 'y + 1'".to_string(),
            "CREATE FUNCTION fee: in its body 'y + 1': Schema error: No field named y.",
        ),
        (
            "CREATE FUNCTION fee(x BIGINT) RETURNS BIGINT AS 'SUM(x)'".to_string(),
            "its body must be an expression of its parameters alone",
        ),
        (
            "CREATE FUNCTION abs(x BIGINT) RETURNS BIGINT AS 'x'".to_string(),
            "CREATE FUNCTION abs: a built-in function of that name exists",
        ),
        (
            "CREATE FUNCTION fee(x DATE) RETURNS BOOLEAN AS 'x'".to_string(),
            "its body is of type Date32, which cannot be cast to Boolean",
        ),
    ];
    for (sql, expected) in cases {
        let output = run_in(dir.path(), &["run", "-e", &sql]);
        assert!(!output.status.success(), "{sql}");
        assert!(
            stderr(&output).contains(expected),
            "{sql}: {}",
            stderr(&output)
        );
    }
    let missing = run_in(dir.path(), &["run", "nowhere.sql"]);
    assert!(stderr(&missing).contains("cannot read nowhere.sql"));
    let usage = run_in(dir.path(), &["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn explain_shows_a_stream_joined_to_two_tables_as_two_lookup_joins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("trades")).unwrap();
    std::fs::write(
        dir.path().join("instruments.csv"),
        "symbol,sector\nAAPL,tech\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("desks.csv"), "sector,desk\ntech,growth\n").unwrap();
    std::fs::write(
        dir.path().join("job.sql"),
        "EXPLAIN SELECT d.desk, _window_start, SUM(t.qty) AS volume
         FROM trades t JOIN instruments i ON t.symbol = i.symbol JOIN desks d ON i.sector = d.sector
         GROUP BY d.desk WINDOW TUMBLING(10s)
         WITH ('trades.type' = 'file_source', 'trades.path' = 'trades/', 'trades.watch' = 'true',
           'trades.format' = 'csv', 'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, qty BIGINT',
           'trades.event.time.field' = 'ts',
           'instruments.type' = 'file_source', 'instruments.path' = 'instruments.csv',
           'desks.type' = 'file_source', 'desks.path' = 'desks.csv');",
    )
    .unwrap();
    let run = run_in(dir.path(), &["run", "job.sql"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let plan = String::from_utf8_lossy(&run.stdout);
    // Both joins are lookup joins (checkpointed, row by row), not DataFusion's hash join,
    // which would gather 8192 rows before writing any and keep no checkpoint.
    assert_eq!(plan.matches("LookupJoinExec").count(), 2, "{plan}");
    assert!(!plan.contains("HashJoinExec"), "{plan}");
}

#[test]
fn explain_shows_which_joins_of_two_streams_keep_rows_only_while_they_can_match() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["orders", "payments"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
    }
    let join = |kind: &str, on: &str, times: &str| {
        format!(
            "EXPLAIN SELECT o.id, p.paid FROM orders o {kind} JOIN payments p ON o.id = p.order_id{on}
             WITH ('orders.type' = 'file_source', 'orders.path' = 'orders/', 'orders.watch' = 'true',
               'orders.format' = 'csv', 'orders.schema' = 'id BIGINT, ts TIMESTAMP',
               'payments.type' = 'file_source', 'payments.path' = 'payments/', 'payments.watch' = 'true',
               'payments.format' = 'csv', 'payments.schema' = 'order_id BIGINT, ts TIMESTAMP, paid BIGINT'{times});"
        )
    };
    let times = ", 'orders.event.time.field' = 'ts', 'payments.event.time.field' = 'ts'";
    let within = " AND p.ts BETWEEN o.ts AND o.ts + INTERVAL '2' SECOND";
    let plan = |sql: String| {
        std::fs::write(dir.path().join("job.sql"), sql).unwrap();
        let run = run_in(dir.path(), &["run", "job.sql"]);
        assert!(run.status.success(), "{}", stderr(&run));
        String::from_utf8_lossy(&run.stdout).into_owned()
    };
    let bounded = plan(join("", within, times));
    assert!(
        bounded.contains("keeps rows while right.ts - left.ts can be in [0ms, 2000ms]"),
        "{bounded}"
    );
    // Without declared event times, or without a bound, every row is kept.
    for sql in [join("", within, ""), join("", "", times)] {
        let kept = plan(sql);
        assert!(kept.contains("StreamJoinExec"), "{kept}");
        assert!(!kept.contains("keeps rows while"), "{kept}");
    }
    // An outer join with bounds that let its outer side's rows go writes them unmatched then.
    let outer = plan(join("LEFT", within, times));
    assert!(outer.contains("StreamJoinExec: join_type=Left"), "{outer}");
    // Without bounds it writes a changelog (each row without a match taken back when its
    // match comes); with bounds that do not let the left rows go, it stays DataFusion's.
    let changelog = plan(join("LEFT", within, ""));
    assert!(
        changelog.contains("StreamJoinExec: join_type=Left, on=[(id@0, order_id@0)]"),
        "{changelog}"
    );
    assert!(changelog.contains("_op"), "{changelog}");
    let after = " AND p.ts >= o.ts";
    let kept = plan(join("LEFT", after, times));
    assert!(kept.contains("SymmetricHashJoinExec"), "{kept}");
    // A filter on a column it does not select still passes `_op` on.
    let filtered = plan(
        join("LEFT", " WHERE p.paid IS NULL OR p.paid > 100", "")
            .replace("SELECT o.id, p.paid", "SELECT o.id"),
    );
    assert!(
        filtered.contains("FilterExec: paid@1 IS NULL OR paid@1 > 100, projection=[id@0, _op@2]"),
        "{filtered}"
    );
    // What would hold its rows, or another outer join, cannot follow it.
    let counted = join("LEFT", " GROUP BY o.id", "").replace("p.paid", "COUNT(*) AS n");
    let chained = join("LEFT", " LEFT JOIN payments q ON o.id = q.order_id", "");
    for sql in [counted, chained] {
        std::fs::write(dir.path().join("job.sql"), sql).unwrap();
        let refused = run_in(dir.path(), &["run", "job.sql"]);
        assert!(!refused.status.success());
        assert!(
            stderr(&refused).contains("over an outer join of two streams without time bounds is not supported: the join writes a changelog"),
            "{}",
            stderr(&refused)
        );
    }
}

#[test]
fn explain_analyze_runs_the_query_and_shows_what_each_operator_did() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("trades.csv"),
        "ts,symbol,qty\n\
         2026-03-02 09:30:01,AAPL,10\n2026-03-02 09:30:02,MSFT,5\n\
         2026-03-02 09:30:04,TSLA,1\n2026-03-02 09:30:12,AAPL,7\n2026-03-02 09:30:03,MSFT,3\n\
         2026-03-02 09:30:25,AAPL,2\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("inbox")).unwrap();
    let job = |source: &str| {
        format!(
            "EXPLAIN ANALYZE CREATE STREAM bars AS SELECT symbol, _window_start AS minute, SUM(qty) AS volume
             FROM trades WHERE qty > 1 GROUP BY symbol WINDOW TUMBLING(10s)
             WITH ('trades.type' = 'file_source', {source}, 'trades.event.time.field' = 'ts',
                   'bars.type' = 'file_sink', 'bars.path' = 'bars.jsonl')"
        )
    };
    let run = run_in(
        dir.path(),
        &["run", "-e", &job("'trades.path' = 'trades.csv'")],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let out = String::from_utf8_lossy(&run.stdout);
    // The window operator's own counts: TSLA filtered out before it, MSFT at 09:30:03 late
    // (the watermark passed 09:30:10 with AAPL at 09:30:12), 4 bars out, and its state.
    let window = out
        .lines()
        .find(|l| l.contains("WindowAggregateExec"))
        .unwrap_or_else(|| panic!("{out}"));
    for metric in [
        "output_rows=4",
        "late_records=1",
        "elapsed_compute=",
        "peak_state_bytes=",
    ] {
        assert!(window.contains(metric), "no {metric} in {window}");
    }
    assert!(out.contains("plan_with_metrics"), "{out}");
    assert!(out.contains("4 rows in "), "{out}");
    assert!(
        !dir.path().join("bars.jsonl").exists(),
        "EXPLAIN ANALYZE writes no sink"
    );
    // A source that does not end cannot be run to its end.
    let endless = run_in(
        dir.path(),
        &[
            "run",
            "-e",
            &job(
                "'trades.path' = 'inbox', 'trades.format' = 'csv', 'trades.watch' = 'true', 'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, qty BIGINT'",
            ),
        ],
    );
    assert!(!endless.status.success());
    assert!(
        stderr(&endless).contains("EXPLAIN ANALYZE runs the query to its end"),
        "{}",
        stderr(&endless)
    );
}

#[test]
fn explain_shows_the_streaming_operator_and_show_describe_list_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.csv"),
        "ts,k,v\n2026-03-02 09:30:01,a,1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("job.sql"),
        "-- @ferris:workload = analytics
         -- @ferris:replicas = 1..3
         CREATE STREAM w AS SELECT k, COUNT(*) AS n FROM t GROUP BY k WINDOW SESSION(30s)
         WITH ('t.type' = 'file_source', 't.path' = 't.csv', 't.event.time.field' = 'ts',
               't.watermark.max_out_of_orderness' = '5s', 'w.type' = 'file_sink', 'w.path' = 'w.jsonl');
         SHOW STREAMS; DESCRIBE w; SHOW FUNCTIONS LIKE 'approx_percentile%';",
    )
    .unwrap();
    let explain = run_in(dir.path(), &["explain", "job.sql"]);
    let plan = String::from_utf8_lossy(&explain.stdout);
    assert!(explain.status.success(), "{}", stderr(&explain));
    assert!(
        plan.contains("WindowAggregateExec: window=SESSION(30s), emit=FINAL, late=drop, event_time=ts, watermark=max-5000ms, gby=[k]"),
        "{plan}"
    );
    // The deployment hints it read; they change nothing in the run below.
    assert!(
        plan.contains("-- statement at line 3\n-- hints: workload = analytics; replicas = 1..3\n"),
        "{plan}"
    );
    assert!(!dir.path().join("w.jsonl").exists(), "explain runs nothing");
    let run = run_in(dir.path(), &["run", "job.sql"]);
    let shown = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        shown.contains("| w    | stream | file_sink   | w.jsonl  | json   | true     |"),
        "{shown}"
    );
    assert!(shown.contains("| n           | Int64"), "{shown}");
    assert!(shown.contains("approx_percentile_cont"), "{shown}");
}

#[test]
fn a_watched_folder_picks_up_new_lines_and_ctrl_c_commits_every_window() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::write(inbox.join("1.csv"), "ts,k\n2026-03-02 09:30:01,a\n").unwrap();
    let sql = "CREATE STREAM counts AS SELECT k, _window_start AS ws, COUNT(*) AS n FROM t
        GROUP BY k WINDOW TUMBLING(10s)
        WITH ('t.type' = 'file_source', 't.path' = 'inbox', 't.format' = 'csv', 't.watch' = 'true',
              't.watch.interval' = '50ms', 't.event.time.field' = 'ts',
              'counts.type' = 'file_sink', 'counts.path' = 'out/', 'counts.rollover.interval' = '200ms')";
    let mut child = ferris()
        .args(["run", "-e", sql])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Appended lines and a new file both arrive; the 09:30:25 row closes [09:30:00, 10s).
    std::fs::write(
        inbox.join("1.csv"),
        "ts,k\n2026-03-02 09:30:01,a\n2026-03-02 09:30:02,a\n",
    )
    .unwrap();
    std::fs::write(inbox.join("2.csv"), "ts,k\n2026-03-02 09:30:25,b\n").unwrap();
    // The closed window is committed by the rollover timer while the job keeps running.
    let deadline = Instant::now() + Duration::from_secs(20);
    let committed = |dir: &Path| {
        std::fs::read_dir(dir.join("out")).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with("part-")
                    && std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("\"a\""))
            })
        })
    };
    while !committed(dir.path()) {
        assert!(
            Instant::now() < deadline,
            "no part file committed while running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    support::interrupt(&child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ferris did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let mut rows = Vec::new();
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    parts.sort();
    for part in parts {
        assert!(
            part.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("part-"),
            "{}",
            part.display()
        );
        rows.extend(json_lines(&part));
    }
    let seen: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["k"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("a".to_string(), 2), ("b".to_string(), 1)]);
}

#[test]
fn a_table_changelog_retracts_a_key_that_stops_matching_having() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("h.csv"), "k,v\na,5\nb,1\na,-4\nb,7\na,10\n").unwrap();
    let sql = "CREATE TABLE t AS SELECT k, SUM(v) AS total FROM h GROUP BY k HAVING SUM(v) > 2 EMIT CHANGES
        WITH ('h.type' = 'file_source', 'h.path' = 'h.csv', 'h.batch.size' = '1',
              't.type' = 'file_sink', 't.path' = 't.jsonl')";
    let output = run_in(dir.path(), &["run", "-e", sql]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(dir.path().join("t.jsonl")).unwrap();
    assert_eq!(
        text,
        "{\"k\":\"a\",\"total\":5,\"_op\":\"+U\"}\n\
         {\"k\":\"a\",\"total\":1,\"_op\":\"-D\"}\n\
         {\"k\":\"b\",\"total\":8,\"_op\":\"+U\"}\n\
         {\"k\":\"a\",\"total\":11,\"_op\":\"+U\"}\n"
    );
}

#[test]
fn processing_time_windows_close_on_the_clock_while_the_source_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::write(inbox.join("1.csv"), "k\na\na\nb\n").unwrap();
    let sql = "CREATE STREAM counts AS SELECT k, COUNT(*) AS n FROM t GROUP BY k WINDOW TUMBLING(1s)
        WITH ('t.type' = 'file_source', 't.path' = 'inbox', 't.format' = 'csv', 't.watch' = 'true',
              'counts.type' = 'file_sink', 'counts.path' = 'out/', 'counts.rollover.interval' = '100ms')";
    let mut child = ferris()
        .args(["run", "-e", sql])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let rows: Vec<Value> = std::fs::read_dir(dir.path().join("out"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
                    .flat_map(|e| json_lines(&e.path()))
                    .collect()
            })
            .unwrap_or_default();
        if rows.len() >= 2 || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    support::interrupt(&child);
    let _ = child.wait();
    let mut counts: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["k"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [("a".to_string(), 2), ("b".to_string(), 1)],
        "closed by the clock, before Ctrl-C"
    );
}

#[test]
fn a_table_s_current_state_answers_a_pull_query() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.csv"), "symbol,qty\nA,3\nB,1\nA,4\nC,2\n").unwrap();
    // A's total passes 5 and leaves the table (HAVING); B and C stay.
    let output = run_in(
        dir.path(),
        &[
            "run",
            "-e",
            "CREATE TABLE small AS SELECT symbol, SUM(qty) AS total FROM t GROUP BY symbol
             HAVING SUM(qty) < 5 EMIT CHANGES WITH (
             't.type' = 'file_source', 't.path' = 't.csv', 't.batch.size' = '1',
             'small.type' = 'file_sink', 'small.path' = 'small.jsonl');
             SELECT symbol, total FROM small ORDER BY symbol;",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("| B      | 1     |"), "{stdout}");
    assert!(stdout.contains("| C      | 2     |"), "{stdout}");
    assert!(!stdout.contains("| A "), "{stdout}");
    assert!(stdout.contains("(2 rows)"), "{stdout}");

    let status = run_in(
        dir.path(),
        &[
            "run",
            "-e",
            "CREATE STREAM copied AS SELECT symbol FROM t WITH (
             't.type' = 'file_source', 't.path' = 't.csv',
             'copied.type' = 'file_sink', 'copied.path' = 'copied.jsonl');
             SHOW JOB STATUS 'copied'; SHOW TABLES WITH SCHEMAS; SHOW JOB STATUS 'nope';",
        ],
    );
    let stdout = String::from_utf8_lossy(&status.stdout);
    let property = |name: &str, value: &str| {
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("| {name} ")) && l.contains(&format!("| {value} ")))
    };
    assert!(property("status", "FINISHED"), "{stdout}");
    assert!(property("records_in", "4"), "{stdout}");
    assert!(stderr(&status).contains("SHOW JOB STATUS 'nope': no job of that name"));
}

#[test]
fn insert_into_appends_a_query_s_rows_and_values_to_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        project_root().join("demos/quickstart/transactions.csv"),
        dir.path().join("transactions.csv"),
    )
    .unwrap();
    let source = "'t.type' = 'file_source', 't.path' = 'transactions.csv'";
    let sql = format!(
        "CREATE STREAM large AS SELECT txn_id, CAST(amount AS DECIMAL(12,2)) AS amount FROM t
           WHERE CAST(amount AS DECIMAL(12,2)) > 1000
           WITH ({source}, 'large.type' = 'file_sink', 'large.path' = 'large/');
         INSERT INTO large SELECT txn_id, CAST(amount AS DECIMAL(12,2)) FROM t
           WHERE CAST(amount AS DECIMAL(12,2)) < 10 WITH ({source});
         INSERT INTO large VALUES ('T99999', CAST(0.01 AS DECIMAL(12,2)));"
    );
    let output = run_in(dir.path(), &["run", "-e", &sql]);
    assert!(output.status.success(), "{}", stderr(&output));
    // Each writer has part files of its own; the rows take the stream's column names.
    let mut names: Vec<_> = std::fs::read_dir(dir.path().join("large"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "part-00000.jsonl",
            "part-insert_into_large-00000.jsonl",
            "part-insert_into_large_2-00000.jsonl"
        ]
    );
    let inserted = dir
        .path()
        .join("large/part-insert_into_large_2-00000.jsonl");
    assert_eq!(
        std::fs::read_to_string(inserted).unwrap(),
        "{\"txn_id\":\"T99999\",\"amount\":0.01}\n"
    );
    let small = json_lines(&dir.path().join("large/part-insert_into_large-00000.jsonl"));
    assert_eq!(small.len(), 1, "{small:?}");
    assert_eq!(
        raw_fields(&dir.path().join("large/part-00000.jsonl"), "amount").len(),
        13
    );

    // What cannot be inserted is refused before anything runs, at the statement.
    let refused = |sql: &str| {
        let output = run_in(dir.path(), &["run", "-e", sql]);
        assert!(!output.status.success());
        stderr(&output)
    };
    let create = format!(
        "CREATE STREAM one AS SELECT txn_id FROM t WITH ({source}, 'one.type' = 'file_sink', 'one.path' = 'one.jsonl');\n"
    );
    let error = refused(&format!("{create}INSERT INTO one VALUES ('x')"));
    assert!(
        error.contains("<-e>:2:17: 'one' is written to the single file"),
        "{error}"
    );
    let error = refused(&format!("{create}INSERT INTO t VALUES ('x')"));
    assert!(error.contains("'t' is a source read from"), "{error}");
    let error = refused("INSERT INTO nowhere VALUES (1)");
    assert!(
        error.contains("<-e>:1:21: no stream 'nowhere' to insert into"),
        "{error}"
    );
    let folder = format!(
        "CREATE STREAM two AS SELECT txn_id FROM t WITH ({source}, 'two.type' = 'file_sink', 'two.path' = 'two/');\n"
    );
    let error = refused(&format!("{folder}INSERT INTO two VALUES (1, 2)"));
    assert!(
        error.contains("INSERT INTO two: the query gives (column1 Int64, column2 Int64), but two has (txn_id Utf8)"),
        "{error}"
    );
    let error = refused("INSERT INTO two (txn_id) VALUES ('x')");
    assert!(
        error.contains("1:17: INSERT INTO takes no column list"),
        "{error}"
    );
}

#[test]
fn logs_are_json_lines_with_the_job_s_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        project_root().join("demos/quickstart/transactions.csv"),
        dir.path().join("transactions.csv"),
    )
    .unwrap();
    let sql = "CREATE STREAM copied AS SELECT txn_id FROM t
        WITH ('t.type' = 'file_source', 't.path' = 'transactions.csv',
              'copied.type' = 'file_sink', 'copied.path' = 'copied/')";
    let args = [
        "--log-format",
        "json",
        "run",
        "--state-dir",
        "state",
        "-e",
        sql,
    ];
    let first = run_in(dir.path(), &args);
    assert!(first.status.success(), "{}", stderr(&first));
    // Run again, the job has finished already: it says so, in a JSON line naming it.
    let second = run_in(dir.path(), &args);
    assert!(second.status.success(), "{}", stderr(&second));
    let logs: Vec<Value> = stderr(&second)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let finished = logs
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("finished in an earlier run"))
        })
        .unwrap_or_else(|| panic!("{logs:?}"));
    assert_eq!(finished["fields"]["job"], "copied", "{finished}");
    assert_eq!(finished["level"], "INFO", "{finished}");
    assert!(finished["timestamp"].is_string(), "{finished}");
    let refused = run_in(
        dir.path(),
        &["--log-format", "xml", "run", "-e", "SELECT 1"],
    );
    assert!(stderr(&refused).contains("--log-format 'xml': text or json"));
}

/// A function written in Python, vectorized over pyarrow arrays in a worker process: called
/// in a window's aggregate, its result as the query written in SQL gives it; a function that
/// raises fails the query with its traceback; code that defines no such function is refused.
/// (`FERRIS_PYTHON` is the project's venv, with pyarrow: `scripts/test.sh` sets it.)
#[test]
fn a_python_function_runs_over_arrow_batches_inside_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let ticks = project_root().join("docs/examples/ticks.csv");
    let query = |sum: &str, prelude: &str| {
        format!(
            "{prelude} SELECT symbol, _window_start AS minute, {sum} AS volume FROM ticks
             GROUP BY symbol WINDOW TUMBLING(10s)
             WITH ('ticks.type' = 'file_source', 'ticks.path' = '{}',
                   'ticks.event.time.field' = 'ts', 'ticks.batch.size' = '3')",
            ticks.display()
        )
    };
    let python = "CREATE FUNCTION lots(qty BIGINT) RETURNS BIGINT LANGUAGE python AS '
import pyarrow.compute as pc

def lots(qty):
    return pc.divide(pc.add(qty, 9), 10)
';";
    let run = |sql: &str| {
        let output = run_in(dir.path(), &["run", "-e", sql]);
        assert!(output.status.success(), "{sql}: {}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let expected = run(&query("SUM((qty + 9) / 10)", ""));
    let got = run(&query("SUM(lots(qty))", python));
    assert!(expected.contains("| AMZN "), "{expected}");
    assert!(
        got.ends_with(&expected[expected.find("| symbol").unwrap()..]),
        "{got}\n{expected}"
    );

    let raising = "CREATE FUNCTION lots(qty BIGINT) RETURNS BIGINT LANGUAGE python AS '
def lots(qty):
    raise ValueError(\"no lots today\")
';";
    let output = run_in(
        dir.path(),
        &["run", "-e", &query("SUM(lots(qty))", raising)],
    );
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(error.contains("Python function 'lots'"), "{error}");
    assert!(error.contains("ValueError: no lots today"), "{error}");

    let misnamed = "CREATE FUNCTION lots(qty BIGINT) RETURNS BIGINT LANGUAGE python AS 'def lot(qty): return qty'";
    let output = run_in(dir.path(), &["run", "-e", misnamed]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("NameError: the code defines no function named lots"),
        "{}",
        stderr(&output)
    );
}

/// A source decodes only the columns its query reads (EXPLAIN says which): a value that
/// would not decode in another column leaves its record valid, and EXPLAIN ANALYZE counts
/// what the source read. With `'projection.pushdown' = 'false'` it decodes them all, and
/// the record is malformed again.
#[test]
fn a_source_decodes_only_the_columns_its_query_reads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("trades.csv"),
        "ts,symbol,price,qty\n2026-03-02 09:30:00,AAPL,not a price,10\n2026-03-02 09:30:01,MSFT,415.10,20\n",
    )
    .unwrap();
    let query = |select: &str, extra: &str| {
        format!(
            "{select} FROM trades WITH ('trades.type' = 'file_source', 'trades.path' = 'trades.csv',
             'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(10,2), qty BIGINT'{extra})"
        )
    };
    let run = |sql: &str| {
        let output = run_in(dir.path(), &["run", "-e", sql]);
        assert!(output.status.success(), "{sql}: {}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let explained = run(&query("EXPLAIN SELECT symbol, qty", ""));
    assert!(
        explained.contains("trades: file_source csv at trades.csv, decodes [symbol, qty] (2 of 4 columns); filters run after decoding"),
        "{explained}"
    );
    let summed = run(&query("SELECT SUM(qty) AS volume", ""));
    assert!(summed.contains("| 30     |"), "{summed}");
    let analyzed = run(&query("EXPLAIN ANALYZE SELECT qty", ""));
    assert!(
        analyzed.contains("decodes [qty] (1 of 4 columns); filters run after decoding, read 2 records (0 malformed)"),
        "{analyzed}"
    );
    // A count reads no column; one that cannot be null is always decoded; a later
    // statement reading the source declared before decodes what it reads itself (all of
    // its columns: the record of a bad price is skipped then, not before).
    let counted = run(&query("SELECT COUNT(*) AS n", ""));
    assert!(counted.contains("| 2 |"), "{counted}");
    let required = run(&query("SELECT symbol", "").replace("qty BIGINT", "qty BIGINT NOT NULL"));
    assert!(required.contains("| MSFT   |"), "{required}");
    let later = run(&format!(
        "{}; SELECT * FROM trades",
        query("SELECT symbol", ", 'trades.on.error' = 'skip'")
    ));
    assert!(later.contains("| AAPL   |"), "{later}");
    assert!(
        later.contains("| 2026-03-02T09:30:01 | MSFT   | 415.10 | 20  |"),
        "{later}"
    );
    assert!(later.ends_with("(1 rows)\n"), "{later}");
    let whole = query(
        "SELECT SUM(qty) AS volume",
        ", 'projection.pushdown' = 'false'",
    );
    let explained = run(&format!("EXPLAIN {whole}"));
    assert!(explained.contains("decodes all 4 columns"), "{explained}");
    let output = run_in(dir.path(), &["run", "-e", &whole]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("trades.csv:2"),
        "{}",
        stderr(&output)
    );
}

/// An aggregate function written in Python is given each group's values and returns its
/// value: the same as the built-in aggregates it stands for, in tumbling, sliding and
/// session windows and in a keyed table; `SHOW FUNCTIONS` lists it, `DROP FUNCTION` forgets
/// it, and its errors name it.
#[test]
fn a_python_aggregate_function_gets_each_group_s_values() {
    let dir = tempfile::tempdir().unwrap();
    let ticks = project_root().join("docs/examples/ticks.csv");
    let spread =
        "CREATE AGGREGATE FUNCTION spread(price DOUBLE) RETURNS DOUBLE LANGUAGE python AS '
import pyarrow.compute as pc

def spread(price):
    low, high = pc.min_max(price).values()
    return high.as_py() - low.as_py()
';";
    let query = |value: &str, grouping: &str| {
        format!(
            "SELECT symbol, {value} AS spread, COUNT(*) AS trades FROM ticks GROUP BY symbol {grouping}
             WITH ('ticks.type' = 'file_source', 'ticks.path' = '{}',
                   'ticks.event.time.field' = 'ts', 'ticks.batch.size' = '2')",
            ticks.display()
        )
    };
    let run = |sql: &str| {
        let output = run_in(dir.path(), &["run", "-e", sql]);
        assert!(output.status.success(), "{sql}: {}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    for grouping in [
        "WINDOW TUMBLING(10s)",
        "WINDOW SLIDING(20s, 10s)",
        "WINDOW SESSION(3s)",
        "EMIT CHANGES",
    ] {
        let expected = run(&query("MAX(price) - MIN(price)", grouping));
        let got = run(&format!("{spread} {}", query("spread(price)", grouping)));
        assert!(expected.contains("| AMZN "), "{expected}");
        assert!(
            got.ends_with(&expected[expected.find("| symbol").unwrap()..]),
            "{grouping}:\n{got}\n{expected}"
        );
    }

    // A group whose values are all filtered out is NULL, as with a built-in aggregate: the
    // function (which would fail on no values) is not called for it.
    let filtered = run(&format!(
        "{spread} {}",
        query(
            "spread(price) FILTER (WHERE price > 1000)",
            "WINDOW TUMBLING(10s)"
        )
    ));
    assert!(
        filtered.contains("| AMZN   |        | 2      |"),
        "{filtered}"
    );

    let listed = run(&format!(
        "{spread} SHOW FUNCTIONS LIKE 'spread'; DROP FUNCTION spread; SHOW FUNCTIONS LIKE 'spread'"
    ));
    assert!(
        listed.contains("| spread | aggregate | python "),
        "{listed}"
    );
    assert!(listed.contains("DROPPED"), "{listed}");
    assert!(listed.ends_with("(0 rows)\n"), "{listed}");

    let failing = |sql: &str, message: &str| {
        let output = run_in(dir.path(), &["run", "-e", sql]);
        assert!(!output.status.success(), "{sql}");
        let error = stderr(&output);
        assert!(error.contains(message), "{sql}: {error}");
    };
    let raising =
        "CREATE AGGREGATE FUNCTION spread(price DOUBLE) RETURNS DOUBLE LANGUAGE python AS '
def spread(price):
    raise ValueError(\"no spread today\")
';";
    failing(
        &format!(
            "{raising} {}",
            query("spread(price)", "WINDOW TUMBLING(10s)")
        ),
        "ValueError: no spread today",
    );
    failing(
        &format!(
            "{spread} {}",
            query("spread(DISTINCT price)", "WINDOW TUMBLING(10s)")
        ),
        "Python aggregate function 'spread' takes neither DISTINCT nor ORDER BY",
    );
    failing("CREATE AGGREGATE FUNCTION", "1:1: SQL error: ParserError");
    failing(
        "CREATE AGGREGATE FUNCTION spread(price DOUBLE) RETURNS DOUBLE AS 'MAX(price)'",
        "CREATE FUNCTION spread: an aggregate function is written in Python (LANGUAGE python)",
    );
    failing(
        "CREATE AGGREGATE FUNCTION count(x BIGINT) RETURNS BIGINT LANGUAGE python AS 'def count(x): return 0'",
        "CREATE FUNCTION count: a built-in function of that name exists",
    );
    failing(
        "CREATE AGGREGATE FUNCTION spread(price DOUBLE) RETURNS DOUBLE LANGUAGE python AS 'def spreads(p): return 0'",
        "NameError: the code defines no function named spread",
    );
}
