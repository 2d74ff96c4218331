//! How a node joins a cluster: where etcd is, who the node is, what it offers.

use std::time::Duration;

use crate::error::ClusterError;

/// A node's settings (`ferris server --cluster ...`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// etcd's client endpoints (`HOST:PORT`).
    pub endpoints: Vec<String>,
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// Where other nodes and clients reach this node's Flight SQL endpoint.
    pub advertise: String,
    /// Where this node's HTTP endpoint is, if it serves one.
    pub http: Option<String>,
    /// How many jobs this node runs at most.
    pub slots: u64,
    /// How long the node stays registered without a heartbeat: after that it is gone, and
    /// it stops its jobs itself before then.
    pub lease_ttl: Duration,
    /// Where every job's checkpoints go: a folder every node reads, or `s3://...`.
    pub state_dir: String,
}

/// The endpoints of `etcd://HOST:PORT[,HOST:PORT...]`.
pub fn parse_endpoints(url: &str) -> Result<Vec<String>, ClusterError> {
    let bad = |why: &str| {
        ClusterError::Config(format!(
            "--cluster {url}: {why}; expected etcd://HOST:PORT[,HOST:PORT...]"
        ))
    };
    let rest = url
        .strip_prefix("etcd://")
        .ok_or_else(|| bad("not an etcd:// URL"))?;
    let endpoints: Vec<String> = rest
        .trim_end_matches('/')
        .split(',')
        .map(str::trim)
        .map(str::to_string)
        .collect();
    for endpoint in &endpoints {
        let (host, port) = endpoint
            .rsplit_once(':')
            .ok_or_else(|| bad(&format!("'{endpoint}' has no port")))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad(&format!("'{endpoint}' is not HOST:PORT")));
        }
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_read_from_an_etcd_url() {
        assert_eq!(
            parse_endpoints("etcd://127.0.0.1:2379,h2:2380").unwrap(),
            ["127.0.0.1:2379", "h2:2380"]
        );
        for bad in [
            "http://h:1",
            "etcd://h",
            "etcd://:1",
            "etcd://h:x",
            "etcd://h:1,",
        ] {
            let e = parse_endpoints(bad).unwrap_err().to_string();
            assert!(e.contains("expected etcd://HOST:PORT"), "{bad}: {e}");
        }
    }
}
