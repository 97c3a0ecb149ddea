use atlas::requires_feature;

#[requires_feature("")]
async fn handler() -> &'static str {
    "empty"
}

fn main() {}
