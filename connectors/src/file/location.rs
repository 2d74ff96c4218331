//! Where a file source reads: one file, a folder, or a glob, on a local disk or an object store.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

use crate::error::{ConnectorError, Result};

/// A resolved `'<name>.path'`: the store it lives in and which objects of it belong to the source.
#[derive(Debug, Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    /// The object itself, or the folder to list.
    prefix: Path,
    /// Objects under `prefix` must match this, when the path had glob characters.
    pattern: Option<glob::Pattern>,
    /// What the user wrote, for messages.
    display: String,
}

impl Location {
    /// Resolves a local path (relative to the working directory) or a `file://` URL.
    pub fn parse(path: &str) -> Result<Self> {
        let local = if let Some(rest) = path.strip_prefix("file://") {
            std::path::PathBuf::from(rest)
        } else if path.contains("://") {
            return Err(ConnectorError::Config(format!(
                "path '{path}': only local paths and file:// URLs are supported so far"
            )));
        } else {
            std::path::PathBuf::from(path)
        };
        let absolute = if local.is_absolute() {
            local
        } else {
            std::env::current_dir()
                .map_err(|e| ConnectorError::storage("reading the working directory", e))?
                .join(local)
        };
        let text = absolute.to_string_lossy().to_string();
        // Everything up to the first component with a glob character is the folder to list.
        let (base, pattern) = match text.find(['*', '?', '[']) {
            Some(pos) => {
                let cut = text[..pos].rfind('/').unwrap_or(0);
                let pattern = glob::Pattern::new(&text).map_err(|e| {
                    ConnectorError::Config(format!("path '{path}': bad glob pattern: {e}"))
                })?;
                (text[..cut.max(1)].to_string(), Some(pattern))
            }
            None => (text.clone(), None),
        };
        let prefix = Path::from_filesystem_path(&base).or_else(|_| {
            // The path need not exist yet (a sink, a watched folder): take it literally.
            Path::parse(base.trim_start_matches('/'))
                .map_err(|e| ConnectorError::Config(format!("path '{path}': {e}")))
        })?;
        Ok(Self {
            store: Arc::new(LocalFileSystem::new()),
            prefix,
            pattern,
            display: path.to_string(),
        })
    }

    /// The store the objects live in.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The objects of this location in name order: the file itself, or every visible file
    /// below the folder (names starting with `.` or `_` are hidden, as in Spark and Flink).
    pub async fn list(&self) -> Result<Vec<ObjectMeta>> {
        if self.pattern.is_none() {
            // Not found, or a folder (which answers head with an error): list below.
            if let Ok(meta) =
                object_store::ObjectStoreExt::head(self.store.as_ref(), &self.prefix).await
            {
                return Ok(vec![meta]);
            }
        }
        let mut objects: Vec<ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_filter(|meta| {
                // Only names below the listed folder count: the folder itself may be hidden.
                let visible = meta
                    .location
                    .prefix_match(&self.prefix)
                    .is_some_and(|mut parts| parts.all(|p| !p.as_ref().starts_with(['.', '_'])));
                let matches = self
                    .pattern
                    .as_ref()
                    .is_none_or(|p| p.matches(&format!("/{}", meta.location)));
                futures::future::ready(visible && matches)
            })
            .try_collect()
            .await
            .map_err(|e| ConnectorError::storage(format!("listing '{}'", self.display), e))?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }

    /// A URL naming one object of this location, for messages and dead letters.
    pub fn object_url(&self, path: &Path) -> String {
        format!("file:///{path}")
    }

    /// What the user wrote.
    pub fn display(&self) -> &str {
        &self.display
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_a_file_a_folder_and_a_glob_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.csv", "a.csv", "c.json", ".hidden.csv", "_tmp.csv"] {
            std::fs::write(dir.path().join(name), "x\n").unwrap();
        }
        let names = |objects: Vec<ObjectMeta>| {
            objects
                .iter()
                .map(|m| m.location.filename().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let folder = Location::parse(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(
            names(folder.list().await.unwrap()),
            ["a.csv", "b.csv", "c.json"]
        );
        let glob = Location::parse(&format!("{}/*.csv", dir.path().display())).unwrap();
        assert_eq!(names(glob.list().await.unwrap()), ["a.csv", "b.csv"]);
        let file = Location::parse(&format!("file://{}/b.csv", dir.path().display())).unwrap();
        assert_eq!(names(file.list().await.unwrap()), ["b.csv"]);
        let missing = Location::parse(&format!("{}/nope", dir.path().display())).unwrap();
        assert!(missing.list().await.unwrap().is_empty());
    }

    #[test]
    fn rejects_unsupported_schemes() {
        let err = Location::parse("s3://bucket/x.csv").unwrap_err();
        assert!(err.to_string().contains("only local paths"), "{err}");
    }
}
