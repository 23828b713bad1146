//! The command-line verbs other than `run` (see `daemon`): `check`, `status` and
//! `reconcile` (`oneshot`), `iam-policy`.

pub mod check;
pub mod iam_policy;
pub mod oneshot;
