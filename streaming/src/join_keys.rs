//! Join keys, for the joins of this crate: evaluated on either side in one row format and
//! hashed, and an index of kept rows by them.

use std::collections::HashMap;
use std::hash::BuildHasher;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{Row, RowConverter, Rows, SortField};
use datafusion::error::Result;
use datafusion::physical_expr::PhysicalExprRef;
use foldhash::fast::RandomState;

/// A join's key pairs (left, right), and how both sides' keys are encoded.
#[derive(Debug)]
pub(crate) struct JoinKeys {
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    /// The left side's key types, which the right side's keys are cast to.
    types: Vec<DataType>,
    converter: RowConverter,
    hasher: RandomState,
}

/// One batch's join keys.
#[derive(Debug)]
pub(crate) struct BatchKeys {
    /// In row format, comparable across batches and sides.
    pub rows: Rows,
    /// The rows with a null key part, which match nothing.
    nulls: Option<NullBuffer>,
}

impl BatchKeys {
    /// Bytes it takes.
    pub fn size(&self) -> usize {
        self.rows.size() + self.nulls.as_ref().map_or(0, |n| n.buffer().len())
    }
}

impl JoinKeys {
    /// The keys `on`, the left side read with `left`.
    pub fn try_new(on: Vec<(PhysicalExprRef, PhysicalExprRef)>, left: &SchemaRef) -> Result<Self> {
        let types = on
            .iter()
            .map(|(key, _)| key.data_type(left))
            .collect::<Result<Vec<_>>>()?;
        let converter = RowConverter::new(types.iter().cloned().map(SortField::new).collect())?;
        Ok(Self {
            on,
            types,
            converter,
            hasher: RandomState::default(),
        })
    }

    /// The key pairs, (left, right).
    pub fn on(&self) -> &[(PhysicalExprRef, PhysicalExprRef)] {
        &self.on
    }

    /// The keys of a batch of side `side` (0 left, 1 right).
    pub fn of(&self, side: usize, batch: &RecordBatch) -> Result<BatchKeys> {
        let columns = self
            .on
            .iter()
            .zip(&self.types)
            .map(|(pair, key_type)| {
                let expr = if side == 0 { &pair.0 } else { &pair.1 };
                let key = expr.evaluate(batch)?.into_array(batch.num_rows())?;
                Ok(if key.data_type() == key_type {
                    key
                } else {
                    cast(&key, key_type)?
                })
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let nulls: Vec<Option<NullBuffer>> = columns.iter().map(|k| k.logical_nulls()).collect();
        Ok(BatchKeys {
            rows: self.converter.convert_columns(&columns)?,
            nulls: NullBuffer::union_many(nulls.iter().map(Option::as_ref)),
        })
    }

    /// The hash of each row's key; `None` for a key with a null part.
    pub fn hashes(&self, keys: &BatchKeys) -> Vec<Option<u64>> {
        (0..keys.rows.num_rows())
            .map(|row| {
                let null = keys.nulls.as_ref().is_some_and(|n| n.is_null(row));
                (!null).then(|| self.hasher.hash_one(keys.rows.row(row).as_ref()))
            })
            .collect()
    }
}

/// Kept rows, as (batch, row), by their keys' hashes. It allocates nothing per row: a hash
/// leads to the newest row with it, and each row to the one before it with the same hash.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    newest: HashMap<u64, u32, RandomState>,
    rows: Vec<IndexedRow>,
}

#[derive(Debug, Clone, Copy)]
struct IndexedRow {
    batch: u32,
    row: u32,
    /// The row indexed before this one with the same hash, or `NONE`.
    previous: u32,
}

const NONE: u32 = u32::MAX;

impl KeyIndex {
    /// Bytes per indexed row.
    pub const ROW_SIZE: usize = size_of::<IndexedRow>() + size_of::<(u64, u32)>();

    pub fn insert(&mut self, hash: u64, batch: usize, row: usize) {
        let at = self.rows.len() as u32;
        let previous = self.newest.insert(hash, at).unwrap_or(NONE);
        self.rows.push(IndexedRow {
            batch: batch as u32,
            row: row as u32,
            previous,
        });
    }

    /// Adds to `found` the (batch, row) of every indexed row whose key is `key` (hashed to
    /// `hash`), where `keys_of` gives a batch's keys (`None` for a batch let go); how many.
    pub fn matches<'a>(
        &self,
        hash: u64,
        key: Row<'_>,
        keys_of: impl Fn(usize) -> Option<&'a Rows>,
        found: &mut Vec<(usize, usize)>,
    ) -> usize {
        let before = found.len();
        let mut at = self.newest.get(&hash).copied().unwrap_or(NONE);
        while at != NONE {
            let indexed = self.rows[at as usize];
            let (batch, row) = (indexed.batch as usize, indexed.row as usize);
            if keys_of(batch).is_some_and(|keys| keys.row(row) == key) {
                found.push((batch, row));
            }
            at = indexed.previous;
        }
        found.len() - before
    }

    pub fn clear(&mut self) {
        self.newest.clear();
        self.rows.clear();
    }
}
