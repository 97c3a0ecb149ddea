//! What the emulated platform received, told in the app's ids.

/// A usage event the platform received, in the ids the app knows: the customer's external id
/// (what the app's resolver returns) and the feature's id (its slug, as in
/// `#[requires_feature]`), where the wire's event names both by their internal ids.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RecordedUsage {
    /// The customer's external id (`user_erin`, `org_standard`); an id the platform does not
    /// know is given as it came.
    pub customer: String,
    /// The feature's id (`ai-tokens`); an id the pricing model lacks is given as it came.
    pub feature: String,
    /// How much was used.
    pub quantity: f64,
    /// The key the platform deduplicated by.
    pub idempotency_key: String,
    /// When the usage happened (ISO-8601), as the SDK sent it.
    pub generated_at: String,
}
