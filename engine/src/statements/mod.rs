//! FerrisStreams statements: DataFusion's SQL plus our streaming statements and clauses.
//!
//! Each kind of statement is one file here that reads its own tokens and executes itself
//! ([`StatementKind`]); [`STATEMENTS`] lists them, each with the keywords it starts with.
//! Adding a statement is a file and a line in that list.

pub mod alter_job;
pub mod clauses;
pub mod create_function;
pub mod create_job;
pub mod describe;
pub mod drop;
pub mod drop_function;
pub mod explain;
pub mod hints;
pub mod insert;
pub mod job_command;
pub mod kind;
pub mod parser;
pub mod query;
pub mod show;
pub mod show_create_job;
pub mod show_job_status;
pub mod show_topic_details;
pub mod streaming_query;

pub use hints::Hints;
pub use kind::{Execution, Statement, StatementKind, StatementOutput};

use crate::error::Result;
use parser::StatementSyntax;

/// Every statement, by the keywords it starts with.
pub static STATEMENTS: &[StatementSyntax] = &[
    create_job::SYNTAX,
    create_function::SYNTAX,
    insert::SYNTAX,
    query::SYNTAX,
    explain::SYNTAX,
    show::SYNTAX,
    show_job_status::SYNTAX,
    show_create_job::SYNTAX,
    show_topic_details::SYNTAX,
    describe::SYNTAX,
    drop::SYNTAX,
    drop_function::SYNTAX,
    job_command::SYNTAX,
    alter_job::SYNTAX,
];

/// Splits `text` into statements and parses each.
pub fn parse_statements(text: &str) -> Result<Vec<Statement>> {
    parser::parse_statements(text, STATEMENTS)
}

#[cfg(test)]
mod tests;
