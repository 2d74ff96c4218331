//! Market events as Protobuf messages of `market_v1.proto` or `market_v2.proto`, both compiled
//! at start (protox: no `protoc`). Trades printed on XNYS come from the feed handler that
//! still writes version 1; everything else is version 2, so both are on the topics at once.

use std::path::Path;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

use crate::decimal::Fixed;
use crate::market::{Event, Venue};

/// The message types the generator writes, which both versions define.
const MESSAGES: [&str; 5] = [
    "market.Quote",
    "market.Trade",
    "market.Order",
    "market.Fill",
    "google.protobuf.Timestamp",
];

/// The two versions' message types.
pub struct Encoder {
    v1: DescriptorPool,
    v2: DescriptorPool,
}

/// Which topic an event goes to, and its encoded message.
pub struct Encoded {
    pub topic: &'static str,
    pub version: u8,
    pub payload: Vec<u8>,
}

impl Encoder {
    /// Compiles `market_v1.proto` and `market_v2.proto` of `folder`.
    pub fn compile(folder: &Path) -> Result<Self, String> {
        let pool = |file: &str| -> Result<DescriptorPool, String> {
            let mut compiler = protox::Compiler::new([folder])
                .map_err(|e| format!("{}: {e}", folder.display()))?;
            compiler.include_imports(true);
            compiler
                .open_file(file)
                .map_err(|e| format!("{}: {e}", folder.join(file).display()))?;
            Ok(compiler.descriptor_pool())
        };
        let encoder = Self {
            v1: pool("market_v1.proto")?,
            v2: pool("market_v2.proto")?,
        };
        for (file, pool) in [
            ("market_v1.proto", &encoder.v1),
            ("market_v2.proto", &encoder.v2),
        ] {
            for name in MESSAGES {
                if pool.get_message_by_name(name).is_none() {
                    return Err(format!(
                        "{}: no message {name}",
                        folder.join(file).display()
                    ));
                }
            }
        }
        Ok(encoder)
    }

    pub fn encode(&self, event: &Event) -> Encoded {
        let version = match event {
            Event::Trade { venue, .. } if *venue == Venue::Xnys => 1,
            _ => 2,
        };
        let pool = if version == 1 { &self.v1 } else { &self.v2 };
        let (topic, message) = match event {
            Event::Quote {
                symbol,
                bid,
                ask,
                bid_size,
                ask_size,
                time_ms,
            } => {
                let mut m = message(pool, "market.Quote");
                set_text(&mut m, "symbol", symbol);
                set_price(&mut m, "bid", bid);
                set_price(&mut m, "ask", ask);
                m.set_field_by_name("bid_size", Value::I64(*bid_size));
                m.set_field_by_name("ask_size", Value::I64(*ask_size));
                set_time(pool, &mut m, "exchange_time", *time_ms);
                ("quotes", m)
            }
            Event::Trade {
                symbol,
                price,
                qty,
                venue,
                trade_id,
                time_ms,
                aggressor,
            } => {
                let mut m = message(pool, "market.Trade");
                set_text(&mut m, "symbol", symbol);
                set_price(&mut m, "price", price);
                m.set_field_by_name("qty", Value::I64(*qty));
                m.set_field_by_name("venue", Value::EnumNumber(*venue as i32));
                set_text(&mut m, "trade_id", trade_id);
                set_time(pool, &mut m, "exchange_time", *time_ms);
                if version == 1 {
                    // Regular sale, or at times an intermarket sweep.
                    let condition = if trade_id.ends_with('7') { "F" } else { "@" };
                    set_text(&mut m, "condition", condition);
                } else {
                    m.set_field_by_name("aggressor", Value::EnumNumber(*aggressor as i32));
                }
                ("trades", m)
            }
            Event::Order {
                order_id,
                account,
                symbol,
                side,
                limit_price,
                qty,
                time_ms,
            } => {
                let mut m = message(pool, "market.Order");
                set_text(&mut m, "order_id", order_id);
                set_text(&mut m, "account", account);
                set_text(&mut m, "symbol", symbol);
                m.set_field_by_name("side", Value::EnumNumber(*side as i32));
                set_price(&mut m, "limit_price", limit_price);
                m.set_field_by_name("qty", Value::I64(*qty));
                set_time(pool, &mut m, "time", *time_ms);
                ("orders", m)
            }
            Event::Fill {
                fill_id,
                order_id,
                account,
                symbol,
                side,
                price,
                qty,
                time_ms,
            } => {
                let mut m = message(pool, "market.Fill");
                set_text(&mut m, "fill_id", fill_id);
                set_text(&mut m, "order_id", order_id);
                set_text(&mut m, "account", account);
                set_text(&mut m, "symbol", symbol);
                m.set_field_by_name("side", Value::EnumNumber(*side as i32));
                set_price(&mut m, "price", price);
                m.set_field_by_name("qty", Value::I64(*qty));
                set_time(pool, &mut m, "time", *time_ms);
                ("fills", m)
            }
        };
        Encoded {
            topic,
            version,
            payload: message.encode_to_vec(),
        }
    }
}

fn descriptor(pool: &DescriptorPool, name: &str) -> MessageDescriptor {
    pool.get_message_by_name(name)
        .expect("Encoder::compile checked that both versions define it")
}

fn message(pool: &DescriptorPool, name: &str) -> DynamicMessage {
    DynamicMessage::new(descriptor(pool, name))
}

fn set_text(message: &mut DynamicMessage, field: &str, text: &str) {
    message.set_field_by_name(field, Value::String(text.to_string()));
}

fn set_price(message: &mut DynamicMessage, field: &str, price: &Fixed) {
    set_text(message, field, &price.to_string());
}

fn set_time(pool: &DescriptorPool, message: &mut DynamicMessage, field: &str, time_ms: i64) {
    let mut timestamp = DynamicMessage::new(descriptor(pool, "google.protobuf.Timestamp"));
    timestamp.set_field_by_name("seconds", Value::I64(time_ms.div_euclid(1000)));
    timestamp.set_field_by_name(
        "nanos",
        Value::I32((time_ms.rem_euclid(1000) * 1_000_000) as i32),
    );
    message.set_field_by_name(field, Value::Message(timestamp));
}
