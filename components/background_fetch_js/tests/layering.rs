//! The crate's modules have no import circle (one job per file, layered).

#[test]
fn the_modules_have_no_import_circle() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = background_fetch::testing::layering::assert_no_import_circle(&src);
    let _ = graph;
}
