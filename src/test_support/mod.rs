//! Helpers for unit tests (compiled only for `cargo test`).

mod pwsh;
pub use pwsh::assert_pwsh_parses;
#[allow(unused_imports)] // for unit tests that list the problems themselves
pub use pwsh::pwsh_problems;
