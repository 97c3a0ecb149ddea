use atlas::requires_feature;

#[requires_feature("sso", usage = 1)]
async fn login() -> &'static str {
    "welcome"
}

fn main() {}
