//! Helpers for unit tests (compiled only for `cargo test`).

mod pwsh;
pub use pwsh::{assert_pwsh_parses, pwsh_problems};
