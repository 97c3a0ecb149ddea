//! Compile-time checks against a pricing-model snapshot (`ATLAS_SNAPSHOT`, here the sample
//! data file's): ids the snapshot lacks, and options that do not fit what its plans grant, are
//! errors on the id; proper uses compile. A binary of its own, since the variable is read by
//! every case of a trybuild run.

#[test]
fn checked_against_the_snapshot() {
    let snapshot =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshot/atlas-snapshot.json");
    // Before any thread starts: this test is the binary's only one.
    std::env::set_var("ATLAS_SNAPSHOT", &snapshot);
    let cases = trybuild::TestCases::new();
    cases.pass("tests/snapshot/*-pass.rs");
    cases.compile_fail("tests/snapshot/*-fail.rs");
}
