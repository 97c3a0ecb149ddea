use atlas::requires_feature;

#[requires_feature("ai-tokens", reserve)]
async fn handler() -> &'static str {
    "how many?"
}

fn main() {}
