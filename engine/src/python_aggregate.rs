//! An aggregate function written in Python (`CREATE AGGREGATE FUNCTION ... LANGUAGE python
//! AS 'def name(...)'`), in the shape of Flink's and Spark's pandas aggregate functions: the
//! function is given all of a group's values at once, one pyarrow array per parameter, and
//! returns the group's value.
//!
//! A group's values are kept as they come (the state is one list per parameter), so the
//! state merges by putting lists together: windows that slide or merge (sessions), partial
//! states crossing processes and checkpoints all work as for a built-in aggregate. When
//! groups are emitted (a window closing), all of them go to the worker in one batch, one row
//! per group: one round trip per emission, one Python call per group.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, ListArray, new_empty_array};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use datafusion::physical_expr_common::utils::scatter;

use crate::python_worker::{CallShape, PythonCode, PythonDefinition};

/// An aggregate function whose body is Python code defining a function of its name.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PythonAggregate {
    name: String,
    types: Vec<DataType>,
    definition: String,
    signature: Signature,
    code: Arc<PythonCode>,
}

impl PythonAggregate {
    /// The aggregate `definition` declares. Its worker starts now, on no groups: code that
    /// cannot load, or that defines no function of that name, is refused here.
    pub fn try_new(definition: PythonDefinition) -> std::result::Result<Self, String> {
        let (types, code) = definition.load(CallShape::Aggregate)?;
        let function = Self {
            name: definition.name,
            code: Arc::new(code),
            signature: Signature::exact(types.clone(), Volatility::Immutable),
            types,
            definition: definition.statement,
        };
        let buffer = function.buffer();
        let no_groups = buffer.gather(&[]).map_err(|e| e.to_string())?;
        function
            .code
            .call(&no_groups, 0)
            .map_err(|e| e.to_string())?;
        Ok(function)
    }

    /// `function` as an aggregate function written in Python, if it is one.
    pub fn of(function: &AggregateUDF) -> Option<&Self> {
        function.inner().downcast_ref()
    }

    /// The statement that made it.
    pub fn definition(&self) -> &str {
        &self.definition
    }

    fn buffer(&self) -> GroupValues {
        GroupValues {
            code: self.code.clone(),
            types: self.types.clone(),
            chunks: Vec::new(),
            groups: Vec::new(),
        }
    }
}

impl AggregateUDFImpl for PythonAggregate {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.code.returns().clone())
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let mut group = self.buffer();
        group.add_groups(1);
        Ok(Box::new(OneGroup(group)))
    }

    /// One list of values per parameter. Called when the plan is made: what the function
    /// cannot do is refused then.
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        if args.is_distinct || !args.ordering_fields.is_empty() {
            return plan_err!(
                "Python aggregate function '{}' takes neither DISTINCT nor ORDER BY: it is given all of a group's values",
                self.name
            );
        }
        Ok(self
            .types
            .iter()
            .enumerate()
            .map(|(i, data_type)| {
                let item = Field::new_list_field(data_type.clone(), true);
                let name = format_state_name(args.name, &format!("values{i}"));
                Arc::new(Field::new(name, DataType::List(Arc::new(item)), true))
            })
            .collect())
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(self.buffer()))
    }
}

/// Where one of a group's values is: which chunk, which row of it.
type ValueAt = (usize, usize);

/// Chunks of values kept before they are put together into one.
const MAX_CHUNKS: usize = 64;

/// Every group's values, kept where they came in: the argument arrays of each input batch
/// (a chunk) and, per group, the places of its values in them.
#[derive(Debug)]
struct GroupValues {
    code: Arc<PythonCode>,
    types: Vec<DataType>,
    /// Per chunk, one array per parameter.
    chunks: Vec<Vec<ArrayRef>>,
    groups: Vec<Vec<ValueAt>>,
}

impl GroupValues {
    fn add_groups(&mut self, total: usize) {
        if self.groups.len() < total {
            self.groups.resize_with(total, Vec::new);
        }
    }

    /// The values of `groups` as one list array per parameter, a row per group.
    fn gather(&self, groups: &[Vec<ValueAt>]) -> Result<Vec<ArrayRef>> {
        let offsets = OffsetBuffer::from_lengths(groups.iter().map(Vec::len));
        let places: Vec<ValueAt> = groups.iter().flatten().copied().collect();
        (0..self.types.len())
            .map(|parameter| {
                let values = match self.chunks.is_empty() {
                    true => new_empty_array(&self.types[parameter]),
                    false => {
                        let chunks: Vec<&dyn Array> = self
                            .chunks
                            .iter()
                            .map(|chunk| chunk[parameter].as_ref())
                            .collect();
                        arrow::compute::interleave(&chunks, &places)?
                    }
                };
                let item = Field::new_list_field(self.types[parameter].clone(), true);
                let list = ListArray::try_new(Arc::new(item), offsets.clone(), values, None)?;
                Ok(Arc::new(list) as ArrayRef)
            })
            .collect()
    }

    /// Takes the groups `emit_to` says out, keeping the values of the others in one chunk
    /// once most of what the chunks hold is gone.
    fn take(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let taken = emit_to.take_needed(&mut self.groups);
        let lists = self.gather(&taken)?;
        let kept: usize = self.groups.iter().map(Vec::len).sum();
        let held: usize = self.chunks.iter().map(|c| c[0].len()).sum();
        if kept == 0 {
            self.chunks.clear();
        } else if kept * 2 < held {
            self.compact()?;
        }
        Ok(lists)
    }

    /// Puts the values of every group into one chunk once they are spread over many (a
    /// session's values come a row at a time).
    fn compact_when_scattered(&mut self) -> Result<()> {
        match self.chunks.len() > MAX_CHUNKS {
            true => self.compact(),
            false => Ok(()),
        }
    }

    /// Puts the values of every group into one chunk, in group order.
    fn compact(&mut self) -> Result<()> {
        let lists = self.gather(&self.groups)?;
        self.chunks = vec![
            lists
                .iter()
                .map(|l| l.as_list::<i32>().values().clone())
                .collect(),
        ];
        let mut at = 0;
        for group in &mut self.groups {
            for place in group.iter_mut() {
                *place = (0, at);
                at += 1;
            }
        }
        Ok(())
    }

    /// The function over the lists of a row per group; a group without values (all of
    /// them filtered out) is NULL, as a built-in aggregate's, without a call.
    fn call(&self, lists: &[ArrayRef]) -> Result<ArrayRef> {
        let first = lists[0].as_list::<i32>();
        let valued: BooleanArray = (0..first.len())
            .map(|g| Some(first.value_length(g) > 0))
            .collect();
        let groups = valued.true_count();
        if groups == first.len() {
            return self.code.call(lists, groups);
        }
        let lists = lists
            .iter()
            .map(|list| arrow::compute::filter(list, &valued))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let called = match groups {
            0 => new_empty_array(self.code.returns()),
            _ => self.code.call(&lists, groups)?,
        };
        // The groups with values get the results in order, the others NULL.
        scatter(&valued, called.as_ref())
    }
}

impl GroupsAccumulator for GroupValues {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.add_groups(total_num_groups);
        let chunk = self.chunks.len();
        for (row, group) in group_indices.iter().enumerate() {
            if opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row)) {
                self.groups[*group].push((chunk, row));
            }
        }
        self.chunks.push(values.to_vec());
        self.compact_when_scattered()
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let lists = self.take(emit_to)?;
        self.call(&lists)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.take(emit_to)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.add_groups(total_num_groups);
        let lists: Vec<&ListArray> = values.iter().map(|v| v.as_list::<i32>()).collect();
        // The lists of one row hold one group's values of every parameter, side by side.
        if lists.iter().any(|l| l.offsets() != lists[0].offsets()) {
            return Err(DataFusionError::Internal(
                "a Python aggregate's state has lists of different lengths".into(),
            ));
        }
        let chunk = self.chunks.len();
        let offsets = lists[0].offsets();
        // Only the values the lists use are kept (a state may be a slice of a larger one).
        let (first, last) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
        for (row, group) in group_indices.iter().enumerate() {
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            self.groups[*group].extend((start..end).map(|at| (chunk, at - first)));
        }
        self.chunks.push(
            lists
                .iter()
                .map(|l| l.values().slice(first, last - first))
                .collect(),
        );
        self.compact_when_scattered()
    }

    /// Each row as the state of a group of its one value (none where filtered out).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |v| v.len());
        let passes = |row: usize| opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
        let offsets = OffsetBuffer::from_lengths((0..rows).map(|row| usize::from(passes(row))));
        values
            .iter()
            .zip(&self.types)
            .map(|(values, data_type)| {
                let kept = match opt_filter {
                    Some(filter) => arrow::compute::filter(values, filter)?,
                    None => values.clone(),
                };
                let item = Field::new_list_field(data_type.clone(), true);
                let list = ListArray::try_new(Arc::new(item), offsets.clone(), kept, None)?;
                Ok(Arc::new(list) as ArrayRef)
            })
            .collect()
    }

    fn size(&self) -> usize {
        let chunks: usize = self
            .chunks
            .iter()
            .flatten()
            // What the values take, not the buffers they may share with other groups'.
            .map(|a| a.to_data().get_slice_memory_size().unwrap_or(0))
            .sum();
        let places: usize = self.groups.iter().map(|g| g.capacity()).sum();
        chunks + places * std::mem::size_of::<ValueAt>()
    }
}

/// The accumulator of one group (a session window's, DataFusion's own aggregates').
#[derive(Debug)]
struct OneGroup(GroupValues);

impl OneGroup {
    fn lists(&self) -> Result<Vec<ArrayRef>> {
        self.0.gather(&self.0.groups)
    }
}

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values.first().map_or(0, |v| v.len());
        self.0.update_batch(values, &vec![0; rows], None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states.first().map_or(0, |v| v.len());
        GroupsAccumulator::merge_batch(&mut self.0, states, &vec![0; rows], 1)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.lists()?
            .iter()
            .map(|list| ScalarValue::try_from_array(list, 0))
            .collect()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let result = self.0.call(&self.lists()?)?;
        ScalarValue::try_from_array(&result, 0)
    }

    fn size(&self) -> usize {
        GroupsAccumulator::size(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;

    use super::*;

    fn values(types: &[DataType]) -> GroupValues {
        let code = PythonCode::new("f", "", CallShape::Aggregate, DataType::Int64);
        GroupValues {
            code: Arc::new(code),
            types: types.to_vec(),
            chunks: Vec::new(),
            groups: Vec::new(),
        }
    }

    fn ints(values: &[i64]) -> ArrayRef {
        Arc::new(Int64Array::from(values.to_vec()))
    }

    /// Each list row's values.
    fn rows(list: &ArrayRef) -> Vec<Vec<i64>> {
        let list = list.as_list::<i32>();
        (0..list.len())
            .map(|row| {
                let values = list.value(row);
                values
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    /// A group's values come out in the order they came, across batches and merges; what
    /// is taken leaves the rest (kept in one chunk once most of the chunks are gone).
    #[test]
    fn groups_keep_their_values_through_takes_and_merges() {
        let mut groups = values(&[DataType::Int64, DataType::Int64]);
        let filter = BooleanArray::from(vec![true, true, false, true]);
        groups
            .update_batch(
                &[ints(&[1, 2, 3, 4]), ints(&[10, 20, 30, 40])],
                &[0, 1, 0, 0],
                Some(&filter),
                2,
            )
            .unwrap();
        groups
            .update_batch(&[ints(&[5, 6]), ints(&[50, 60])], &[2, 1], None, 3)
            .unwrap();
        let first = groups.state(EmitTo::First(1)).unwrap();
        assert_eq!(rows(&first[0]), vec![vec![1, 4]]);
        assert_eq!(rows(&first[1]), vec![vec![10, 40]]);
        // Groups 1 and 2 are now 0 and 1; 3 of the 6 values held are kept: not yet one chunk.
        assert_eq!(groups.chunks.len(), 2);
        let mut merged = values(&[DataType::Int64, DataType::Int64]);
        merged.merge_batch(&first, &[1], 2).unwrap();
        let rest = groups.state(EmitTo::All).unwrap();
        merged.merge_batch(&rest, &[0, 1], 2).unwrap();
        let all = merged.state(EmitTo::All).unwrap();
        assert_eq!(rows(&all[0]), vec![vec![2, 6], vec![1, 4, 5]]);
        assert_eq!(rows(&all[1]), vec![vec![20, 60], vec![10, 40, 50]]);
        assert!(merged.chunks.is_empty() && groups.chunks.is_empty());
    }

    /// Once fewer than half the values held are kept, they move into one chunk.
    #[test]
    fn taking_most_groups_compacts_the_rest() {
        let mut groups = values(&[DataType::Int64]);
        groups
            .update_batch(&[ints(&[1, 2, 3])], &[0, 0, 1], None, 2)
            .unwrap();
        groups
            .update_batch(&[ints(&[4, 5])], &[0, 0], None, 2)
            .unwrap();
        let taken = groups.state(EmitTo::First(1)).unwrap();
        assert_eq!(rows(&taken[0]), vec![vec![1, 2, 4, 5]]);
        assert_eq!(groups.chunks.len(), 1);
        assert_eq!(rows(&groups.state(EmitTo::All).unwrap()[0]), vec![vec![3]]);
    }
}
