//! Sinks named in `WITH`, resolved into connectors.

use std::time::Duration;

use ferris_connectors::{FileFormat, FileSinkConfig};

use crate::error::Result;
use crate::options::Options;
use crate::source::resolve_format;

/// How long a folder sink writes one part file unless `'<name>.rollover.interval'` says.
const DEFAULT_ROLLOVER: Duration = Duration::from_secs(60);

/// Resolves the file sink `name` from its options.
pub(crate) fn resolve_file_sink(name: &str, options: &Options) -> Result<FileSinkConfig> {
    let path = options.required(&format!("{name}.path"), "the file or folder to write")?;
    // JSON lines unless the options or the path say otherwise.
    let format = resolve_format(name, options, path.value, Some(FileFormat::Json))?;
    let rollover = options
        .get(&format!("{name}.rollover.interval"))
        .map(|v| v.duration())
        .transpose()?
        .unwrap_or(DEFAULT_ROLLOVER);
    Ok(FileSinkConfig {
        name: name.to_string(),
        path: path.value.into(),
        format,
        rollover,
    })
}
