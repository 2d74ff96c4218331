//! The options of the file connectors, `file_source` and `file_sink`.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::format::{CsvOptions, FileFormat};
use super::location::Location;
use super::sink::FileSinkConfig;
use super::source::{FileSource, FileSourceConfig};
use crate::declaration::{Declaration, DeclaredSource};
use crate::error::{ConnectorError, Result};
use crate::sink::SinkConfig;

/// How often a watching source looks for new data unless `'<name>.watch.interval'` says.
const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How long a folder sink writes one part file unless `'<name>.rollover.interval'` says.
const DEFAULT_ROLLOVER: Duration = Duration::from_secs(60);

/// A `file_source`: a file, folder or glob to read.
pub(crate) fn source<'a>(declared: &'a Declaration<'a>) -> BoxFuture<'a, Result<DeclaredSource>> {
    async move {
        let path = declared.required("path", "a file, folder or glob to read")?;
        let location = Location::parse(path.value).map_err(|e| path.error(e))?;
        let format = format(declared, path.value, None)?;
        let schema = declared.schema().await?;
        let batch_size = declared.batch_size()?;
        let watching = declared
            .get("watch")
            .map(|v| v.boolean())
            .transpose()?
            .unwrap_or(false);
        let interval = declared
            .get("watch.interval")
            .map(|v| v.duration())
            .transpose()?
            .unwrap_or(DEFAULT_WATCH_INTERVAL);
        let on_error = declared.on_error(None)?;
        let source = FileSource::try_new(FileSourceConfig {
            name: declared.name.to_string(),
            location,
            format,
            schema,
            batch_size,
            watch: watching.then_some(interval),
            on_error,
        })
        .await?;
        // Files are read only.
        Ok(DeclaredSource {
            source: Arc::new(source),
            writer: None,
        })
    }
    .boxed()
}

/// A `file_sink`: a file, or a folder of part files.
pub(crate) fn sink<'a>(
    declared: &'a Declaration<'a>,
) -> BoxFuture<'a, Result<Box<dyn SinkConfig>>> {
    async move {
        let path = declared.required("path", "the file or folder to write")?;
        // JSON lines unless the options or the path say otherwise.
        let format = format(declared, path.value, Some(FileFormat::Json))?;
        let rollover = declared
            .get("rollover.interval")
            .map(|v| v.duration())
            .transpose()?
            .unwrap_or(DEFAULT_ROLLOVER);
        let sink: Box<dyn SinkConfig> = Box::new(FileSinkConfig {
            name: declared.name.to_string(),
            path: path.value.into(),
            format,
            rollover,
            part_prefix: "part".into(),
        });
        Ok(sink)
    }
    .boxed()
}

/// The format named by `'<name>.format'`, or implied by the path's extension, or `default`.
fn format(declared: &Declaration, path: &str, default: Option<FileFormat>) -> Result<FileFormat> {
    let format = match declared.get("format") {
        Some(value) => value.one_of(&["csv", "json", "parquet"])?,
        None => {
            let extension = path.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
            match extension.as_str() {
                "csv" | "tsv" => "csv".to_string(),
                "json" | "jsonl" | "ndjson" => "json".to_string(),
                "parquet" => "parquet".to_string(),
                _ => {
                    return default.ok_or_else(|| {
                        ConnectorError::option(
                            format!(
                                "missing option '{}': 'csv', 'json' or 'parquet' (the path '{path}' does not say)",
                                declared.key("format")
                            ),
                            None,
                        )
                    });
                }
            }
        }
    };
    Ok(match format.as_str() {
        "csv" => {
            let mut csv = CsvOptions::default();
            if path.to_ascii_lowercase().ends_with(".tsv") {
                csv.delimiter = b'\t';
            }
            if let Some(value) = declared.get("delimiter") {
                csv.delimiter = value.delimiter()?;
            }
            if let Some(value) = declared.get("has_header") {
                csv.has_header = value.boolean()?;
            }
            FileFormat::Csv(csv)
        }
        "json" => FileFormat::Json,
        _ => FileFormat::Parquet,
    })
}
