use atlas::requires_feature;

// The platform's feature ids are letters, digits and `-_.:`; `features/register` refuses the
// rest, and so does the macro.
#[requires_feature("seats!")]
async fn handler() -> &'static str {
    "seats"
}

fn main() {}
