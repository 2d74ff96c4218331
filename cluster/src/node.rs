//! A server as a node of a cluster: registered under an etcd lease kept alive by its
//! heartbeat, the leader while it holds the leader key, running its share of the jobs, and
//! fenced: a node that cannot renew its lease stops its jobs before the lease runs out, so
//! that no job runs twice once another node takes it over.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use ferris_engine::Session;
use ferris_engine::cluster::{ClusterCatalog, NodeSummary};
use ferris_engine::job::manifest::now_ms;

use crate::agent::{Agent, LocalRecords};
use crate::catalog::EtcdCatalog;
use crate::config::ClusterConfig;
use crate::error::ClusterError;
use crate::etcd::{self, Snapshot, encode};
use crate::placement::{self, DRAINING};
use crate::resources;

/// How often a node reads the cluster and acts on it.
const TICK: Duration = Duration::from_millis(200);
/// How often a node reports itself and its jobs.
const REPORT: Duration = Duration::from_secs(1);
/// How long a draining node waits for its jobs to move, and then to stop.
const DRAIN_WAIT: Duration = Duration::from_secs(60);
/// etcd takes this many operations in one transaction (its default limit is 128).
const TXN_OPS: usize = 100;

/// A server's membership of a cluster.
pub struct Node {
    shared: Arc<Shared>,
    work: tokio::task::JoinHandle<()>,
    lease_keeper: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    config: ClusterConfig,
    client: Client,
    catalog: Arc<EtcdCatalog>,
    lease: AtomicI64,
    /// When the lease was last renewed.
    renewed: Mutex<Instant>,
    /// The lease etcd said is gone (0: none).
    expired: AtomicI64,
    /// The node's rounds run (they end only by a panic, or when the node leaves).
    working: AtomicBool,
    /// The lease keeper is to stop.
    leaving: AtomicBool,
    draining: AtomicBool,
    agent: tokio::sync::Mutex<Agent>,
    records: LocalRecords,
}

impl Shared {
    /// Whether the lease may have run out: etcd said so, it was not renewed for three
    /// quarters of its time, or the node's rounds died (it must not hold jobs it no longer
    /// looks after).
    fn lease_lost(&self) -> bool {
        let renewed = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        self.expired.load(Ordering::SeqCst) == self.lease()
            || renewed.elapsed() > self.config.lease_ttl.mul_f64(0.75)
            || !self.working.load(Ordering::SeqCst)
    }

    fn lease(&self) -> i64 {
        self.lease.load(Ordering::SeqCst)
    }

    /// Stops every job running here at once.
    async fn fence(&self) {
        let running: Vec<_> = self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.is_running())
            .cloned()
            .collect();
        for record in running {
            tracing::error!(job = %record.name, "stopped at once: this node lost its etcd lease");
            record.force_stop().await;
        }
    }

    /// This node as it reports itself now: its record, with the load of its running jobs.
    fn summary(&self) -> NodeSummary {
        let jobs = self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.is_running())
            .map(|r| r.summary(&self.config.node_id))
            .collect::<Vec<_>>();
        NodeSummary {
            status: if self.draining.load(Ordering::SeqCst) {
                DRAINING
            } else {
                "UP"
            }
            .to_string(),
            jobs: jobs.len() as u64,
            records_per_second: jobs.iter().fold(0.0, |sum, j| sum + j.records_per_second),
            state_bytes: jobs.iter().map(|j| j.state_bytes).sum(),
            rss_bytes: resources::rss_bytes(),
            cpu_seconds: resources::cpu_seconds(),
            ..record(&self.config)
        }
    }
}

/// Marks the node's rounds dead when they end, however they end.
struct Working(Arc<Shared>);

impl Drop for Working {
    fn drop(&mut self) {
        self.0.working.store(false, Ordering::SeqCst);
    }
}

impl Node {
    /// Joins the cluster of `config` with `session` (the server's): registers this node,
    /// makes the session's jobs the cluster's, and starts the node's heartbeat and its
    /// work. An error when etcd cannot be reached, or when a live node has the same id (one
    /// that died is waited for, a lease's time at most: a restarted process takes its id
    /// back).
    pub async fn join(
        config: ClusterConfig,
        session: Arc<tokio::sync::Mutex<Session>>,
    ) -> Result<Self, ClusterError> {
        let mut client = etcd::connect(&config.endpoints).await?;
        let catalog = Arc::new(EtcdCatalog::new(
            client.clone(),
            config.state_dir.clone(),
            config.keys(),
        ));
        let waited = Instant::now();
        let lease = loop {
            match register(&mut client, &config, None).await {
                Err(ClusterError::Taken(_)) if waited.elapsed() < config.lease_ttl + TICK * 5 => {
                    if waited.elapsed() < TICK {
                        tracing::warn!(
                            node = %config.node_id,
                            "a node of this id is registered: waiting for it to leave or its lease to run out"
                        );
                    }
                    tokio::time::sleep(TICK).await;
                }
                registered => break registered?,
            }
        };
        session
            .lock()
            .await
            .join_cluster(catalog.clone(), &config.node_id);
        let records = LocalRecords::default();
        let shared = Arc::new(Shared {
            agent: tokio::sync::Mutex::new(Agent::new(
                config.node_id.clone(),
                session,
                records.clone(),
                config.keys(),
            )),
            config,
            client,
            catalog,
            lease: AtomicI64::new(lease),
            renewed: Mutex::new(Instant::now()),
            expired: AtomicI64::new(0),
            working: AtomicBool::new(true),
            leaving: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            records,
        });
        tracing::info!(
            node = %shared.config.node_id,
            "joined the cluster at {} (lease {lease:x}, {}s)",
            shared.config.endpoints.join(","),
            shared.config.lease_ttl.as_secs_f64()
        );
        let keeper = shared.clone();
        let lease_keeper = std::thread::Builder::new()
            .name("ferris-lease".into())
            .spawn(move || keep_lease(keeper))
            .map_err(|e| ClusterError::Etcd(format!("starting the lease keeper: {e}")))?;
        let work = tokio::spawn(work(shared.clone()));
        Ok(Self {
            shared,
            work,
            lease_keeper: Some(lease_keeper),
        })
    }

    /// The cluster's catalog, as the session sees it.
    pub fn catalog(&self) -> Arc<dyn ClusterCatalog> {
        self.shared.catalog.clone()
    }

    /// Leaves the cluster cleanly: says it is draining, so that the leader moves its jobs to
    /// other nodes (each stops here at a checkpoint and resumes there), waits for that (a
    /// minute at most; at once when no other node can take them), stops what is left at a
    /// checkpoint, and gives up its lease. The lease is kept, and the fence armed, until the
    /// last job here has stopped.
    pub async fn drain(mut self) {
        let shared = self.shared.clone();
        let id = &shared.config.node_id;
        shared.draining.store(true, Ordering::SeqCst);
        let mut client = shared.client.clone();
        if let Ok(snapshot) = shared.config.keys().snapshot(&mut client).await {
            let _ = report(&shared, &snapshot).await;
        }
        tracing::info!(node = %id, "draining: its jobs move to other nodes");
        let started = Instant::now();
        while started.elapsed() < DRAIN_WAIT && !shared.lease_lost() {
            tokio::time::sleep(TICK).await;
            let Ok(snapshot) = shared.config.keys().snapshot(&mut client).await else {
                continue;
            };
            let others = snapshot
                .nodes
                .values()
                .any(|n| n.id != *id && n.status != DRAINING);
            let assigned = snapshot.assignments.values().any(|a| a.node == *id);
            let runs = shared.agent.lock().await.runs_jobs();
            if !others || (!assigned && !runs) {
                break;
            }
        }
        self.work.abort();
        let mut agent = shared.agent.lock().await;
        agent.stop_all();
        let stopping = Instant::now();
        while agent.runs_jobs() && stopping.elapsed() < DRAIN_WAIT {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The fence stops what has not stopped by now, and the keeper gives the lease up.
        shared.fence().await;
        self.stop_lease_keeper();
        // Its running keys, leader key and record go with the lease.
        if let Err(e) = client.lease_revoke(shared.lease()).await {
            tracing::warn!(node = %id, "could not give up its lease (it runs out by itself): {e}");
        }
        tracing::info!(node = %id, "left the cluster");
    }

    fn stop_lease_keeper(&mut self) {
        self.shared.leaving.store(true, Ordering::SeqCst);
        if let Some(keeper) = self.lease_keeper.take() {
            let _ = keeper.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.work.abort();
        self.shared.leaving.store(true, Ordering::SeqCst);
    }
}

/// What a node says of itself before it runs anything. (Whether it leads is read from the
/// leader key, not reported.)
fn record(config: &ClusterConfig) -> NodeSummary {
    NodeSummary {
        id: config.node_id.clone(),
        address: config.advertise.clone(),
        http: config.http.clone(),
        status: "UP".into(),
        cores: resources::cores(),
        memory_bytes: resources::memory_bytes(),
        slots: config.slots,
        heartbeat_ms: now_ms(),
        ..NodeSummary::default()
    }
}

/// Registers the node under a new lease; `previous` is its lease before it lost it.
async fn register(
    client: &mut Client,
    config: &ClusterConfig,
    previous: Option<i64>,
) -> Result<i64, ClusterError> {
    let ttl = config.lease_ttl.as_secs().max(1) as i64;
    let lease = client.lease_grant(ttl, None).await?.id();
    let record = record(config);
    let node_key = config.keys().key("nodes", &config.node_id);
    let put = TxnOp::put(
        node_key.as_str(),
        encode(&record),
        Some(PutOptions::new().with_lease(lease)),
    );
    // The id is free, or still held by this node's old lease.
    let mut free = vec![Compare::create_revision(
        node_key.as_str(),
        CompareOp::Equal,
        0,
    )];
    if let Some(previous) = previous {
        free = vec![Compare::lease(
            node_key.as_str(),
            CompareOp::Equal,
            previous,
        )];
    }
    let mut registered = client
        .txn(Txn::new().when(free).and_then([put.clone()]))
        .await?
        .succeeded();
    if !registered && previous.is_some() {
        registered = client
            .txn(
                Txn::new()
                    .when([Compare::create_revision(
                        node_key.as_str(),
                        CompareOp::Equal,
                        0,
                    )])
                    .and_then([put]),
            )
            .await?
            .succeeded();
    }
    if !registered {
        let _ = client.lease_revoke(lease).await;
        return Err(ClusterError::Taken(config.node_id.clone()));
    }
    Ok(lease)
}

/// The lease keeper, on a thread and runtime of its own so that busy jobs cannot delay it:
/// renews the lease five times a TTL, and fences the node's jobs when it may be gone.
fn keep_lease(shared: Arc<Shared>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("the lease keeper cannot start ({e}): the node fences itself");
            shared.working.store(false, Ordering::SeqCst);
            return;
        }
    };
    runtime.block_on(async {
        let fence = async {
            while !shared.leaving.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if shared.lease_lost() {
                    shared.fence().await;
                }
            }
        };
        tokio::join!(renew(&shared), fence);
    });
}

/// Keeps the lease alive while the node works.
async fn renew(shared: &Shared) {
    let interval = shared.config.lease_ttl / 5;
    // A client of this runtime's own: the main runtime's may be starved.
    let mut client = None;
    while !shared.leaving.load(Ordering::SeqCst) {
        tokio::time::sleep(interval).await;
        if !shared.working.load(Ordering::SeqCst) {
            continue;
        }
        if client.is_none() {
            client = etcd::connect(&shared.config.endpoints).await.ok();
        }
        let Some(etcd) = client.as_mut() else {
            continue;
        };
        let lease = shared.lease();
        let Ok((mut keeper, mut responses)) = etcd.lease_keep_alive(lease).await else {
            continue;
        };
        while !shared.leaving.load(Ordering::SeqCst)
            && shared.lease() == lease
            && shared.working.load(Ordering::SeqCst)
        {
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(interval, responses.message()).await {
                Ok(Ok(Some(response))) if response.ttl() > 0 => {
                    *shared.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                }
                Ok(Ok(Some(_))) => {
                    shared.expired.store(lease, Ordering::SeqCst);
                    break;
                }
                _ => break,
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// The node's rounds: read the cluster, lead if it is the leader, run its jobs, report.
async fn work(shared: Arc<Shared>) {
    let _working = Working(shared.clone());
    let mut client = shared.client.clone();
    let id = shared.config.node_id.clone();
    let mut reported = Instant::now() - REPORT;
    let mut complained: Option<String> = None;
    loop {
        tokio::time::sleep(TICK).await;
        if shared.lease_lost() {
            // Nothing of the old lease's runs on once the new one is taken.
            let mut agent = shared.agent.lock().await;
            shared.fence().await;
            agent.lease_lost();
            let old = shared.lease();
            match register(&mut client, &shared.config, Some(old)).await {
                Ok(lease) => {
                    tracing::warn!(node = %id, "registered again after losing its lease");
                    shared.lease.store(lease, Ordering::SeqCst);
                    *shared.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                    let _ = client.lease_revoke(old).await;
                }
                Err(e) => complain(&mut complained, &id, &e),
            }
            continue;
        }
        let round = async {
            let snapshot = shared.config.keys().snapshot(&mut client).await?;
            lead(&shared, &mut client, &snapshot).await?;
            shared
                .agent
                .lock()
                .await
                .reconcile(&snapshot, &mut client, shared.lease())
                .await?;
            if reported.elapsed() >= REPORT {
                report(&shared, &snapshot).await?;
                reported = Instant::now();
            }
            Ok::<_, ClusterError>(())
        };
        match round.await {
            Ok(()) => {
                if complained.take().is_some() {
                    tracing::info!(node = %id, "etcd answers again");
                }
            }
            Err(e) => complain(&mut complained, &id, &e),
        }
    }
}

/// Logs an error once until it changes.
fn complain(complained: &mut Option<String>, id: &str, e: &ClusterError) {
    let message = e.to_string();
    if complained.as_deref() != Some(&message) {
        tracing::warn!(node = %id, "{message}");
        *complained = Some(message);
    }
}

/// Takes the lead if nobody has it (and this node is not leaving), gives it up when
/// draining, and, as the leader, writes the placement's decisions.
async fn lead(
    shared: &Shared,
    client: &mut Client,
    snapshot: &Snapshot,
) -> Result<(), ClusterError> {
    let id = shared.config.node_id.as_str();
    let draining = shared.draining.load(Ordering::SeqCst);
    let leader = shared.config.keys().leader();
    match snapshot.leader.as_deref() {
        None if !draining => {
            let txn = Txn::new()
                .when([Compare::create_revision(
                    leader.as_str(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then([TxnOp::put(
                    leader.as_str(),
                    id,
                    Some(PutOptions::new().with_lease(shared.lease())),
                )]);
            if client.txn(txn).await?.succeeded() {
                tracing::info!(node = %id, "is the leader");
            }
            // It places from the next round's snapshot, which says it leads.
            return Ok(());
        }
        Some(holder) if holder == id && draining => {
            let txn = Txn::new()
                .when([Compare::value(leader.as_str(), CompareOp::Equal, id)])
                .and_then([TxnOp::delete(leader.as_str(), None)]);
            client.txn(txn).await?;
            return Ok(());
        }
        Some(holder) if holder == id => {}
        _ => return Ok(()),
    }
    let decisions = placement::decide(snapshot, now_ms());
    let mut ops = Vec::new();
    for (job, assignment) in &decisions.assign {
        let why = assignment.history.last().map_or("", |p| p.why.as_str());
        tracing::info!(job = %job, "assigned to node {}: {why}", assignment.node);
        ops.push(TxnOp::put(
            shared.config.keys().key("assignments", job),
            encode(assignment),
            None,
        ));
    }
    for job in &decisions.unassign {
        ops.push(TxnOp::delete(
            shared.config.keys().key("assignments", job),
            None,
        ));
    }
    for chunk in ops.chunks(TXN_OPS) {
        // Only while it still leads.
        let txn = Txn::new()
            .when([Compare::value(leader.as_str(), CompareOp::Equal, id)])
            .and_then(chunk.to_vec());
        client.txn(txn).await?;
    }
    Ok(())
}

/// Writes the node's record and its jobs' reports, under its lease.
async fn report(shared: &Shared, snapshot: &Snapshot) -> Result<(), ClusterError> {
    let lease = Some(PutOptions::new().with_lease(shared.lease()));
    let mut ops = vec![TxnOp::put(
        shared.config.keys().key("nodes", &shared.config.node_id),
        encode(&shared.summary()),
        lease.clone(),
    )];
    for (unit, job) in shared.agent.lock().await.summaries(snapshot) {
        ops.push(TxnOp::put(
            shared.config.keys().key("status", &unit),
            encode(&job),
            lease.clone(),
        ));
    }
    let mut client = shared.client.clone();
    for chunk in ops.chunks(TXN_OPS) {
        client.txn(Txn::new().and_then(chunk.to_vec())).await?;
    }
    Ok(())
}
