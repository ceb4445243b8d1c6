//! The command line: one module per subcommand (its arguments and its
//! `run`, which turns them into calls of the library and prints), and the
//! [`args`] parsers they share. Nothing below the commands depends on them.

pub mod args;
pub mod compare;
pub mod export;
pub mod predict;
pub mod probes;
pub mod record;
pub mod report;

/// Output of `probes` and `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}
