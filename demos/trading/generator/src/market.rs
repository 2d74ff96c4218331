//! The simulated market: a random walk per instrument in whole ticks, quotes around it, trades
//! on three (four) venues, news bursts that move one instrument fast, and accounts' orders
//! filled in parts over the next seconds. Event times are the wall clock's, a few of them out
//! of order and, rarely, minutes late.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::decimal::Fixed;
use crate::reference::Instrument;

/// How the market behaves besides its instruments.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// The share of events whose time lies up to `out_of_order_ms` in the past.
    pub out_of_order_share: f64,
    pub out_of_order_ms: i64,
    /// One trade in this many is three minutes late (its window long closed); 0: none.
    pub late_every: u64,
}

/// Sides of an order or of a trade's aggressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    Buy = 1,
    Sell = 2,
}

/// Venues, as the `.proto`'s enum numbers. IEXG exists only in version 2 of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Venue {
    Xnas = 1,
    Xnys = 2,
    Bats = 3,
    Iexg = 4,
}

/// One market data message to write.
#[derive(Debug, Clone)]
pub enum Event {
    Quote {
        symbol: String,
        bid: Fixed,
        ask: Fixed,
        bid_size: i64,
        ask_size: i64,
        time_ms: i64,
    },
    Trade {
        symbol: String,
        price: Fixed,
        qty: i64,
        venue: Venue,
        trade_id: String,
        time_ms: i64,
        aggressor: Side,
    },
    Order {
        order_id: String,
        account: String,
        symbol: String,
        side: Side,
        limit_price: Fixed,
        qty: i64,
        time_ms: i64,
    },
    Fill {
        fill_id: String,
        order_id: String,
        account: String,
        symbol: String,
        side: Side,
        price: Fixed,
        qty: i64,
        time_ms: i64,
    },
}

impl Event {
    /// The symbol, which keys the message on its topic.
    pub fn symbol(&self) -> &str {
        match self {
            Event::Quote { symbol, .. }
            | Event::Trade { symbol, .. }
            | Event::Order { symbol, .. }
            | Event::Fill { symbol, .. } => symbol,
        }
    }
}

/// A fill waiting for its time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PendingFill {
    due_ms: i64,
    sequence: u64,
    order_id: String,
    account: String,
    instrument: usize,
    side: Side,
    limit_units: i64,
    qty: i64,
}

/// A news burst: one instrument trades several times faster and moves about 2 % one way.
struct Burst {
    instrument: usize,
    until_ms: i64,
    target_units: i64,
}

/// The market's state.
pub struct Market {
    instruments: Vec<Instrument>,
    prices: Vec<Fixed>,
    last_trade_ms: Vec<i64>,
    /// Cumulative activity weights: some instruments trade far more than others.
    weights: Vec<f64>,
    accounts: Vec<String>,
    behaviour: Behaviour,
    random: Random,
    sequence: u64,
    trades: u64,
    pending: BinaryHeap<Reverse<PendingFill>>,
    burst: Option<Burst>,
    next_burst_ms: i64,
}

impl Market {
    pub fn new(
        instruments: Vec<Instrument>,
        accounts: Vec<String>,
        behaviour: Behaviour,
        seed: u64,
        now_ms: i64,
    ) -> Self {
        let mut random = Random(seed);
        let mut total = 0.0;
        let weights = instruments
            .iter()
            .map(|_| {
                total += 0.2 + random.uniform() * random.uniform() * 3.0;
                total
            })
            .collect();
        Self {
            prices: instruments.iter().map(|i| i.reference_price).collect(),
            last_trade_ms: vec![now_ms; instruments.len()],
            instruments,
            weights,
            accounts,
            behaviour,
            random,
            sequence: 0,
            trades: 0,
            pending: BinaryHeap::new(),
            burst: None,
            next_burst_ms: now_ms + 15_000,
        }
    }

    /// Whether a burst runs at `now_ms`: the generator then writes faster.
    pub fn bursting(&mut self, now_ms: i64) -> bool {
        if self.burst.as_ref().is_some_and(|b| b.until_ms <= now_ms) {
            self.burst = None;
        }
        if self.burst.is_none() && now_ms >= self.next_burst_ms {
            let instrument = self.random.below(self.instruments.len() as u64) as usize;
            let move_by = if self.random.uniform() < 0.5 {
                0.02
            } else {
                -0.02
            };
            let units = self.prices[instrument].units;
            self.burst = Some(Burst {
                instrument,
                until_ms: now_ms + 3_000,
                target_units: units + (units as f64 * move_by) as i64,
            });
            self.next_burst_ms = now_ms + 20_000 + self.random.below(20_000) as i64;
        }
        self.burst.is_some()
    }

    /// The next events at `now_ms`: the fills that are due, and a trade (with, at times, a
    /// quote and an order).
    pub fn next(&mut self, now_ms: i64, out: &mut Vec<Event>) {
        while self
            .pending
            .peek()
            .is_some_and(|Reverse(due)| due.due_ms <= now_ms)
        {
            let Reverse(fill) = self.pending.pop().expect("peeked");
            out.push(self.fill(fill, now_ms));
        }
        let instrument = match &self.burst {
            Some(burst) if self.random.uniform() < 0.6 => burst.instrument,
            _ => self.pick_instrument(),
        };
        self.trade(instrument, now_ms, out);
        if self.random.uniform() < 0.5 {
            out.push(self.quote(instrument, now_ms));
        }
        if self.random.uniform() < 0.08 {
            out.push(self.order(instrument, now_ms));
        }
    }

    fn pick_instrument(&mut self) -> usize {
        let total = *self.weights.last().expect("at least one instrument");
        let target = self.random.uniform() * total;
        self.weights
            .partition_point(|w| *w < target)
            .min(self.weights.len() - 1)
    }

    /// The event time of a message sent at `now_ms`: at times somewhat earlier.
    fn event_time(&mut self, now_ms: i64) -> i64 {
        if self.random.uniform() < self.behaviour.out_of_order_share {
            now_ms - self.random.below(self.behaviour.out_of_order_ms as u64 + 1) as i64
        } else {
            now_ms
        }
    }

    fn trade(&mut self, instrument: usize, now_ms: i64, out: &mut Vec<Event>) {
        let tick = self.instruments[instrument].tick;
        let price = self.prices[instrument];
        let tick_units = tick.units as f64 * 10f64.powi((price.scale - tick.scale) as i32);
        // 0.03 % per square root of a second since the instrument last traded, in whole ticks
        // (so a quiet instrument's price mostly stays put), whatever the rate.
        let seconds = ((now_ms - self.last_trade_ms[instrument]).max(1) as f64) / 1000.0;
        self.last_trade_ms[instrument] = now_ms;
        let sigma = price.units as f64 * 0.0003 * seconds.sqrt() / tick_units;
        let mut step = (self.random.normal() * sigma).round() as i64;
        // A burst pulls its instrument a twentieth of the way to its target on every trade.
        if let Some(burst) = self.burst.as_ref().filter(|b| b.instrument == instrument) {
            step += ((burst.target_units - price.units) as f64 / tick_units / 20.0).round() as i64;
        }
        let moved = price.plus_ticks(step, tick);
        if moved.units as f64 > tick_units {
            self.prices[instrument] = moved;
        }
        let lot = self.instruments[instrument].lot_size;
        let qty = lot * (1 + (self.random.uniform().powi(3) * 50.0) as i64) * self.round_lot();
        self.trades += 1;
        let late =
            self.behaviour.late_every > 0 && self.trades.is_multiple_of(self.behaviour.late_every);
        let time_ms = if late {
            now_ms - 180_000
        } else {
            self.event_time(now_ms)
        };
        let venue = match self.random.below(10) {
            0..=3 => Venue::Xnas,
            4..=6 => Venue::Xnys,
            7..=8 => Venue::Bats,
            _ => Venue::Iexg,
        };
        out.push(Event::Trade {
            symbol: self.instruments[instrument].symbol.clone(),
            price: self.prices[instrument],
            qty,
            venue,
            trade_id: format!("T{:010}", self.trades),
            time_ms,
            aggressor: if step >= 0 { Side::Buy } else { Side::Sell },
        });
    }

    /// 1, or at times 100: most prints are odd lots, some are round lots.
    fn round_lot(&mut self) -> i64 {
        if self.random.uniform() < 0.1 { 100 } else { 1 }
    }

    fn quote(&mut self, instrument: usize, now_ms: i64) -> Event {
        let tick = self.instruments[instrument].tick;
        let price = self.prices[instrument];
        let half_spread = 1 + self.random.below(3) as i64;
        let lot = self.instruments[instrument].lot_size;
        let bid = price.plus_ticks(-half_spread, tick);
        Event::Quote {
            symbol: self.instruments[instrument].symbol.clone(),
            bid: if bid.units > 0 { bid } else { price },
            ask: price.plus_ticks(half_spread, tick),
            bid_size: lot * 100 * (1 + self.random.below(20) as i64),
            ask_size: lot * 100 * (1 + self.random.below(20) as i64),
            time_ms: self.event_time(now_ms),
        }
    }

    /// An account's order near the market; most are filled in one to three parts within the
    /// next four seconds, at the limit or better.
    fn order(&mut self, instrument: usize, now_ms: i64) -> Event {
        self.sequence += 1;
        let order_id = format!("O{:09}", self.sequence);
        let account = self.accounts[self.random.below(self.accounts.len() as u64) as usize].clone();
        let side = if self.random.uniform() < 0.5 {
            Side::Buy
        } else {
            Side::Sell
        };
        let tick = self.instruments[instrument].tick;
        let away = self.random.below(3) as i64;
        let limit_price =
            self.prices[instrument].plus_ticks(if side == Side::Buy { away } else { -away }, tick);
        let lot = self.instruments[instrument].lot_size;
        let qty = lot * 100 * (1 + self.random.below(10) as i64);
        if self.random.uniform() < 0.85 {
            let parts = 1 + self.random.below(3) as i64;
            let mut left = qty;
            for part in 0..parts {
                let size = if part == parts - 1 {
                    left
                } else {
                    (qty / parts / lot) * lot
                };
                left -= size;
                self.sequence += 1;
                self.pending.push(Reverse(PendingFill {
                    due_ms: now_ms + 50 + self.random.below(4_000) as i64,
                    sequence: self.sequence,
                    order_id: order_id.clone(),
                    account: account.clone(),
                    instrument,
                    side,
                    limit_units: limit_price.units,
                    qty: size,
                }));
            }
        }
        Event::Order {
            order_id,
            account,
            symbol: self.instruments[instrument].symbol.clone(),
            side,
            limit_price,
            qty,
            time_ms: now_ms,
        }
    }

    /// A fill at the market if that is at the limit or better, else at the limit.
    fn fill(&mut self, pending: PendingFill, now_ms: i64) -> Event {
        let market = self.prices[pending.instrument];
        let limit = Fixed {
            units: pending.limit_units,
            scale: market.scale,
        };
        let price = match pending.side {
            Side::Buy if market.units <= limit.units => market,
            Side::Sell if market.units >= limit.units => market,
            _ => limit,
        };
        Event::Fill {
            fill_id: format!("F{:09}", pending.sequence),
            order_id: pending.order_id,
            account: pending.account,
            symbol: self.instruments[pending.instrument].symbol.clone(),
            side: pending.side,
            price,
            qty: pending.qty,
            time_ms: now_ms,
        }
    }
}

/// splitmix64: fast, seedable, good enough for a simulation.
struct Random(u64);

impl Random {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(f64::MIN_POSITIVE);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Instrument;

    fn instrument(symbol: &str, tick: &str, price: &str, lot: i64) -> Instrument {
        let tick = Fixed::parse(tick).unwrap();
        Instrument {
            symbol: symbol.into(),
            lot_size: lot,
            tick,
            reference_price: Fixed::parse(price).unwrap().to_multiple_of(tick).unwrap(),
        }
    }

    #[test]
    fn prices_stay_on_their_ticks_and_every_order_s_fills_add_up_to_at_most_its_quantity() {
        let instruments = vec![
            instrument("AAPL", "0.01", "229.50", 1),
            instrument("SHEL", "0.005", "26.915", 1),
            instrument("7203", "0.5", "2850.0", 100),
        ];
        let behaviour = Behaviour {
            out_of_order_share: 0.1,
            out_of_order_ms: 2_000,
            late_every: 100,
        };
        let mut market = Market::new(
            instruments.clone(),
            vec!["ACC001".into()],
            behaviour,
            7,
            200_000,
        );
        let mut events = Vec::new();
        for now in 200_000..220_000 {
            market.bursting(now);
            market.next(now, &mut events);
        }
        let mut ordered = std::collections::HashMap::new();
        let mut filled = std::collections::HashMap::<String, i64>::new();
        let mut late = 0;
        for event in &events {
            match event {
                Event::Trade {
                    symbol,
                    price,
                    qty,
                    time_ms,
                    ..
                } => {
                    let i = instruments.iter().find(|i| &i.symbol == symbol).unwrap();
                    let step = i.tick.units * 10i64.pow(price.scale - i.tick.scale);
                    assert_eq!(price.units % step, 0, "{symbol} at {price}");
                    assert!(price.units > 0 && qty % i.lot_size == 0);
                    late += usize::from(*time_ms < 100_000);
                }
                Event::Order { order_id, qty, .. } => {
                    ordered.insert(order_id.clone(), *qty);
                }
                Event::Fill { order_id, qty, .. } => {
                    *filled.entry(order_id.clone()).or_default() += qty;
                }
                Event::Quote { bid, ask, .. } => assert!(bid.units < ask.units),
            }
        }
        assert!(late > 0, "some trades are late");
        assert!(!filled.is_empty());
        for (order, qty) in filled {
            assert!(qty <= ordered[&order], "order {order} overfilled");
        }
    }
}
