//! Files as sources and sinks: CSV, JSON lines and Parquet, local or through object_store.
//!
//! A [`FileSource`] lists its location (a file, a folder, a glob), splits text files into
//! records and decodes them with arrow's own CSV / JSON decoders a batch at a time, reads
//! Parquet a row group at a time, and may keep watching for new files and appended records.
//! A [`FileSink`] writes a file, or part files into a folder, committed atomically.

pub(crate) mod format;
pub(crate) mod location;
pub(crate) mod options;
pub(crate) mod parquet_reader;
pub(crate) mod sink;
pub(crate) mod source;

pub use format::{CsvOptions, FileFormat};
pub use location::Location;
pub use sink::{FileSink, FileSinkConfig};
pub use source::{FileSource, FileSourceConfig, FileSourceReader, RANGE_TAG};
