//! `POST /api/v1/query`: the SQL in the body runs as a Flight SQL client's would, and its rows
//! come back as Server-Sent Events while they are made, so that a push query over a stream
//! follows it for as long as the client stays (the dashboard's live views, `curl -N`).
//!
//! The events, each `data` one line of JSON:
//! - `schema`: the columns, `[{"name": ..., "type": ...}]`;
//! - `rows`: one batch's rows, `[{column: value}]`, decimals as exact text;
//! - `end`: `{"rows": N}` once a bounded result is complete;
//! - `error`: `{"error": message}`, the engine's (a SQL error names its position).
//!
//! A comment line goes out when nothing else has for [`KEEP_ALIVE`], so that proxies keep
//! the connection and a client that left is noticed (its query is then dropped).

use std::convert::Infallible;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use bytes::Bytes;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::rest::SqlService;

/// Where the route is served.
pub const PATH: &str = "/api/v1/query";

/// A response's body: whole, or a stream of events.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// How long the stream may stay silent before a comment line goes out.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Answers `POST` [`PATH`] (with the token, when the server has one): 400 with `{"error"}` when the statement fails before its first
/// row, else `200 text/event-stream`.
pub async fn answer(service: &impl SqlService, request: Request<Incoming>) -> Response<Body> {
    if let Some(refused) = crate::rest::unauthorized(service, &request) {
        return refused.map(BodyExt::boxed_unsync);
    }
    if request.method() != Method::POST {
        let mut response = crate::rest::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "this route takes POST, with the SQL as the body",
        );
        response
            .headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
        return response.map(BodyExt::boxed_unsync);
    }
    let sql = match crate::rest::sql_body(request).await {
        Ok(sql) => sql,
        Err(refused) => return refused.map(BodyExt::boxed_unsync),
    };
    let rows = match service.query(&sql).await {
        Ok(rows) => rows,
        Err(failure) => {
            let status = crate::rest::unavailable_or(StatusCode::BAD_REQUEST, &failure);
            return refused(status, &failure.message);
        }
    };
    let first = event("schema", &columns(&rows.schema()));
    let body = futures::stream::once(async move { first })
        .chain(events(rows))
        .map(|text| Ok::<_, Infallible>(Frame::data(Bytes::from(text))));
    let mut response = Response::new(StreamBody::new(body).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn refused(status: StatusCode, message: &str) -> Response<Body> {
    crate::rest::error(status, message).map(BodyExt::boxed_unsync)
}

/// What follows the schema: a `rows` event per batch (a comment when it is quiet), then
/// `end` or `error`.
fn events(rows: SendableRecordBatchStream) -> impl futures::Stream<Item = String> + Send {
    /// Where the stream is: still reading (with the rows so far), or done.
    enum State {
        Reading(SendableRecordBatchStream, u64),
        Done,
    }
    futures::stream::unfold(State::Reading(rows, 0), |state| async move {
        let State::Reading(mut rows, count) = state else {
            return None;
        };
        let next = tokio::time::timeout(KEEP_ALIVE, rows.next()).await;
        Some(match next {
            Err(_) => (": still here\n\n".to_string(), State::Reading(rows, count)),
            Ok(None) => (
                event("end", &serde_json::json!({ "rows": count })),
                State::Done,
            ),
            Ok(Some(Err(e))) => (error_event(&e.to_string()), State::Done),
            Ok(Some(Ok(batch))) if batch.num_rows() == 0 => {
                (String::new(), State::Reading(rows, count))
            }
            Ok(Some(Ok(batch))) => match rows_json(&batch) {
                Ok(json) => (
                    format!("event: rows\ndata: {json}\n\n"),
                    State::Reading(rows, count + batch.num_rows() as u64),
                ),
                Err(e) => (error_event(&e.to_string()), State::Done),
            },
        })
    })
    .filter(|text| futures::future::ready(!text.is_empty()))
}

fn event(name: &str, data: &serde_json::Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn error_event(message: &str) -> String {
    event("error", &serde_json::json!({ "error": message }))
}

/// The columns as `[{"name", "type"}]`, types as Arrow writes them (`Decimal128(18, 6)`).
fn columns(schema: &SchemaRef) -> serde_json::Value {
    schema
        .fields()
        .iter()
        .map(|field| serde_json::json!({ "name": field.name(), "type": field.data_type().to_string() }))
        .collect()
}

/// A batch's rows as a JSON array, decimals as text: a browser's numbers are binary floats,
/// which would show money wrong past fifteen digits.
fn rows_json(batch: &RecordBatch) -> Result<String, ArrowError> {
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| match field.data_type() {
            DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => Ok((
                field.as_ref().clone().with_data_type(DataType::Utf8),
                arrow::compute::cast(column, &DataType::Utf8)?,
            )),
            _ => Ok((field.as_ref().clone(), column.clone())),
        })
        .collect::<Result<Vec<_>, ArrowError>>()?
        .into_iter()
        .unzip();
    let batch = RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)?;
    // arrow writes the array on one line, as one `data:` line needs.
    Ok(String::from_utf8_lossy(&crate::rest::json(&[batch])?).into_owned())
}
