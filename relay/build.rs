//! Compiles the kernel fast path (`bpf/fastpath.bpf.c`) with clang and generates its Rust
//! skeleton with libbpf-cargo: the map key and value types on the Rust side come from the
//! object's BTF, so they are the C layouts by construction.
//!
//! Needs clang (with the BPF target), the kernel UAPI headers (`linux-libc-dev`) and libbpf's
//! headers (`libbpf-dev`); `scripts/setup.sh` installs them on Debian.
//!
//! Only the daemon (feature `daemon`, on by default) has a fast path: the contract-only library
//! that the analyzer builds (`default-features = false`) needs neither clang nor libbpf.

fn main() {
    revision::emit();
    // Cargo compiles the build script with the package's features, so `libbpf-cargo` (an
    // optional build dependency of `daemon`) exists exactly when this is compiled in.
    #[cfg(feature = "daemon")]
    fastpath::build();
}

/// The commit the sources are at, for `--version` and the stats (`MCR_REVISION`): short hash,
/// `-dirty` when tracked files differ from it, `unknown` outside a git checkout (a tarball).
mod revision {
    use std::process::Command;

    fn git(args: &[&str]) -> Option<std::process::Output> {
        Command::new("git")
            .args(args)
            // No index refresh written by this read: a write would change .git/index, which
            // reruns this script, in a loop.
            .env("GIT_OPTIONAL_LOCKS", "0")
            .output()
            .ok()
    }

    pub fn emit() {
        let stdout = |o: std::process::Output| {
            o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let revision = match git(&["rev-parse", "--short=12", "HEAD"]).and_then(stdout) {
            Some(hash) => {
                let clean = git(&["diff", "--quiet", "HEAD", "--"]).map(|o| o.status.success());
                if clean == Some(false) {
                    format!("{hash}-dirty")
                } else {
                    hash
                }
            }
            None => "unknown".to_string(),
        };
        println!("cargo:rustc-env=MCR_REVISION={revision}");
        // A commit, a checkout or a staged change moves HEAD or the index.
        if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]).and_then(stdout) {
            println!("cargo:rerun-if-changed={dir}/HEAD");
            println!("cargo:rerun-if-changed={dir}/index");
        }
        println!("cargo:rerun-if-changed=build.rs");
    }
}

#[cfg(feature = "daemon")]
mod fastpath {
    use std::path::PathBuf;

    const SOURCE: &str = "bpf/fastpath.bpf.c";

    pub fn build() {
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let manifest =
            PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
        // `-target bpf` does not search the multiarch directory where Debian keeps <asm/types.h>.
        let multiarch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
            Ok("aarch64") => "aarch64-linux-gnu",
            _ => "x86_64-linux-gnu",
        };
        let include = manifest.join("bpf");
        let result = libbpf_cargo::SkeletonBuilder::new()
            .source(manifest.join(SOURCE))
            .clang_args([
                format!("-I{}", include.display()),
                format!("-I/usr/include/{multiarch}"),
                "-Wall".to_string(),
                "-Werror".to_string(),
            ])
            .build_and_generate(out.join("fastpath.skel.rs"));
        if let Err(e) = result {
            panic!(
                "building the kernel fast path ({SOURCE}) failed: {e:#}\n\
             it needs clang, linux-libc-dev and libbpf-dev: run scripts/setup.sh --deps-only"
            );
        }
        println!("cargo:rerun-if-changed={SOURCE}");
        println!("cargo:rerun-if-changed=bpf/fastpath.h");
    }
}
