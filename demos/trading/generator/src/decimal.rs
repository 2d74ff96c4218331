//! Exact decimal prices: an integer count of units at a fixed scale, written out as decimal
//! text. The generator never holds a price as a binary float.

/// The most decimal places a price may have.
const MAX_SCALE: u32 = 9;
/// Prices stay below this, so that any of them at [`MAX_SCALE`] fits an `i64`.
const MAX_WHOLE: i64 = 1_000_000_000;

/// `units / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixed {
    pub units: i64,
    pub scale: u32,
}

impl Fixed {
    /// Reads decimal text such as `229.50` or `8420`: at most nine decimal places, and
    /// below a billion.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let no_number = || format!("'{text}' is no decimal number");
        if whole.is_empty() || !fraction.chars().all(|c| c.is_ascii_digit()) {
            return Err(no_number());
        }
        let whole_value = whole.parse::<i64>().map_err(|_| no_number())?;
        if fraction.len() as u32 > MAX_SCALE || whole_value.abs() >= MAX_WHOLE {
            return Err(format!(
                "'{text}': prices have at most {MAX_SCALE} decimal places and stay below {MAX_WHOLE}"
            ));
        }
        let units = format!("{whole}{fraction}")
            .parse::<i64>()
            .map_err(|_| no_number())?;
        Ok(Self {
            units,
            scale: fraction.len() as u32,
        })
    }

    /// The same value at `scale` (which must not be smaller than its own).
    fn at_scale(self, scale: u32) -> i64 {
        self.units * 10i64.pow(scale - self.scale)
    }

    /// The nearest multiple of `tick` at or below this value, at the tick's scale.
    pub fn to_multiple_of(self, tick: Fixed) -> Result<Self, String> {
        let scale = self.scale.max(tick.scale);
        let (value, step) = (self.at_scale(scale), tick.at_scale(scale));
        let rounded = value - value.rem_euclid(step);
        if rounded <= 0 {
            return Err(format!("{self} is below one tick ({tick})"));
        }
        Ok(Self {
            units: rounded,
            scale,
        })
    }

    /// `ticks` steps of `tick`, at the same scale as `self`'s (the tick's or finer).
    pub fn plus_ticks(self, ticks: i64, tick: Fixed) -> Self {
        Self {
            units: self.units + ticks * tick.at_scale(self.scale),
            scale: self.scale,
        }
    }
}

impl std::fmt::Display for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.units < 0 { "-" } else { "" };
        let magnitude = self.units.unsigned_abs();
        if self.scale == 0 {
            return write!(f, "{sign}{magnitude}");
        }
        let divisor = 10u64.pow(self.scale);
        write!(
            f,
            "{sign}{}.{:0width$}",
            magnitude / divisor,
            magnitude % divisor,
            width = self.scale as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Fixed;

    #[test]
    fn prices_are_written_back_as_they_were_read_and_move_by_whole_ticks() {
        let tick = Fixed::parse("0.005").unwrap();
        let price = Fixed::parse("26.915")
            .unwrap()
            .to_multiple_of(tick)
            .unwrap();
        assert_eq!(price.to_string(), "26.915");
        assert_eq!(price.plus_ticks(-3, tick).to_string(), "26.900");
        let yen = Fixed::parse("2850.3").unwrap();
        assert_eq!(
            yen.to_multiple_of(Fixed::parse("0.5").unwrap())
                .unwrap()
                .to_string(),
            "2850.0"
        );
        assert_eq!(Fixed::parse("8420").unwrap().to_string(), "8420");
        assert!(Fixed::parse("12.x").is_err());
        assert!(Fixed::parse(".5").is_err());
        assert!(Fixed::parse("1.0000000001").is_err());
        assert!(Fixed::parse("1000000000").is_err());
        assert!(Fixed::parse("0.001").unwrap().to_multiple_of(tick).is_err());
    }
}
