use atlas::requires_feature;

#[requires_feature("sso")]
struct Handler;

fn main() {}
