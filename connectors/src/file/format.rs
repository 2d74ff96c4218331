//! File formats and their options.

use std::fmt;

/// Options of the CSV format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field delimiter, `,` by default.
    pub delimiter: u8,
    /// Whether the first line of every file names the columns (default true).
    pub has_header: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: b',',
            has_header: true,
        }
    }
}

/// How records are laid out in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma (or other delimiter) separated values.
    Csv(CsvOptions),
    /// One JSON object per line.
    Json,
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// The usual file extension of the format, without the dot.
    pub fn extension(&self) -> &'static str {
        match self {
            Self::Csv(_) => "csv",
            Self::Json => "jsonl",
            Self::Parquet => "parquet",
        }
    }
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Csv(_) => "csv",
            Self::Json => "json",
            Self::Parquet => "parquet",
        })
    }
}
