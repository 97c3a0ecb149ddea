use atlas::requires_feature;

#[requires_feature("seats", exclusive, exclusive = false)]
async fn handler() -> &'static str {
    "twice"
}

fn main() {}
