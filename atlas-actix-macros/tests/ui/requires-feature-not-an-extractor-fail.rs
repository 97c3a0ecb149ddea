use atlas::requires_feature;

struct NotAnExtractor;

#[requires_feature("sso")]
async fn handler(_value: NotAnExtractor) -> &'static str {
    "no extractor"
}

fn main() {}
