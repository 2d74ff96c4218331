//! The statement table and our clauses, read from SQL text.

use super::create_job::CreateJob;
use super::describe::Describe;
use super::drop::DropJob;
use super::explain::Explain;
use super::job_command::ControlJob;
use super::query::Query;
use super::show::{Listing, Show};
use super::show_job_status::ShowJobStatus;
use super::show_topic_details::ShowTopicDetails;
use super::streaming_query::EmitMode;
use super::*;
use crate::job::JobKind;
use crate::job::command::JobCommand;
use crate::position::Position;

/// The one statement of `sql`, as the kind `T`.
fn one<T: StatementKind + Clone>(sql: &str) -> T {
    let statements = parse_statements(sql).unwrap();
    assert_eq!(statements.len(), 1, "{statements:?}");
    kind::<T>(&statements[0])
}

fn kind<T: StatementKind + Clone>(statement: &Statement) -> T {
    match statement.kind.downcast_ref::<T>() {
        Some(kind) => kind.clone(),
        None => panic!("{statement:?} is not a {}", std::any::type_name::<T>()),
    }
}

fn err(sql: &str) -> String {
    parse_statements(sql).unwrap_err().to_string()
}

#[test]
fn create_stream_with_all_clauses() {
    let sql = "-- bars\nCREATE STREAM bars AS\nSELECT symbol, COUNT(*) AS n FROM trades\nGROUP BY symbol\nWINDOW TUMBLING(ts, INTERVAL '1' MINUTE)\nEMIT FINAL\nWITH ('trades.type' = 'file_source', 'trades.batch.size' = 10, 'x' = true);";
    let CreateJob { kind, name, query } = one(sql);
    assert_eq!((kind, name.as_str()), (JobKind::Stream, "bars"));
    assert_eq!(query.emit, Some(EmitMode::Final));
    let [window] = &query.windows[..] else {
        panic!("one window: {:?}", query.windows);
    };
    assert_eq!(window.kind, "TUMBLING");
    assert_eq!(window.args, ["ts", "INTERVAL '1' MINUTE"]);
    assert_eq!(window.position, Position { line: 5, column: 1 });
    let options: Vec<_> = query
        .options
        .iter()
        .map(|o| (o.key.as_str(), o.value.as_str()))
        .collect();
    assert_eq!(
        options,
        [
            ("trades.type", "file_source"),
            ("trades.batch.size", "10"),
            ("x", "true")
        ]
    );
    // The SQL left for DataFusion keeps every line where it was.
    let lines: Vec<_> = query.sql.lines().map(str::trim_end).collect();
    assert_eq!(lines[2], "SELECT symbol, COUNT(*) AS n FROM trades");
    assert_eq!(lines[3], "GROUP BY symbol");
    assert!(lines[4..].iter().all(|l| l.trim().is_empty()), "{lines:?}");
    assert_eq!(query.position, Position { line: 3, column: 1 });
}

#[test]
fn job_commands_and_drop() {
    let statements = parse_statements(
        "START JOB bars; stop job \"Bars\"; STOP JOB bars FORCE; PAUSE JOB bars;\nRESUME JOB bars; DROP STREAM bars; drop table if exists t",
    )
    .unwrap();
    let commands: Vec<ControlJob> = statements[..5].iter().map(kind).collect();
    let command = |command, name: &str| ControlJob {
        command,
        name: name.into(),
    };
    assert_eq!(
        commands,
        [
            command(JobCommand::Start, "bars"),
            command(JobCommand::Stop, "Bars"),
            command(JobCommand::StopForce, "bars"),
            command(JobCommand::Pause, "bars"),
            command(JobCommand::Resume, "bars"),
        ]
    );
    let drops: Vec<DropJob> = statements[5..].iter().map(kind).collect();
    assert_eq!(
        drops,
        [
            DropJob {
                kind: JobKind::Stream,
                name: "bars".into(),
                if_exists: false
            },
            DropJob {
                kind: JobKind::Table,
                name: "t".into(),
                if_exists: true
            },
        ]
    );
    assert_eq!(statements[4].text, "RESUME JOB bars");
    assert_eq!(statements[4].position, Position { line: 2, column: 1 });
    assert!(err("STOP bars").contains("at 1:6: expected JOB after STOP"));
    assert!(err("PAUSE JOB bars now").contains("at 1:16: expected the end of the statement"));
    assert!(err("RESUME JOB").contains("expected the job's name after 'JOB'"));
    assert!(err("DROP VIEW v").contains("at 1:6: expected STREAM, TABLE or FUNCTION after DROP"));
    assert!(err("DROP STREAM a b").contains("at 1:15: expected the end of the statement"));
}

#[test]
fn several_statements_and_show_describe_explain() {
    let statements = parse_statements(
        "SHOW STREAMS; show tables like 'a%';\nSHOW FUNCTIONS;\nDESCRIBE \"Bars\"; desc t;\nEXPLAIN SELECT 1;; SHOW JOBS LIKE 'b%'; SHOW TOPICS; SHOW TOPIC DETAILS 'trades'; SHOW TABLES WITH SCHEMAS; SHOW JOB STATUS 'bars'; SHOW NODES; show jobs on node 'b';",
    )
    .unwrap();
    let show = |listing, like: Option<&str>| Show {
        listing,
        like: like.map(Into::into),
    };
    assert_eq!(kind::<Show>(&statements[0]), show(Listing::Streams, None));
    assert_eq!(
        kind::<Show>(&statements[1]),
        show(Listing::Tables { schemas: false }, Some("a%"))
    );
    assert_eq!(kind::<Show>(&statements[2]), show(Listing::Functions, None));
    assert_eq!(
        kind::<Describe>(&statements[3]),
        Describe {
            name: "Bars".into()
        }
    );
    assert_eq!(
        kind::<Describe>(&statements[4]),
        Describe { name: "t".into() }
    );
    assert_eq!(
        kind::<Show>(&statements[6]),
        show(Listing::Jobs { node: None }, Some("b%"))
    );
    assert_eq!(kind::<Show>(&statements[11]), show(Listing::Nodes, None));
    assert_eq!(
        kind::<Show>(&statements[12]),
        show(
            Listing::Jobs {
                node: Some("b".into())
            },
            None
        )
    );
    assert_eq!(kind::<Show>(&statements[7]), show(Listing::Topics, None));
    assert_eq!(
        kind::<Show>(&statements[9]),
        show(Listing::Tables { schemas: true }, None)
    );
    assert_eq!(
        kind::<ShowJobStatus>(&statements[10]),
        ShowJobStatus {
            name: "bars".into()
        }
    );
    assert_eq!(
        kind::<ShowTopicDetails>(&statements[8]),
        ShowTopicDetails {
            topic: "trades".into()
        }
    );
    let explain = kind::<Explain>(&statements[5]);
    assert!(explain.inner.kind.downcast_ref::<Query>().is_some());
    assert_eq!(statements[5].position, Position { line: 4, column: 1 });
}

#[test]
fn primary_key_and_emit_changes_on_a_table() {
    let CreateJob { kind, query, .. } = one(
        "CREATE TABLE t AS SELECT id AS Account PRIMARY KEY, SUM(x) FROM s GROUP BY id EMIT CHANGES",
    );
    assert_eq!(kind, JobKind::Table);
    assert_eq!(query.primary_key, ["account"]);
    assert_eq!(query.emit, Some(EmitMode::Changes));
    assert!(!query.sql.contains("PRIMARY"));
}

#[test]
fn named_windows_and_ctes_are_left_to_datafusion() {
    let Query { query } =
        one("WITH a AS (SELECT 1 AS x) SELECT SUM(x) OVER w FROM a WINDOW w AS (ORDER BY x)");
    assert!(query.windows.is_empty() && query.options.is_empty());
    assert!(query.sql.contains("WINDOW w AS"));
}

#[test]
fn a_subquery_has_its_own_window_clause() {
    let Query { query } = one(
        "SELECT s, MAX(n) FROM (\n  SELECT s, COUNT(*) AS n FROM t GROUP BY s WINDOW TUMBLING(1s)\n) GROUP BY s WINDOW TUMBLING(1m)",
    );
    let windows: Vec<_> = query
        .windows
        .iter()
        .map(|w| (w.args[0].as_str(), w.select.line, w.select.column))
        .collect();
    assert_eq!(windows, [("1s", 2, 3), ("1m", 1, 1)]);
    assert!(!query.sql.contains("TUMBLING"), "{}", query.sql);
    assert!(err("SELECT * FROM (SELECT 1 EMIT FINAL)").contains("EMIT is said once"));
    assert!(
        err("SELECT s FROM t GROUP BY s WINDOW TUMBLING(1s) WINDOW TUMBLING(2s)")
            .contains("only one WINDOW clause")
    );
}

/// A kept statement gets its parallelism set: the option's value replaced where it is
/// given, else the option added to its WITH (not to a CTE's).
#[test]
fn a_statement_s_option_is_set_in_its_with_clause() {
    use crate::statements::parser::with_option;
    let given =
        "CREATE STREAM s AS SELECT a FROM t WITH ('t.type' = 'file_source', 'Parallelism' = '2')";
    assert_eq!(
        with_option(given, "parallelism", "4").unwrap(),
        "CREATE STREAM s AS SELECT a FROM t WITH ('t.type' = 'file_source', 'Parallelism' = '4')"
    );
    let cte = "CREATE STREAM s AS WITH x AS (SELECT a FROM t) SELECT a FROM x\nWITH ('t.type' = 'file_source')";
    assert_eq!(
        with_option(cte, "parallelism", "3").unwrap(),
        "CREATE STREAM s AS WITH x AS (SELECT a FROM t) SELECT a FROM x\nWITH ('parallelism' = '3', 't.type' = 'file_source')"
    );
}

#[test]
fn every_error_names_its_position() {
    let cases = [
        (
            "CREATE VIEW v AS SELECT 1",
            "1:8: expected STREAM, TABLE, FUNCTION, OR REPLACE FUNCTION, AGGREGATE FUNCTION or OR REPLACE AGGREGATE FUNCTION after CREATE, found 'VIEW'",
        ),
        (
            "CREATE STREAM AS SELECT 1",
            "expected AS after CREATE STREAM as",
        ),
        (
            "CREATE STREAM 1 AS SELECT 1",
            "1:15: expected a name, found '1'",
        ),
        ("CREATE STREAM s AS", "1:17: expected a query after AS"),
        (
            "CREATE STREAM s SELECT 1",
            "1:17: expected AS after CREATE STREAM s, found 'SELECT'",
        ),
        (
            "CREATE",
            "1:1: expected STREAM, TABLE, FUNCTION, OR REPLACE FUNCTION, AGGREGATE FUNCTION or OR REPLACE AGGREGATE FUNCTION after CREATE",
        ),
        (
            "ALTER JOB bars SET PARALLELISM 0",
            "1:32: expected a whole number of instances from 1 to 256, found '0'",
        ),
        (
            "ALTER JOB bars SET SIZE 2",
            "1:16: expected SET PARALLELISM n after the job's name",
        ),
        (
            "ALTER JOB bars SET PARALLELISM 2 NOW",
            "1:34: expected the end of the statement after the parallelism, found 'NOW'",
        ),
        (
            "SELECT 1\nEMIT SOMETIMES",
            "2:6: expected CHANGES or FINAL after EMIT, found 'SOMETIMES'",
        ),
        (
            "SELECT 1 EMIT FINAL EMIT FINAL",
            "1:21: a query can have only one EMIT clause",
        ),
        (
            "SELECT 1 WINDOW TUMBLE(1s)",
            "1:17: unknown window type TUMBLE",
        ),
        (
            "SELECT 1 WINDOW SESSION()",
            "1:17: WINDOW SESSION needs a size",
        ),
        (
            "SELECT 1 WINDOW SESSION(1s) WINDOW SESSION(2s)",
            "1:29: a SELECT can have only one WINDOW clause",
        ),
        (
            "SELECT 1 WINDOW TUMBLING(1s",
            "1:25: this parenthesis is never closed",
        ),
        ("SELECT (1", "1:9: unbalanced parentheses"),
        (
            "SHOW TOPIC DETAILS trades",
            "1:20: expected the topic's name, quoted",
        ),
        (
            "SHOW TOPIC trades",
            "1:12: expected DETAILS after SHOW TOPIC, found 'trades'",
        ),
        ("SELECT 1 WITH ()", "1:15: WITH () has no options"),
        (
            "SELECT 1 WITH (a = 'b')",
            "1:16: expected a quoted option name",
        ),
        ("SELECT 1 WITH ('a' 'b')", "1:20: expected = after 'a'"),
        ("SELECT 1 WITH ('a' = )", "1:20: expected a value for 'a'"),
        (
            "SELECT 1 WITH ('a' = b)",
            "1:22: expected a quoted value for 'a'",
        ),
        (
            "SELECT 1 WITH ('a' = 'b' 'c')",
            "1:26: expected , or ) after the value of 'a'",
        ),
        (
            "SELECT 1 WITH ('a' = 'b', 'A' = 'c')",
            "1:27: option 'A' is given twice",
        ),
        (
            "SELECT 1 WITH ('a' = 'b') LIMIT 1",
            "1:27: unexpected 'LIMIT' after the WITH options",
        ),
        (
            "SELECT PRIMARY KEY FROM t",
            "1:8: PRIMARY KEY must follow a select item's name",
        ),
        (
            "SHOW JOBZ",
            "1:6: expected STREAMS, TABLES, FUNCTIONS, JOBS, TOPICS, NODES, JOB STATUS, CREATE JOB or TOPIC DETAILS after SHOW, found 'JOBZ'",
        ),
        (
            "SHOW STREAMS LIKE x",
            "1:19: expected a quoted pattern after LIKE",
        ),
        (
            "SHOW STREAMS x",
            "1:14: expected LIKE 'pattern' or the end of the statement",
        ),
        ("DESCRIBE", "1:1: expected a name after 'DESCRIBE'"),
        (
            "DESCRIBE a b",
            "1:12: expected the end of the statement after DESCRIBE a",
        ),
        ("EXPLAIN", "1:1: expected a statement after EXPLAIN"),
        (
            "EXPLAIN ANALYZE",
            "1:9: expected a statement after EXPLAIN ANALYZE",
        ),
        (
            "EXPLAIN ANALYZE EXPLAIN SELECT 1",
            "1:17: EXPLAIN EXPLAIN is not a statement",
        ),
        (
            "EXPLAIN EXPLAIN SELECT 1",
            "1:9: EXPLAIN EXPLAIN is not a statement",
        ),
        (
            "UPDATE t SET x = 1",
            "1:1: unsupported statement starting with 'UPDATE'",
        ),
        ("INSERT t VALUES (1)", "1:8: expected INTO after INSERT"),
        (
            "INSERT INTO t",
            "1:13: expected a query (SELECT or VALUES) after the name",
        ),
        ("SELECT 'unterminated", "1:8: Unterminated string literal"),
    ];
    for (sql, expected) in cases {
        let message = err(sql);
        assert!(
            message.contains(expected),
            "{sql}: got {message:?}, want {expected:?}"
        );
    }
}
