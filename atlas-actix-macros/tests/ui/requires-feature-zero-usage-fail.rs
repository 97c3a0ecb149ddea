use atlas::requires_feature;

#[requires_feature("ai-tokens", usage = 0)]
async fn handler() -> &'static str {
    "zero"
}

fn main() {}
