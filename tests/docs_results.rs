//! docs/results.md quotes tables that `lpo report` writes. Each quote sits
//! between `<!-- lpo report: PATH -->` and `<!-- end -->`, where PATH is the
//! results file (relative to the repository root) the table came from. A
//! copy of every quoted file is committed at `docs/PATH`
//! (`docs/results/...`), so the checks run on every clone, CI included:
//!
//! - each quote is byte-identical to its committed copy;
//! - each committed copy is quoted (no stale copies);
//! - where the results file itself is present (after the sweeps named above
//!   each quote), the copy is byte-identical to it, so the documented numbers
//!   cannot drift from what the code renders. `scripts/docs-results.sh`
//!   copies the files in after regenerating them.

use std::path::Path;

/// (path, quoted text) of every quote in `doc`.
fn quotes(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // A marker starts a line; one quoted inline (`<!-- lpo report: FILE -->`
    // in the text) is not a quote.
    let marker = "\n<!-- lpo report: ";
    let doc = format!("\n{doc}");
    let mut rest = doc.as_str();
    while let Some(start) = rest.find(marker) {
        let after = &rest[start + marker.len()..];
        let close = after.find(" -->").expect("a quote marker ends with -->");
        let path = after[..close].to_string();
        let body_start = close + " -->\n".len();
        let end = after[body_start..]
            .find("<!-- end -->")
            .unwrap_or_else(|| panic!("the quote of {path} has no <!-- end --> marker"));
        out.push((path, after[body_start..body_start + end].to_string()));
        rest = &after[body_start + end..];
    }
    out
}

/// Every file under `dir`, relative to `root`, sorted.
fn files_under(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let entries = std::fs::read_dir(root.join(dir))
        .unwrap_or_else(|e| panic!("failed to read `{}`: {e}", dir.display()));
    for entry in entries {
        let path = dir.join(entry.unwrap().file_name());
        if root.join(&path).is_dir() {
            files_under(root, &path, out);
        } else {
            out.push(path.to_str().unwrap().to_string());
        }
    }
    out.sort();
}

#[test]
fn quoted_tables_match_their_committed_copies_and_the_results_files_when_present() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/results.md")).unwrap();
    let quotes = quotes(&doc);
    assert!(!quotes.is_empty(), "docs/results.md quotes no tables");
    let mut copies = Vec::new();
    for (path, quoted) in &quotes {
        assert!(
            path.starts_with("results/"),
            "the quote of {path} does not name a results file"
        );
        let copy = format!("docs/{path}");
        let committed = std::fs::read_to_string(root.join(&copy)).unwrap_or_else(|e| {
            panic!("failed to read `{copy}`, the committed copy of {path}: {e}")
        });
        assert_eq!(
            *quoted, committed,
            "docs/results.md's quote of {path} differs from its committed copy {copy}"
        );
        copies.push(copy.clone());
        match std::fs::read_to_string(root.join(path)) {
            Ok(actual) => assert_eq!(
                committed, actual,
                "{copy} differs from {path}, which lpo rendered: run scripts/docs-results.sh \
                 and update the quote and the text around it"
            ),
            Err(e) => eprintln!(
                "{path} is absent ({e}): checked the quote against {copy} only \
                 (regenerate it with the sweep named above the quote)"
            ),
        }
    }
    let mut committed = Vec::new();
    files_under(root, Path::new("docs/results"), &mut committed);
    copies.sort();
    copies.dedup();
    assert_eq!(
        committed, copies,
        "docs/results/ holds exactly the copies of the quoted files"
    );
}

#[test]
fn quotes_are_parsed_with_their_paths() {
    let doc = "x `<!-- lpo report: FILE -->`\n<!-- lpo report: results/a.md -->\n| a |\n<!-- end -->\ny\n<!-- lpo report: results/b.md -->\nb\n<!-- end -->\n";
    assert_eq!(
        quotes(doc),
        [
            ("results/a.md".to_string(), "| a |\n".to_string()),
            ("results/b.md".to_string(), "b\n".to_string())
        ]
    );
}
