//! What each VM boots with besides its disk: for Linux nodes a cloud-init
//! NoCloud seed ISO (label `cidata`), written by our own ISO 9660 writer
//! ([`iso`]).

pub mod iso;

pub use iso::IsoError;
