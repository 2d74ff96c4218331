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
use crate::etcd::{self, Snapshot, encode, key, leader_key};
use crate::placement::{self, DRAINING};
use crate::resources;

/// How often a node reads the cluster and acts on it.
const TICK: Duration = Duration::from_millis(200);
/// How often a node reports itself and its jobs.
const REPORT: Duration = Duration::from_secs(1);
/// How long a draining node waits for its jobs to move.
const DRAIN_WAIT: Duration = Duration::from_secs(60);
/// etcd takes this many operations in one transaction (its default limit is 128).
const TXN_OPS: usize = 100;

/// A server's membership of a cluster.
pub struct Node {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Shared {
    config: ClusterConfig,
    client: Client,
    catalog: Arc<EtcdCatalog>,
    lease: AtomicI64,
    /// When the lease was last renewed.
    renewed: Mutex<Instant>,
    /// etcd said the lease is gone.
    expired: AtomicBool,
    draining: AtomicBool,
    agent: tokio::sync::Mutex<Agent>,
    records: LocalRecords,
}

impl Shared {
    /// Whether the lease may have run out: not renewed for three quarters of its time.
    fn lease_lost(&self) -> bool {
        let renewed = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        self.expired.load(Ordering::SeqCst)
            || renewed.elapsed() > self.config.lease_ttl.mul_f64(0.75)
    }

    fn lease(&self) -> i64 {
        self.lease.load(Ordering::SeqCst)
    }

    /// This node as it reports itself now.
    fn summary(&self, snapshot: &Snapshot) -> NodeSummary {
        let jobs = self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.is_running())
            .map(|r| r.summary(&self.config.node_id))
            .collect::<Vec<_>>();
        NodeSummary {
            id: self.config.node_id.clone(),
            address: self.config.advertise.clone(),
            http: self.config.http.clone(),
            status: if self.draining.load(Ordering::SeqCst) {
                DRAINING
            } else {
                "UP"
            }
            .to_string(),
            leader: snapshot.leader.as_deref() == Some(self.config.node_id.as_str()),
            cores: resources::cores(),
            memory_bytes: resources::memory_bytes(),
            slots: self.config.slots,
            jobs: jobs.len() as u64,
            records_per_second: jobs.iter().fold(0.0, |sum, j| sum + j.records_per_second),
            state_bytes: jobs.iter().map(|j| j.state_bytes).sum(),
            rss_bytes: resources::rss_bytes(),
            cpu_seconds: resources::cpu_seconds(),
            heartbeat_ms: now_ms(),
        }
    }
}

impl Node {
    /// Joins the cluster of `config` with `session` (the server's): registers this node,
    /// makes the session's jobs the cluster's, and starts the node's heartbeat and its
    /// work. An error when etcd cannot be reached or the node's id is taken.
    pub async fn join(
        config: ClusterConfig,
        session: Arc<tokio::sync::Mutex<Session>>,
    ) -> Result<Self, ClusterError> {
        let mut client = etcd::connect(&config.endpoints).await?;
        let catalog = Arc::new(EtcdCatalog::new(client.clone(), config.state_dir.clone()));
        let lease = register(&mut client, &config, None).await?;
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
            )),
            config,
            client,
            catalog,
            lease: AtomicI64::new(lease),
            renewed: Mutex::new(Instant::now()),
            expired: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            records,
        });
        tracing::info!(
            node = %shared.config.node_id,
            "joined the cluster at {} (lease {lease:x}, {}s)",
            shared.config.endpoints.join(","),
            shared.config.lease_ttl.as_secs_f64()
        );
        let tasks = vec![
            tokio::spawn(heartbeat(shared.clone())),
            tokio::spawn(fence(shared.clone())),
            tokio::spawn(work(shared.clone())),
        ];
        Ok(Self { shared, tasks })
    }

    /// The cluster's catalog, as the session sees it.
    pub fn catalog(&self) -> Arc<dyn ClusterCatalog> {
        self.shared.catalog.clone()
    }

    /// Leaves the cluster cleanly: says it is draining, so that the leader moves its jobs to
    /// other nodes (each stops here at a checkpoint and resumes there), waits for that (a
    /// minute at most; at once when no other node can take them), stops what is left at a
    /// checkpoint, and gives up its lease.
    pub async fn drain(self) {
        let shared = &self.shared;
        let id = &shared.config.node_id;
        shared.draining.store(true, Ordering::SeqCst);
        let mut client = shared.client.clone();
        if let Ok(snapshot) = etcd::snapshot(&mut client).await {
            let _ = report(shared, &snapshot).await;
        }
        tracing::info!(node = %id, "draining: its jobs move to other nodes");
        let started = Instant::now();
        while started.elapsed() < DRAIN_WAIT {
            let Ok(snapshot) = etcd::snapshot(&mut client).await else {
                break;
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
            tokio::time::sleep(TICK).await;
        }
        for task in &self.tasks {
            task.abort();
        }
        let mut agent = shared.agent.lock().await;
        agent.stop_all();
        let stopping = Instant::now();
        while agent.runs_jobs() && stopping.elapsed() < DRAIN_WAIT {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Its running keys, leader key and record go with the lease.
        if let Err(e) = client.lease_revoke(shared.lease()).await {
            tracing::warn!(node = %id, "could not give up its lease (it runs out by itself): {e}");
        }
        tracing::info!(node = %id, "left the cluster");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
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
    let record = NodeSummary {
        id: config.node_id.clone(),
        address: config.advertise.clone(),
        http: config.http.clone(),
        status: "UP".into(),
        cores: resources::cores(),
        memory_bytes: resources::memory_bytes(),
        slots: config.slots,
        heartbeat_ms: now_ms(),
        ..NodeSummary::default()
    };
    let node_key = key("nodes", &config.node_id);
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
    let put = TxnOp::put(
        node_key.as_str(),
        encode(&record),
        Some(PutOptions::new().with_lease(lease)),
    );
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
        return Err(ClusterError::Config(format!(
            "a node '{}' is in the cluster already: give this one another --node-id",
            config.node_id
        )));
    }
    Ok(lease)
}

/// Keeps the lease alive, a third of its time apart.
async fn heartbeat(shared: Arc<Shared>) {
    let interval = shared.config.lease_ttl / 3;
    let mut client = shared.client.clone();
    loop {
        let lease = shared.lease();
        let Ok((mut keeper, mut responses)) = client.lease_keep_alive(lease).await else {
            tokio::time::sleep(TICK).await;
            continue;
        };
        loop {
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(interval, responses.message()).await {
                Ok(Ok(Some(response))) if response.ttl() > 0 => {
                    *shared.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                }
                Ok(Ok(Some(_))) => {
                    shared.expired.store(true, Ordering::SeqCst);
                    break;
                }
                _ => break,
            }
            if shared.lease() != lease {
                break;
            }
            tokio::time::sleep(interval).await;
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Stops every job of this node at once when its lease may have run out: another node may
/// take them over as soon as it has.
async fn fence(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !shared.lease_lost() {
            continue;
        }
        let running: Vec<_> = shared
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
}

/// The node's rounds: read the cluster, lead if it is the leader, run its jobs, report.
async fn work(shared: Arc<Shared>) {
    let mut client = shared.client.clone();
    let id = shared.config.node_id.clone();
    let mut reported = Instant::now() - REPORT;
    let mut complained: Option<String> = None;
    loop {
        tokio::time::sleep(TICK).await;
        if shared.lease_lost() {
            shared.agent.lock().await.lease_lost();
            match register(&mut client, &shared.config, Some(shared.lease())).await {
                Ok(lease) => {
                    tracing::warn!(node = %id, "registered again after losing its lease");
                    shared.lease.store(lease, Ordering::SeqCst);
                    *shared.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                    shared.expired.store(false, Ordering::SeqCst);
                }
                Err(e) => complain(&mut complained, &id, &e),
            }
            continue;
        }
        let round = async {
            let snapshot = etcd::snapshot(&mut client).await?;
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
    let leader = leader_key();
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
            key("assignments", job),
            encode(assignment),
            None,
        ));
    }
    for job in &decisions.unassign {
        ops.push(TxnOp::delete(key("assignments", job), None));
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
        key("nodes", &shared.config.node_id),
        encode(&shared.summary(snapshot)),
        lease.clone(),
    )];
    for job in shared.agent.lock().await.summaries(snapshot) {
        ops.push(TxnOp::put(
            key("status", &job.name),
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
