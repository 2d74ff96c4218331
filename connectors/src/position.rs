//! Where a source reader stands, to checkpoint it and to resume from it.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};

use crate::error::{ConnectorError, Result};

/// How far one part of a source (a file, a Kafka partition) has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartPosition {
    /// The file's path, or the partition number.
    pub part: String,
    /// The byte offset of the next record of a text file, or the next offset of a partition.
    pub offset: i64,
    /// A text file's line number at `offset`, or the rows read of a Parquet file.
    pub line: i64,
    /// The file's size when it was read to its end (0 while it is being read).
    pub size: i64,
}

/// Where a source reader stands: every part it has read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePosition {
    /// Each part read so far.
    pub parts: Vec<PartPosition>,
}

/// What a source's consumer group committed last: its offsets as a position, and the metadata
/// committed with each partition's offset (in the order of `position.parts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommittedPosition {
    /// The committed offsets.
    pub position: SourcePosition,
    /// The metadata committed with each of them.
    pub metadata: Vec<String>,
}

impl SourcePosition {
    /// The position as a batch, one row per part.
    ///
    /// ```
    /// use ferris_connectors::{PartPosition, SourcePosition};
    /// let position = SourcePosition {
    ///     parts: vec![PartPosition { part: "0".into(), offset: 42, line: 0, size: 0 }],
    /// };
    /// assert_eq!(SourcePosition::from_batch(&position.to_batch()).unwrap(), position);
    /// ```
    pub fn to_batch(&self) -> RecordBatch {
        let numbers = |f: fn(&PartPosition) -> i64| {
            Arc::new(Int64Array::from_iter_values(self.parts.iter().map(f)))
        };
        RecordBatch::try_new(
            position_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    self.parts.iter().map(|p| p.part.as_str()),
                )),
                numbers(|p| p.offset),
                numbers(|p| p.line),
                numbers(|p| p.size),
            ],
        )
        .expect("columns match the schema")
    }

    /// Reads a position back from [`SourcePosition::to_batch`]'s batch.
    pub fn from_batch(batch: &RecordBatch) -> Result<Self> {
        let expected = position_schema();
        let fits = batch.num_columns() == expected.fields().len()
            && batch
                .schema()
                .fields()
                .iter()
                .zip(expected.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !fits {
            return Err(ConnectorError::Config(format!(
                "a checkpointed source position has columns {:?}, not part, offset, line, size",
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
            )));
        }
        let parts = batch.column(0).as_string::<i32>();
        let number = |i: usize, row: usize| batch.column(i).as_primitive::<Int64Type>().value(row);
        Ok(Self {
            parts: (0..batch.num_rows())
                .filter(|&row| parts.is_valid(row))
                .map(|row| PartPosition {
                    part: parts.value(row).to_string(),
                    offset: number(1, row),
                    line: number(2, row),
                    size: number(3, row),
                })
                .collect(),
        })
    }
}

fn position_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("part", DataType::Utf8, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("line", DataType::Int64, false),
        Field::new("size", DataType::Int64, false),
    ]))
}
