//! Event-time bounds of a stream join: how long a kept row can still find a match.
//!
//! A join of two streams whose condition bounds one side's event time by the other's
//! (`p.ts BETWEEN o.ts AND o.ts + INTERVAL '1' HOUR`, an interval join) need not keep a row
//! for ever: once the other side's watermark has passed the last time a partner could have,
//! the row can never match again, and the join lets it go. Each side's watermark is its
//! largest event time so far less its source's `watermark.max_out_of_orderness`, as for
//! windows; a row older than its own side's watermark is late and is dropped, as a late
//! row is dropped by a window, so no pair depends on when rows were let go.

use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};
use datafusion::common::{JoinSide, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, split_conjunction};
use datafusion::physical_plan::joins::utils::JoinFilter;

/// One side's event time, as its source declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct SideTime {
    /// The side's column holding its event time (a timestamp).
    pub column: String,
    /// How far the side's watermark stays behind its largest event time.
    pub max_out_of_orderness: Duration,
}

/// What a join condition says of `right time - left time`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TimeBounds {
    /// Each side's event-time column (by index in the side's schema).
    pub columns: [usize; 2],
    /// Each side's max out-of-orderness, ms.
    pub slack: [i64; 2],
    /// `right - left >= lower`, if the condition says so.
    pub lower: Option<i64>,
    /// `right - left <= upper`, if the condition says so.
    pub upper: Option<i64>,
}

impl TimeBounds {
    /// The bounds `filter` puts on the sides' event times, if it puts any: conjuncts such
    /// as `r.ts >= l.ts`, `r.ts <= l.ts + INTERVAL '1' HOUR`, `l.ts - INTERVAL '5' MINUTE < r.ts`.
    pub fn of(
        filter: &JoinFilter,
        schemas: [&SchemaRef; 2],
        times: [&SideTime; 2],
    ) -> Option<Self> {
        let mut columns = [0; 2];
        for side in 0..2 {
            let (index, field) = schemas[side].column_with_name(&times[side].column)?;
            if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
                return None;
            }
            columns[side] = index;
        }
        let mut bounds = Self {
            columns,
            slack: times.map(|t| t.max_out_of_orderness.as_millis() as i64),
            lower: None,
            upper: None,
        };
        for conjunct in split_conjunction(filter.expression()) {
            let Some(binary) = conjunct.downcast_ref::<BinaryExpr>() else {
                continue;
            };
            let term = |expr: &dyn PhysicalExpr| time_term(expr, filter, columns);
            let (Some((a, a_offset)), Some((b, b_offset))) =
                (term(binary.left().as_ref()), term(binary.right().as_ref()))
            else {
                continue;
            };
            // a.t + a_offset OP b.t + b_offset, as right - left OP value.
            let (op, value) = match (a, b) {
                (1, 0) => (*binary.op(), b_offset - a_offset),
                (0, 1) => match binary.op().swap() {
                    Some(op) => (op, a_offset - b_offset),
                    None => continue,
                },
                _ => continue,
            };
            match op {
                Operator::Lt | Operator::LtEq => bounds.tighten_upper(value),
                Operator::Gt | Operator::GtEq => bounds.tighten_lower(value),
                Operator::Eq => {
                    bounds.tighten_upper(value);
                    bounds.tighten_lower(value);
                }
                _ => {}
            }
        }
        (bounds.lower.is_some() || bounds.upper.is_some()).then_some(bounds)
    }

    fn tighten_upper(&mut self, value: i64) {
        self.upper = Some(self.upper.map_or(value, |u| u.min(value)));
    }

    fn tighten_lower(&mut self, value: i64) {
        self.lower = Some(self.lower.map_or(value, |l| l.max(value)));
    }

    /// Whether `side`'s watermark lets the other side's rows go (so `side`'s late rows must
    /// be dropped): the right side's, if there is an upper bound; the left's, if a lower one.
    pub fn watches(&self, side: usize) -> bool {
        if side == 0 {
            self.lower.is_some()
        } else {
            self.upper.is_some()
        }
    }

    /// The latest event time a kept row of `side` can have and still be let go, given the
    /// other side's watermark: `None` if the condition never lets that side's rows go.
    pub fn expired_before(&self, side: usize, other_watermark: i64) -> Option<i64> {
        if side == 0 {
            // A right row that comes has r >= W_right; r - l <= upper needs l >= r - upper.
            self.upper
                .map(|upper| other_watermark.saturating_sub(upper))
        } else {
            // A left row that comes has l >= W_left; r - l >= lower needs r >= l + lower.
            self.lower
                .map(|lower| other_watermark.saturating_add(lower))
        }
    }
}

/// `(side, offset ms)` if `expr` is a side's event-time column plus or minus a constant.
fn time_term(
    expr: &dyn PhysicalExpr,
    filter: &JoinFilter,
    columns: [usize; 2],
) -> Option<(usize, i64)> {
    if let Some(column) = expr.downcast_ref::<Column>() {
        let index = filter.column_indices().get(column.index())?;
        let side = match index.side {
            JoinSide::Left => 0,
            JoinSide::Right => 1,
            JoinSide::None => return None,
        };
        return (index.index == columns[side]).then_some((side, 0));
    }
    let binary = expr.downcast_ref::<BinaryExpr>()?;
    let sign = match binary.op() {
        Operator::Plus => 1,
        Operator::Minus => -1,
        _ => return None,
    };
    let (side, offset) = time_term(binary.left().as_ref(), filter, columns)?;
    let constant = millis_of(binary.right().downcast_ref::<Literal>()?.value())?;
    Some((side, offset + sign * constant))
}

/// The length of an interval or duration literal in milliseconds (`None` for months, whose
/// length varies).
fn millis_of(value: &ScalarValue) -> Option<i64> {
    Some(match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds)
        }
        ScalarValue::DurationSecond(Some(v)) => v * 1000,
        ScalarValue::DurationMillisecond(Some(v)) => *v,
        ScalarValue::DurationMicrosecond(Some(v)) => v / 1000,
        ScalarValue::DurationNanosecond(Some(v)) => v / 1_000_000,
        _ => return None,
    })
}

/// One side's watermark: its largest event time so far less its slack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SideClock {
    pub max_time: i64,
    pub slack: i64,
}

impl SideClock {
    pub fn new(slack: i64) -> Self {
        Self {
            max_time: i64::MIN,
            slack,
        }
    }

    pub fn watermark(&self) -> i64 {
        self.max_time.saturating_sub(self.slack)
    }

    /// Which rows of `column` (event times) to keep: those with a time (a row without one
    /// satisfies no time condition), and with `drop_late` only those not late against the
    /// watermark the rows before them left (in order, whatever the batching); and the latest
    /// time kept (ms). Advances the clock.
    pub fn advance(&mut self, column: &ArrayRef, drop_late: bool) -> Result<(BooleanArray, i64)> {
        let millis = event_millis(column)?;
        let millis = millis.as_primitive::<Int64Type>();
        let mut keep = Vec::with_capacity(millis.len());
        let mut latest = i64::MIN;
        for i in 0..millis.len() {
            let time = millis.value(i);
            let kept = millis.is_valid(i) && (!drop_late || time >= self.watermark());
            if kept {
                latest = latest.max(time);
            }
            if millis.is_valid(i) {
                self.max_time = self.max_time.max(time);
            }
            keep.push(kept);
        }
        Ok((BooleanArray::from(keep), latest))
    }
}

/// The earliest event time (ms) of a timestamp column; `i64::MIN` if it cannot tell, which
/// a caller takes as "any time".
pub(crate) fn earliest_time(column: &ArrayRef) -> i64 {
    if column.is_empty() {
        return i64::MAX;
    }
    event_millis(column)
        .ok()
        .and_then(|millis| arrow::compute::min(millis.as_primitive::<Int64Type>()))
        .unwrap_or(i64::MIN)
}

/// The latest event time (ms) of a timestamp column (`i64::MIN` if it has none).
pub(crate) fn latest_time(column: &ArrayRef) -> Result<i64> {
    let millis = event_millis(column)?;
    Ok(arrow::compute::max(millis.as_primitive::<Int64Type>()).unwrap_or(i64::MIN))
}

/// A timestamp column as epoch milliseconds.
pub(crate) fn event_millis(column: &ArrayRef) -> Result<ArrayRef> {
    let millis = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
    Ok(cast(&millis, &DataType::Int64)?)
}
