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
    /// The cluster's name (`etcd://.../NAME`): clusters of other names share the etcd and
    /// nothing else. `None`: the unnamed one.
    pub name: Option<String>,
}

impl ClusterConfig {
    /// The cluster's keys in etcd.
    pub(crate) fn keys(&self) -> crate::etcd::Keys {
        crate::etcd::Keys::of(self.name.as_deref())
    }
}

/// The endpoints and the cluster's name of `etcd://HOST:PORT[,HOST:PORT...][/NAME]`.
pub fn parse_cluster_url(url: &str) -> Result<(Vec<String>, Option<String>), ClusterError> {
    let bad = |why: &str| {
        ClusterError::Config(format!(
            "--cluster {url}: {why}; expected etcd://HOST:PORT[,HOST:PORT...][/NAME]"
        ))
    };
    let rest = url
        .strip_prefix("etcd://")
        .ok_or_else(|| bad("not an etcd:// URL"))?;
    let (hosts, name) = match rest.trim_end_matches('/').split_once('/') {
        Some((hosts, name)) => (hosts, Some(name)),
        None => (rest.trim_end_matches('/'), None),
    };
    if let Some(name) = name
        && (name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(bad(&format!(
            "'{name}' is not a cluster name (letters, digits, - and _)"
        )));
    }
    let endpoints: Vec<String> = hosts
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
    Ok((endpoints, name.map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_name_are_read_from_an_etcd_url() {
        let (endpoints, name) = parse_cluster_url("etcd://127.0.0.1:2379,h2:2380").unwrap();
        assert_eq!(endpoints, ["127.0.0.1:2379", "h2:2380"]);
        assert_eq!(name, None);
        let (endpoints, name) = parse_cluster_url("etcd://etcd:2379/trading").unwrap();
        assert_eq!(
            (endpoints, name.as_deref()),
            (vec!["etcd:2379".to_string()], Some("trading"))
        );
        for bad in [
            "http://h:1",
            "etcd://h",
            "etcd://:1",
            "etcd://h:x",
            "etcd://h:1,",
            "etcd://h:1/a/b",
            "etcd://h:1/a b",
        ] {
            let e = parse_cluster_url(bad).unwrap_err().to_string();
            assert!(e.contains("expected etcd://HOST:PORT"), "{bad}: {e}");
        }
    }
}
