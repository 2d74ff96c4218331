//! Runs every conformance case (the shared ones and ours in `tests/cases/`) through the real
//! `ferris` binary and compares the sink output with the golden rows.

use std::path::{Path, PathBuf};

use ferris_conformance::{
    Outcome, check_output, judge, load_cases, load_expected_failures, mode, run_query,
    run_query_restored_with, source_names,
};

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run_folder(root: &Path) {
    let ferris = Path::new(env!("CARGO_BIN_EXE_ferris"));
    let expected_failures =
        load_expected_failures(&project_root().join("tests/expected_failures.txt"));
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
    assert!(
        bad.is_empty(),
        "{} of {} cases failed:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}

/// The case folders: ours in `tests/cases/`, and the shared ones when they are there (next to
/// the project as `../shared/conformance`, as CI lays it out, or where
/// `FERRIS_CONFORMANCE_DIR` says, which must then exist). A clone of the repository alone
/// runs its own cases.
fn case_roots() -> Vec<PathBuf> {
    let mut roots = vec![project_root().join("tests/cases")];
    let shared = match std::env::var_os("FERRIS_CONFORMANCE_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            assert!(
                dir.is_dir(),
                "FERRIS_CONFORMANCE_DIR={} is not a folder",
                dir.display()
            );
            Some(dir)
        }
        None => Some(project_root().join("../shared/conformance")).filter(|d| d.is_dir()),
    };
    roots.extend(shared);
    for root in &roots {
        println!("conformance cases from {}", root.display());
    }
    roots
}

#[test]
fn conformance_cases() {
    for root in case_roots() {
        run_folder(&root);
    }
}

/// EMIT FINAL output is byte-identical whatever the micro-batch size.
#[test]
fn final_output_does_not_depend_on_batch_size() {
    let ferris = Path::new(env!("CARGO_BIN_EXE_ferris"));
    let mut checked = 0;
    for root in case_roots() {
        for case in load_cases(&root).unwrap_or_else(|e| panic!("{e}")) {
            if mode(&case).unwrap() != "final" {
                continue;
            }
            let sources = source_names(&case).unwrap();
            let outputs: Vec<String> = [1, 7, 8192]
                .iter()
                .map(|size| {
                    let options: Vec<(String, String)> = sources
                        .iter()
                        .map(|s| (format!("{s}.batch.size"), size.to_string()))
                        .collect();
                    run_query(ferris, &case, &options)
                        .unwrap_or_else(|e| panic!("{}: {e}", case.name))
                })
                .collect();
            assert!(!outputs[0].is_empty(), "{}: no output", case.name);
            assert_eq!(outputs[0], outputs[1], "{}: batch size 1 vs 7", case.name);
            assert_eq!(
                outputs[0], outputs[2],
                "{}: batch size 1 vs 8192",
                case.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} EMIT FINAL cases found");
}

/// Every case that passes gives the same result at parallelism 2 and 4 (its sources divided
/// where they divide, its operators in as many instances, exchanges between them), at 4 in
/// micro-batches of 7 rows (what a window aggregate pre-aggregates before an exchange is a
/// micro-batch).
#[test]
fn every_case_gives_the_same_result_in_parallel() {
    let ferris = Path::new(env!("CARGO_BIN_EXE_ferris"));
    let expected_failures =
        load_expected_failures(&project_root().join("tests/expected_failures.txt"));
    let mut bad = Vec::new();
    let mut checked = 0;
    for root in case_roots() {
        for case in load_cases(&root).unwrap_or_else(|e| panic!("{e}")) {
            if expected_failures.contains_key(&case.name) {
                continue;
            }
            let sources = source_names(&case).unwrap();
            for parallelism in ["2", "4"] {
                let mut options = vec![("parallelism".to_string(), parallelism.to_string())];
                if parallelism == "4" {
                    options.extend(
                        sources
                            .iter()
                            .map(|s| (format!("{s}.batch.size"), "7".into())),
                    );
                }
                let outcome = run_query(ferris, &case, &options)
                    .and_then(|output| check_output(&case, &output));
                if let Err(why) = outcome {
                    bad.push(format!("{} at parallelism {parallelism}: {why}", case.name));
                }
                checked += 1;
            }
        }
    }
    assert!(bad.is_empty(), "in parallel:\n{}", bad.join("\n"));
    assert!(checked >= 20, "only {checked} parallel runs");
}

/// Every case that passes gives the same result when its job is killed after its second
/// checkpoint and run again from it, checkpointing every millisecond: in one instance, in two,
/// and killed in two and restored in three.
#[test]
fn every_case_survives_a_kill_and_a_restore() {
    let ferris = Path::new(env!("CARGO_BIN_EXE_ferris"));
    let expected_failures =
        load_expected_failures(&project_root().join("tests/expected_failures.txt"));
    let (mut checked, mut resumed) = (0, 0);
    let mut bad = Vec::new();
    for root in case_roots() {
        for case in load_cases(&root).unwrap_or_else(|e| panic!("{e}")) {
            if expected_failures.contains_key(&case.name) {
                continue;
            }
            // Micro-batches of one row, unless the case sets its own size.
            let query = std::fs::read_to_string(case.dir.join("query.sql")).unwrap();
            let mut options: Vec<(String, String)> = source_names(&case)
                .unwrap()
                .iter()
                .map(|s| format!("{s}.batch.size"))
                .filter(|option| !query.contains(&format!("'{option}'")))
                .map(|option| (option, "1".to_string()))
                .collect();
            options.push(("checkpoint.interval".into(), "1ms".into()));
            // In one instance; in two, exchanges carrying the checkpoints' markers; and
            // killed at two and restored at three, its keyed state divided anew.
            for (before, after) in [("1", "1"), ("2", "2"), ("2", "3")] {
                let with = |parallelism: &str| {
                    let mut options = options.clone();
                    options.push(("parallelism".into(), parallelism.into()));
                    options
                };
                let run = run_query_restored_with(ferris, &case, &with(before), &with(after))
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
                println!(
                    "restored {} at parallelism {before} then {after}: resumed {}",
                    case.name, run.resumed
                );
                if let Err(why) = check_output(&case, &run.output) {
                    bad.push(format!(
                        "{} at parallelism {before} then {after}: {why}",
                        case.name
                    ));
                }
                checked += 1;
                resumed += usize::from(run.resumed);
            }
        }
    }
    assert!(bad.is_empty(), "after a restore:\n{}", bad.join("\n"));
    // Killed before their end, most resumed (a join takes no checkpoints).
    assert!(
        resumed * 2 > checked,
        "only {resumed} of {checked} cases resumed from a checkpoint"
    );
}
