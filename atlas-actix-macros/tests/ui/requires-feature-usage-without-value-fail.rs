use atlas::requires_feature;

#[requires_feature("ai-tokens", usage)]
async fn handler() -> &'static str {
    "no value"
}

fn main() {}
