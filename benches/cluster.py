#!/usr/bin/env python3
"""The cluster's control plane, measured on loopback: a real etcd and three `ferris server`
nodes (built by `cargo build --workspace`), with 30 jobs over watched CSV folders.

Prints:
- etcd's load from the cluster at rest (3 nodes, 30 jobs): transactions, keys written and
  reads per second, from etcd's own /metrics; beside it the baseline of 3 nodes and no job;
- failover time, median of 5: from `kill -9` of a node to the first new output of one of
  its jobs on another node (the lease TTL is the floor: the baseline);
- rebalance time, median of 5: from a node's start to the first new output of the job the
  leader moved onto it.

Usage: python3 benches/cluster.py [--lease-ttl SECONDS] [--jobs N] [--rounds N]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
FERRIS = os.path.join(TARGET, "debug", "ferris")
FLIGHT = os.path.join(TARGET, "debug", "ferris-flight")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what, done, timeout=60.0, every=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = done()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting until {what}")
        time.sleep(every)


class Etcd:
    def __init__(self, folder):
        binary = subprocess.run(["bash", os.path.join(ROOT, "scripts/etcd.sh"), "install"],
                                check=True, capture_output=True, text=True).stdout.strip()
        self.port, peer = free_port(), free_port()
        client, peers = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{peer}"
        self.process = subprocess.Popen(
            [binary, "--name", "bench", "--data-dir", os.path.join(folder, "etcd"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peers, "--initial-advertise-peer-urls", peers,
             "--initial-cluster", f"bench={peers}", "--heartbeat-interval", "50",
             "--election-timeout", "250", "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait("etcd answers", lambda: self.metrics().get("etcd_mvcc_range_total") is not None)

    def metrics(self):
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics").read().decode()
        except OSError:
            return {}
        values = {}
        for line in text.splitlines():
            if line.startswith("etcd_mvcc_") and " " in line:
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values


class Node:
    def __init__(self, folder, node_id, etcd, ttl):
        self.id = node_id
        self.log = os.path.join(folder, f"{node_id}.log")
        self.process = subprocess.Popen(
            [FERRIS, "server", "--flight", "127.0.0.1:0", "--cluster",
             f"etcd://127.0.0.1:{etcd.port}", "--node-id", node_id, "--state-dir", "state",
             "--slots", "64", "--lease-ttl", str(ttl)],
            cwd=folder, stderr=open(self.log, "w"))
        self.port = wait(f"{node_id} listens", self.listening)

    def listening(self):
        for line in open(self.log):
            if "Flight SQL listening on" in line:
                return line.strip().rsplit(":", 1)[1]
        return None

    def sql(self, sql):
        done = subprocess.run([FLIGHT, "--port", self.port, "-e", sql],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr)
        lines = [l for l in done.stdout.splitlines() if l.startswith("|")]
        if not lines:
            return []
        cells = lambda l: [c.strip() for c in l.strip("|").split("|")]
        names = cells(lines[0])
        return [dict(zip(names, cells(l))) for l in lines[1:]]


def job(k):
    return (f"CREATE STREAM j{k} AS SELECT id, symbol FROM src{k} "
            f"WITH ('src{k}.type' = 'file_source', 'src{k}.path' = 'in/{k}/', "
            f"'src{k}.format' = 'csv', 'src{k}.schema' = 'id BIGINT, symbol VARCHAR', "
            f"'src{k}.watch' = 'true', 'src{k}.watch.interval' = '20ms', "
            f"'j{k}.type' = 'file_sink', 'j{k}.path' = 'out/j{k}/', "
            f"'checkpoint.interval' = '100ms')")


def write_rows(folder, k, marker):
    os.makedirs(os.path.join(folder, f"in/{k}"), exist_ok=True)
    aside = os.path.join(folder, f"in/.{k}-{marker}")
    with open(aside, "w") as f:
        f.write(f"id,symbol\n{marker},S\n")
    os.rename(aside, os.path.join(folder, f"in/{k}/{marker}.csv"))


def output_has(folder, k, marker):
    out = os.path.join(folder, f"out/j{k}")
    if not os.path.isdir(out):
        return False
    for name in os.listdir(out):
        if not name.startswith("."):
            with open(os.path.join(out, name)) as f:
                if any(json.loads(line)["id"] == marker for line in f if line.strip()):
                    return True
    return False


def placement(node):
    try:
        jobs = node.sql("SHOW JOBS")
    except RuntimeError:
        return None
    if all(j["status"] == "RUNNING" for j in jobs):
        return {j["name"]: j["node"] for j in jobs}
    return None


def rates(etcd, seconds):
    before, started = etcd.metrics(), time.monotonic()
    time.sleep(seconds)
    after, elapsed = etcd.metrics(), time.monotonic() - started
    rate = lambda name: (after.get(name, 0) - before.get(name, 0)) / elapsed
    return rate("etcd_mvcc_txn_total"), rate("etcd_mvcc_put_total"), rate("etcd_mvcc_range_total")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lease-ttl", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="ferris-cluster-bench-")
    etcd, nodes = Etcd(folder), []
    try:
        nodes = [Node(folder, f"n{i}", etcd, args.lease_ttl) for i in (1, 2, 3)]
        wait("three nodes", lambda: len(nodes[0].sql("SHOW NODES")) == 3)
        idle = rates(etcd, 10)
        for k in range(1, args.jobs + 1):
            nodes[0].sql(job(k))
        wait(f"{args.jobs} jobs run",
             lambda: (p := placement(nodes[0])) and len(p) == args.jobs, timeout=120)
        loaded = rates(etcd, 10)
        print(f"etcd load, 3 nodes, idle (baseline): {idle[0]:.1f} txn/s, "
              f"{idle[1]:.1f} keys written/s, {idle[2]:.1f} reads/s")
        print(f"etcd load, 3 nodes, {args.jobs} jobs: {loaded[0]:.1f} txn/s, "
              f"{loaded[1]:.1f} keys written/s, {loaded[2]:.1f} reads/s")

        failovers, rebalances, marker = [], [], 1000
        spare = 4
        for _ in range(args.rounds):
            placed = wait("every job runs", lambda: placement(nodes[0]))
            victim = next(n for n in nodes[1:] if n.id in placed.values())
            job_name = next(name for name, node in placed.items() if node == victim.id)
            k = int(job_name[1:])
            marker += 1
            write_rows(folder, k, marker)
            victim.process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            wait("output after failover", lambda: output_has(folder, k, marker), every=0.01)
            failovers.append(time.monotonic() - killed)
            victim.process.wait()
            nodes.remove(victim)

            # A node joins: time to the first output of the job moved onto it.
            joined = time.monotonic()
            newcomer = Node(folder, f"n{spare}", etcd, args.lease_ttl)
            spare += 1
            nodes.append(newcomer)
            moved = wait("a job moves onto the new node",
                         lambda: next((name for name, node in (placement(nodes[0]) or {}).items()
                                       if node == newcomer.id), None), every=0.01)
            k = int(moved[1:])
            marker += 1
            write_rows(folder, k, marker)
            wait("output on the new node", lambda: output_has(folder, k, marker), every=0.01)
            rebalances.append(time.monotonic() - joined)
            wait("settled", lambda: (p := placement(nodes[0])) and len(p) == args.jobs)

        print(f"failover (kill -9 to first output elsewhere), lease TTL {args.lease_ttl}s "
              f"(the baseline floor): median {statistics.median(failovers):.2f}s "
              f"of {[round(f, 2) for f in failovers]}")
        print(f"rebalance (node start to first output of the job moved onto it): "
              f"median {statistics.median(rebalances):.2f}s of {[round(r, 2) for r in rebalances]}")
    finally:
        for node in nodes:
            node.process.kill()
        etcd.process.kill()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
