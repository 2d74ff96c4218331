//! The server's JSON API under `/api/v1/` on its HTTP endpoint (`docs/openapi.yaml`): the
//! cluster's nodes, the jobs and each one's status, and creating, stopping and starting jobs.
//! Every route runs SQL (`SHOW JOBS`, `STOP JOB ...`) through the server's shared session, as
//! a Flight SQL client would, and answers with its rows as JSON.

use arrow::array::{AsArray, RecordBatch};
use arrow::error::ArrowError;
use arrow::json::{ArrayWriter, WriterBuilder};
use bytes::Bytes;
use datafusion::execution::SendableRecordBatchStream;
use futures::TryStreamExt;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{
    ALLOW, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, ORIGIN, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};

/// The commands `POST /api/v1/jobs/{name}/COMMAND` takes: each is the statement `COMMAND JOB`.
const JOB_COMMANDS: [&str; 4] = ["stop", "start", "pause", "resume"];

/// Where the API is served.
pub const PREFIX: &str = "/api/";

/// The most SQL one `POST /api/v1/jobs` may send.
const MAX_SQL_BYTES: usize = 1 << 20;

/// What the API answers from: SQL run through the server's session, and the token that
/// guards it.
pub trait SqlService: Send + Sync {
    /// The token every call needs as `Authorization: Bearer TOKEN`, if any.
    fn token(&self) -> Option<&str>;
    /// Runs every statement of `sql` as Flight SQL runs a client's (a job starts in the
    /// server, or in its cluster); the last statement's rows as they come (a push query's
    /// for as long as the stream is read), or the engine's error.
    fn query(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<SendableRecordBatchStream, SqlFailure>> + Send;

    /// [`SqlService::query`]'s rows, all of them.
    fn execute_sql(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<Vec<RecordBatch>, SqlFailure>> + Send {
        async move {
            self.query(sql)
                .await?
                .try_collect()
                .await
                .map_err(|e| SqlFailure {
                    message: e.to_string(),
                    retryable: false,
                })
        }
    }
}

/// Why SQL run for the API failed.
#[derive(Debug)]
pub struct SqlFailure {
    /// The engine's message (a SQL error names its position).
    pub message: String,
    /// Whether trying again later may succeed: the cluster's catalog (etcd) was out of reach.
    pub retryable: bool,
}

/// Answers a request under [`PREFIX`].
pub async fn answer(
    service: &impl SqlService,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if let Some(refused) = unauthorized(service, &request) {
        return refused;
    }
    route(service, request).await
}

/// The answer to a request the API refuses, if it does: one sent by a web page of another
/// origin (a browser says so in `Origin`), or one without the server's token when it has one.
pub(crate) fn unauthorized<T>(
    service: &impl SqlService,
    request: &Request<T>,
) -> Option<Response<Full<Bytes>>> {
    // A browser lets any page POST text to any address without asking (no CORS preflight
    // for a plain body): without this, a page open in the same browser could run SQL on a
    // server on loopback that has no token. The dashboard's own calls come from its origin.
    if let Some(origin) = request.headers().get(ORIGIN) {
        let host = request.headers().get(HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, host)| host);
        if origin_host.is_none() || origin_host != host {
            return Some(error(
                StatusCode::FORBIDDEN,
                "a web page of another origin may not call this API",
            ));
        }
    }
    if let Some(token) = service.token() {
        let bearer = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer != Some(token) {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "this server needs 'Authorization: Bearer <token>'",
            );
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Some(response);
        }
    }
    None
}

async fn route(service: &impl SqlService, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let route: Vec<&str> = match path.strip_prefix("/api/v1/") {
        Some(rest) => rest.split('/').collect(),
        None => Vec::new(),
    };
    match (route.as_slice(), &method) {
        (["nodes"], &Method::GET) => {
            // Outside a cluster the statement errs: the server is no cluster's node.
            rows(service, "SHOW NODES", StatusCode::CONFLICT).await
        }
        (["jobs"], &Method::GET) => {
            // Only a cluster's catalog out of reach keeps the jobs from being listed.
            rows(service, "SHOW JOBS", StatusCode::SERVICE_UNAVAILABLE).await
        }
        (["jobs"], &Method::POST) => create(service, request).await,
        (["jobs", name], &Method::GET) if !is_job_name(name) => not_a_job_name(name),
        (["jobs", name, command], &Method::POST)
            if JOB_COMMANDS.contains(command) && !is_job_name(name) =>
        {
            not_a_job_name(name)
        }
        (["jobs", name], &Method::GET) => status(service, name).await,
        (["jobs", name, command], &Method::POST) if JOB_COMMANDS.contains(command) => {
            control(service, name, command).await
        }
        (["nodes"] | ["jobs", _], _) => not_allowed("GET"),
        (["jobs"], _) => not_allowed("GET, POST"),
        (["jobs", _, command], _) if JOB_COMMANDS.contains(command) => not_allowed("POST"),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!(
                "no route {path}: /api/v1/nodes, /api/v1/jobs, /api/v1/jobs/{{name}}, \
                 /api/v1/jobs/{{name}}/stop, /start, /pause or /resume, /api/v1/query"
            ),
        ),
    }
}

/// `sql`'s rows as a JSON array; `failed` with the engine's message when it errs.
async fn rows(service: &impl SqlService, sql: &str, failed: StatusCode) -> Response<Full<Bytes>> {
    match service.execute_sql(sql).await {
        Ok(batches) => json_rows(StatusCode::OK, &batches),
        Err(failure) => error(unavailable_or(failed, &failure), &failure.message),
    }
}

/// 503 when the cluster's catalog (etcd) failed, which a retry may get past; else `status`.
pub(crate) fn unavailable_or(status: StatusCode, failure: &SqlFailure) -> StatusCode {
    if failure.retryable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        status
    }
}

/// `POST /api/v1/jobs`: the body's statements run; the last one's rows (a job's name and
/// status) answer.
async fn create(service: &impl SqlService, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let sql = match sql_body(request).await {
        Ok(sql) => sql,
        Err(refused) => return refused,
    };
    match service.execute_sql(&sql).await {
        Ok(batches) => json_rows(StatusCode::CREATED, &batches),
        Err(failure) => error(
            unavailable_or(StatusCode::BAD_REQUEST, &failure),
            &failure.message,
        ),
    }
}

/// The SQL a request's body carries (at most [`MAX_SQL_BYTES`], UTF-8), or the answer
/// refusing it.
pub(crate) async fn sql_body(request: Request<Incoming>) -> Result<String, Response<Full<Bytes>>> {
    let body = match Limited::new(request.into_body(), MAX_SQL_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the SQL is over {MAX_SQL_BYTES} bytes"),
            ));
        }
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("reading the SQL: {e}"),
            ));
        }
    };
    String::from_utf8(body.to_vec())
        .map_err(|_| error(StatusCode::BAD_REQUEST, "the SQL is not UTF-8 text"))
}

/// `GET /api/v1/jobs/{name}`: the rows (property, value) of `SHOW JOB STATUS` as one object.
async fn status(service: &impl SqlService, name: &str) -> Response<Full<Bytes>> {
    let batches = match service
        .execute_sql(&format!("SHOW JOB STATUS '{name}'"))
        .await
    {
        Ok(batches) => batches,
        Err(failure) => return job_error(service, |n| n == name, &failure).await,
    };
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = match json(&batches)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_slice(&text).map_err(|e| e.to_string()))
    {
        Ok(rows) => rows,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    let object: serde_json::Map<String, serde_json::Value> = rows
        .into_iter()
        .filter_map(|mut row| {
            let property = row.remove("property")?.as_str()?.to_string();
            Some((property, row.remove("value")?))
        })
        .collect();
    reply(
        StatusCode::OK,
        serde_json::Value::Object(object).to_string(),
    )
}

/// `POST /api/v1/jobs/{name}/stop`, `/start`, `/pause` or `/resume`: the command's reply rows.
async fn control(service: &impl SqlService, name: &str, command: &str) -> Response<Full<Bytes>> {
    // Unquoted, as users type it: the name folds to lower case as the job's did when an
    // unquoted CREATE named it (START runs the job again under the name it is given).
    let sql = format!("{} JOB {name}", command.to_uppercase());
    match service.execute_sql(&sql).await {
        Ok(batches) => json_rows(StatusCode::OK, &batches),
        Err(failure) => job_error(service, |n| n.eq_ignore_ascii_case(name), &failure).await,
    }
}

/// A statement about a job failed: 404 when `SHOW JOBS` lists no job whose name is the one
/// meant (`is_it`), else 400.
async fn job_error(
    service: &impl SqlService,
    is_it: impl Fn(&str) -> bool,
    failure: &SqlFailure,
) -> Response<Full<Bytes>> {
    let message = &failure.message;
    let jobs = match service.execute_sql("SHOW JOBS").await {
        Ok(jobs) => jobs,
        // Whether the job exists is unknown: not a 404 a client would act on.
        Err(listing) => return error(unavailable_or(StatusCode::BAD_REQUEST, &listing), message),
    };
    let listed = jobs.iter().any(|batch| {
        batch
            .column_by_name("name")
            .and_then(|names| names.as_string_opt::<i32>())
            .is_some_and(|names| names.iter().flatten().any(&is_it))
    });
    let status = if listed {
        unavailable_or(StatusCode::BAD_REQUEST, failure)
    } else {
        StatusCode::NOT_FOUND
    };
    error(status, message)
}

fn not_a_job_name(name: &str) -> Response<Full<Bytes>> {
    error(
        StatusCode::BAD_REQUEST,
        &format!("'{name}' is no job name: letters, digits and _ only"),
    )
}

/// Whether a job's name from the path is an identifier, which goes into SQL as it is.
fn is_job_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Rows as a JSON array of objects, column name to value (nulls written out).
pub(crate) fn json(batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut writer: ArrayWriter<Vec<u8>> = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build(Vec::new());
    writer.write_batches(&batches.iter().collect::<Vec<_>>())?;
    writer.finish()?;
    Ok(writer.into_inner())
}

fn json_rows(status: StatusCode, batches: &[RecordBatch]) -> Response<Full<Bytes>> {
    match json(batches) {
        Ok(text) => reply(status, text),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn not_allowed(allowed: &'static str) -> Response<Full<Bytes>> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("this route takes {allowed}"),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    response
}

/// `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    reply(status, serde_json::json!({ "error": message }).to_string())
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
