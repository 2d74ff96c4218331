//! Where jobs run: the leader's decisions, from one snapshot of the cluster.
//!
//! What it places are units ([`crate::unit`]): a job whole, or each instance of a job whose
//! instances run apart, each taking a slot. A unit stays on its node while that node is up
//! and not draining. A unit without one goes to the node with the most free slots, then the
//! fewest records per second, then the smallest id (so a job's instances spread over the
//! nodes). When nothing else changes and no move is under way, one unit moves from the
//! busiest node to the idlest while their counts differ by two or more: a node that joins
//! fills up one move at a time.

use std::collections::BTreeMap;

use ferris_engine::cluster::{NodeSummary, Placement};

use crate::etcd::{Assignment, Snapshot};
use crate::unit::{Unit, units};

/// How many moves an assignment remembers.
const HISTORY: usize = 20;

/// What the leader writes: new assignments, and assignments of jobs no longer kept.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Decisions {
    /// Units to (re)assign, by key, with their new assignment.
    pub assign: Vec<(String, Assignment)>,
    /// Units of jobs dropped or stopped (or no longer units of their job): their
    /// assignments go.
    pub unassign: Vec<String>,
}

/// The status a node reports while it hands its jobs over before leaving.
pub(crate) const DRAINING: &str = "DRAINING";

/// Decides, from `snapshot`, what changes; `now_ms` dates the moves.
pub(crate) fn decide(snapshot: &Snapshot, now_ms: u64) -> Decisions {
    let eligible: BTreeMap<&str, &NodeSummary> = snapshot
        .nodes
        .values()
        .filter(|n| n.status != DRAINING)
        .map(|n| (n.id.as_str(), n))
        .collect();
    let mut load: BTreeMap<&str, u64> = eligible.keys().map(|id| (*id, 0)).collect();
    for unit in units(&snapshot.jobs).filter(|u| occupies_slot(snapshot, u)) {
        if let Some(count) = snapshot
            .assignments
            .get(&unit.key())
            .and_then(|a| load.get_mut(a.node.as_str()))
        {
            *count += 1;
        }
    }
    let mut decisions = Decisions::default();
    for unit in units(&snapshot.jobs) {
        let key = unit.key();
        let current = snapshot.assignments.get(&key);
        // A stopped job holds no node: START places it afresh.
        if unit.job.stopped || current.is_some_and(|a| eligible.contains_key(a.node.as_str())) {
            continue;
        }
        let why = match current {
            None => "placed".to_string(),
            Some(a) if snapshot.nodes.contains_key(&a.node) => {
                format!("node {} is draining", a.node)
            }
            Some(a) => format!("node {} left", a.node),
        };
        let Some(to) = freest(&eligible, &load) else {
            continue;
        };
        if let Some(count) = load.get_mut(to) {
            *count += 1;
        }
        decisions
            .assign
            .push((key, moved(current, to, why, now_ms)));
    }
    if decisions.assign.is_empty() && units(&snapshot.jobs).all(|u| settled(snapshot, &u)) {
        decisions
            .assign
            .extend(rebalance(snapshot, &eligible, &load, now_ms));
    }
    decisions.unassign = snapshot
        .assignments
        .keys()
        .filter(|key| snapshot.unit(key).is_none_or(|u| u.job.stopped))
        .cloned()
        .collect();
    decisions
}

/// Whether `unit` takes a slot of its node: its job is not stopped, and it has not ended
/// there (finished, or failed until `START JOB`).
fn occupies_slot(snapshot: &Snapshot, unit: &Unit) -> bool {
    let key = unit.key();
    let ended = snapshot.statuses.get(&key).is_some_and(|s| {
        matches!(s.status.as_str(), "FINISHED" | "FAILED")
            && snapshot
                .assignments
                .get(&key)
                .is_some_and(|a| a.node == s.node)
    });
    !unit.job.stopped && !ended
}

/// The eligible node with the most free slots, then the fewest records per second.
fn freest<'a>(
    eligible: &BTreeMap<&'a str, &NodeSummary>,
    load: &BTreeMap<&str, u64>,
) -> Option<&'a str> {
    eligible
        .iter()
        .map(|(id, node)| (*id, free_slots(node, load), node))
        .filter(|(_, free, _)| *free > 0)
        .max_by(|(a_id, a_free, a), (b_id, b_free, b)| {
            a_free
                .cmp(b_free)
                .then(b.records_per_second.total_cmp(&a.records_per_second))
                .then(b_id.cmp(a_id))
        })
        .map(|(id, _, _)| id)
}

fn free_slots(node: &NodeSummary, load: &BTreeMap<&str, u64>) -> i64 {
    node.slots as i64 - load.get(node.id.as_str()).copied().unwrap_or(0) as i64
}

/// Whether `unit` is where it was assigned: running there, or reported ended there.
fn settled(snapshot: &Snapshot, unit: &Unit) -> bool {
    let key = unit.key();
    if unit.job.stopped {
        return !snapshot.running.contains_key(&key);
    }
    let Some(assigned) = snapshot.assignments.get(&key) else {
        return false;
    };
    match snapshot.running.get(&key) {
        Some(node) => *node == assigned.node,
        None => snapshot
            .statuses
            .get(&key)
            .is_some_and(|s| s.node == assigned.node),
    }
}

/// One move from the busiest node to the idlest with a free slot, if their unit counts
/// differ by two or more.
fn rebalance(
    snapshot: &Snapshot,
    eligible: &BTreeMap<&str, &NodeSummary>,
    load: &BTreeMap<&str, u64>,
    now_ms: u64,
) -> Option<(String, Assignment)> {
    let (busiest, most) = load.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
    let (idlest, fewest) = load
        .iter()
        .filter(|(id, _)| eligible.get(*id).is_some_and(|n| free_slots(n, load) > 0))
        .min_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)))?;
    if *most < fewest + 2 {
        return None;
    }
    // The newest unit of the busiest node moves.
    let all: Vec<Unit> = units(&snapshot.jobs).collect();
    let key = all.iter().rev().find_map(|unit| {
        let key = unit.key();
        let here = snapshot
            .assignments
            .get(&key)
            .is_some_and(|a| a.node == *busiest);
        (here && occupies_slot(snapshot, unit)).then_some(key)
    })?;
    let why = format!("rebalance: {idlest} ran {fewest} jobs, {busiest} {most}");
    let assignment = moved(snapshot.assignments.get(&key), idlest, why, now_ms);
    Some((key, assignment))
}

fn moved(current: Option<&Assignment>, to: &str, why: String, now_ms: u64) -> Assignment {
    let mut history = current.map(|a| a.history.clone()).unwrap_or_default();
    history.push(Placement {
        at_ms: now_ms,
        from: current.map(|a| a.node.clone()),
        to: to.to_string(),
        why,
    });
    let drop = history.len().saturating_sub(HISTORY);
    history.drain(..drop);
    Assignment {
        node: to.to_string(),
        history,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferris_engine::cluster::ClusterJob;

    fn node(id: &str, slots: u64) -> NodeSummary {
        NodeSummary {
            id: id.into(),
            status: "UP".into(),
            slots,
            ..NodeSummary::default()
        }
    }

    fn job(name: &str) -> ClusterJob {
        ClusterJob {
            name: name.into(),
            kind: "stream".into(),
            sql: String::new(),
            checkpoint_dir: None,
            stopped: false,
            force: false,
            paused: false,
            generation: 0,
            created_ms: 0,
            instances: 0,
            era: 0,
            draining: false,
        }
    }

    /// Applies the decisions as the nodes would: each assigned job runs where assigned.
    fn apply(snapshot: &mut Snapshot, decisions: Decisions) {
        for (name, assignment) in decisions.assign {
            snapshot
                .running
                .insert(name.clone(), assignment.node.clone());
            snapshot.assignments.insert(name, assignment);
        }
        for name in decisions.unassign {
            snapshot.assignments.remove(&name);
        }
    }

    fn counts(snapshot: &Snapshot) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for a in snapshot.assignments.values() {
            *counts.entry(a.node.clone()).or_default() += 1;
        }
        counts
    }

    fn settle(snapshot: &mut Snapshot) -> usize {
        let mut rounds = 0;
        loop {
            let decisions = decide(snapshot, 1);
            if decisions == Decisions::default() {
                return rounds;
            }
            apply(snapshot, decisions);
            rounds += 1;
            assert!(rounds < 50, "placement does not settle");
        }
    }

    #[test]
    fn jobs_spread_by_free_slots_then_move_when_a_node_joins_or_leaves() {
        let mut snapshot = Snapshot::default();
        for id in ["a", "b", "c"] {
            snapshot.nodes.insert(id.into(), node(id, 4));
        }
        snapshot.jobs = (1..=6).map(|i| job(&format!("j{i}"))).collect();
        settle(&mut snapshot);
        assert_eq!(
            counts(&snapshot).values().copied().collect::<Vec<_>>(),
            [2, 2, 2]
        );
        assert_eq!(snapshot.assignments["j1"].history[0].why, "placed");

        // A fourth node: one job moves onto it, then the counts differ by one at most.
        snapshot.nodes.insert("d".into(), node("d", 4));
        assert_eq!(settle(&mut snapshot), 1);
        let moved: Vec<_> = snapshot
            .assignments
            .values()
            .filter(|a| a.node == "d")
            .collect();
        assert_eq!(moved.len(), 1);
        assert!(
            moved[0].history[1]
                .why
                .starts_with("rebalance: d ran 0 jobs")
        );

        // A node that leaves: its jobs go to the others, saying why.
        snapshot.nodes.remove("a");
        settle(&mut snapshot);
        assert!(!counts(&snapshot).contains_key("a"));
        assert_eq!(counts(&snapshot).values().sum::<usize>(), 6);
        assert!(
            snapshot
                .assignments
                .values()
                .any(|a| a.history.last().is_some_and(|p| p.why == "node a left"))
        );

        // A draining node hands its jobs over too.
        snapshot.nodes.get_mut("b").unwrap().status = DRAINING.into();
        settle(&mut snapshot);
        assert_eq!(counts(&snapshot).keys().collect::<Vec<_>>(), ["c", "d"]);
    }

    #[test]
    fn full_nodes_leave_jobs_waiting_and_dropped_jobs_lose_their_assignment() {
        let mut snapshot = Snapshot::default();
        snapshot.nodes.insert("a".into(), node("a", 1));
        snapshot.jobs = vec![job("x"), job("y")];
        settle(&mut snapshot);
        assert_eq!(snapshot.assignments.len(), 1);
        assert!(snapshot.assignments.contains_key("x"));
        snapshot.jobs.remove(0);
        settle(&mut snapshot);
        assert_eq!(snapshot.assignments.keys().collect::<Vec<_>>(), ["y"]);
    }

    #[test]
    fn a_stopped_job_frees_its_slot_and_is_placed_afresh_when_started() {
        let mut snapshot = Snapshot::default();
        snapshot.nodes.insert("a".into(), node("a", 1));
        snapshot.nodes.insert("b".into(), node("b", 1));
        snapshot.jobs = vec![job("x"), job("y")];
        settle(&mut snapshot);
        let y_node = snapshot.assignments["y"].node.clone();
        snapshot.jobs[1].stopped = true;
        snapshot.running.remove("y");
        settle(&mut snapshot);
        assert!(!snapshot.assignments.contains_key("y"));
        // Its slot goes to a new job; started again, it waits for a free one.
        snapshot.jobs.push(job("z"));
        settle(&mut snapshot);
        assert_eq!(snapshot.assignments["z"].node, y_node);
        snapshot.jobs[1].stopped = false;
        settle(&mut snapshot);
        assert!(!snapshot.assignments.contains_key("y"), "no free slot");
    }

    #[test]
    fn instances_run_apart_spread_over_the_nodes_and_go_with_their_job() {
        let mut snapshot = Snapshot::default();
        snapshot.nodes.insert("a".into(), node("a", 4));
        snapshot.nodes.insert("b".into(), node("b", 4));
        let mut parallel = job("p");
        parallel.instances = 2;
        snapshot.jobs = vec![parallel, job("x")];
        settle(&mut snapshot);
        let on = |key: &str, snapshot: &Snapshot| snapshot.assignments[key].node.clone();
        assert_ne!(on("p#0", &snapshot), on("p#1", &snapshot));
        assert_eq!(snapshot.assignments.len(), 3);
        // A node that leaves: its instance goes to the other.
        snapshot.nodes.remove("b");
        settle(&mut snapshot);
        assert_eq!(on("p#0", &snapshot), "a");
        assert_eq!(on("p#1", &snapshot), "a");
        // Stopped, every instance lets go of its node.
        snapshot.jobs[0].stopped = true;
        snapshot.running.retain(|key, _| !key.starts_with("p#"));
        settle(&mut snapshot);
        assert_eq!(snapshot.assignments.keys().collect::<Vec<_>>(), ["x"]);
    }

    #[test]
    fn nothing_moves_while_a_move_is_under_way() {
        let mut snapshot = Snapshot::default();
        snapshot.nodes.insert("a".into(), node("a", 4));
        snapshot.jobs = vec![job("x"), job("y")];
        settle(&mut snapshot);
        snapshot.nodes.insert("b".into(), node("b", 4));
        let decisions = decide(&snapshot, 2);
        assert_eq!(decisions.assign.len(), 1);
        // Assigned to b, still running on a: no second move.
        let (name, assignment) = &decisions.assign[0];
        snapshot
            .assignments
            .insert(name.clone(), assignment.clone());
        snapshot.nodes.insert("c".into(), node("c", 4));
        assert_eq!(decide(&snapshot, 3), Decisions::default());
    }
}
