//! Every `.ps1` in the tree (provisioners, provider scripts, templates)
//! parses with tree-sitter-pwsh: no ERROR or MISSING node. Rendered
//! scripts are checked where they are rendered, with the same function.

#[path = "../src/test_support/pwsh.rs"]
mod pwsh;

use std::path::{Path, PathBuf};

fn ps1_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            ps1_files(&path, out);
        } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("ps1")) {
            out.push(path);
        }
    }
}

#[test]
fn the_checker_catches_broken_powershell() {
    // The check is only worth something if it fails on bad scripts.
    assert!(pwsh::pwsh_problems("$x = @{ a = 1\nif ($x) { 'y' ").len() > 0);
    assert!(pwsh::pwsh_problems("function f( { }").len() > 0);
    assert!(pwsh::pwsh_problems("$MemoryMB = 4; $b = $MemoryMB * 1MB\n").is_empty());
}

#[test]
fn every_ps1_in_the_tree_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["provisioners", "src", "testdata"] {
        ps1_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let problems = pwsh::pwsh_problems(&text);
        if !problems.is_empty() {
            failures.push(format!(
                "{}:\n  {}",
                file.strip_prefix(root).unwrap().display(),
                problems.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{} .ps1 files parse", files.len());
}
