//! Window shapes, aligned to the Unix epoch in UTC, all times in epoch milliseconds, and when
//! a window's rows are emitted.

use std::fmt;

/// How rows are grouped in event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// `[floor(t / size) * size, + size)`.
    Tumbling {
        /// Window length (ms).
        size: i64,
    },
    /// Every `[k * slide, k * slide + size)` that contains t.
    Sliding {
        /// Window length (ms).
        size: i64,
        /// Distance between window starts (ms).
        slide: i64,
    },
    /// Per key, events closer than `gap` share a window `[first, last + gap)`.
    Session {
        /// Inactivity gap (ms).
        gap: i64,
    },
    /// No window: one group per key for all time (a continuously updated table).
    Global,
}

impl WindowSpec {
    /// Starts of the windows containing `t`, in increasing order (not for sessions).
    pub fn starts(&self, t: i64) -> impl Iterator<Item = i64> + '_ {
        let (first, last, step) = match *self {
            Self::Tumbling { size } => {
                let start = t.div_euclid(size) * size;
                (start, start, size)
            }
            Self::Sliding { size, slide } => {
                let last = t.div_euclid(slide) * slide;
                // The earliest window still containing t starts after t - size.
                let first = (t - size).div_euclid(slide) * slide + slide;
                (first, last, slide)
            }
            Self::Session { .. } | Self::Global => (0, -1, 1),
        };
        (0..)
            .map(move |k| first + k * step)
            .take_while(move |s| *s <= last)
    }

    /// End of the window starting at `start` (sessions: given per window; global: never).
    pub fn end_of(&self, start: i64) -> i64 {
        match *self {
            Self::Tumbling { size } | Self::Sliding { size, .. } => start + size,
            Self::Session { .. } | Self::Global => i64::MAX,
        }
    }

    /// The end of the last window a record at `t` can belong to: once the watermark
    /// reaches it, the record is late.
    pub fn last_end(&self, t: i64) -> i64 {
        match *self {
            Self::Tumbling { size } => t.div_euclid(size) * size + size,
            Self::Sliding { size, slide } => t.div_euclid(slide) * slide + size,
            Self::Session { gap } => t.saturating_add(gap),
            Self::Global => i64::MAX,
        }
    }

    /// Whether the window is an event-time window at all.
    pub fn is_windowed(&self) -> bool {
        !matches!(self, Self::Global)
    }
}

/// When results leave the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    /// After each micro-batch, the current row of every group it changed.
    Changes,
    /// Once per window and group, when the watermark passes the window's end.
    Final,
}

impl fmt::Display for EmitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Changes => "CHANGES",
            Self::Final => "FINAL",
        })
    }
}

fn duration(f: &mut fmt::Formatter<'_>, ms: i64) -> fmt::Result {
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms % per == 0 {
            return write!(f, "{}{unit}", ms / per);
        }
    }
    write!(f, "{ms}ms")
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Tumbling { size } => {
                f.write_str("TUMBLING(")?;
                duration(f, size)?;
            }
            Self::Sliding { size, slide } => {
                f.write_str("SLIDING(")?;
                duration(f, size)?;
                f.write_str(", ")?;
                duration(f, slide)?;
            }
            Self::Session { gap } => {
                f.write_str("SESSION(")?;
                duration(f, gap)?;
            }
            Self::Global => return f.write_str("GLOBAL"),
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_windows_align_to_the_epoch_also_before_it() {
        let w = WindowSpec::Tumbling { size: 10 };
        assert_eq!(w.starts(25).collect::<Vec<_>>(), [20]);
        assert_eq!(w.starts(-1).collect::<Vec<_>>(), [-10]);
        assert_eq!(w.last_end(20), 30);
        assert_eq!(w.to_string(), "TUMBLING(10ms)");
    }

    #[test]
    fn sliding_windows_cover_every_start_containing_t() {
        let w = WindowSpec::Sliding {
            size: 30,
            slide: 10,
        };
        assert_eq!(w.starts(25).collect::<Vec<_>>(), [0, 10, 20]);
        assert_eq!(w.starts(30).collect::<Vec<_>>(), [10, 20, 30]);
        assert_eq!(w.last_end(25), 50);
        let gappy = WindowSpec::Sliding { size: 5, slide: 10 };
        assert_eq!(gappy.starts(7).count(), 0);
        assert_eq!(gappy.starts(12).collect::<Vec<_>>(), [10]);
        assert_eq!(
            WindowSpec::Sliding {
                size: 60_000,
                slide: 1_000
            }
            .to_string(),
            "SLIDING(1m, 1s)"
        );
    }
}
