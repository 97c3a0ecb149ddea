//! Compile-time checks of the macros: every misuse is a precise error, every proper use
//! compiles. The `.stderr` files follow the machine's stable toolchain.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/*-pass.rs");
    cases.compile_fail("tests/ui/*-fail.rs");
}
