//! Timestamps read from text in the shape most files write them (`2026-03-02 09:30:00.001`,
//! or with a `T`), computed from their digits. Arrow's parser, which takes every shape and
//! time zone, took a sixth of a CSV aggregation's CPU; any other shape still goes to it, so
//! the values are arrow's either way.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray,
};
use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::datatypes::TimeUnit;
use arrow::error::ArrowError;
use chrono::NaiveDate;

/// The timestamps in `unit`, without a time zone, that the strings of `text` stand for; an
/// error for a string arrow cannot read either.
pub(crate) fn parse_timestamps(text: &StringArray, unit: TimeUnit) -> Result<ArrayRef, ArrowError> {
    // Rows in time order mostly share their date with the row before.
    let mut last_date = None;
    let mut values = Vec::with_capacity(text.len());
    for i in 0..text.len() {
        values.push(match text.is_null(i) {
            true => None,
            false => Some(timestamp(text.value(i), unit, &mut last_date)?),
        });
    }
    Ok(match unit {
        TimeUnit::Second => Arc::new(TimestampSecondArray::from(values)) as ArrayRef,
        TimeUnit::Millisecond => Arc::new(TimestampMillisecondArray::from(values)),
        TimeUnit::Microsecond => Arc::new(TimestampMicrosecondArray::from(values)),
        TimeUnit::Nanosecond => Arc::new(TimestampNanosecondArray::from(values)),
    })
}

/// The last date read in the common shape, and its days since the epoch.
type LastDate = Option<([u8; 10], i64)>;

/// The timestamp `text` stands for, in `unit`.
fn timestamp(text: &str, unit: TimeUnit, last_date: &mut LastDate) -> Result<i64, ArrowError> {
    if let Some(value) = common_shape(text.as_bytes(), last_date)
        .and_then(|(seconds, nanos)| in_unit(seconds, nanos, unit))
    {
        return Ok(value);
    }
    arrow_timestamp(text, unit)
}

/// What arrow's parser makes of `text`, in `unit`.
fn arrow_timestamp(text: &str, unit: TimeUnit) -> Result<i64, ArrowError> {
    let time = string_to_datetime(&chrono::Utc, text)?;
    match unit {
        TimeUnit::Second => Ok(time.timestamp()),
        TimeUnit::Millisecond => Ok(time.timestamp_millis()),
        TimeUnit::Microsecond => Ok(time.timestamp_micros()),
        TimeUnit::Nanosecond => time.timestamp_nanos_opt().ok_or_else(|| {
            ArrowError::ParseError(format!("'{text}' is out of the range of nanoseconds"))
        }),
    }
}

/// `seconds` and `nanos` past them in `unit` (the fraction cut as arrow cuts it), unless it
/// does not fit.
fn in_unit(seconds: i64, nanos: u32, unit: TimeUnit) -> Option<i64> {
    let (per_second, divisor) = match unit {
        TimeUnit::Second => (1, 1_000_000_000),
        TimeUnit::Millisecond => (1_000, 1_000_000),
        TimeUnit::Microsecond => (1_000_000, 1_000),
        TimeUnit::Nanosecond => (1_000_000_000, 1),
    };
    seconds
        .checked_mul(per_second)?
        .checked_add(i64::from(nanos / divisor))
}

/// Seconds since the epoch, and nanoseconds, of `YYYY-MM-DD HH:MM:SS` (or with `T`) and an
/// optional fraction of 1 to 9 digits; `None` for anything else, or an impossible date.
/// `last_date` is the date read last, taken again when the text's is the same.
fn common_shape(text: &[u8], last_date: &mut LastDate) -> Option<(i64, u32)> {
    if text.len() < 19 || !matches!(text[10], b' ' | b'T') || text[13] != b':' || text[16] != b':' {
        return None;
    }
    let two = |i: usize| two_digits(text, i);
    let date: [u8; 10] = text[..10].try_into().ok()?;
    let days = match last_date {
        Some((last, days)) if *last == date => *days,
        _ => {
            let days = date_days(&date)?;
            *last_date = Some((date, days));
            days
        }
    };
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let nanos = match &text[19..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            let mut nanos = 0u32;
            for &c in fraction {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    return None;
                }
                nanos = nanos * 10 + u32::from(d);
            }
            nanos * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second, nanos))
}

/// Days since the epoch of `YYYY-MM-DD`; `None` for anything else, or an impossible date.
fn date_days(date: &[u8; 10]) -> Option<i64> {
    if date[4] != b'-' || date[7] != b'-' {
        return None;
    }
    let two = |i: usize| two_digits(date, i);
    let year = two(0)? * 100 + two(2)?;
    let date = NaiveDate::from_ymd_opt(year as i32, two(5)? as u32, two(8)? as u32)?;
    // chrono's default date is the epoch, 1970-01-01.
    Some(date.signed_duration_since(NaiveDate::default()).num_days())
}

/// The number the two digits at `i` of `text` write.
fn two_digits(text: &[u8], i: usize) -> Option<i64> {
    let (tens, ones) = (text[i].wrapping_sub(b'0'), text[i + 1].wrapping_sub(b'0'));
    (tens < 10 && ones < 10).then_some(i64::from(tens * 10 + ones))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_shape_reads_as_arrow_reads_it() {
        let mut texts = Vec::new();
        for year in [
            1, 1600, 1899, 1900, 1969, 1970, 2000, 2024, 2026, 2100, 2262, 9999,
        ] {
            for (month, day) in [(1, 1), (2, 28), (2, 29), (3, 1), (6, 30), (12, 31)] {
                for (time, fraction) in [
                    ("00:00:00", ""),
                    ("09:30:00", ".001"),
                    ("23:59:59", ".999999999"),
                    ("12:34:56", ".5"),
                    ("01:02:03", ".123456"),
                ] {
                    for separator in [' ', 'T'] {
                        texts.push(format!(
                            "{year:04}-{month:02}-{day:02}{separator}{time}{fraction}"
                        ));
                    }
                }
            }
        }
        let mut fast = 0;
        for text in &texts {
            for unit in [
                TimeUnit::Second,
                TimeUnit::Millisecond,
                TimeUnit::Microsecond,
                TimeUnit::Nanosecond,
            ] {
                let ours = timestamp(text, unit, &mut None).ok();
                assert_eq!(ours, arrow_timestamp(text, unit).ok(), "{text} in {unit:?}");
                fast += usize::from(common_shape(text.as_bytes(), &mut None).is_some());
            }
        }
        // Most took the quick way (not the 29ths of February of common years).
        assert!(fast > texts.len() * 3, "{fast} of {}", texts.len() * 4);
    }

    #[test]
    fn other_shapes_go_to_arrow_and_impossible_ones_are_errors() {
        for text in [
            "2026-03-02T09:30:00Z",
            "2026-03-02 09:30:00+02:00",
            "2026-03-02",
            "2026-03-02 09:30:00.1234567891",
            " 2026-03-02 09:30:00",
        ] {
            assert!(common_shape(text.as_bytes(), &mut None).is_none(), "{text}");
            assert_eq!(
                timestamp(text, TimeUnit::Millisecond, &mut None).ok(),
                arrow_timestamp(text, TimeUnit::Millisecond).ok(),
                "{text}"
            );
        }
        for text in [
            "2026-02-29 00:00:00",
            "2026-13-01 00:00:00",
            "2026-03-02 24:00:00",
            "x",
        ] {
            assert!(common_shape(text.as_bytes(), &mut None).is_none(), "{text}");
            assert!(
                timestamp(text, TimeUnit::Millisecond, &mut None).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn a_date_taken_again_is_the_same_date_and_a_new_one_is_read() {
        let text = StringArray::from(vec![
            "2026-03-02 09:30:00",
            "2026-03-02 09:30:01.5",
            "2026-03-03 00:00:00",
            "2026-02-29 00:00:00",
        ]);
        let error = parse_timestamps(&text, TimeUnit::Millisecond).unwrap_err();
        assert!(error.to_string().contains("2026-02-29"), "{error}");
        let text = StringArray::from(vec![
            "2026-03-02 09:30:00",
            "2026-03-02 09:30:01.5",
            "2026-03-03 00:00:00",
        ]);
        let parsed = parse_timestamps(&text, TimeUnit::Millisecond).unwrap();
        let parsed = parsed
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(
            parsed.values().to_vec(),
            vec![1_772_443_800_000, 1_772_443_801_500, 1_772_496_000_000]
        );
    }

    #[test]
    fn nulls_stay_null() {
        let text = StringArray::from(vec![Some("1970-01-01 00:00:01"), None]);
        let parsed = parse_timestamps(&text, TimeUnit::Millisecond).unwrap();
        assert_eq!(parsed.null_count(), 1);
        let parsed = parsed
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(parsed.value(0), 1_000);
    }
}
