//! The toolchain Cargo.toml promises: `rust-version` must be at least what every
//! locked dependency declares, or a user with that Rust meets a build error deep
//! in a dependency instead of cargo's clear "requires rustc X" message.
//!
//! Read from `cargo metadata --locked --offline` for the host platform: the
//! packages this build compiled (and so has downloaded); crates only other
//! platforms use (windows-*) are not fetched and do not bind a Linux build.

use std::process::Command;

/// "1.94.1" / "1.85" as comparable numbers (a missing patch is 0).
fn version(s: &str) -> Option<(u64, u64, u64)> {
    let mut parts = s.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    parts.next().is_none().then_some((major, minor, patch))
}

fn host_triple(rustc: &str) -> String {
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}

#[test]
fn rust_version_covers_every_locked_dependency() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", &host_triple(&rustc)])
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata --locked --offline failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let ours = packages
        .iter()
        .find(|p| p["name"] == env!("CARGO_PKG_NAME"))
        .expect("our own package in the metadata");
    let declared = ours["rust_version"]
        .as_str()
        .expect("Cargo.toml sets rust-version");
    let ours_v = version(declared).expect("rust-version is a version");

    // (needed version, "name version needs X"), the highest need first.
    let mut too_new: Vec<_> = packages
        .iter()
        .filter_map(|p| {
            let need = p["rust_version"].as_str()?;
            let (name, v) = (p["name"].as_str()?, p["version"].as_str()?);
            let need_v = version(need)?;
            (need_v > ours_v).then(|| (need_v, format!("{name} {v} needs {need}")))
        })
        .collect();
    too_new.sort_by(|a, b| b.cmp(a));
    if let Some(((major, minor, patch), _)) = too_new.first() {
        let shown: Vec<&str> = too_new.iter().take(12).map(|(_, s)| s.as_str()).collect();
        panic!(
            "Cargo.toml says rust-version = {declared:?}, but {} locked package(s) need more: \
             set it to \"{major}.{minor}.{patch}\" (and the README's line next to the two \
             commands). The highest first:\n  {}",
            too_new.len(),
            shown.join("\n  ")
        );
    }
}

#[test]
fn versions_compare_as_numbers() {
    assert!(version("1.94.1") > version("1.94"));
    assert!(version("1.100") > version("1.94.1"));
    assert_eq!(version("1.85"), Some((1, 85, 0)));
    assert_eq!(version("1.x"), None);
}
