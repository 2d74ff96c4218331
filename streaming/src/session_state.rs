//! State of session windows: per key (in arrow's row format), its open sessions, each with one
//! row accumulator per aggregate so that sessions can be merged when an event bridges them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::Accumulator;

use crate::error::StreamingError;
use crate::window::EmitMode;
use crate::window_state::{Aggregates, Evaluated, WindowRows, WindowState, snapshot_schema};

struct Session {
    start: i64,
    last: i64,
    accumulators: Vec<Box<dyn Accumulator>>,
    changed: bool,
    emitted: bool,
    /// An `EMIT CHANGES` row for this session's start is out: if the start moves (the
    /// session merges with an earlier one), that row must be retracted.
    output: bool,
}

/// Bookkeeping columns of a snapshot before the keys: start, last, emitted, changed, output.
const LEADING: usize = 5;

/// A row to emit: (end, start, key, values, retraction).
type SessionRow = (i64, i64, OwnedRow, Vec<ScalarValue>, bool);

/// Open sessions per key.
pub(crate) struct SessionState {
    gap: i64,
    allowed_lateness: i64,
    aggregates: Aggregates,
    converter: RowConverter,
    snapshot_schema: SchemaRef,
    sessions: HashMap<OwnedRow, Vec<Session>>,
    /// Retractions of changes rows whose sessions merged, due at the next emission.
    retractions: Vec<SessionRow>,
}

impl SessionState {
    pub fn try_new(
        gap: i64,
        allowed_lateness: i64,
        aggregates: Aggregates,
        key_schema: SchemaRef,
    ) -> Result<Self> {
        let converter = RowConverter::new(
            key_schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let snapshot_schema = snapshot_schema(
            vec![
                Field::new("_session_start", DataType::Int64, false),
                Field::new("_session_last", DataType::Int64, false),
                Field::new("_emitted", DataType::Boolean, false),
                Field::new("_changed", DataType::Boolean, false),
                Field::new("_output", DataType::Boolean, false),
            ],
            &key_schema,
            &aggregates,
        )?;
        Ok(Self {
            gap,
            allowed_lateness,
            aggregates,
            converter,
            snapshot_schema,
            sessions: HashMap::new(),
            retractions: Vec::new(),
        })
    }
}

fn new_session(aggregates: &Aggregates, t: i64) -> Result<Session> {
    Ok(Session {
        start: t,
        last: t,
        accumulators: aggregates
            .iter()
            .map(|a| a.create_accumulator())
            .collect::<Result<_>>()?,
        changed: true,
        emitted: false,
        output: false,
    })
}

/// Folds `from`'s state into `into`.
fn merge(into: &mut Session, mut from: Session) -> Result<()> {
    into.start = into.start.min(from.start);
    into.last = into.last.max(from.last);
    for (a, b) in into
        .accumulators
        .iter_mut()
        .zip(from.accumulators.iter_mut())
    {
        let state = b.state()?;
        let arrays = state
            .iter()
            .map(|s| s.to_array())
            .collect::<Result<Vec<_>>>()?;
        a.merge_batch(&arrays)?;
    }
    into.changed = true;
    Ok(())
}

impl WindowState for SessionState {
    fn update(&mut self, input: &Evaluated, times: &[i64], watermarks: &[i64]) -> Result<Vec<u32>> {
        let rows = self.converter.convert_columns(&input.keys)?;
        let mut late = Vec::new();
        let (gap, allowed) = (self.gap, self.allowed_lateness);
        // Row by row in source order: whether an event bridges sessions depends on which were
        // already closed by the watermark before it.
        for (i, (&t, &w)) in times.iter().zip(watermarks).enumerate() {
            let key = rows.row(i).owned();
            let open_until = |s: &Session| s.last.saturating_add(gap).saturating_add(allowed);
            let sessions = self.sessions.entry(key.clone()).or_default();
            let (touching, others): (Vec<Session>, Vec<Session>) =
                std::mem::take(sessions).into_iter().partition(|s| {
                    open_until(s) > w && s.start - gap < t && t < s.last.saturating_add(gap)
                });
            *sessions = others;
            if touching.is_empty() && t.saturating_add(gap).saturating_add(allowed) <= w {
                late.push(i as u32);
                continue;
            }
            // A changes row keyed by a start that moves is retracted; the merged session's
            // row replaces the one whose start it keeps.
            let start = touching.iter().map(|s| s.start).fold(t, i64::min);
            let mut touching = touching;
            let mut keeps_output = false;
            for old in touching.iter_mut().filter(|s| s.output) {
                if old.start == start {
                    keeps_output = true;
                    continue;
                }
                let values = old
                    .accumulators
                    .iter_mut()
                    .map(|a| a.evaluate())
                    .collect::<Result<_>>()?;
                self.retractions.push((
                    old.last.saturating_add(gap),
                    old.start,
                    key.clone(),
                    values,
                    true,
                ));
            }
            let mut touching = touching.into_iter();
            let mut session = match touching.next() {
                Some(first) => first,
                None => new_session(&self.aggregates, t)?,
            };
            for other in touching {
                merge(&mut session, other)?;
            }
            session.start = session.start.min(t);
            session.last = session.last.max(t);
            session.changed = true;
            session.output = keeps_output;
            let one = UInt32Array::from(vec![i as u32]);
            let row = input.take(&one)?;
            for (a, accumulator) in session.accumulators.iter_mut().enumerate() {
                match &row.filters[a] {
                    Some(filter) if !filter.value(0) || filter.is_null(0) => {}
                    _ => accumulator.update_batch(&row.args[a])?,
                }
            }
            sessions.push(session);
        }
        self.sessions.retain(|_, s| !s.is_empty());
        Ok(late)
    }

    fn emit(&mut self, watermark: i64, mode: EmitMode) -> Result<Vec<WindowRows>> {
        let mut emitted: Vec<SessionRow> = std::mem::take(&mut self.retractions);
        let (gap, allowed) = (self.gap, self.allowed_lateness);
        for (key, sessions) in self.sessions.iter_mut() {
            for session in sessions.iter_mut() {
                let end = session.last.saturating_add(gap);
                let done = end <= watermark;
                let emit = match mode {
                    EmitMode::Final => done && (!session.emitted || session.changed),
                    EmitMode::Changes => session.changed,
                };
                if emit {
                    let values = session
                        .accumulators
                        .iter_mut()
                        .map(|a| a.evaluate())
                        .collect::<Result<_>>()?;
                    emitted.push((end, session.start, key.clone(), values, false));
                    session.changed = false;
                    session.emitted |= done;
                    session.output |= mode == EmitMode::Changes;
                }
            }
            sessions.retain(|s| s.last.saturating_add(gap).saturating_add(allowed) > watermark);
        }
        self.sessions.retain(|_, s| !s.is_empty());
        if emitted.is_empty() {
            return Ok(vec![]);
        }
        // Retractions first, so a reader applying rows in order ends with the upserts.
        emitted.sort_by(|a, b| (!a.4, a.0, a.1, a.2.row()).cmp(&(!b.4, b.0, b.1, b.2.row())));
        let keys = self
            .converter
            .convert_rows(emitted.iter().map(|e| e.2.row()))?;
        let values = (0..self.aggregates.len())
            .map(|a| ScalarValue::iter_to_array(emitted.iter().map(|e| e.3[a].clone())))
            .collect::<Result<Vec<_>>>()?;
        Ok(vec![WindowRows {
            starts: emitted.iter().map(|e| e.1).collect(),
            ends: emitted.iter().map(|e| e.0).collect(),
            retract: emitted.iter().map(|e| e.4).collect(),
            keys,
            values,
        }])
    }

    fn size(&self) -> usize {
        self.converter.size()
            + self
                .sessions
                .iter()
                .map(|(key, sessions)| {
                    key.as_ref().len()
                        + sessions
                            .iter()
                            .map(|s| {
                                std::mem::size_of::<Session>()
                                    + s.accumulators.iter().map(|a| a.size()).sum::<usize>()
                            })
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    fn snapshot(&mut self) -> Result<RecordBatch> {
        let mut entries: Vec<(&OwnedRow, &mut Session)> = self
            .sessions
            .iter_mut()
            .flat_map(|(k, s)| s.iter_mut().map(move |s| (k, s)))
            .collect();
        // An instance of a parallel job may hold no session at a checkpoint.
        if entries.is_empty() {
            return Ok(RecordBatch::new_empty(self.snapshot_schema.clone()));
        }
        entries.sort_by(|a, b| (a.0.row(), a.1.start).cmp(&(b.0.row(), b.1.start)));
        let keys = self
            .converter
            .convert_rows(entries.iter().map(|e| e.0.row()))?;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                entries.iter().map(|e| e.1.start),
            )),
            Arc::new(Int64Array::from_iter_values(
                entries.iter().map(|e| e.1.last),
            )),
            Arc::new(arrow::array::BooleanArray::from_iter(
                entries.iter().map(|e| Some(e.1.emitted)),
            )),
            Arc::new(arrow::array::BooleanArray::from_iter(
                entries.iter().map(|e| Some(e.1.changed)),
            )),
            Arc::new(arrow::array::BooleanArray::from_iter(
                entries.iter().map(|e| Some(e.1.output)),
            )),
        ];
        columns.extend(keys);
        for a in 0..self.aggregates.len() {
            let states = entries
                .iter_mut()
                .map(|e| e.1.accumulators[a].state())
                .collect::<Result<Vec<_>>>()?;
            let width = self.aggregates[a].state_fields()?.len();
            for f in 0..width {
                columns.push(ScalarValue::iter_to_array(
                    states.iter().map(|s| s[f].clone()),
                )?);
            }
        }
        Ok(RecordBatch::try_new(self.snapshot_schema.clone(), columns)?)
    }

    fn key_columns(&self) -> std::ops::Range<usize> {
        LEADING..LEADING + self.converter_fields()
    }

    fn restore(&mut self, snapshot: &RecordBatch) -> Result<()> {
        if snapshot.schema().fields() != self.snapshot_schema.fields() {
            return Err(StreamingError::Snapshot(
                "the session state's columns differ from this query's".into(),
            )
            .into());
        }
        self.sessions.clear();
        let key_count = self.converter_fields();
        let keys = &snapshot.columns()[LEADING..LEADING + key_count];
        let rows = self.converter.convert_columns(keys)?;
        let starts = snapshot.column(0).as_primitive::<Int64Type>();
        let lasts = snapshot.column(1).as_primitive::<Int64Type>();
        for i in 0..snapshot.num_rows() {
            let mut session = new_session(&self.aggregates, starts.value(i))?;
            session.last = lasts.value(i);
            session.emitted = snapshot.column(2).as_boolean().value(i);
            session.changed = snapshot.column(3).as_boolean().value(i);
            session.output = snapshot.column(4).as_boolean().value(i);
            let mut column = LEADING + key_count;
            let one = UInt32Array::from(vec![i as u32]);
            for (accumulator, aggregate) in
                session.accumulators.iter_mut().zip(self.aggregates.iter())
            {
                let width = aggregate.state_fields()?.len();
                let state = snapshot.columns()[column..column + width]
                    .iter()
                    .map(|c| take(c, &one, None))
                    .collect::<Result<Vec<_>, _>>()?;
                accumulator.merge_batch(&state)?;
                column += width;
            }
            self.sessions
                .entry(rows.row(i).owned())
                .or_default()
                .push(session);
        }
        Ok(())
    }
}

impl SessionState {
    fn converter_fields(&self) -> usize {
        self.snapshot_schema.fields().len()
            - LEADING
            - self
                .aggregates
                .iter()
                .map(|a| a.state_fields().map_or(0, |f| f.len()))
                .sum::<usize>()
    }
}
