use atlas::requires_feature;

#[requires_feature("ai-tokens", usage = 1, usage = 2)]
async fn handler() -> &'static str {
    "twice"
}

fn main() {}
