//! The `WITH (...)` options of a statement, read by prefix and checked for leftovers.
//!
//! Every option a job understands is taken through [`Options`], by the connectors for theirs
//! and by the engine for the job's; whatever is left untaken at the end is a typo or an
//! option of a connector the job does not have, and is an error that names it and its
//! position.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{ConnectorError, Result};
pub use crate::sql_position::Position;

/// One `'key' = 'value'` of a `WITH (...)` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionEntry {
    /// The key, as written.
    pub key: String,
    /// The value, as written (without quotes).
    pub value: String,
    /// Where the key is.
    pub position: Position,
}

/// The options of one statement.
#[derive(Debug)]
pub struct Options {
    entries: Vec<OptionEntry>,
    /// Which entries were taken (a mutex, not a cell: a session's futures cross threads).
    taken: Mutex<BTreeSet<usize>>,
    /// Entries from the server config's job defaults: an unused one is no error.
    defaults: BTreeSet<usize>,
}

/// One option, once taken.
#[derive(Debug, Clone, Copy)]
pub struct OptionValue<'a> {
    /// The full key.
    pub key: &'a str,
    /// The value as written.
    pub value: &'a str,
    /// Where it was written (the statement's start, for a default).
    pub position: Position,
    /// Whether it is a default from the server config, not written in the statement.
    pub default: bool,
}

impl OptionValue<'_> {
    /// An error about this option's value.
    pub fn error(&self, message: impl fmt::Display) -> ConnectorError {
        let origin = if self.default {
            " (a job default of the server config)"
        } else {
            ""
        };
        ConnectorError::option(
            format!("'{}' = '{}'{origin}: {message}", self.key, self.value),
            Some(self.position),
        )
    }

    /// The value as a positive whole number.
    pub fn positive(&self) -> Result<usize> {
        match self.value.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(self.error("expected a whole number above 0")),
        }
    }

    /// The value as `true` or `false`.
    pub fn boolean(&self) -> Result<bool> {
        match self.value.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(self.error("expected 'true' or 'false'")),
        }
    }

    /// The value as a duration (`500ms`, `30s`, `1m`, `2h`, `1d`, or `'5 seconds'`).
    pub fn duration(&self) -> Result<Duration> {
        parse_duration(self.value).ok_or_else(|| {
            self.error("expected a duration such as '500ms', '30s', '1m', '2h' or '1d'")
        })
    }

    /// The value as a field delimiter: one character, or `tab`.
    pub fn delimiter(&self) -> Result<u8> {
        match self.value {
            "\\t" | "tab" => Ok(b'\t'),
            v if v.len() == 1 && v.is_ascii() => Ok(v.as_bytes()[0]),
            _ => Err(self.error("expected a single character (or 'tab')")),
        }
    }

    /// The value, which must be one of `choices` (case-insensitive); returned lower-cased.
    pub fn one_of(&self, choices: &[&str]) -> Result<String> {
        let value = self.value.to_ascii_lowercase();
        if choices.contains(&value.as_str()) {
            Ok(value)
        } else {
            Err(self.error(format!("expected one of {}", choices.join(", "))))
        }
    }
}

impl Options {
    /// Options as written in a statement.
    pub fn new(entries: Vec<OptionEntry>) -> Self {
        Self {
            entries,
            taken: Mutex::default(),
            defaults: BTreeSet::new(),
        }
    }

    /// Options as written, then `defaults` (`key`, `value`) for the keys not written,
    /// attributed to `at` (the statement).
    pub fn with_defaults(
        mut entries: Vec<OptionEntry>,
        defaults: &[(String, String)],
        at: Position,
    ) -> Self {
        let mut added = BTreeSet::new();
        for (key, value) in defaults {
            if !entries.iter().any(|e| e.key.eq_ignore_ascii_case(key)) {
                added.insert(entries.len());
                entries.push(OptionEntry {
                    key: key.clone(),
                    value: value.clone(),
                    position: at,
                });
            }
        }
        Self {
            defaults: added,
            ..Self::new(entries)
        }
    }

    /// Takes the option `key` (case-insensitive), if written.
    pub fn get(&self, key: &str) -> Option<OptionValue<'_>> {
        let (i, entry) = self
            .entries
            .iter()
            .enumerate()
            .find(|(_, e)| e.key.eq_ignore_ascii_case(key))?;
        self.taken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(i);
        Some(OptionValue {
            key: &entry.key,
            value: &entry.value,
            position: entry.position,
            default: self.defaults.contains(&i),
        })
    }

    /// Takes every option whose key starts with `prefix` (case-insensitive), with the rest of
    /// its key as written.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, OptionValue<'_>)> {
        let keys: Vec<String> = self
            .entries
            .iter()
            .filter(|e| {
                e.key.len() > prefix.len()
                    && e.key.is_char_boundary(prefix.len())
                    && e.key[..prefix.len()].eq_ignore_ascii_case(prefix)
            })
            .map(|e| e.key.clone())
            .collect();
        keys.into_iter()
            .filter_map(|key| {
                let value = self.get(&key)?;
                Some((key[prefix.len()..].to_string(), value))
            })
            .collect()
    }

    /// Takes the option `key`, which must be written.
    pub fn required(&self, key: &str, why: &str) -> Result<OptionValue<'_>> {
        self.get(key)
            .ok_or_else(|| ConnectorError::option(format!("missing option '{key}' ({why})"), None))
    }

    /// The names that have a `'<name>.type'` option, with that option, in order.
    pub fn typed_names(&self) -> Vec<(String, OptionValue<'_>)> {
        let names: Vec<String> = self
            .entries
            .iter()
            .filter_map(|e| {
                let lower = e.key.to_ascii_lowercase();
                // `'<name>.type'` only: `'<name>.kafka.compression.type'` is a property.
                lower
                    .strip_suffix(".type")
                    .filter(|name| !name.contains('.'))
                    .map(str::to_string)
            })
            .collect();
        names
            .into_iter()
            .map(|name| {
                let value = self.get(&format!("{name}.type")).expect("listed above");
                (name, value)
            })
            .collect()
    }

    /// Fails on the first option nobody took: a typo, or an option for nothing in the job.
    pub fn check_all_taken(&self) -> Result<()> {
        let taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        match self
            .entries
            .iter()
            .enumerate()
            .find(|(i, _)| !taken.contains(i) && !self.defaults.contains(i))
        {
            None => Ok(()),
            Some((_, entry)) => Err(ConnectorError::option(
                format!(
                    "unknown option '{}': no source, sink or job setting of that name",
                    entry.key
                ),
                Some(entry.position),
            )),
        }
    }
}

/// Parses `500ms`, `30s`, `1m`, `2h`, `1d` (whole numbers), or an interval text such as
/// `'5 seconds'` or `'1 minute 30 seconds'` (arrow's interval syntax, fixed units only).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits > 0 {
        let n: u64 = text[..digits].parse().ok()?;
        let unit_ms = match text[digits..].trim() {
            "ms" => Some(1),
            "s" => Some(1_000),
            "m" => Some(60_000),
            "h" => Some(3_600_000),
            "d" => Some(86_400_000),
            _ => None,
        };
        if let Some(unit_ms) = unit_ms {
            return n.checked_mul(unit_ms).map(Duration::from_millis);
        }
    }
    let interval = arrow::compute::kernels::cast_utils::parse_interval_month_day_nano(text).ok()?;
    if interval.months != 0 || interval.days < 0 || interval.nanoseconds < 0 {
        return None;
    }
    Some(
        Duration::from_secs(interval.days as u64 * 86_400)
            + Duration::from_nanos(interval.nanoseconds as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> Options {
        Options::new(
            pairs
                .iter()
                .enumerate()
                .map(|(i, (k, v))| OptionEntry {
                    key: k.to_string(),
                    value: v.to_string(),
                    position: Position {
                        line: i as u64 + 1,
                        column: 3,
                    },
                })
                .collect(),
        )
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("5 seconds"), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_duration("1 minute 30 seconds"),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse_duration("1 month"), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5x"), None);
    }

    #[test]
    fn typed_values_and_their_errors() {
        let o = options(&[
            ("a.type", "file_source"),
            ("A.batch.size", "0"),
            ("a.watch", "yes"),
            ("a.kafka.compression.type", "lz4"),
            ("x", "1"),
        ]);
        let typed = o.typed_names();
        assert_eq!(typed.len(), 1);
        assert_eq!(
            (typed[0].0.as_str(), typed[0].1.value),
            ("a", "file_source")
        );
        let err = o
            .get("a.batch.size")
            .unwrap()
            .positive()
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "option error at 2:3: 'A.batch.size' = '0': expected a whole number above 0"
        );
        assert!(o.get("a.watch").unwrap().boolean().is_err());
        let err = o.check_all_taken().unwrap_err().to_string();
        assert!(
            err.contains("4:3: unknown option 'a.kafka.compression.type'"),
            "{err}"
        );
        let err = o
            .required("a.path", "where to read")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "option error: missing option 'a.path' (where to read)");
        assert!(o.get("a.type").unwrap().one_of(&["file_sink"]).is_err());
        let o = options(&[
            ("k.kafka.acks", "all"),
            ("k.Kafka.linger.ms", "5"),
            ("k.kafka.", "x"),
        ]);
        let passed: Vec<_> = o
            .with_prefix("k.kafka.")
            .into_iter()
            .map(|(k, v)| (k, v.value))
            .collect();
        assert_eq!(
            passed,
            vec![("acks".to_string(), "all"), ("linger.ms".to_string(), "5")]
        );
        assert!(
            o.check_all_taken().is_err(),
            "the bare prefix is no property"
        );
    }
}
