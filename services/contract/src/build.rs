//! The build every binary reports in its `build_info` metric: the version it was compiled as and the
//! revision (the commit) its image was built from.
//!
//! The revision is stamped on the image, not compiled in: the Dockerfile's `REVISION` build argument sets
//! [`REVISION_ENV`] in every runtime image (and the `org.opencontainers.image.revision` label). So a
//! release build need not be compiled again for each commit, and a pod's metric names the image it runs.
//! The operator never sets this variable in a pod (`build_tests.rs` checks), so a pod cannot claim a
//! revision its image does not carry.

/// Set by the image build; read by every binary at start.
pub const REVISION_ENV: &str = "ORDERSYSTEM_BUILD_REVISION";
/// The revision of a binary run outside an image built with a `REVISION` (e.g. by `cargo run`).
pub const UNKNOWN_REVISION: &str = "unknown";

/// The labels of `build_info`: `version` and `revision`.
pub fn labels() -> Vec<(String, String)> {
    let revision = std::env::var(REVISION_ENV)
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| UNKNOWN_REVISION.to_string());
    vec![
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("revision".to_string(), revision),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Dockerfile writes the variable this module reads.
    #[test]
    fn the_dockerfile_sets_the_variable_every_binary_reads() {
        let dockerfile = include_str!("../../../Dockerfile");
        assert!(
            dockerfile.contains(&format!("ENV {REVISION_ENV}=${{REVISION}}")),
            "the Dockerfile's runtime stage must set {REVISION_ENV} from its REVISION argument"
        );
    }
}
