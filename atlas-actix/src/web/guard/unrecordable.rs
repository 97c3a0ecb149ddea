//! The choice of what a guard does with work whose usage cannot be recorded.

/// What a guard that reports usage does when the usage cannot be recorded (see
/// [`AtlasBuilder::unrecordable_usage`](crate::AtlasBuilder::unrecordable_usage)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnrecordableUsage {
    /// Answer 503 with `Retry-After` before the handler runs: no unbilled work.
    #[default]
    Refuse,
    /// Run the handler; each such request is an error log and `atlas_usage_unrecorded_total`.
    Serve,
}
