//! Analysis of correlated traces: per-pod [`report`]s, [`compare`]
//! between runs, [`predict`] (what other kubelet intervals would give),
//! with what they share below them: [`pods`] (a pod's start window, stage
//! names), [`stats`] (rank statistics), [`rng`] and kubelet's own
//! [`journal`] lines for cross-checks. Compare and predict depend on
//! `pods`, never on each other's internals... except that compare shows
//! predict's output beside each run. [`fleet`] pools many nodes' traces
//! into one report or run and points out a node that differs.

pub mod compare;
pub mod drift;
pub mod fleet;
pub mod journal;
pub mod normal;
pub mod pods;
pub mod predict;
pub mod report;
pub mod rng;
pub mod split;
pub mod stats;
