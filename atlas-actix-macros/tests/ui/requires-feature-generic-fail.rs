use atlas::requires_feature;

#[requires_feature("sso")]
async fn handler<T: Default>() -> &'static str {
    let _ = T::default();
    "generic"
}

fn main() {}
