//! Token signing and checking live in the core (workers sign execution tokens too).

pub use attune_core::tokens::*;
