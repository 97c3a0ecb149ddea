use atlas::requires_feature;

#[requires_feature(data_explorer)]
async fn handler() -> &'static str {
    "ident"
}

fn main() {}
