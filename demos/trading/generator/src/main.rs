//! `ferris-market-gen`: the trading demo's market data on Kafka, as Protobuf messages keyed
//! by symbol, on the topics `quotes`, `trades`, `orders` and `fills` (demos/trading/README.md).
//!
//!     ferris-market-gen [--bootstrap HOST:PORT] [--rate PER_SECOND] [--duration SECONDS]
//!                       [--speed FACTOR] [--seed N] [--late-every N] [--data DIR]
//!
//! It writes until `--duration` has passed (or it is stopped), then prints how many messages
//! it wrote and how fast. Event times start at the wall clock's and run `--speed` times as
//! fast (a minute of trading in six seconds at 10), for tests that wait for minutes to close.

mod decimal;
mod encode;
mod market;
mod reference;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Mutex;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

use crate::encode::Encoder;
use crate::market::{Behaviour, Event, Market};

const USAGE: &str = "usage: ferris-market-gen [--bootstrap HOST:PORT] [--rate PER_SECOND] \
                     [--duration SECONDS] [--speed FACTOR] [--seed N] [--late-every N] [--data DIR]";

/// What the command line asks for.
struct Options {
    bootstrap: String,
    rate: f64,
    duration: Option<Duration>,
    /// How much faster than the wall clock event time runs.
    speed: f64,
    seed: u64,
    late_every: u64,
    /// Where `instruments.csv`, `accounts.csv` and `proto/` are.
    data: PathBuf,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        bootstrap: "127.0.0.1:9092".into(),
        rate: 2_000.0,
        duration: None,
        speed: 1.0,
        seed: 42,
        late_every: 5_000,
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |what: &str| -> Result<f64, String> {
            value
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| format!("{flag}: '{value}' is no {what}"))
        };
        match flag.as_str() {
            "--bootstrap" => options.bootstrap = value.clone(),
            "--rate" => options.rate = number("positive number").and_then(positive)?,
            "--duration" => {
                let seconds = value.strip_suffix('s').unwrap_or(&value);
                let seconds = seconds
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| format!("--duration: '{value}' is no number of seconds"))?;
                options.duration = Some(Duration::from_secs_f64(seconds));
            }
            "--speed" => options.speed = number("positive number").and_then(positive)?,
            "--seed" => options.seed = number("whole number")? as u64,
            "--late-every" => options.late_every = number("whole number")? as u64,
            "--data" => options.data = PathBuf::from(&value),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    Ok(options)
}

fn positive(n: f64) -> Result<f64, String> {
    if n > 0.0 {
        Ok(n)
    } else {
        Err(format!("{n} is not above 0"))
    }
}

fn main() {
    if let Err(message) = run() {
        eprintln!("ferris-market-gen: {message}");
        std::process::exit(1);
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn run() -> Result<(), String> {
    let options = options()?;
    let instruments = reference::instruments(&options.data.join("instruments.csv"))?;
    let accounts = reference::accounts(&options.data.join("accounts.csv"))?;
    let encoder = Encoder::compile(&options.data.join("proto"))?;
    let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", &options.bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "30000")
        .create_with_context(Deliveries::default())
        .map_err(|e| format!("connecting to {}: {e}", options.bootstrap))?;

    let behaviour = Behaviour {
        out_of_order_share: 0.05,
        out_of_order_ms: 2_000,
        late_every: options.late_every,
    };
    let started_ms = now_ms();
    let started = Instant::now();
    // Event time: the wall clock's at the start, then `speed` times as fast.
    let event_time =
        || started_ms + (started.elapsed().as_secs_f64() * 1000.0 * options.speed) as i64;
    let mut market = Market::new(instruments, accounts, behaviour, options.seed, started_ms);
    let mut written = Counts::default();
    let mut events: Vec<Event> = Vec::new();
    // Messages are owed at the rate (five times it in a burst) and written as they fall due.
    let mut owed = 0.0;
    let mut last = started;
    while options.duration.is_none_or(|d| started.elapsed() < d) {
        if let Some(failure) = producer.context().failure() {
            return Err(failure);
        }
        let now = Instant::now();
        let rate = if market.bursting(event_time()) {
            options.rate * 5.0
        } else {
            options.rate
        };
        // Owed at most a second's worth: a generator that cannot keep up writes as fast as
        // it can rather than ever faster to catch up.
        owed = (owed + rate * now.duration_since(last).as_secs_f64()).min(rate.max(1.0));
        last = now;
        if owed < 1.0 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let time = event_time();
        // A millisecond's share at most, then the clock is read again.
        let mut this_round = owed.min(rate / 1000.0 + 1.0);
        while this_round >= 1.0 {
            events.clear();
            market.next(time, &mut events);
            for event in &events {
                send(&producer, &encoder, event, &mut written)?;
                owed -= 1.0;
                this_round -= 1.0;
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("flushing the last messages: {e}"))?;
    if let Some(failure) = producer.context().failure() {
        return Err(failure);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "ferris-market-gen: {} messages ({} bytes) in {seconds:.1} s ({:.0}/s): {} quotes, \
         {} trades ({} of schema version 1), {} orders, {} fills",
        written.total,
        written.bytes,
        written.total as f64 / seconds,
        written.quotes,
        written.trades,
        written.v1,
        written.orders,
        written.fills
    );
    Ok(())
}

/// The first message the broker did not take, if any: the generator then stops, as a demo
/// whose input has holes would check nothing.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Option<String>>,
}

impl Deliveries {
    fn failure(&self) -> Option<String> {
        self.failed.lock().map(|f| f.clone()).unwrap_or(None)
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, message)) = result
            && let Ok(mut failed) = self.failed.lock()
        {
            use rdkafka::Message as _;
            failed.get_or_insert_with(|| format!("writing to '{}': {e}", message.topic()));
        }
    }
}

/// Messages written, by topic.
#[derive(Default)]
struct Counts {
    total: u64,
    /// Keys and values.
    bytes: u64,
    quotes: u64,
    trades: u64,
    orders: u64,
    fills: u64,
    v1: u64,
}

/// Writes one event, waiting while the producer's queue is full.
fn send(
    producer: &ThreadedProducer<Deliveries>,
    encoder: &Encoder,
    event: &Event,
    written: &mut Counts,
) -> Result<(), String> {
    let encoded = encoder.encode(event);
    let mut record = BaseRecord::to(encoded.topic)
        .key(event.symbol())
        .payload(&encoded.payload);
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(format!("writing to '{}': {e}", encoded.topic)),
        }
    }
    written.total += 1;
    written.bytes += (event.symbol().len() + encoded.payload.len()) as u64;
    written.v1 += u64::from(encoded.version == 1);
    *match encoded.topic {
        "quotes" => &mut written.quotes,
        "trades" => &mut written.trades,
        "orders" => &mut written.orders,
        _ => &mut written.fills,
    } += 1;
    Ok(())
}
