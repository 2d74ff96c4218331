//! Where something is in the SQL text: every message about a statement names its line and
//! column. The type is the connectors' (their option errors name positions too).

use datafusion::sql::sqlparser::tokenizer::Location;

pub use ferris_connectors::options::Position;

/// The position of a parser location.
pub(crate) fn at(location: Location) -> Position {
    Position {
        line: location.line,
        column: location.column,
    }
}
