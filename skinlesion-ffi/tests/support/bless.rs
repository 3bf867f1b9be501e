//! Checked-in generated files: a test regenerates one and fails when it differs from the
//! checked-in copy; with `SKINLESION_BLESS` set it writes the new text instead.
use std::path::Path;

/// Compares `generated` with the file at `relative` (to the crate), or writes it when blessing.
pub fn check(relative: &Path, generated: &str, command: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    if std::env::var_os("SKINLESION_BLESS").is_some() {
        std::fs::write(&path, generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date; regenerate it with `SKINLESION_BLESS=1 {command}`",
        path.display()
    );
}
