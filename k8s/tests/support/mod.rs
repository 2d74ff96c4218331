//! What the k8s tests share: the demos they deploy and the flags they deploy them with.

use std::path::{Path, PathBuf};

/// Each demo's folder under `deploy/` (its checked-in objects) and its SQL file.
pub const DEMOS: [(&str, &str); 3] = [
    ("quickstart", "demos/quickstart/quickstart.sql"),
    ("flight", "demos/flight/jobs.sql"),
    ("kafka-e2e", "demos/kafka-e2e/minute_bars.sql"),
];

/// The namespace of the demos' objects.
pub const NAMESPACE: &str = "ferris";

/// The flags the demos' objects are written with.
pub const FLAGS: [&str; 8] = [
    "--image",
    "ghcr.io/ferris-streams/ferris:0.1.0",
    "--namespace",
    NAMESPACE,
    "--etcd",
    "etcd://etcd.ferris.svc:2379",
    "--state-dir",
    "s3://ferris-state/checkpoints",
];

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
