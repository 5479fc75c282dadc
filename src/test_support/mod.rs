//! Helpers for unit tests (compiled only for `cargo test`).

mod pwsh;
pub use pwsh::{assert_pwsh_parses, pwsh_problems};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pwsh_check_passes_good_and_catches_broken_scripts() {
        assert_pwsh_parses("good", "$ErrorActionPreference = 'Stop'\n$b = 4 * 1MB\n");
        assert!(!pwsh_problems("if ($x) { 'y' ").is_empty());
    }
}
