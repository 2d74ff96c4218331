//! The demo's reference data, read from the same CSV files the SQL joins with
//! (`instruments.csv`, `accounts.csv`): which instruments trade, at what tick and lot size and
//! from what price, and which accounts send orders.

use std::path::Path;

use crate::decimal::Fixed;

/// One tradable instrument.
#[derive(Debug, Clone)]
pub struct Instrument {
    pub symbol: String,
    pub lot_size: i64,
    /// The smallest price step; prices are whole multiples of it.
    pub tick: Fixed,
    /// Where the random walk starts.
    pub reference_price: Fixed,
}

/// Reads `instruments.csv`: a header naming at least `symbol`, `lot_size`, `tick_size` and
/// `reference_price`, then one instrument per line.
pub fn instruments(path: &Path) -> Result<Vec<Instrument>, String> {
    let rows = read(
        path,
        &["symbol", "lot_size", "tick_size", "reference_price"],
    )?;
    rows.into_iter()
        .map(|(line, f)| {
            let at = |what: &str, e: String| format!("{}:{line}: {what}: {e}", path.display());
            let lot_size = f[1]
                .parse::<i64>()
                .ok()
                .filter(|lot| *lot > 0)
                .ok_or_else(|| at("lot_size", format!("'{}' is no positive integer", f[1])))?;
            let tick = Fixed::parse(&f[2]).map_err(|e| at("tick_size", e))?;
            if tick.units <= 0 {
                return Err(at("tick_size", format!("'{}' is not above zero", f[2])));
            }
            let reference_price = Fixed::parse(&f[3])
                .map_err(|e| at("reference_price", e))?
                .to_multiple_of(tick)
                .map_err(|e| at("reference_price", e))?;
            Ok(Instrument {
                symbol: f[0].clone(),
                lot_size,
                tick,
                reference_price,
            })
        })
        .collect()
}

/// Reads the `account` column of `accounts.csv`.
pub fn accounts(path: &Path) -> Result<Vec<String>, String> {
    Ok(read(path, &["account"])?
        .into_iter()
        .map(|(_, mut fields)| fields.swap_remove(0))
        .collect())
}

/// The `columns` of every line after the header, with their line numbers. The files hold no
/// quoted fields, so a comma always separates.
fn read(path: &Path, columns: &[&str]) -> Result<Vec<(usize, Vec<String>)>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, h)| h.split(',').collect())
        .unwrap_or_default();
    let wanted: Vec<usize> = columns
        .iter()
        .map(|c| {
            header
                .iter()
                .position(|h| h == c)
                .ok_or_else(|| format!("{}:1: no column '{c}' in the header", path.display()))
        })
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    for (index, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != header.len() {
            return Err(format!(
                "{}:{}: {} fields, the header has {}",
                path.display(),
                index + 1,
                fields.len(),
                header.len()
            ));
        }
        rows.push((
            index + 1,
            wanted.iter().map(|&i| fields[i].to_string()).collect(),
        ));
    }
    if rows.is_empty() {
        return Err(format!("{}: no rows after the header", path.display()));
    }
    Ok(rows)
}
