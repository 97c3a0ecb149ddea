use atlas::requires_feature;

#[requires_feature("data-explorr")]
async fn explorer() -> &'static str {
    "rows"
}

fn main() {}
