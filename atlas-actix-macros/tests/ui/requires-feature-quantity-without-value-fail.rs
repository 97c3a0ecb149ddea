use atlas::requires_feature;

#[requires_feature("seats", quantity)]
async fn handler() -> &'static str {
    "how many?"
}

fn main() {}
