//! The checked-in C header is exactly what the pinned cbindgen generates from the source.
use std::path::Path;

#[path = "support/bless.rs"]
mod bless;

#[test]
fn header_is_up_to_date() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let command = "cargo test -p skinlesion-ffi --test header";
    bless::check(Path::new("include/skinlesion.h"), &generated, command);
}
