//! The module tree's floors (ARCHITECTURE.md): imports only run down. A file in a
//! layer must not name a layer above it (`crate::<layer>` in code, not comments).

use std::path::Path;

/// Bottom to top; a layer may name only those before it.
const FLOORS: &[&str] = &[
    "addr", "shutdown", "config", "ops", "watch", "decide", "act", "daemon", "cli",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The layer a file under src/ belongs to (`None`: lib.rs, main.rs).
fn layer_of(rel: &Path) -> Option<usize> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    FLOORS.iter().position(|l| *l == name)
}

#[test]
fn imports_only_run_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let Some(floor) = layer_of(rel) else { continue };
        let text = std::fs::read_to_string(f).expect("read");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (above, name) in FLOORS.iter().enumerate().skip(floor + 1) {
                if code.contains(&format!("crate::{name}::"))
                    || code.contains(&format!("crate::{name};"))
                {
                    upward.push(format!(
                        "{}:{}: {} names {name} (floor {above} > {floor})",
                        rel.display(),
                        n + 1,
                        FLOORS[floor]
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports running up:\n{}",
        upward.join("\n")
    );
    assert!(
        files.len() > 40,
        "found only {} files under src/",
        files.len()
    );
}
