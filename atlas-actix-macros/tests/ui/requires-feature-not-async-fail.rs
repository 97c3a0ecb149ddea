use atlas::requires_feature;

#[requires_feature("data-explorer")]
fn handler() -> &'static str {
    "sync"
}

fn main() {}
