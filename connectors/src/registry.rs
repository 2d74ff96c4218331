//! The connector types, by the name a statement gives them in `'<name>.type'`. Each type
//! reads its own options from its [`Declaration`]; adding a connector adds one line here.

use futures::future::BoxFuture;

use crate::declaration::{Declaration, DeclaredSource};
use crate::error::Result;
use crate::sink::SinkConfig;
use crate::{file, kafka};

/// Opens a source from its declaration (its schema settled, its data found).
pub type OpenSource = for<'a> fn(&'a Declaration<'a>) -> BoxFuture<'a, Result<DeclaredSource>>;
/// Reads a sink's settings from its declaration; the job opens it.
pub type DeclareSink =
    for<'a> fn(&'a Declaration<'a>) -> BoxFuture<'a, Result<Box<dyn SinkConfig>>>;

/// What a connector type makes of its declaration.
#[derive(Clone, Copy)]
pub enum ConnectorKind {
    /// A source to read.
    Source(OpenSource),
    /// A sink to write.
    Sink(DeclareSink),
}

/// Every connector type, by name, in the order error messages list them.
const CONNECTORS: &[(&str, ConnectorKind)] = &[
    ("file_source", ConnectorKind::Source(file::options::source)),
    ("file_sink", ConnectorKind::Sink(file::options::sink)),
    (
        "kafka_source",
        ConnectorKind::Source(kafka::options::source),
    ),
    ("kafka_sink", ConnectorKind::Sink(kafka::options::sink)),
];

/// The names of every connector type, for `'<name>.type'`.
pub fn connector_names() -> Vec<&'static str> {
    CONNECTORS.iter().map(|(name, _)| *name).collect()
}

/// The connector type called `name` (as [`connector_names`] spells it).
pub fn connector(name: &str) -> Option<ConnectorKind> {
    CONNECTORS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, kind)| *kind)
}
