use atlas::requires_feature;

#[requires_feature(shadow, "sso")]
async fn handler() -> &'static str {
    "order"
}

fn main() {}
