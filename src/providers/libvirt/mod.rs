//! The libvirt provider: its XML (pure, rendered from the plan, compiled on
//! every host so it is tested everywhere) and its driver on the `virt`
//! crate (Linux hosts only).

pub mod xml;

#[cfg(target_os = "linux")]
mod driver;
#[cfg(target_os = "linux")]
pub use driver::*;
