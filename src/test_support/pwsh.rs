//! The PowerShell syntax check every `.ps1` devcluster ships or renders
//! must pass: tree-sitter-pwsh parses it and the tree has no ERROR or
//! MISSING node. No PowerShell runs on the machines that build devcluster
//! (no `pwsh` package there), so this is how a typo in a script is caught
//! before a Windows host sees it.
//!
//! One file, used twice: `src/test_support/mod.rs` (unit tests of rendered
//! scripts) and `tests/powershell.rs` (every `.ps1` file in the tree)
//! include it, so the rule is written once.

/// The problems tree-sitter-pwsh finds in `source`, as `line:col: what`
/// (empty when it parses cleanly).
pub fn pwsh_problems(source: &str) -> Vec<String> {
    let mut parser = tree_sitter::Parser::new();
    parser
        .set_language(&tree_sitter_pwsh::LANGUAGE.into())
        .expect("tree-sitter-pwsh loads");
    let Some(tree) = parser.parse(source, None) else {
        return vec!["the parser gave up".to_string()];
    };
    let mut problems = Vec::new();
    let mut cursor = tree.walk();
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        if node.is_error() || node.is_missing() {
            let p = node.start_position();
            let line = source.lines().nth(p.row).unwrap_or("");
            problems.push(format!(
                "{}:{}: {} {} in `{}`",
                p.row + 1,
                p.column + 1,
                if node.is_missing() { "MISSING" } else { "ERROR" },
                node.kind(),
                line.trim()
            ));
        }
        if node.has_error() {
            stack.extend(node.children(&mut cursor));
        }
    }
    problems.sort();
    problems
}

/// Panics with every problem when `source` (called `name`) does not parse.
pub fn assert_pwsh_parses(name: &str, source: &str) {
    let problems = pwsh_problems(source);
    assert!(
        problems.is_empty(),
        "{name} does not parse as PowerShell:\n  {}",
        problems.join("\n  ")
    );
}
