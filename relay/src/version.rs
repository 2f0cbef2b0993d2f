//! What `--version` says of every MCR binary: the package version, the commit it was built from
//! (`-dirty` when the tree had changes, `unknown` outside a git checkout) and the crate features
//! it was built with, so that a report or a bug names the exact build.

/// The commit the relay crate was built from (see `build.rs`); `unknown` if the build script's
/// output did not reach this compilation.
pub const REVISION: &str = match option_env!("MCR_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// `0.1.0 (revision 1a2b3c4d5e6f; features: daemon, sys)`: `version` is the caller's package
/// version and `features` its enabled features (the revision is the workspace's).
pub fn long(version: &str, features: &[&str]) -> String {
    let features = if features.is_empty() {
        "none".to_string()
    } else {
        features.join(", ")
    };
    format!("{version} (revision {REVISION}; features: {features})")
}

/// The relay's own line, for `mcrd` and `mcrctl`.
pub fn relay() -> &'static str {
    static LINE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut features = Vec::new();
        if cfg!(feature = "daemon") {
            features.push("daemon");
        }
        if cfg!(feature = "sys") {
            features.push("sys");
        }
        long(env!("CARGO_PKG_VERSION"), &features)
    });
    LINE.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_version_names_revision_and_features() {
        let line = long("1.2.3", &["generator"]);
        assert!(line.starts_with("1.2.3 (revision "), "{line}");
        assert!(line.ends_with("; features: generator)"), "{line}");
        assert!(!REVISION.is_empty());
        assert!(long("1", &[]).ends_with("features: none)"));
    }
}
