//! Act: carrying out decisions — EC2 route reads and writes (`ec2`), master
//! address → EC2 target (`targets`, `resolve`), write pacing (`pacing`) and
//! webhook delivery (`sinks`). Depends on `decide` for its data types, never the
//! other way round.

pub mod carriers;
pub mod dns;
pub mod ec2;
pub(crate) mod pacing;
pub mod resolve;
pub mod sinks;
pub mod targets;
