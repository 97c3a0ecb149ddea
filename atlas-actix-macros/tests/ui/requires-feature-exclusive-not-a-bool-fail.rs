use atlas::requires_feature;

#[requires_feature("seats", exclusive = "yes")]
async fn handler() -> &'static str {
    "one at a time"
}

fn main() {}
