//! docs/results.md quotes tables that `lpo report` writes. Each quote sits
//! between `<!-- lpo report: PATH -->` and `<!-- end -->` and must be
//! byte-identical to PATH (relative to the repository root) whenever that
//! results file is present, so the documented numbers cannot drift from what
//! the code renders. Without the results directory (CI has none) each quote
//! is skipped with a printed reason.

use std::path::Path;

/// (path, quoted text) of every quote in `doc`.
fn quotes(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find("<!-- lpo report: ") {
        let after = &rest[start + "<!-- lpo report: ".len()..];
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

#[test]
fn quoted_tables_match_the_results_files_when_present() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/results.md")).unwrap();
    let quotes = quotes(&doc);
    assert!(!quotes.is_empty(), "docs/results.md quotes no tables");
    for (path, quoted) in quotes {
        match std::fs::read_to_string(root.join(&path)) {
            Ok(actual) => assert_eq!(
                quoted, actual,
                "docs/results.md's quote of {path} differs from the file: copy the file in again"
            ),
            Err(e) => eprintln!("skipped the quote of {path}: {e} (regenerate it with the sweep named above the quote)"),
        }
    }
}

#[test]
fn quotes_are_parsed_with_their_paths() {
    let doc = "x\n<!-- lpo report: results/a.md -->\n| a |\n<!-- end -->\ny\n<!-- lpo report: results/b.md -->\nb\n<!-- end -->\n";
    assert_eq!(
        quotes(doc),
        [
            ("results/a.md".to_string(), "| a |\n".to_string()),
            ("results/b.md".to_string(), "b\n".to_string())
        ]
    );
}
