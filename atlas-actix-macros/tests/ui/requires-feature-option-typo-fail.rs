use atlas::requires_feature;

#[requires_feature("seats", exclusiv)]
async fn handler() -> &'static str {
    "typo"
}

fn main() {}
