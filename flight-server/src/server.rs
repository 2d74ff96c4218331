//! The Arrow Flight SQL server: FerrisStreams for every Arrow tool (ADBC, the Flight SQL JDBC
//! driver, pyarrow).
//!
//! One [`Session`] serves every client, so a stream one client creates is visible to all.
//! A statement is run when its `FlightInfo` is asked for; its rows wait under a handle until
//! the client's `DoGet` streams them, straight from the running plan: a query over a watched
//! source streams until the client cancels. Jobs (`CREATE STREAM` / `CREATE TABLE`) run in
//! the server and answer with their name and status; no client can stall them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, Nullable, ProstMessageExt, Searchable,
    SqlInfo, TicketStatementQuery, XdbcDataType,
};
use arrow_flight::{
    CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use base64::Engine;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use ferris_engine::catalog::EntryKind;
use ferris_engine::{EngineError, RunningJob, Session, StatementOutput};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

/// The catalog and schema every table is listed under (and SQL resolves qualified names in).
pub use ferris_engine::{CATALOG, SCHEMA};
/// How long a result waits for its `DoGet` before it is dropped.
const UNFETCHED_RESULT_TTL: std::time::Duration = std::time::Duration::from_secs(600);
/// The table types a client can filter on.
const TABLE_TYPES: [&str; 3] = ["TABLE", "STREAM", "VIEW"];

/// How the server is reached and guarded.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the Flight SQL endpoint listens.
    pub flight: SocketAddr,
    /// A PEM certificate (chain) and its private key: Flight SQL over TLS (`grpc+tls://`).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Where `/health`, `/ready`, `/metrics` and the JSON API (`/api/v1/`) are served, if
    /// anywhere.
    pub http: Option<SocketAddr>,
    /// The Kafka cluster `SHOW TOPICS` describes (else `FERRIS_KAFKA_BOOTSTRAP`, else
    /// 127.0.0.1:9092).
    pub kafka: Option<String>,
    /// With a token, every call needs `authorization: Bearer TOKEN` (the handshake, basic
    /// auth with the token as password, hands it out).
    pub auth_token: Option<String>,
    /// Where jobs keep their checkpoints and the server its list of jobs, which it starts
    /// again when it starts.
    pub state_dir: Option<std::path::PathBuf>,
    /// Options every job gets unless its `WITH` sets them (the config file's `jobs:`).
    pub job_defaults: Vec<(String, String)>,
    /// The cluster the server is a node of, if any: its jobs are then the cluster's.
    pub cluster: Option<ferris_cluster::ClusterConfig>,
}

/// Runs the server until `shutdown` completes; `bound` hears the addresses it listens on
/// (Flight SQL, and HTTP if asked for).
pub async fn serve(
    config: ServerConfig,
    bound: impl FnOnce(SocketAddr, Option<SocketAddr>),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let incoming = tonic::transport::server::TcpIncoming::bind(config.flight)?;
    let http = match config.http {
        Some(address) => Some(crate::http::bind(address).await?),
        None => None,
    };
    let mut session = Session::new();
    session.keep_outputs();
    if let Some(kafka) = &config.kafka {
        session.set_kafka(kafka);
    }
    if let Some(dir) = &config.state_dir {
        session.set_state_dir(dir);
    }
    session.set_job_defaults(config.job_defaults.clone());
    let session = Arc::new(tokio::sync::Mutex::new(session));
    let node = match config.cluster.clone() {
        Some(mut cluster) => {
            // Where this node is reached, once it listens.
            if cluster.advertise.is_empty() {
                cluster.advertise = incoming.local_addr()?.to_string();
            }
            cluster.http = http
                .as_ref()
                .map(|h| h.local_addr())
                .transpose()?
                .map(|a| a.to_string());
            Some(ferris_cluster::Node::join(cluster, session.clone()).await?)
        }
        None => None,
    };
    bound(
        incoming.local_addr()?,
        http.as_ref().map(|h| h.local_addr()).transpose()?,
    );
    let service = FerrisFlightSql::new(session, config.auth_token.clone());
    // Clients may connect meanwhile; `/ready` says when every kept job is back.
    tokio::spawn(service.clone().resume_jobs());
    let http = http.map(|listener| tokio::spawn(crate::http::serve(listener, service.clone())));
    let token = config.auth_token.clone();
    let server =
        FlightServiceServer::with_interceptor(service.clone(), move |request: Request<()>| {
            authorize(token.as_deref(), &request)?;
            Ok(request)
        });
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = &config.tls {
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read(path)
                .map_err(|e| format!("reading the TLS {what} {}: {e}", path.display()))
        };
        let identity =
            tonic::transport::Identity::from_pem(read(cert, "certificate")?, read(key, "key")?);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| format!("TLS with {} and {}: {e}", cert.display(), key.display()))?;
    }
    let serving = builder.add_service(server).serve_with_incoming(incoming);
    // On shutdown, open connections are dropped rather than waited for: a client that never
    // hangs up must not keep the jobs from stopping.
    tokio::select! {
        served = serving => served?,
        () = shutdown => {}
    }
    // A node hands its jobs over to the others before it goes.
    if let Some(node) = node {
        node.drain().await;
    }
    service.stop_jobs().await;
    if let Some(http) = http {
        http.abort();
    }
    Ok(())
}

/// Lets a call through with the bearer token, or, for the handshake, basic auth whose
/// password is the token.
fn authorize<T>(token: Option<&str>, request: &Request<T>) -> Result<(), Status> {
    let Some(token) = token else {
        return Ok(());
    };
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if header.strip_prefix("Bearer ") == Some(token)
        || basic_password(header).as_deref() == Some(token)
    {
        return Ok(());
    }
    Err(Status::unauthenticated(
        "this server needs 'authorization: Bearer <token>' (or a handshake with the token as password)",
    ))
}

fn basic_password(header: &str) -> Option<String> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_string())
}

/// The Flight SQL service over one shared session.
#[derive(Clone)]
pub struct FerrisFlightSql {
    inner: Arc<Inner>,
}

struct Inner {
    session: Arc<tokio::sync::Mutex<Session>>,
    token: Option<String>,
    /// Results waiting for their `DoGet`, by handle, with when they were made.
    results: Mutex<HashMap<String, (std::time::Instant, SendableRecordBatchStream)>>,
    /// Results being streamed, by handle: notified to cancel them (`CancelFlightInfo`).
    streaming: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// Prepared statements: their SQL and bound parameters, by handle.
    prepared: Mutex<HashMap<String, Prepared>>,
    /// Jobs started through this server.
    jobs: Mutex<Vec<RunningJob>>,
    next_handle: AtomicU64,
    /// Whether the jobs kept under the state dir have been started again.
    ready: std::sync::atomic::AtomicBool,
}

struct Prepared {
    sql: String,
    parameters: Vec<ScalarValue>,
    /// A statement run when it was prepared, for its schema: its rows, for the first
    /// execution.
    ran: Option<SendableRecordBatchStream>,
}

type FlightDataStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

impl FerrisFlightSql {
    /// A service over `session`.
    pub fn new(session: Arc<tokio::sync::Mutex<Session>>, token: Option<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                session,
                token,
                results: Mutex::default(),
                streaming: Mutex::default(),
                prepared: Mutex::default(),
                jobs: Mutex::default(),
                next_handle: AtomicU64::new(1),
                ready: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Starts again the jobs kept under the state dir, each from its last checkpoint; then
    /// the server is ready.
    pub async fn resume_jobs(self) {
        let resumed = self.inner.session.lock().await.resume_jobs().await;
        match resumed {
            Ok(jobs) => {
                for job in &jobs {
                    tracing::info!(job = %job.name, "resumed");
                }
                lock(&self.inner.jobs).extend(jobs);
            }
            Err(e) => tracing::error!("the kept jobs cannot be resumed: {e}"),
        }
        self.inner.ready.store(true, Ordering::SeqCst);
    }

    /// Stops every job as `ferris run` does on Ctrl-C (sources end, windows flush, sinks
    /// commit) and waits for them, printing each one's summary or error.
    pub async fn stop_jobs(&self) {
        self.inner.session.lock().await.stop_signal().stop();
        let jobs = std::mem::take(&mut *lock(&self.inner.jobs));
        for job in jobs {
            let name = job.name.clone();
            match job.wait().await {
                Ok(progress) => tracing::info!(job = %name, "ended: {progress}"),
                Err(e) => tracing::error!(job = %name, "failed: {e}"),
            }
        }
    }

    fn handle(&self) -> String {
        self.inner
            .next_handle
            .fetch_add(1, Ordering::Relaxed)
            .to_string()
    }

    /// Runs every statement of `sql`; the last one's rows are the result. A job answers with
    /// a row naming it.
    async fn execute(&self, sql: &str) -> Result<SendableRecordBatchStream, Status> {
        let mut session = self.inner.session.lock().await;
        let statements = session.parse(sql).map_err(sql_error)?;
        if statements.is_empty() {
            return Err(Status::invalid_argument("no statement"));
        }
        let mut last = None;
        for statement in &statements {
            last = Some(match session.execute(statement).await.map_err(sql_error)? {
                StatementOutput::Rows(rows) => rows,
                StatementOutput::Job(job) => {
                    let reply = job_reply(&job).map_err(|e| Status::internal(e.to_string()))?;
                    lock(&self.inner.jobs).push(job);
                    reply
                }
            });
        }
        Ok(last.expect("at least one statement"))
    }

    /// Keeps `rows` for the `DoGet` of the returned `FlightInfo`.
    fn flight_info(
        &self,
        rows: SendableRecordBatchStream,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = rows.schema();
        let handle = self.handle();
        let mut results = lock(&self.inner.results);
        // A client that never fetched its result must not keep its plan (and sources) alive.
        results.retain(|_, (made, _)| made.elapsed() < UNFETCHED_RESULT_TTL);
        results.insert(handle.clone(), (std::time::Instant::now(), rows));
        drop(results);
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&with_column_metadata(&schema))
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// Runs one prepared statement with its parameters, through the session (so it may
    /// have a `WITH` clause, or start a job); a job answers with its name and status.
    async fn execute_prepared(
        &self,
        sql: &str,
        parameters: &[ScalarValue],
    ) -> Result<StatementOutput, Status> {
        let mut session = self.inner.session.lock().await;
        let statements = session.parse(sql).map_err(sql_error)?;
        let [statement] = statements.as_slice() else {
            return Err(Status::invalid_argument(format!(
                "a prepared statement is one statement, not {}",
                statements.len()
            )));
        };
        session
            .execute_with_parameters(statement, parameters)
            .await
            .map_err(sql_error)
    }

    /// The rows of a prepared statement run with `parameters`.
    async fn run_prepared(
        &self,
        sql: &str,
        parameters: &[ScalarValue],
    ) -> Result<SendableRecordBatchStream, Status> {
        Ok(match self.execute_prepared(sql, parameters).await? {
            StatementOutput::Rows(rows) => rows,
            StatementOutput::Job(job) => {
                let reply = job_reply(&job).map_err(|e| Status::internal(e.to_string()))?;
                lock(&self.inner.jobs).push(job);
                reply
            }
        })
    }
}

/// The parameter sets of a `DoPut`: one per row of its batches.
async fn parameter_rows(
    request: Request<PeekableFlightDataStream>,
) -> Result<Vec<Vec<ScalarValue>>, Status> {
    let batches: Vec<RecordBatch> =
        arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        )
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("reading the parameters: {e}")))?;
    let mut rows = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|column| ScalarValue::try_from_array(column, row))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            );
        }
    }
    Ok(rows)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// An engine error as the client sees it, with the SQL position where there is one.
fn sql_error(error: EngineError) -> Status {
    match error {
        EngineError::Sql { message, position }
        | EngineError::Option {
            message,
            position: Some(position),
        } => Status::invalid_argument(format!("{position}: {message}")),
        // The cluster's catalog out of reach: a client may try again.
        EngineError::Cluster(_) => Status::unavailable(error.to_string()),
        other => Status::invalid_argument(other.to_string()),
    }
}

/// One row, `job` and `status`, for a job just started.
fn job_reply(job: &RunningJob) -> Result<SendableRecordBatchStream, arrow::error::ArrowError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("job", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
    ]));
    let status = if job.is_finished() {
        "FINISHED"
    } else {
        "RUNNING"
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![job.name.clone()])) as ArrayRef,
            Arc::new(StringArray::from(vec![status])),
        ],
    )?;
    Ok(Box::pin(RecordBatchStreamAdapter::new(
        schema,
        futures::stream::once(async { Ok(batch) }),
    )))
}

/// Streams batches as Flight data, with `schema` first even when there are no rows.
fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> Response<FlightDataStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

fn one_batch(batch: RecordBatch) -> Response<FlightDataStream> {
    encode(batch.schema(), futures::stream::once(async { Ok(batch) }))
}

/// A metadata command's `FlightInfo`: its schema, and a ticket that is the command itself.
fn metadata_info(
    command: impl ProstMessageExt,
    schema: &Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(command.as_any().encode_to_vec());
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// `schema` with the Flight SQL column metadata that JDBC's `ResultSetMetaData` reads a
/// decimal's precision and scale from (it does not look into the Arrow type).
fn with_column_metadata(schema: &Schema) -> Schema {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Decimal32(precision, scale)
            | DataType::Decimal64(precision, scale)
            | DataType::Decimal128(precision, scale)
            | DataType::Decimal256(precision, scale) => {
                let mut metadata = field.metadata().clone();
                metadata.insert("ARROW:FLIGHT:SQL:PRECISION".into(), precision.to_string());
                metadata.insert("ARROW:FLIGHT:SQL:SCALE".into(), scale.to_string());
                Arc::new(field.as_ref().clone().with_metadata(metadata))
            }
            _ => field.clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

fn table_types_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "table_type",
        DataType::Utf8,
        false,
    )]))
}

fn table_type(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Table => "TABLE",
        EntryKind::Stream | EntryKind::Source => "STREAM",
    }
}

static SQL_INFO: std::sync::LazyLock<SqlInfoData> = std::sync::LazyLock::new(|| {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "FerrisStreams");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    info.append(SqlInfo::FlightSqlServerReadOnly, false);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    info.append(SqlInfo::FlightSqlServerCancel, true);
    info.append(SqlInfo::SqlDdlCatalog, false);
    info.append(SqlInfo::SqlDdlSchema, false);
    info.append(SqlInfo::SqlDdlTable, true);
    // Unquoted names fold to lower case; quoted ones keep theirs (no enum value says so).
    info.append(SqlInfo::SqlIdentifierCase, 3i32); // LOWERCASE
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(SqlInfo::SqlQuotedIdentifierCase, 0i32); // UNKNOWN
    info.append(SqlInfo::SqlAllTablesAreSelectable, true);
    info.append(SqlInfo::SqlNullOrdering, 0i32); // nulls sorted high, as DataFusion does
    // JDBC's DatabaseMetaData answers from these, and throws (a null unboxed) for any
    // boolean, number or bitmask the server leaves out: SQL tools call them all on connect.
    info.append(SqlInfo::SqlKeywords, KEYWORDS);
    info.append(SqlInfo::SqlSearchStringEscape, "\\");
    info.append(SqlInfo::SqlExtraNameCharacters, "");
    info.append(SqlInfo::SqlSchemaTerm, "schema");
    info.append(SqlInfo::SqlProcedureTerm, "procedure");
    info.append(SqlInfo::SqlCatalogTerm, "catalog");
    info.append(SqlInfo::SqlCatalogAtStart, true);
    for (supported, yes) in [
        (SqlInfo::SqlSupportsColumnAliasing, true),
        (SqlInfo::SqlNullPlusNullIsNull, true),
        (SqlInfo::SqlSupportsTableCorrelationNames, true),
        (SqlInfo::SqlSupportsDifferentTableCorrelationNames, false),
        (SqlInfo::SqlSupportsExpressionsInOrderBy, true),
        (SqlInfo::SqlSupportsOrderByUnrelated, true),
        (SqlInfo::SqlSupportsLikeEscapeClause, true),
        (SqlInfo::SqlSupportsNonNullableColumns, false),
        (SqlInfo::SqlSupportsIntegrityEnhancementFacility, false),
        (SqlInfo::SqlSelectForUpdateSupported, false),
        (SqlInfo::SqlStoredProceduresSupported, false),
        (SqlInfo::SqlCorrelatedSubqueriesSupported, true),
        (SqlInfo::SqlMaxRowSizeIncludesBlobs, false),
        (SqlInfo::SqlTransactionsSupported, false),
        (SqlInfo::SqlDataDefinitionCausesTransactionCommit, false),
        (SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false),
        // Prepared updates run once per row of parameters (executemany, executeBatch).
        (SqlInfo::SqlBatchUpdatesSupported, true),
        (SqlInfo::SqlSavepointsSupported, false),
        (SqlInfo::SqlNamedParametersSupported, false),
        (SqlInfo::SqlLocatorsUpdateCopy, false),
        (SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false),
    ] {
        info.append(supported, yes);
    }
    let bits = |options: &[i32]| options.iter().fold(0i32, |mask, bit| mask | 1 << bit);
    use arrow_flight::sql::{
        SqlOuterJoinsSupportLevel as Joins, SqlSupportedGroupBy as GroupBy,
        SqlSupportedResultSetType as ResultSets, SqlSupportedSubqueries as Subqueries,
        SqlSupportedUnions as Unions, SqlTransactionIsolationLevel as Isolation,
        SupportedSqlGrammar as Grammar,
    };
    info.append(
        SqlInfo::SqlSupportedGroupBy,
        bits(&[
            GroupBy::SqlGroupByUnrelated as i32,
            GroupBy::SqlGroupByBeyondSelect as i32,
        ]),
    );
    info.append(
        SqlInfo::SqlSupportedGrammar,
        bits(&[
            Grammar::SqlMinimumGrammar as i32,
            Grammar::SqlCoreGrammar as i32,
        ]),
    );
    // The bit of ANSI92_ENTRY_SQL (arrow-flight does not export that enum).
    info.append(SqlInfo::SqlAnsi92SupportedLevel, 1i32);
    info.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        bits(&[
            Joins::SqlLimitedOuterJoins as i32,
            Joins::SqlFullOuterJoins as i32,
        ]),
    );
    info.append(
        SqlInfo::SqlSupportedSubqueries,
        bits(&[
            Subqueries::SqlSubqueriesInComparisons as i32,
            Subqueries::SqlSubqueriesInExists as i32,
            Subqueries::SqlSubqueriesInIns as i32,
        ]),
    );
    info.append(
        SqlInfo::SqlSupportedUnions,
        bits(&[Unions::SqlUnion as i32, Unions::SqlUnionAll as i32]),
    );
    info.append(
        SqlInfo::SqlSupportedResultSetTypes,
        bits(&[ResultSets::SqlResultSetTypeForwardOnly as i32]),
    );
    info.append(
        SqlInfo::SqlSupportedTransactionsIsolationLevels,
        bits(&[Isolation::SqlTransactionNone as i32]),
    );
    info.append(
        SqlInfo::SqlDefaultTransactionIsolation,
        Isolation::SqlTransactionNone as i64,
    );
    for none in [
        SqlInfo::SqlSchemasSupportedActions,
        SqlInfo::SqlCatalogsSupportedActions,
        SqlInfo::SqlSupportedPositionedCommands,
    ] {
        info.append(none, 0i32);
    }
    // 0: no known limit.
    for limit in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        info.append(limit, 0i64);
    }
    info.append(SqlInfo::SqlSupportsConvert, conversions());
    info.build().expect("static SQL info")
});

/// The words FerrisStreams adds to SQL (see `ferris_engine::statements`), for SQL tools'
/// highlighting (JDBC's `getSQLKeywords`).
const KEYWORDS: &[&str] = &[
    "CHANGES", "DETAILS", "EMIT", "FINAL", "FORCE", "HOPPING", "JOB", "JOBS", "PAUSE", "RESUME",
    "SESSION", "SLIDING", "STREAM", "STREAMS", "TOPIC", "TOPICS", "TUMBLING",
];

/// Which types `CAST` converts between, by Flight SQL's `SqlSupportsConvert` numbers.
fn conversions() -> std::collections::HashMap<i32, Vec<i32>> {
    use arrow_flight::sql::SqlSupportsConvert as Convert;
    let numbers = [
        Convert::SqlConvertBigint,
        Convert::SqlConvertDecimal,
        Convert::SqlConvertFloat,
        Convert::SqlConvertInteger,
        Convert::SqlConvertNumeric,
        Convert::SqlConvertReal,
        Convert::SqlConvertSmallint,
        Convert::SqlConvertTinyint,
    ];
    let times = [Convert::SqlConvertDate, Convert::SqlConvertTimestamp];
    let text = Convert::SqlConvertVarchar;
    let codes = |types: &[Convert]| types.iter().map(|t| *t as i32).collect::<Vec<_>>();
    let mut convert = std::collections::HashMap::new();
    for from in numbers {
        convert.insert(from as i32, codes(&[&numbers[..], &[text]].concat()));
    }
    for from in times {
        convert.insert(from as i32, codes(&[&times[..], &[text]].concat()));
    }
    convert.insert(
        text as i32,
        codes(&[&numbers[..], &times[..], &[text]].concat()),
    );
    convert
}

static XDBC_TYPES: std::sync::LazyLock<XdbcTypeInfoData> = std::sync::LazyLock::new(|| {
    let mut types = XdbcTypeInfoDataBuilder::new();
    let kinds = [
        ("BOOLEAN", XdbcDataType::XdbcBit, None, None),
        ("INT", XdbcDataType::XdbcInteger, Some(32), None),
        ("BIGINT", XdbcDataType::XdbcBigint, Some(64), None),
        ("DOUBLE", XdbcDataType::XdbcDouble, Some(53), None),
        (
            "DECIMAL",
            XdbcDataType::XdbcDecimal,
            Some(38),
            Some("precision,scale"),
        ),
        ("VARCHAR", XdbcDataType::XdbcVarchar, None, None),
        ("TIMESTAMP", XdbcDataType::XdbcTimestamp, None, None),
        ("DATE", XdbcDataType::XdbcDate, None, None),
    ];
    for (name, data_type, size, params) in kinds {
        let text = matches!(data_type, XdbcDataType::XdbcVarchar);
        types.append(XdbcTypeInfo {
            type_name: name.into(),
            data_type,
            column_size: size,
            literal_prefix: text.then(|| "'".into()),
            literal_suffix: text.then(|| "'".into()),
            create_params: params.map(|p: &str| p.split(',').map(str::to_string).collect()),
            nullable: Nullable::NullabilityNullable,
            case_sensitive: text,
            searchable: Searchable::Full,
            unsigned_attribute: size.map(|_| false),
            fixed_prec_scale: matches!(data_type, XdbcDataType::XdbcDecimal),
            auto_increment: Some(false),
            local_type_name: Some(name.into()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: data_type,
            datetime_subcode: None,
            num_prec_radix: size.map(|_| 10),
            interval_precision: None,
        });
    }
    types.build().expect("static type info")
});

#[tonic::async_trait]
impl FlightSqlService for FerrisFlightSql {
    type FlightService = FerrisFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        // The interceptor has checked the credentials; hand out the bearer token.
        authorize(self.inner.token.as_deref(), &request)?;
        let token = self.inner.token.clone().unwrap_or_default();
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        if !token.is_empty() {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|e| Status::internal(e.to_string()))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let rows = self.execute(&query.query).await?;
        self.flight_info(rows, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let handle = String::from_utf8_lossy(&ticket.statement_handle).into_owned();
        let (_, rows) = lock(&self.inner.results).remove(&handle).ok_or_else(|| {
            Status::not_found(format!(
                "no result under handle {handle}: each result can be fetched once"
            ))
        })?;
        let schema = rows.schema();
        let cancel = Arc::new(tokio::sync::Notify::new());
        let cancelled = cancel.clone().notified_owned();
        lock(&self.inner.streaming).insert(handle, cancel);
        let rows = rows
            .map_err(|e| FlightError::ExternalError(Box::new(e)))
            .take_until(cancelled);
        Ok(encode(schema, rows))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        // DDL and jobs: run, drop whatever rows there are.
        self.execute(&command.query).await?;
        Ok(0)
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        // Once per row of parameters (DB-API's `executemany`), or once without. An
        // `INSERT INTO ... VALUES` ends once written: its rows count; a job that runs on
        // counts nothing.
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).into_owned();
        let sql = lock(&self.inner.prepared)
            .get_mut(&handle)
            .map(|statement| {
                // Run at prepare time for its schema: that was the update itself.
                statement.ran.take();
                statement.sql.clone()
            })
            .ok_or_else(|| Status::not_found(format!("no prepared statement {handle}")))?;
        let mut rows = parameter_rows(request).await?;
        if rows.is_empty() {
            rows.push(vec![]);
        }
        let mut written = 0;
        for parameters in rows {
            match self.execute_prepared(&sql, &parameters).await? {
                StatementOutput::Rows(_) => {}
                StatementOutput::Job(job) if job.bounded => {
                    let progress = job.wait().await.map_err(sql_error)?;
                    written += progress.records_out as i64;
                }
                StatementOutput::Job(job) => lock(&self.inner.jobs).push(job),
            }
        }
        Ok(written)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        // Clients such as ADBC and JDBC prepare every statement. A plain query with
        // parameters (`?`, or `$1`, `$2`, ...) is planned by DataFusion for its schemas;
        // anything else (a query, a job, SHOW, a WITH clause) runs through the session now, so
        // that its schema is known, and its rows go to the first execution.
        let state = self.inner.session.lock().await.context().state();
        let planned = Session::plan_sql(&state, &query.query).await;
        let parameters = match planned {
            Ok(plan) => {
                let types = plan
                    .get_parameter_types()
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                let mut names: Vec<_> = types.into_iter().collect();
                names.sort_by_key(|(name, _)| {
                    name.trim_start_matches('$').parse::<u32>().unwrap_or(0)
                });
                let fields: Vec<_> = names
                    .into_iter()
                    .map(|(name, data_type)| {
                        // A parameter the statement gives no type (`CAST(? AS BIGINT)`) takes
                        // text, which DataFusion casts: JDBC can bind nothing to a null type.
                        Field::new(name, data_type.unwrap_or(DataType::Utf8), true)
                    })
                    .collect();
                (!fields.is_empty()).then(|| (plan.schema().as_arrow().clone(), fields))
            }
            Err(_) => None,
        };
        let (dataset_schema, parameter_schema, ran) = match parameters {
            Some((dataset, fields)) => (dataset, Schema::new(fields), None),
            None => {
                let rows = self.execute(&query.query).await?;
                (rows.schema().as_ref().clone(), Schema::empty(), Some(rows))
            }
        };
        let handle = self.handle();
        lock(&self.inner.prepared).insert(
            handle.clone(),
            Prepared {
                sql: query.query,
                parameters: vec![],
                ran,
            },
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: ipc_schema(&with_column_metadata(&dataset_schema))?,
            parameter_schema: ipc_schema(&parameter_schema)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).into_owned();
        // A query runs with one set of parameters: the first row.
        let parameters = parameter_rows(request)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        let mut prepared = lock(&self.inner.prepared);
        let statement = prepared
            .get_mut(&handle)
            .ok_or_else(|| Status::not_found(format!("no prepared statement {handle}")))?;
        statement.parameters = parameters;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).into_owned();
        let (sql, parameters, ran) = {
            let mut prepared = lock(&self.inner.prepared);
            let statement = prepared
                .get_mut(&handle)
                .ok_or_else(|| Status::not_found(format!("no prepared statement {handle}")))?;
            (
                statement.sql.clone(),
                statement.parameters.clone(),
                statement.ran.take(),
            )
        };
        let rows = match ran {
            Some(rows) => rows,
            None if parameters.is_empty() => self.execute(&sql).await?,
            None => self.run_prepared(&sql, &parameters).await?,
        };
        self.flight_info(rows, request.into_inner())
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).into_owned();
        lock(&self.inner.prepared).remove(&handle);
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        Ok(one_batch(builder.build().map_err(Status::from)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        Ok(one_batch(builder.build().map_err(Status::from)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        let session = self.inner.session.lock().await;
        for entry in session.catalog().entries() {
            builder
                .append(
                    CATALOG,
                    SCHEMA,
                    &entry.name,
                    table_type(entry.kind),
                    &entry.schema,
                )
                .map_err(Status::from)?;
        }
        Ok(one_batch(builder.build().map_err(Status::from)?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(query, &table_types_schema(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = RecordBatch::try_new(
            table_types_schema(),
            vec![Arc::new(StringArray::from(TABLE_TYPES.to_vec())) as ArrayRef],
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(one_batch(batch))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(one_batch(
            query
                .into_builder(&SQL_INFO)
                .build()
                .map_err(Status::from)?,
        ))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&XDBC_TYPES).schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(one_batch(
            query
                .into_builder(&XDBC_TYPES)
                .build()
                .map_err(Status::from)?,
        ))
    }

    async fn do_action_fallback(
        &self,
        request: Request<arrow_flight::Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let action = request.into_inner();
        if action.r#type != "CancelFlightInfo" {
            return Err(Status::unimplemented(format!(
                "action '{}' is not supported",
                action.r#type
            )));
        }
        let cancel = CancelFlightInfoRequest::decode(action.body)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut status = CancelStatus::NotCancellable;
        for endpoint in cancel.info.map(|info| info.endpoint).unwrap_or_default() {
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let Ok(Some(statement)) = arrow_flight::sql::Any::decode(ticket.ticket)
                .map(|any| any.unpack::<TicketStatementQuery>().ok().flatten())
            else {
                continue;
            };
            let handle = String::from_utf8_lossy(&statement.statement_handle).into_owned();
            // Not fetched yet: drop it; being fetched: end its stream.
            let waiting = lock(&self.inner.results).remove(&handle).is_some();
            let running = lock(&self.inner.streaming).remove(&handle);
            if let Some(running) = &running {
                running.notify_waiters();
            }
            if waiting || running.is_some() {
                status = CancelStatus::Cancelled;
            }
        }
        let result = CancelFlightInfoResult::new(status);
        let body = arrow_flight::Result {
            body: result.encode_to_vec().into(),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(body)]))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

impl crate::http::Monitored for FerrisFlightSql {
    fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    async fn job_records(&self) -> Vec<Arc<ferris_engine::job::JobRecord>> {
        self.inner.session.lock().await.jobs().to_vec()
    }
}

impl crate::rest::SqlService for FerrisFlightSql {
    fn token(&self) -> Option<&str> {
        self.inner.token.as_deref()
    }

    async fn query(&self, sql: &str) -> Result<SendableRecordBatchStream, crate::rest::SqlFailure> {
        self.execute(sql)
            .await
            .map_err(|e| crate::rest::SqlFailure {
                message: e.message().to_string(),
                retryable: e.code() == tonic::Code::Unavailable,
            })
    }
}
