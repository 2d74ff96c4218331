//! What a session knows by name: sources, streams and tables, for SHOW and DESCRIBE.

use std::collections::BTreeMap;

use arrow::datatypes::SchemaRef;

use crate::job::JobKind;

/// What a catalog entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A source declared in a `WITH` clause.
    Source,
    /// The result of `CREATE STREAM`.
    Stream,
    /// The result of `CREATE TABLE`.
    Table,
}

impl EntryKind {
    /// The lower-case name shown by SHOW.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Stream => "stream",
            Self::Table => "table",
        }
    }
}

impl From<JobKind> for EntryKind {
    /// What a job's output is in the catalog.
    fn from(kind: JobKind) -> Self {
        match kind {
            JobKind::Stream => Self::Stream,
            JobKind::Table => Self::Table,
        }
    }
}

/// A named stream, table or source.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// The connector behind it (`file_source`, `file_sink`).
    pub connector: String,
    /// Where its data is (a path).
    pub location: String,
    /// The format of its data.
    pub format: String,
    /// Whether its rows are per event-time window.
    pub windowed: bool,
    /// Its key columns (tables).
    pub key: Vec<String>,
    /// Its columns.
    pub schema: SchemaRef,
    /// Where `INSERT INTO` it writes: a stream's sink, a Kafka source's topic (none: a file
    /// source, which is read only).
    pub writer: Option<Box<dyn ferris_connectors::SinkConfig>>,
    /// The columns its connector adds to each record (a Kafka message's key, timestamp,
    /// ...), which `INSERT INTO` it does not give.
    pub metadata_columns: Vec<String>,
}

/// The entries of a session, by name.
#[derive(Debug, Default)]
pub struct Catalog {
    entries: BTreeMap<String, CatalogEntry>,
}

impl Catalog {
    /// Adds or replaces an entry.
    pub fn insert(&mut self, entry: CatalogEntry) {
        self.entries.insert(entry.name.clone(), entry);
    }

    /// Removes the entry called `name`.
    pub fn remove(&mut self, name: &str) -> Option<CatalogEntry> {
        self.entries.remove(name)
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.get(name)
    }

    /// All entries, by name.
    pub fn entries(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.entries.values()
    }
}
