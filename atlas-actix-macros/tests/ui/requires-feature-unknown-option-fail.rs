use atlas::requires_feature;

#[requires_feature("ai-tokens", usge = 1)]
async fn handler() -> &'static str {
    "typo"
}

fn main() {}
