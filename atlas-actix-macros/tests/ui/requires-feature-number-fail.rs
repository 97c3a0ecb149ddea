use atlas::requires_feature;

#[requires_feature(42)]
async fn handler() -> &'static str {
    "number"
}

fn main() {}
