//! A job's checkpoints: written through object_store, read back when the job restarts.
//!
//! Checkpoint `n` of a job is a folder `chk-<n>/` under the job's checkpoint location: one
//! Arrow IPC file per source position and per operator snapshot (and the rows of a table
//! kept by name), then `_manifest.json`, written last. A checkpoint without a manifest never happened. The newest few are kept.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;
use ferris_connectors::{SourceConnector, SourcePosition};
use ferris_streaming::EventTimeStamper;
use ferris_streaming::TRANSPORT_OUTPUT;
use ferris_streaming::checkpoint::{Captured, Restored};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{EngineError, Result};
use crate::job::manifest::Manifest;
use crate::source::source_of;

/// Checkpoints kept: a Kafka transaction may fail to commit after its checkpoint was
/// written, and the one before must then still be there.
const KEEP: usize = 3;
const MANIFEST: &str = "_manifest.json";
/// The rows of a job's table kept by name, in a checkpoint.
const TABLE: &str = "table.arrow";
/// Written into a drain's last checkpoint once its output committed.
const DRAINED: &str = "_drained";
/// Before the checkpoint's number in the metadata of the offsets its transaction commits.
const OFFSETS_METADATA: &str = "ferris checkpoint ";

/// The metadata of the offsets checkpoint `epoch`'s transaction commits: it names the
/// checkpoint, which offsets alone cannot (the next may be at the same offsets).
pub(crate) fn offsets_metadata(epoch: u64) -> String {
    format!("{OFFSETS_METADATA}{epoch}")
}

/// The checkpoint whose transaction committed offsets with `metadata` (one string per
/// partition), if they all name the same one.
fn named_checkpoint(metadata: &[String]) -> Option<u64> {
    let (first, rest) = metadata.split_first()?;
    let epoch = first.strip_prefix(OFFSETS_METADATA)?.parse().ok()?;
    rest.iter().all(|m| m == first).then_some(epoch)
}

/// What the sources' consumer groups committed last.
struct Committed {
    /// Each source's offsets.
    positions: Vec<(String, SourcePosition)>,
    /// The checkpoint whose transaction committed them, if they say.
    checkpoint: Option<u64>,
}

/// Where one job's checkpoints live.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    /// What the user gave, for messages.
    display: String,
    /// The folder, when local: the object store leaves a pruned checkpoint's folder empty,
    /// and left behind, every prune would list them all (ever longer for a job that
    /// checkpoints often).
    local: Option<std::path::PathBuf>,
}

impl CheckpointStore {
    /// Checkpoints at `location`: a local folder (created if missing) or `s3://bucket/prefix`,
    /// whose credentials, region and endpoint come from the `AWS_*` environment variables as
    /// the AWS tools read them (`AWS_ENDPOINT` and `AWS_ALLOW_HTTP` for an S3-compatible
    /// store).
    pub fn open(location: &str) -> Result<Self> {
        let store: Arc<dyn ObjectStore> = if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(EngineError::Checkpoint(format!(
                    "{location}: an s3:// location names its bucket (s3://BUCKET/PREFIX)"
                )));
            }
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| EngineError::Checkpoint(format!("{location}: {e}")))?;
            let prefix = prefix.trim_end_matches('/');
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            }
        } else if location.contains("://") {
            return Err(EngineError::Checkpoint(format!(
                "{location}: checkpoints go to a local folder or s3://BUCKET/PREFIX"
            )));
        } else {
            std::fs::create_dir_all(location)
                .map_err(|e| EngineError::Checkpoint(format!("cannot create {location}: {e}")))?;
            Arc::new(
                LocalFileSystem::new_with_prefix(location)
                    .map_err(|e| EngineError::Checkpoint(format!("{location}: {e}")))?,
            )
        };
        Ok(Self {
            store,
            display: location.to_string(),
            local: (!location.contains("://")).then(|| location.into()),
        })
    }

    /// Deletes every checkpoint at `location` (an [`open`](Self::open) location), and a local
    /// folder itself.
    pub async fn delete(location: &str) -> Result<()> {
        if location.contains("://") {
            return Self::open(location)?.clear().await;
        }
        match std::fs::remove_dir_all(location) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(EngineError::Checkpoint(format!("removing {location}: {e}")))
            }
            _ => Ok(()),
        }
    }

    /// Checkpoints in `store`, for tests that need a store of their own.
    #[cfg(test)]
    pub(crate) fn with_store(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            display: "a test store".into(),
            local: None,
        }
    }

    fn error(&self, doing: &str, e: impl std::fmt::Display) -> EngineError {
        EngineError::Checkpoint(format!("{doing} in {}: {e}", self.display))
    }

    fn folder(epoch: u64) -> String {
        format!("chk-{epoch:010}")
    }

    /// Writes a checkpoint, with the rows of the job's table kept by name (`table`, if the
    /// manifest says it has them): state files first, the manifest last.
    pub async fn write(
        &self,
        manifest: &Manifest,
        captured: &Captured,
        table: Option<&RecordBatch>,
    ) -> Result<()> {
        let folder = Self::folder(manifest.epoch);
        let files = captured
            .sources
            .iter()
            .enumerate()
            .map(|(i, (_, batch))| (format!("source-{i}.arrow"), batch))
            .chain(
                captured
                    .operators
                    .iter()
                    .enumerate()
                    .map(|(i, batch)| (format!("operator-{i}.arrow"), batch)),
            )
            .chain(table.map(|batch| (TABLE.to_string(), batch)));
        for (name, batch) in files {
            let bytes = ipc_bytes(batch).map_err(|e| self.error("writing a checkpoint", e))?;
            self.store
                .put(&Path::from(format!("{folder}/{name}")), bytes.into())
                .await
                .map_err(|e| self.error("writing a checkpoint", e))?;
        }
        let manifest = serde_json::to_vec_pretty(&manifest.to_json()).expect("JSON values print");
        self.store
            .put(&Path::from(format!("{folder}/{MANIFEST}")), manifest.into())
            .await
            .map_err(|e| self.error("writing a checkpoint", e))?;
        Ok(())
    }

    /// Every complete checkpoint, newest first.
    pub async fn manifests(&self) -> Result<Vec<Manifest>> {
        let listing = self
            .store
            .list_with_delimiter(None)
            .await
            .map_err(|e| self.error("listing checkpoints", e))?;
        let mut manifests = Vec::new();
        for folder in listing.common_prefixes {
            if !folder.as_ref().starts_with("chk-") {
                continue;
            }
            let path = folder.clone().join(MANIFEST);
            let bytes = match self.store.get(&path).await {
                Ok(found) => found
                    .bytes()
                    .await
                    .map_err(|e| self.error("reading a checkpoint", e))?,
                // Never finished: the crash came while it was written.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(self.error("reading a checkpoint", e)),
            };
            let location = format!("{}/{path}", self.display);
            let json = serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::Checkpoint(format!("{location}: {e}")))?;
            manifests.push(Manifest::from_json(&json, &location)?);
        }
        manifests.sort_by_key(|m| std::cmp::Reverse(m.epoch));
        Ok(manifests)
    }

    /// The checkpoint a job resumes from: the newest, unless its sink commits in transactions
    /// (a Kafka sink's). Then the transaction is the commit point, and the checkpoint to resume is
    /// the one whose source offsets the consumer group committed (a newer one was written, but
    /// its transaction never committed). The checkpoints after the one chosen are deleted.
    pub async fn choose(
        &self,
        sources: &[(String, Arc<dyn SourceConnector>)],
        transactional: bool,
        new_era: bool,
    ) -> Result<Option<(Manifest, Restored)>> {
        let committed = if transactional {
            let mut positions = Vec::new();
            let mut metadata = Vec::new();
            for (name, source) in sources {
                if let Some(committed) = source.committed_position().await? {
                    positions.push((name.clone(), committed.position));
                    metadata.extend(committed.metadata);
                }
            }
            Some(Committed {
                positions,
                checkpoint: named_checkpoint(&metadata),
            })
        } else {
            None
        };
        self.choose_committed(committed.as_ref(), new_era).await
    }

    /// [`choose`](Self::choose), given what the sources' consumer groups committed (`None`
    /// unless the sink is transactional). `new_era`: these are the checkpoints of an
    /// instance of a job whose parallelism changed, whose groups' offsets the instances of
    /// the era before committed until one of its own transactions does.
    async fn choose_committed(
        &self,
        committed: Option<&Committed>,
        new_era: bool,
    ) -> Result<Option<(Manifest, Restored)>> {
        let manifests = self.manifests().await?;
        let Some(newest) = manifests.first() else {
            return Ok(None);
        };
        let Some(committed) = committed else {
            return self.resume(newest).await;
        };
        // The checkpoint the transaction named goes first: offsets alone cannot tell it from
        // a later one at the same offsets whose transaction never committed (the last, taken
        // as the input ended, holds only the windows flushed then). They decide alone for
        // offsets committed without a name (by an older version).
        let is_named = |m: &&Manifest| Some(m.epoch) == committed.checkpoint;
        let named = manifests.iter().filter(is_named);
        let others = manifests.iter().filter(|m| !is_named(m));
        for manifest in named.chain(others) {
            // The positions tell; the operators' state is read for the one chosen only.
            let read = self.read_sources(manifest).await?;
            let positions = by_source(&read);
            let matches = committed.positions.iter().all(|(name, position)| {
                positions
                    .get(name.as_str())
                    .is_some_and(|checkpointed| same_offsets(checkpointed, position))
            });
            if matches {
                return self.resume(manifest).await;
            }
        }
        // In a new era, offsets that name no checkpoint kept, or one before them, are the
        // era before's: no transaction of this one committed.
        let before_this_era = new_era
            && manifests
                .last()
                .is_some_and(|oldest| committed.checkpoint.is_none_or(|e| e < oldest.epoch));
        if before_this_era || committed.positions.iter().all(|(_, p)| p.parts.is_empty()) {
            // No transaction ever committed: the checkpoints are of output nobody saw.
            self.clear().await?;
            return Ok(None);
        }
        Err(EngineError::Checkpoint(format!(
            "the consumer group's committed offsets match no checkpoint kept (epochs {}): delete the job's state to start over from the group's offsets",
            manifests
                .iter()
                .map(|m| m.epoch.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// Checkpoint `chosen` with its state, once the checkpoints after it are deleted: they
    /// never committed, and the next checkpoints take their numbers. Left in place, one being
    /// written over when a crash comes would keep its old manifest over a mix of files.
    async fn resume(&self, chosen: &Manifest) -> Result<Option<(Manifest, Restored)>> {
        self.delete_where(|epoch| epoch.is_some_and(|e| e > chosen.epoch))
            .await?;
        Ok(Some((chosen.clone(), self.read(chosen).await?)))
    }

    /// The state of checkpoint `manifest`, for the barrier to hand out.
    pub async fn read(&self, manifest: &Manifest) -> Result<Restored> {
        let folder = Self::folder(manifest.epoch);
        let mut operators = Vec::with_capacity(manifest.operators);
        for i in 0..manifest.operators {
            operators.push(
                self.read_batch(&format!("{folder}/operator-{i}.arrow"))
                    .await?,
            );
        }
        Ok(Restored {
            epoch: manifest.epoch,
            sources: self.read_sources(manifest).await?,
            operators,
        })
    }

    /// Marks checkpoint `epoch`, committed, as its drain's last (`drained_instances`).
    pub async fn mark_drained(&self, epoch: u64) -> Result<()> {
        let path = Path::from(format!("{}/{DRAINED}", Self::folder(epoch)));
        self.store
            .put(&path, Vec::new().into())
            .await
            .map_err(|e| self.error("marking a drained checkpoint", e))?;
        Ok(())
    }

    /// Whether checkpoint `manifest` is a drain's last, committed.
    async fn is_drained(&self, manifest: &Manifest) -> Result<bool> {
        let path = Path::from(format!("{}/{DRAINED}", Self::folder(manifest.epoch)));
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("reading a checkpoint", e)),
        }
    }

    /// The rows of the job's table kept by name in checkpoint `manifest`, if it has them.
    pub async fn read_table(&self, manifest: &Manifest) -> Result<Option<RecordBatch>> {
        if !manifest.table {
            return Ok(None);
        }
        let folder = Self::folder(manifest.epoch);
        Ok(Some(self.read_batch(&format!("{folder}/{TABLE}")).await?))
    }

    /// The source positions of checkpoint `manifest`, by source name.
    pub(crate) async fn read_sources(
        &self,
        manifest: &Manifest,
    ) -> Result<HashMap<String, RecordBatch>> {
        let folder = Self::folder(manifest.epoch);
        let mut sources = HashMap::new();
        for (i, name) in manifest.sources.iter().enumerate() {
            let batch = self
                .read_batch(&format!("{folder}/source-{i}.arrow"))
                .await?;
            sources.insert(name.clone(), batch);
        }
        Ok(sources)
    }

    async fn read_batch(&self, path: &str) -> Result<RecordBatch> {
        let error = |e: &dyn std::fmt::Display| {
            EngineError::Checkpoint(format!("reading {}/{path}: {e}", self.display))
        };
        let bytes = self
            .store
            .get(&Path::from(path))
            .await
            .map_err(|e| error(&e))?
            .bytes()
            .await
            .map_err(|e| error(&e))?;
        let reader =
            FileReader::try_new(std::io::Cursor::new(bytes), None).map_err(|e| error(&e))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| error(&e))?;
        arrow::compute::concat_batches(&schema, &batches).map_err(|e| error(&e))
    }

    /// Deletes all but the newest [`KEEP`] checkpoints, and unfinished ones older than them.
    pub async fn prune(&self, newest: u64) -> Result<()> {
        self.delete_where(|epoch| epoch.is_some_and(|e| e + KEEP as u64 <= newest))
            .await
    }

    /// Deletes every checkpoint (the job starts over).
    pub async fn clear(&self) -> Result<()> {
        self.delete_where(|_| true).await
    }

    /// Deletes the folders whose epoch (none: not a checkpoint's) `doomed` says.
    async fn delete_where(&self, doomed: impl Fn(Option<u64>) -> bool) -> Result<()> {
        let listing = self
            .store
            .list_with_delimiter(None)
            .await
            .map_err(|e| self.error("listing checkpoints", e))?;
        for folder in listing.common_prefixes {
            let epoch = folder
                .as_ref()
                .strip_prefix("chk-")
                .and_then(|n| n.parse::<u64>().ok());
            if doomed(epoch) {
                self.delete_folder(&folder).await?;
            }
        }
        Ok(())
    }

    async fn delete_folder(&self, folder: &Path) -> Result<()> {
        // The manifest first: a crash partway must not leave a checkpoint with files missing.
        match self.store.delete(&folder.clone().join(MANIFEST)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.error("pruning checkpoints", e)),
        }
        let files: Vec<_> = self
            .store
            .list(Some(folder))
            .try_collect()
            .await
            .map_err(|e| self.error("pruning checkpoints", e))?;
        for file in files {
            self.store
                .delete(&file.location)
                .await
                .map_err(|e| self.error("pruning checkpoints", e))?;
        }
        if let Some(local) = &self.local {
            // Only this folder, emptied: never the job's, which a new checkpoint may be
            // being written into.
            let _ = std::fs::remove_dir(local.join(folder.as_ref()));
        }
        Ok(())
    }
}

/// The folder of the checkpoints of a job's instances in era `era` (see `InstanceToRun`),
/// under the job's folder `dir`: each instance's in `instance-<i>` below it.
pub(crate) fn era_folder(dir: &str, era: u64) -> String {
    match era {
        0 => dir.to_string(),
        era => format!("{dir}/era-{era}"),
    }
}

/// The last checkpoint of each instance of an era (under `folder`), each its drain's and
/// committed (nothing was left in flight between the instances, nor uncommitted).
pub(crate) async fn drained_instances(folder: &str) -> Result<Vec<(CheckpointStore, Manifest)>> {
    let first = CheckpointStore::open(&format!("{folder}/instance-0"))?;
    let Some(newest) = first.manifests().await?.into_iter().next() else {
        return Err(EngineError::Checkpoint(format!(
            "{folder}/instance-0 holds no checkpoint of the job's instances"
        )));
    };
    let count = newest.parallelism;
    let mut lasts = Vec::with_capacity(count);
    for index in 0..count {
        let store = CheckpointStore::open(&format!("{folder}/instance-{index}"))?;
        let last = store.manifests().await?.into_iter().next();
        let drained = match &last {
            Some(last) if last.parallelism == count => store.is_drained(last).await?,
            _ => false,
        };
        match last {
            Some(last) if drained => lasts.push((store, last)),
            _ => {
                return Err(EngineError::Checkpoint(format!(
                    "instance {index} of {count} did not drain ({})",
                    store.display
                )));
            }
        }
    }
    Ok(lasts)
}

/// The positions of the drained checkpoints `lasts` (read from their folders), as the
/// new era takes them up (`era_positions_of`).
pub(crate) async fn era_positions(
    lasts: &[(CheckpointStore, Manifest)],
) -> Result<HashMap<String, RecordBatch>> {
    let mut positions = HashMap::new();
    for (store, last) in lasts {
        positions.extend(store.read_sources(last).await?);
    }
    era_positions_of(positions)
}

/// The positions of an era's last checkpoints, each source's shares merged (a share at the
/// new parallelism takes its parts), without the places in the old era's exchange topics
/// (read to their ends).
fn era_positions_of(
    mut positions: HashMap<String, RecordBatch>,
) -> Result<HashMap<String, RecordBatch>> {
    positions.retain(|name, _| !name.starts_with(TRANSPORT_OUTPUT));
    merge_shares(&positions)
}

/// The state an instance of a job's new era starts from: the drained last checkpoints of
/// the instances of the era before (under `folder`), of the plan `plan`, put together
/// (`Restored::of_instances_apart`: a new instance takes its key groups from the old ones
/// overlapping them), with their positions (`era_positions_of`).
pub(crate) async fn take_up_era(folder: &str, plan: &str) -> Result<Restored> {
    let lasts = drained_instances(folder).await?;
    let mut each = Vec::with_capacity(lasts.len());
    for (store, last) in &lasts {
        if last.plan != plan {
            return Err(EngineError::Checkpoint(format!(
                "the job changed since checkpoint {} in {}: its state fits the old query only",
                last.epoch, store.display
            )));
        }
        each.push(store.read(last).await?);
    }
    let mut restored = Restored::of_instances_apart(each)
        .map_err(|e| EngineError::Checkpoint(format!("{folder}: {e}")))?;
    restored.sources = era_positions_of(std::mem::take(&mut restored.sources))?;
    Ok(restored)
}

/// The positions of a checkpoint taken at another parallelism, each source's shares' put
/// together under the source's name: each share of the job now takes the parts of it that
/// fall to it (`CheckpointBarrier::register_source_share`). A part read by two shares (a
/// file read in byte ranges) cannot be divided anew.
pub(crate) fn merge_shares(
    positions: &HashMap<String, RecordBatch>,
) -> Result<HashMap<String, RecordBatch>> {
    let mut by_source: HashMap<&str, Vec<(&String, &RecordBatch)>> = HashMap::new();
    for (name, batch) in positions {
        by_source
            .entry(source_of(name))
            .or_default()
            .push((name, batch));
    }
    let mut merged = HashMap::new();
    for (source, shares) in by_source {
        let mut position = SourcePosition::default();
        for (name, batch) in &shares {
            for part in SourcePosition::from_batch(batch)?.parts {
                if position.parts.iter().any(|p| p.part == part.part)
                    || part.part.contains(ferris_connectors::file::RANGE_TAG)
                {
                    return Err(EngineError::Checkpoint(format!(
                        "source '{source}' was read in ranges of its files ({name} read '{}'): its checkpoint resumes only at the parallelism it was taken at",
                        part.part
                    )));
                }
                position.parts.push(part);
            }
        }
        let stamps: Vec<_> = shares
            .iter()
            .map(|(_, batch)| batch.schema().metadata().clone())
            .collect();
        let batch = position.to_batch();
        let schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
            batch.schema().fields().clone(),
            EventTimeStamper::merge_snapshots(&stamps),
        ));
        merged.insert(source.to_string(), batch.with_schema(schema)?);
    }
    Ok(merged)
}

/// A checkpoint's positions by source, its shares' put together (a position that does not
/// read is left out: it matches nothing).
fn by_source(positions: &HashMap<String, RecordBatch>) -> HashMap<&str, SourcePosition> {
    let mut sources: HashMap<&str, SourcePosition> = HashMap::new();
    for (name, batch) in positions {
        if let Ok(position) = SourcePosition::from_batch(batch) {
            let merged = sources.entry(source_of(name)).or_default();
            merged.parts.extend(position.parts);
        }
    }
    sources
}

fn same_offsets(a: &SourcePosition, b: &SourcePosition) -> bool {
    let offsets = |p: &SourcePosition| {
        let mut parts: Vec<(String, i64)> =
            p.parts.iter().map(|p| (p.part.clone(), p.offset)).collect();
        parts.sort();
        parts
    };
    offsets(a) == offsets(b)
}

fn ipc_bytes(batch: &RecordBatch) -> std::result::Result<Vec<u8>, arrow::error::ArrowError> {
    let mut bytes = Vec::new();
    let mut writer = FileWriter::try_new(&mut bytes, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::manifest::now_ms;
    use arrow::array::Int64Array;
    use ferris_connectors::PartPosition;

    fn captured(epoch: u64) -> Captured {
        let batch = RecordBatch::try_from_iter([(
            "n",
            Arc::new(Int64Array::from(vec![epoch as i64])) as _,
        )])
        .unwrap();
        Captured {
            epoch,
            sources: vec![("trades".into(), batch.clone())],
            operators: vec![batch],
        }
    }

    /// A checkpoint of two shares resumed at another parallelism: each source's parts put
    /// together under its name; a file read in byte ranges cannot be.
    #[test]
    fn shares_positions_are_put_together_by_source() {
        let part = |part: &str, offset| PartPosition {
            part: part.into(),
            offset,
            line: 0,
            size: 0,
        };
        let batch = |parts: Vec<PartPosition>| SourcePosition { parts }.to_batch();
        let positions = HashMap::from([
            (
                "trades[0]".to_string(),
                batch(vec![part("0", 10), part("2", 20)]),
            ),
            ("trades[1]".to_string(), batch(vec![part("1", 30)])),
            ("quotes".to_string(), batch(vec![part("0", 5)])),
        ]);
        let merged = merge_shares(&positions).unwrap();
        let mut trades = SourcePosition::from_batch(&merged["trades"]).unwrap().parts;
        trades.sort_by(|a, b| a.part.cmp(&b.part));
        assert_eq!(trades, vec![part("0", 10), part("1", 30), part("2", 20)]);
        assert_eq!(merged.len(), 2);
        let ranged = HashMap::from([(
            "big[1]".to_string(),
            batch(vec![part("data/big.csv#range=1/2", 700)]),
        )]);
        let error = merge_shares(&ranged).unwrap_err().to_string();
        assert!(error.contains("ranges of its files"), "{error}");
    }

    fn manifest(epoch: u64) -> Manifest {
        Manifest {
            epoch,
            plan: "plan".into(),
            parallelism: 1,
            sources: vec!["trades".into()],
            operators: 1,
            sink: serde_json::json!({"parts": []}),
            finished: false,
            table: false,
            created_ms: now_ms(),
        }
    }

    /// Partition 0 of a topic, read up to `offset`.
    fn position(offset: i64) -> SourcePosition {
        SourcePosition {
            parts: vec![ferris_connectors::PartPosition {
                part: "0".into(),
                offset,
                line: 0,
                size: 0,
            }],
        }
    }

    /// Checkpoint `epoch`, taken at `offset`.
    fn captured_at(epoch: u64, offset: i64) -> Captured {
        Captured {
            sources: vec![("trades".into(), position(offset).to_batch())],
            ..captured(epoch)
        }
    }

    #[tokio::test]
    async fn a_restore_deletes_the_checkpoints_after_the_one_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path().to_str().unwrap()).unwrap();
        for (epoch, offset) in [(1, 10), (2, 20), (3, 30)] {
            let captured = captured_at(epoch, offset);
            store
                .write(&manifest(epoch), &captured, None)
                .await
                .unwrap();
        }
        // Checkpoint 3's transaction never committed.
        let committed = Committed {
            positions: vec![("trades".into(), position(20))],
            checkpoint: Some(2),
        };
        let (chosen, _) = store
            .choose_committed(Some(&committed), false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(chosen.epoch, 2);
        // The next checkpoint, numbered 3 again, is killed after its first file. Nothing was
        // read since the restore: its position is the committed one.
        let folder = dir.path().join("chk-0000000003");
        std::fs::create_dir_all(&folder).unwrap();
        let bytes = ipc_bytes(&position(20).to_batch()).unwrap();
        std::fs::write(folder.join("source-0.arrow"), bytes).unwrap();
        let (chosen, restored) = store
            .choose_committed(Some(&committed), false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(chosen.epoch, 2);
        assert_eq!(restored.operators, captured(2).operators);
    }

    #[tokio::test]
    async fn the_last_checkpoint_at_its_predecessors_offsets_counts_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path().to_str().unwrap()).unwrap();
        store
            .write(&manifest(1), &captured_at(1, 20), None)
            .await
            .unwrap();
        // The input ended with nothing read after checkpoint 1: the last checkpoint is at
        // the same offsets, and its transaction holds the windows flushed as it ended.
        let last = Manifest {
            finished: true,
            ..manifest(2)
        };
        store.write(&last, &captured_at(2, 20), None).await.unwrap();
        let committed_by = |metadata: &str| Committed {
            positions: vec![("trades".into(), position(20))],
            checkpoint: named_checkpoint(&[metadata.to_string()]),
        };
        let chosen = |committed: Committed| {
            let store = store.clone();
            async move {
                let (manifest, _) = store
                    .choose_committed(Some(&committed), false)
                    .await
                    .unwrap()
                    .unwrap();
                (manifest.epoch, manifest.finished)
            }
        };
        // Offsets committed without a name: the newest at them, as before.
        assert_eq!(chosen(committed_by("")).await, (2, true));
        assert_eq!(chosen(committed_by(&offsets_metadata(2))).await, (2, true));
        // Killed before the last transaction committed: the job is not over.
        assert_eq!(chosen(committed_by(&offsets_metadata(1))).await, (1, false));
    }

    #[tokio::test]
    async fn written_checkpoints_read_back_newest_first_and_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path().to_str().unwrap()).unwrap();
        for epoch in 1..=5 {
            store
                .write(&manifest(epoch), &captured(epoch), None)
                .await
                .unwrap();
        }
        // A checkpoint cut short by a crash has no manifest and does not count.
        std::fs::create_dir_all(dir.path().join("chk-0000000006")).unwrap();
        std::fs::write(dir.path().join("chk-0000000006/source-0.arrow"), b"half").unwrap();
        store.prune(5).await.unwrap();
        let manifests = store.manifests().await.unwrap();
        let epochs: Vec<u64> = manifests.iter().map(|m| m.epoch).collect();
        assert_eq!(epochs, [5, 4, 3]);
        // Pruned folders are gone, not left empty for every later prune to list.
        assert!(!dir.path().join("chk-0000000001").exists());
        assert_eq!(
            manifests[0],
            manifest(5).clone_with_time(manifests[0].created_ms)
        );
        let restored = store.read(&manifests[0]).await.unwrap();
        assert_eq!(restored.sources["trades"], captured(5).sources[0].1);
        assert_eq!(restored.operators, captured(5).operators);
        store.clear().await.unwrap();
        assert!(store.manifests().await.unwrap().is_empty());
        assert!(dir.path().exists());
    }

    impl Manifest {
        fn clone_with_time(mut self, created_ms: u64) -> Self {
            self.created_ms = created_ms;
            self
        }
    }
}
