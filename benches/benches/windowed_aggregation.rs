//! Windowed aggregation over a generated 10M-row CSV, against DataFusion's own batch GROUP BY
//! of the same rows (epoch-aligned minutes with `date_bin`). Both on one core.

use datafusion::prelude::{CsvReadOptions, SessionConfig, SessionContext};
use ferris_benches::{measure, rows, run_job, runtime, trades_csv};

fn main() {
    let rows = rows(10_000_000);
    let path = trades_csv(rows, 1000);
    let path = path.display();
    let out = tempfile_path("bars.jsonl");
    let runtime = runtime();

    let ferris = measure(|| {
        let sql = format!(
            "CREATE STREAM bars AS
             SELECT symbol, _window_start, COUNT(*) AS trades, SUM(price * qty) AS notional
             FROM trades GROUP BY symbol WINDOW TUMBLING(1m) EMIT FINAL
             WITH ('trades.type' = 'file_source', 'trades.path' = '{path}', 'trades.format' = 'csv',
                   'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(18,4), qty BIGINT',
                   'trades.event.time.field' = 'ts', 'trades.watermark.max_out_of_orderness' = '5s',
                   'bars.type' = 'file_sink', 'bars.path' = '{out}')"
        );
        let progress = run_job(&runtime, &sql);
        assert_eq!(progress.records_in as usize, rows);
        progress.records_in
    });
    ferris.print("ferris    TUMBLING(1m) EMIT FINAL");

    let datafusion = measure(|| {
        runtime.block_on(async {
            let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
            let schema = datafusion::arrow::datatypes::Schema::new(vec![
                datafusion::arrow::datatypes::Field::new("ts", datafusion::arrow::datatypes::DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None), true),
                datafusion::arrow::datatypes::Field::new("symbol", datafusion::arrow::datatypes::DataType::Utf8, true),
                datafusion::arrow::datatypes::Field::new("price", datafusion::arrow::datatypes::DataType::Decimal128(18, 4), true),
                datafusion::arrow::datatypes::Field::new("qty", datafusion::arrow::datatypes::DataType::Int64, true),
            ]);
            ctx.register_csv("trades", &path.to_string(), CsvReadOptions::new().schema(&schema))
                .await
                .unwrap();
            let batches = ctx
                .sql("SELECT symbol, date_bin(INTERVAL '1 minute', ts) AS window_start, COUNT(*) AS trades, SUM(price * qty) AS notional FROM trades GROUP BY 1, 2")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            assert!(!batches.is_empty());
        });
        rows as u64
    });
    datafusion.print("datafusion batch GROUP BY date_bin");
    println!(
        "ratio: ferris does {:.2}x DataFusion's rows/s per core (goal: 0.67 or better, i.e. within 1.5x)",
        ferris.rows_per_core_second() / datafusion.rows_per_core_second()
    );
}

fn tempfile_path(name: &str) -> String {
    let dir = ferris_benches::data_dir().join("out");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).display().to_string()
}
