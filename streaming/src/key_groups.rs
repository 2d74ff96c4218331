//! Key groups: how the keys of a parallel operator's state are divided among its instances.
//!
//! A key's group is a stable hash of its columns modulo [`KEY_GROUPS`], a number fixed for every
//! job (so it is also the most instances a job can run as). Group `g` belongs to instance
//! `g * n / KEY_GROUPS` of `n`, so each instance owns a contiguous range of groups, as Flink
//! assigns key groups to subtasks. A hash exchange routes a row to the instance that owns its key's
//! group, and an instance's snapshot holds only its groups' keys: restored at another
//! parallelism, an instance reads the snapshots of the old instances whose groups overlap
//! its own, and keeps the rows of its groups.

use std::ops::Range;

use std::hash::{BuildHasherDefault, Hasher};

use fnv::FnvHasher;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::common::hash_utils::create_hashes_with_hasher;
use datafusion::error::Result;

/// How many key groups there are, and so the most instances an operator runs as.
pub const KEY_GROUPS: usize = 256;

/// Which of its operator's instances an operator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorInstance {
    /// From 0.
    pub index: usize,
    /// How many instances the operator runs as.
    pub count: usize,
}

impl OperatorInstance {
    /// The one instance of an operator that is not parallel.
    pub const ONLY: Self = Self { index: 0, count: 1 };
}

/// The key groups `instance` owns.
pub fn key_group_range(instance: OperatorInstance) -> Range<usize> {
    // The groups g with g * count / KEY_GROUPS == index: from ceil(index * KEY_GROUPS / count).
    let count = instance.count.max(1);
    let start = |index: usize| (index * KEY_GROUPS).div_ceil(count);
    start(instance.index)..start(instance.index + 1)
}

/// Which of `count` instances owns `group`.
fn owner(group: usize, count: usize) -> usize {
    group * count / KEY_GROUPS
}

/// FNV-1a: key groups are kept in checkpoints and must come out the same on every machine
/// and in every version, which a seeded fast hash (DataFusion's, ahash) does not promise.
/// (Numbers are hashed in native byte order: the same on every little-endian machine.)
#[derive(Default)]
struct StableHasher(FnvHasher);

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// Mixed (murmur3's finalizer), so that its low bits, the key group, depend on every
    /// byte.
    fn finish(&self) -> u64 {
        let mut h = self.0.finish();
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Per row, the key group of the key in `columns` (a row's key is all of them).
fn key_groups_of(columns: &[ArrayRef], rows: usize) -> Result<impl Iterator<Item = usize>> {
    let mut hashes = vec![0u64; rows];
    create_hashes_with_hasher(
        columns,
        &BuildHasherDefault::<StableHasher>::default(),
        &mut hashes,
    )?;
    Ok(hashes
        .into_iter()
        .map(|hash| (hash % KEY_GROUPS as u64) as usize))
}

/// Per instance of `count`, the rows whose key (`columns`, of rows of a batch of `rows`)
/// falls to it: row indices, in their order.
pub(crate) fn route(columns: &[ArrayRef], rows: usize, count: usize) -> Result<Vec<Vec<u32>>> {
    // Room for an even share and a little more: most keys spread evenly, and a vector
    // that grows copies what it holds.
    let share = (rows + rows / 8) / count.max(1) + 1;
    let mut routed: Vec<Vec<u32>> = (0..count).map(|_| Vec::with_capacity(share)).collect();
    for (row, group) in key_groups_of(columns, rows)?.enumerate() {
        routed[owner(group, count)].push(row as u32);
    }
    Ok(routed)
}

/// The rows of `batch` whose key (`columns`, one value per row of it) belongs to
/// `instance`'s key groups.
pub(crate) fn rows_of_instance(
    batch: &RecordBatch,
    columns: &[ArrayRef],
    instance: OperatorInstance,
) -> Result<RecordBatch> {
    let own = key_group_range(instance);
    let rows: UInt32Array = key_groups_of(columns, batch.num_rows())?
        .enumerate()
        .filter(|(_, group)| own.contains(group))
        .map(|(row, _)| row as u32)
        .collect();
    Ok(arrow::compute::take_record_batch(batch, &rows)?)
}

/// Whether the snapshot of `old` (an instance of a checkpoint at another parallelism) may
/// hold keys of `new`: their key groups overlap.
pub(crate) fn overlaps(old: OperatorInstance, new: OperatorInstance) -> bool {
    let (old, new) = (key_group_range(old), key_group_range(new));
    old.start < new.end && new.start < old.end
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};

    use super::*;

    fn instance(index: usize, count: usize) -> OperatorInstance {
        OperatorInstance { index, count }
    }

    #[test]
    fn the_instances_own_every_group_once_in_ranges() {
        for count in [1, 2, 3, 7, 256] {
            let mut owned = Vec::new();
            for index in 0..count {
                let range = key_group_range(instance(index, count));
                assert!(!range.is_empty(), "{index} of {count}");
                assert!(range.clone().all(|g| owner(g, count) == index));
                owned.extend(range);
            }
            assert_eq!(owned, (0..KEY_GROUPS).collect::<Vec<_>>(), "{count}");
        }
    }

    #[test]
    fn routing_and_restoring_agree_at_any_parallelism() {
        let symbols: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..500).map(|i| format!("S{i}")),
        ));
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values(0..500));
        let batch =
            RecordBatch::try_from_iter([("symbol", symbols.clone()), ("v", values)]).unwrap();
        for count in [1, 2, 3, 4] {
            let routed = route(std::slice::from_ref(&symbols), 500, count).unwrap();
            let mut seen = 0;
            for (index, rows) in routed.iter().enumerate() {
                let kept = rows_of_instance(
                    &batch,
                    std::slice::from_ref(&symbols),
                    instance(index, count),
                )
                .unwrap();
                let expected: Vec<i64> = rows.iter().map(|&r| i64::from(r)).collect();
                let kept: Vec<i64> = kept
                    .column(1)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec();
                assert_eq!(kept, expected, "{index} of {count}");
                seen += rows.len();
            }
            assert_eq!(seen, 500);
        }
    }

    /// The groups are part of checkpoints: these values must never change.
    #[test]
    fn key_groups_are_the_same_everywhere() {
        let symbols: ArrayRef = Arc::new(StringArray::from(vec!["AAPL", "MSFT", "", "NVDA"]));
        let numbers: ArrayRef = Arc::new(Int64Array::from(vec![0, 1, -1, 1 << 40]));
        let groups = |columns: &[ArrayRef]| key_groups_of(columns, 4).unwrap().collect::<Vec<_>>();
        assert_eq!(groups(std::slice::from_ref(&symbols)), [53, 227, 215, 147]);
        assert_eq!(groups(std::slice::from_ref(&numbers)), [158, 38, 46, 99]);
    }

    #[test]
    fn a_new_instance_reads_only_the_old_instances_whose_groups_overlap() {
        // 2 -> 3: the middle one of three overlaps both old ones, the others one each.
        let reads = |index| {
            (0..2)
                .filter(|&old| overlaps(instance(old, 2), instance(index, 3)))
                .collect::<Vec<_>>()
        };
        assert_eq!(reads(0), vec![0]);
        assert_eq!(reads(1), vec![0, 1]);
        assert_eq!(reads(2), vec![1]);
        assert!(!overlaps(instance(0, 4), instance(1, 2)));
    }
}
