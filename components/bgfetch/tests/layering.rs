//! The crate has no import circle: no module uses a module that uses it back, directly or
//! through others (a module is a file under src/; `control/wire.rs` is `control::wire`).

use background_fetch::testing::layering::assert_no_import_circle;
use std::path::Path;

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let g = assert_no_import_circle(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(g.contains_key("app") && g.contains_key("cli"), "{g:?}");
}
