//! Runs every conformance case (the shared ones and ours in `tests/cases/`) through the real
//! `ferris` binary and compares the sink output with the golden rows.

use std::path::{Path, PathBuf};

use ferris_conformance::{Outcome, judge, load_cases, load_expected_failures};

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run_folder(root: &Path) {
    let ferris = Path::new(env!("CARGO_BIN_EXE_ferris"));
    let expected_failures = load_expected_failures(&project_root().join("tests/expected_failures.txt"));
    let cases = load_cases(root).unwrap_or_else(|e| panic!("{e}"));
    assert!(!cases.is_empty(), "no cases in {}", root.display());
    let mut bad = Vec::new();
    for case in &cases {
        let outcome = judge(ferris, case, &expected_failures);
        println!("conformance {}: {outcome}", case.name);
        if matches!(outcome, Outcome::Fail(_) | Outcome::UnexpectedPass) {
            bad.push(format!("{}: {outcome}", case.name));
        }
    }
    assert!(bad.is_empty(), "{} of {} cases failed:\n{}", bad.len(), cases.len(), bad.join("\n"));
}

/// The shared cases, next to the project (`../shared/conformance`), or where
/// `FERRIS_CONFORMANCE_DIR` says.
#[test]
fn shared_conformance_cases() {
    let root = std::env::var_os("FERRIS_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("../shared/conformance"));
    run_folder(&root);
}

#[test]
fn own_conformance_cases() {
    run_folder(&project_root().join("tests/cases"));
}
