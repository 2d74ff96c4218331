//! FerrisStreams engine: statements in, continuous results out.
//!
//! [`Session`] takes the statements of a file (our streaming SQL, see [`statements`]),
//! resolves the sources and sinks named in their `WITH` options into connectors, plans the
//! query with DataFusion, and runs it as a job that writes to its sink.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use ferris_engine::{Session, StatementOutput};
//! let mut session = Session::new();
//! let statements = session.parse("SELECT 1 + 1 AS two").unwrap();
//! let StatementOutput::Rows(rows) = session.execute(&statements[0]).await.unwrap() else {
//!     unreachable!()
//! };
//! let batches: Vec<_> = datafusion::physical_plan::common::collect(rows).await.unwrap();
//! assert_eq!(batches[0].num_rows(), 1);
//! # })
//! ```

pub mod catalog;
pub mod cluster;
mod engine;
pub mod error;
pub mod job;
mod late;
mod listing;
mod placeholders;
pub mod planner;
pub mod position;
mod prepare;
pub mod python_aggregate;
pub mod python_function;
mod python_worker;
mod session;
pub mod source;
pub mod sql_function;
pub mod statements;
pub mod user_function;

pub use engine::{CATALOG, KAFKA_ENV, SCHEMA};
pub use error::{EngineError, Result};
pub use job::{JobProgress, RunningJob};
pub use session::Session;
pub use statements::{Statement, StatementOutput};
