//! OpenTelemetry's semantic conventions for feature-flag evaluations on the check's span
//! (`feature_flag.key`, `feature_flag.result.value`, `feature_flag.result.reason`,
//! `feature_flag.provider.name`, `error.type`) and its `feature_flag.evaluation` event.

use crate::client::hooks::CheckDecision;
use crate::error::AtlasError;

/// OpenTelemetry's feature-flag evaluation conventions on the check's span, and its event, so
/// a `tracing-opentelemetry` layer exports them as any backend expects.
pub(crate) fn record(
    span: &tracing::Span,
    slugs: &[&str],
    decision: CheckDecision,
    reason: &str,
    error: Option<&AtlasError>,
) {
    let key = slugs.join(",");
    let allowed = decision == CheckDecision::Allowed;
    span.record("decision", decision.as_str());
    span.record("feature_flag.key", key.as_str());
    span.record("feature_flag.result.value", allowed);
    span.record("feature_flag.result.reason", reason);
    if let Some(err) = error {
        span.record("error.type", error_type(err));
    }
    tracing::event!(
        name: "feature_flag.evaluation",
        parent: span,
        tracing::Level::DEBUG,
        { "feature_flag.key" = key.as_str(),
          "feature_flag.provider.name" = "atlas",
          "feature_flag.result.value" = allowed,
          "feature_flag.result.reason" = reason },
        "feature_flag.evaluation"
    );
}

/// OpenTelemetry's `error.type` of a check that could not decide.
fn error_type(err: &AtlasError) -> &'static str {
    match err {
        AtlasError::InvalidApiKey => "invalid_api_key",
        AtlasError::Unavailable(_) => "unavailable",
        AtlasError::Rejected { .. } => "rejected",
        AtlasError::InvalidInput(_) => "invalid_input",
        AtlasError::QueueFull { .. } => "queue_full",
        AtlasError::Shutdown => "shutdown",
        AtlasError::Misconfigured(_) => "misconfigured",
        _ => "other",
    }
}
