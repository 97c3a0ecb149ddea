//! Compile-time checks of the macros: every misuse is a precise error, every proper use
//! compiles. The `.stderr` files follow the machine's stable toolchain.
//!
//! The cases name the runtime crate `atlas` (the dev-dependency is renamed, as an app may
//! rename it): every pass case shows the expansion finds the crate under the name the
//! manifest gives it; the workspace's examples and tests use the usual name.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/*-pass.rs");
    cases.compile_fail("tests/ui/*-fail.rs");
}
