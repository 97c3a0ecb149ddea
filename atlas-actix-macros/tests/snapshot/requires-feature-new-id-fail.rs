use atlas::requires_feature;

#[requires_feature("seats", "realtime-collaboration")]
async fn collaborate() -> &'static str {
    "together"
}

fn main() {}
