use atlas::requires_feature;

#[requires_feature("sso", "sso")]
async fn handler() -> &'static str {
    "twice"
}

fn main() {}
