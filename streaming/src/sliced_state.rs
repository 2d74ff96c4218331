//! State of fixed-size windows (tumbling, sliding) and of the global window: per window, the
//! group keys in DataFusion's `GroupValues` and one `GroupsAccumulator` per aggregate, the
//! same columnar structures DataFusion's own hash aggregation uses.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, UInt32Array};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take};
use arrow::datatypes::{DataType, Field, Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::error::StreamingError;
use crate::window::{EmitMode, WindowSpec};
use crate::window_state::{Aggregates, Evaluated, WindowRows, WindowState, snapshot_schema};

/// A `GroupsAccumulator` for the aggregate, adapting a row accumulator where needed (as
/// DataFusion's hash aggregation does).
pub(crate) fn groups_accumulator(
    aggregate: &Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>,
) -> Result<Box<dyn GroupsAccumulator>> {
    if aggregate.groups_accumulator_supported() {
        aggregate.create_groups_accumulator()
    } else {
        let aggregate = aggregate.clone();
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
            aggregate.create_accumulator()
        })))
    }
}

/// The groups of one window.
struct Groups {
    values: Box<dyn GroupValues>,
    /// The groups' keys as columns, in group order, gathered as groups are added: a snapshot
    /// reads them here, since `GroupValues` gives its keys only by giving them up.
    keys: Vec<Vec<ArrayRef>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// Per group: changed since it was last emitted.
    changed: Vec<bool>,
    /// Whether the window's final rows were emitted (it stays for allowed lateness).
    emitted: bool,
    /// Per group, when it was last updated (processing time, epoch ms), where keys expire
    /// (`'state.ttl'`).
    touched: Option<Vec<i64>>,
}

impl Groups {
    fn new(key_schema: &SchemaRef, aggregates: &Aggregates, expires: bool) -> Result<Self> {
        Ok(Self {
            values: new_group_values(key_schema.clone(), &GroupOrdering::None)?,
            keys: Vec::new(),
            accumulators: aggregates
                .iter()
                .map(groups_accumulator)
                .collect::<Result<_>>()?,
            changed: Vec::new(),
            emitted: false,
            touched: expires.then(Vec::new),
        })
    }

    /// Groups of `keys` holding the aggregate states `states` (each aggregate's state
    /// columns one after the other), one group per row: a snapshot's, or a part of a
    /// window's.
    fn of_states(
        key_schema: &SchemaRef,
        aggregates: &Aggregates,
        expires: bool,
        keys: &[ArrayRef],
        states: &[ArrayRef],
    ) -> Result<Self> {
        let mut groups = Self::new(key_schema, aggregates, expires)?;
        let mut indices = Vec::new();
        groups.intern(keys, &mut indices)?;
        let total = groups.values.len();
        let mut column = 0;
        for (accumulator, aggregate) in groups.accumulators.iter_mut().zip(aggregates.iter()) {
            let width = aggregate.state_fields()?.len();
            accumulator.merge_batch(&states[column..column + width], &indices, total)?;
            column += width;
        }
        Ok(groups)
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    /// Adds `input`'s rows, at processing time `now` where keys expire.
    fn update(&mut self, input: &Evaluated, now: Option<i64>) -> Result<()> {
        let mut groups = Vec::with_capacity(input.keys.first().map_or(0, |k| k.len()));
        self.intern(&input.keys, &mut groups)?;
        let total = self.values.len();
        for (i, accumulator) in self.accumulators.iter_mut().enumerate() {
            if input.states {
                accumulator.merge_batch(&input.args[i], &groups, total)?;
            } else {
                accumulator.update_batch(
                    &input.args[i],
                    &groups,
                    input.filters[i].as_ref(),
                    total,
                )?;
            }
        }
        self.changed.resize(total, false);
        for &group in &groups {
            self.changed[group] = true;
        }
        if let (Some(touched), Some(now)) = (self.touched.as_mut(), now) {
            touched.resize(total, now);
            for group in groups {
                touched[group] = now;
            }
        }
        Ok(())
    }

    /// Groups for `keys`' rows in `groups`, adding the new ones, whose keys it keeps.
    fn intern(&mut self, keys: &[ArrayRef], groups: &mut Vec<usize>) -> Result<()> {
        let before = self.values.len();
        self.values.intern(keys, groups)?;
        let added = self.values.len() - before;
        if added > 0 {
            // The first row of each new group, by group id.
            let mut first = vec![None; added];
            for (row, &group) in groups.iter().enumerate() {
                if group >= before && first[group - before].is_none() {
                    first[group - before] = Some(row as u32);
                }
            }
            let rows: UInt32Array = first.into_iter().collect();
            let columns = keys
                .iter()
                .map(|k| take(k, &rows, None))
                .collect::<Result<_, _>>()?;
            self.keys.push(columns);
        }
        Ok(())
    }

    /// Every group's keys, in group order (gathered into one chunk for next time).
    fn key_columns(&mut self) -> Result<Vec<ArrayRef>> {
        if self.keys.len() > 1 {
            let columns = (0..self.keys[0].len())
                .map(|c| {
                    let chunks: Vec<&dyn Array> =
                        self.keys.iter().map(|chunk| chunk[c].as_ref()).collect();
                    arrow::compute::concat(&chunks)
                })
                .collect::<Result<_, _>>()?;
            self.keys = vec![columns];
        }
        match self.keys.first() {
            Some(columns) => Ok(columns.clone()),
            // No group yet: empty columns of the key types.
            None => self.values.emit(EmitTo::All),
        }
    }

    /// Every group's keys and aggregate states; the window stays as it was.
    fn states(&mut self, aggregates: &Aggregates) -> Result<(Vec<ArrayRef>, Vec<Vec<ArrayRef>>)> {
        let keys = self.key_columns()?;
        let total = self.values.len();
        // An accumulator gives its state only by giving it up: a fresh one takes it back.
        let groups: Vec<usize> = (0..total).collect();
        let mut states = Vec::with_capacity(self.accumulators.len());
        for (accumulator, aggregate) in self.accumulators.iter_mut().zip(aggregates.iter()) {
            let state = accumulator.state(EmitTo::All)?;
            *accumulator = groups_accumulator(aggregate)?;
            accumulator.merge_batch(&state, &groups, total)?;
            states.push(state);
        }
        Ok((keys, states))
    }

    /// Current values of the changed groups, leaving the state as it was.
    fn peek_changed(&mut self, aggregates: &Aggregates) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>)> {
        let changed: UInt32Array = self
            .changed
            .iter()
            .enumerate()
            .filter_map(|(g, &c)| c.then_some(g as u32))
            .collect();
        let (keys, states) = self.states(aggregates)?;
        let keys = keys
            .iter()
            .map(|k| take(k, &changed, None))
            .collect::<Result<Vec<_>, _>>()?;
        let selected: Vec<usize> = (0..changed.len()).collect();
        let mut values = Vec::with_capacity(states.len());
        for (state, aggregate) in states.iter().zip(aggregates.iter()) {
            let state = state
                .iter()
                .map(|s| take(s, &changed, None))
                .collect::<Result<Vec<_>, _>>()?;
            let mut accumulator = groups_accumulator(aggregate)?;
            accumulator.merge_batch(&state, &selected, selected.len())?;
            values.push(accumulator.evaluate(EmitTo::All)?);
        }
        self.changed.iter_mut().for_each(|c| *c = false);
        Ok((keys, values))
    }

    /// Every group's values, consuming the window.
    fn take_all(&mut self) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>)> {
        let keys = self.values.emit(EmitTo::All)?;
        let values = self
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<Result<_>>()?;
        Ok((keys, values))
    }

    fn size(&self) -> usize {
        self.values.size()
            + self
                .keys
                .iter()
                .flatten()
                .map(|k| k.get_array_memory_size())
                .sum::<usize>()
            + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
            + self.changed.capacity()
            + self.touched.as_ref().map_or(0, |t| t.capacity() * 8)
    }
}

/// Fixed-size windows by start, each with its groups.
pub(crate) struct SlicedState {
    spec: WindowSpec,
    allowed_lateness: i64,
    aggregates: Aggregates,
    key_schema: SchemaRef,
    snapshot_schema: SchemaRef,
    windows: BTreeMap<i64, Groups>,
    /// Keys expire when not updated for a while (`'state.ttl'`): each group's last update
    /// is kept (and snapshotted, last column `_touched`).
    expires: bool,
}

/// The last column of a snapshot where keys expire: each group's last update.
const TOUCHED: &str = "_touched";

impl SlicedState {
    pub fn try_new(
        spec: WindowSpec,
        allowed_lateness: i64,
        aggregates: Aggregates,
        key_schema: SchemaRef,
        expires: bool,
    ) -> Result<Self> {
        let snapshot_schema = snapshot_schema(
            vec![
                Field::new("_window_start", DataType::Int64, false),
                Field::new("_emitted", DataType::Boolean, false),
                Field::new("_changed", DataType::Boolean, false),
            ],
            &key_schema,
            &aggregates,
        )?;
        let snapshot_schema = match expires {
            true => {
                let mut fields: Vec<Field> = snapshot_schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                fields.push(Field::new(TOUCHED, DataType::Int64, false));
                Arc::new(arrow::datatypes::Schema::new(fields))
            }
            false => snapshot_schema,
        };
        Ok(Self {
            spec,
            allowed_lateness,
            aggregates,
            key_schema,
            snapshot_schema,
            windows: BTreeMap::new(),
            expires,
        })
    }

    /// The groups of the window starting at `start`, created when it opens.
    fn groups_of(&mut self, start: i64) -> Result<&mut Groups> {
        Ok(match self.windows.entry(start) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(Groups::new(
                &self.key_schema,
                &self.aggregates,
                self.expires,
            )?),
        })
    }

    /// A window's rows, in key order: the same rows come out in the same order however the
    /// input interleaved (two streams of a UNION ALL, micro-batches of any size).
    fn rows(
        &self,
        start: i64,
        (keys, values): (Vec<ArrayRef>, Vec<ArrayRef>),
    ) -> Result<WindowRows> {
        let n = values.first().map_or(0, |v| v.len());
        let (keys, values) = if n > 1 && !keys.is_empty() {
            let columns: Vec<SortColumn> = keys
                .iter()
                .map(|k| SortColumn {
                    values: k.clone(),
                    options: None,
                })
                .collect();
            let order = lexsort_to_indices(&columns, None)?;
            let sorted = |arrays: Vec<ArrayRef>| -> Result<Vec<ArrayRef>> {
                Ok(arrays
                    .iter()
                    .map(|a| take(a, &order, None))
                    .collect::<Result<_, _>>()?)
            };
            (sorted(keys)?, sorted(values)?)
        } else {
            (keys, values)
        };
        Ok(WindowRows {
            starts: vec![start; n],
            ends: vec![self.spec.end_of(start); n],
            retract: vec![false; n],
            keys,
            values,
        })
    }
}

impl WindowState for SlicedState {
    fn update(&mut self, input: &Evaluated, times: &[i64], watermarks: &[i64]) -> Result<Vec<u32>> {
        let rows = times.len();
        let now = self.expires.then(|| chrono::Utc::now().timestamp_millis());
        // The common case, checked cheaply first: every row in one open window (the global
        // window, or a tumbling window that a whole micro-batch falls into).
        let single = match self.spec {
            WindowSpec::Global => Some(0),
            WindowSpec::Tumbling { size } => times.first().and_then(|&first| {
                let start = first.div_euclid(size) * size;
                let end = (start + size).saturating_add(self.allowed_lateness);
                let all_in = times
                    .iter()
                    .zip(watermarks)
                    .all(|(&t, &w)| t.div_euclid(size) * size == start && end > w);
                all_in.then_some(start)
            }),
            _ => None,
        };
        if let Some(start) = single {
            self.groups_of(start)?.update(input, now)?;
            return Ok(vec![]);
        }
        let mut late = Vec::new();
        let mut per_window: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, (&t, &w)) in times.iter().zip(watermarks).enumerate() {
            let mut windows = 0;
            let mut open = false;
            for start in self.spec.starts(t) {
                windows += 1;
                if self
                    .spec
                    .end_of(start)
                    .saturating_add(self.allowed_lateness)
                    > w
                {
                    per_window.entry(start).or_default().push(i as u32);
                    open = true;
                }
            }
            if windows > 0 && !open {
                late.push(i as u32);
            }
        }
        for (start, indices) in per_window {
            let groups = self.groups_of(start)?;
            if indices.len() == rows {
                groups.update(input, now)?;
            } else {
                groups.update(&input.take(&UInt32Array::from(indices))?, now)?;
            }
        }
        Ok(late)
    }

    fn emit(&mut self, watermark: i64, mode: EmitMode) -> Result<Vec<WindowRows>> {
        let mut out = Vec::new();
        let mut closed = Vec::new();
        let starts: Vec<i64> = self.windows.keys().copied().collect();
        for start in starts {
            let end = self.spec.end_of(start);
            let done = end <= watermark;
            let expired = end.saturating_add(self.allowed_lateness) <= watermark;
            let groups = self.windows.get_mut(&start).expect("listed above");
            let any_changed = groups.changed.iter().any(|&c| c);
            let emitted = match mode {
                EmitMode::Final if done && !groups.emitted && expired => Some(groups.take_all()?),
                EmitMode::Final if done && !groups.emitted => {
                    groups.changed.iter_mut().for_each(|c| *c = true);
                    groups.emitted = true;
                    Some(groups.peek_changed(&self.aggregates)?)
                }
                EmitMode::Final if done && any_changed => {
                    Some(groups.peek_changed(&self.aggregates)?)
                }
                EmitMode::Changes if any_changed => Some(groups.peek_changed(&self.aggregates)?),
                _ => None,
            };
            if let Some(rows) = emitted {
                out.push(self.rows(start, rows)?);
            }
            if expired {
                closed.push(start);
            }
        }
        for start in closed {
            self.windows.remove(&start);
        }
        Ok(out)
    }

    fn size(&self) -> usize {
        self.windows.values().map(Groups::size).sum()
    }

    fn snapshot(&mut self) -> Result<RecordBatch> {
        let mut batches = Vec::with_capacity(self.windows.len());
        for (&start, groups) in self.windows.iter_mut() {
            let n = groups.len();
            let (keys, states) = groups.states(&self.aggregates)?;
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(vec![start; n])),
                Arc::new(BooleanArray::from(vec![groups.emitted; n])),
                Arc::new(BooleanArray::from(groups.changed.clone())),
            ];
            columns.extend(keys);
            columns.extend(states.into_iter().flatten());
            if let Some(touched) = &groups.touched {
                columns.push(Arc::new(Int64Array::from(touched.clone())));
            }
            batches.push(RecordBatch::try_new(self.snapshot_schema.clone(), columns)?);
        }
        Ok(concat_batches(&self.snapshot_schema, &batches)?)
    }

    fn key_columns(&self) -> std::ops::Range<usize> {
        3..3 + self.key_schema.fields().len()
    }

    /// The global window's groups not updated since `before` go: their last values, as
    /// rows to retract.
    fn expire(&mut self, before: i64) -> Result<Option<WindowRows>> {
        if self.spec != WindowSpec::Global {
            return Ok(None);
        }
        let Some(groups) = self.windows.get_mut(&0) else {
            return Ok(None);
        };
        let Some(touched) = groups.touched.as_ref() else {
            return Ok(None);
        };
        if !touched.iter().any(|&t| t < before) {
            return Ok(None);
        }
        let (gone, kept): (Vec<u32>, Vec<u32>) =
            (0..touched.len() as u32).partition(|&g| touched[g as usize] < before);
        let touched: Vec<i64> = kept.iter().map(|&g| touched[g as usize]).collect();
        let changed: Vec<bool> = kept.iter().map(|&g| groups.changed[g as usize]).collect();
        let emitted = groups.emitted;
        // The window's groups are built again from their keys and states: those that stay,
        // and those that go (for their last values).
        let keys = groups.key_columns()?;
        let mut states = Vec::new();
        for accumulator in &mut groups.accumulators {
            states.extend(accumulator.state(EmitTo::All)?);
        }
        let pick = |rows: &[u32], arrays: &[ArrayRef]| -> Result<Vec<ArrayRef>> {
            let rows = UInt32Array::from(rows.to_vec());
            Ok(arrays
                .iter()
                .map(|a| take(a, &rows, None))
                .collect::<Result<_, _>>()?)
        };
        let of = |rows: &[u32], expires: bool| -> Result<Groups> {
            Groups::of_states(
                &self.key_schema,
                &self.aggregates,
                expires,
                &pick(rows, &keys)?,
                &pick(rows, &states)?,
            )
        };
        let mut expired = of(&gone, false)?;
        let mut live = of(&kept, true)?;
        live.emitted = emitted;
        live.changed = changed;
        live.touched = Some(touched);
        self.windows.insert(0, live);
        let mut rows = self.rows(0, expired.take_all()?)?;
        rows.retract = vec![true; rows.retract.len()];
        Ok(Some(rows))
    }

    fn restore(&mut self, snapshot: &RecordBatch) -> Result<()> {
        if snapshot.schema().fields() != self.snapshot_schema.fields() {
            return Err(StreamingError::Snapshot(
                "the window state's columns differ from this query's".into(),
            )
            .into());
        }
        self.windows.clear();
        let starts = snapshot.column(0).as_primitive::<Int64Type>();
        let mut row = 0;
        while row < snapshot.num_rows() {
            let start = starts.value(row);
            let len = (row..snapshot.num_rows())
                .take_while(|&r| starts.value(r) == start)
                .count();
            let part = snapshot.slice(row, len);
            let keys_end = 3 + self.key_schema.fields().len();
            let states_end = part.num_columns() - usize::from(self.expires);
            let mut groups = Groups::of_states(
                &self.key_schema,
                &self.aggregates,
                self.expires,
                &part.columns()[3..keys_end],
                &part.columns()[keys_end..states_end],
            )?;
            // Put together from several instances, a window was emitted if it was by any:
            // the groups of the others, never emitted, are marked changed and follow.
            groups.emitted = part.column(1).as_boolean().true_count() > 0;
            if self.expires {
                let touched = part.column(states_end).as_primitive::<Int64Type>();
                groups.touched = Some(touched.values().to_vec());
            }
            groups.changed = part
                .column(2)
                .as_boolean()
                .iter()
                .map(|c| c == Some(true))
                .collect();
            self.windows.insert(start, groups);
            row += len;
        }
        Ok(())
    }
}
