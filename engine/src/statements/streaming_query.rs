//! A query with our streaming clauses taken out: the SQL DataFusion plans, and what the
//! clauses said (window, emit mode, `WITH` options, primary key).

use crate::position::Position;
use ferris_connectors::options::OptionEntry;

/// When an aggregate's results are emitted (the operator's own setting).
pub use ferris_streaming::EmitMode;

/// A `WINDOW <KIND>(args)` clause, its arguments as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowClause {
    /// `TUMBLING`, `SLIDING` (or `HOPPING`) or `SESSION`, upper-cased.
    pub kind: String,
    /// The argument texts, trimmed.
    pub args: Vec<String>,
    /// Where the clause starts.
    pub position: Position,
    /// Where the SELECT it windows starts (a query's windows may nest, one per SELECT).
    pub select: Position,
}

/// A query with our streaming clauses taken out.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamingQuery {
    /// The SQL for DataFusion: the original text with everything else blanked, so that
    /// positions in it are positions in the file.
    pub sql: String,
    /// Where the query starts.
    pub position: Position,
    /// The `WINDOW` clauses, in the order they are written.
    pub windows: Vec<WindowClause>,
    /// The `EMIT` clause.
    pub emit: Option<EmitMode>,
    /// The `WITH (...)` options, in order.
    pub options: Vec<OptionEntry>,
    /// Select items marked `PRIMARY KEY`, by output name.
    pub primary_key: Vec<String>,
}
