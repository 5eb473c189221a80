//! The image table: which locally built binary stands in for a container image.
//!
//! Local mode has no container engine, so an image is only a name. The table maps an image *repository*
//! (registry and path, without tag or digest) to a binary name looked up in the agent's `--bin-dir`
//! (`cargo build` output). Tags and digests are ignored: whatever was built locally is what runs.
//!
//! | image repository                 | binary                 |
//! |----------------------------------|------------------------|
//! | `ghcr.io/ordersystem/order`      | `ordersystem-order`     |
//! | `ghcr.io/ordersystem/invoicing`  | `ordersystem-invoicing` |
//! | `ghcr.io/ordersystem/shipping`   | `ordersystem-shipping`  |
//! | `ghcr.io/ordersystem/operator`   | `ordersystem-operator`  |
//! | `ghcr.io/ordersystem/testapp`    | `ordersystem-testapp` (this crate's test binary) |
//!
//! `--image REPOSITORY=BINARY` adds or replaces an entry; `BINARY` may be a name in `--bin-dir` or an
//! absolute path.

use std::path::{Path, PathBuf};

/// The built-in entries: the product images and the agent's own test binary.
const DEFAULT_IMAGES: &[(&str, &str)] = &[
    ("ghcr.io/ordersystem/order", "ordersystem-order"),
    ("ghcr.io/ordersystem/invoicing", "ordersystem-invoicing"),
    ("ghcr.io/ordersystem/shipping", "ordersystem-shipping"),
    ("ghcr.io/ordersystem/operator", "ordersystem-operator"),
    ("ghcr.io/ordersystem/testapp", "ordersystem-testapp"),
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image {image} is not in the node agent's image table (add it with --image REPOSITORY=BINARY)")]
    NotMapped { image: String },
    #[error("image {image} maps to {path}, which does not exist (build it with cargo build)")]
    MissingBinary { image: String, path: PathBuf },
    #[error("invalid --image entry {entry:?}: expected REPOSITORY=BINARY")]
    InvalidEntry { entry: String },
}

/// Image repository → binary, resolved against a bin dir.
#[derive(Debug, Clone)]
pub struct ImageTable {
    entries: Vec<(String, String)>,
    bin_dir: PathBuf,
}

impl ImageTable {
    /// The default table plus `extra` entries (`REPOSITORY=BINARY`), which win over the defaults.
    pub fn new(bin_dir: PathBuf, extra: &[String]) -> Result<Self, Error> {
        let mut entries: Vec<(String, String)> = DEFAULT_IMAGES
            .iter()
            .map(|(repo, bin)| ((*repo).to_string(), (*bin).to_string()))
            .collect();
        for entry in extra {
            let (repo, bin) = entry
                .split_once('=')
                .filter(|(repo, bin)| !repo.is_empty() && !bin.is_empty())
                .ok_or_else(|| Error::InvalidEntry { entry: entry.clone() })?;
            entries.retain(|(known, _)| known != repo);
            entries.push((repo.to_string(), bin.to_string()));
        }
        Ok(Self { entries, bin_dir })
    }

    /// The binary that runs for `image`; it must exist.
    pub fn resolve(&self, image: &str) -> Result<PathBuf, Error> {
        let repo = repository(image);
        let bin = self
            .entries
            .iter()
            .find(|(known, _)| known == repo)
            .map(|(_, bin)| bin)
            .ok_or_else(|| Error::NotMapped {
                image: image.to_string(),
            })?;
        let path = if Path::new(bin).is_absolute() {
            PathBuf::from(bin)
        } else {
            self.bin_dir.join(bin)
        };
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::MissingBinary {
                image: image.to_string(),
                path,
            })
        }
    }
}

/// `registry/path[:tag][@digest]` → `registry/path`. A `:` before the last `/` is a registry port.
fn repository(image: &str) -> &str {
    let without_digest = image.split_once('@').map_or(image, |(repo, _)| repo);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_slash..].find(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_drops_tag_and_digest_but_keeps_registry_port() {
        assert_eq!(
            repository("ghcr.io/ordersystem/order:0.1.0"),
            "ghcr.io/ordersystem/order"
        );
        assert_eq!(
            repository("ghcr.io/ordersystem/order@sha256:abc"),
            "ghcr.io/ordersystem/order"
        );
        assert_eq!(repository("localhost:5000/order:dev"), "localhost:5000/order");
        assert_eq!(
            repository("ghcr.io/ordersystem/order"),
            "ghcr.io/ordersystem/order"
        );
    }

    #[test]
    fn unknown_image_is_an_error_naming_it() {
        let table = ImageTable::new(PathBuf::from("/nonexistent"), &[]).expect("default table");
        let err = table.resolve("nginx:1.27").expect_err("nginx is not mapped");
        assert!(err.to_string().contains("nginx:1.27"), "{err}");
    }

    #[test]
    fn extra_entry_with_absolute_path_replaces_default() {
        let table = ImageTable::new(
            PathBuf::from("/nonexistent"),
            &["ghcr.io/ordersystem/order=/bin/sh".to_string()],
        )
        .expect("valid entry");
        assert_eq!(
            table.resolve("ghcr.io/ordersystem/order:1").expect("mapped"),
            PathBuf::from("/bin/sh")
        );
    }
}
