//! Which build this process runs. The id lives in the binary as a marker
//! (`RSBUILDID=<16 hex>;`) and is read back at run time, so a binary replaced
//! on disk (or patched, as the tests do) reports its own id: re-exec'd
//! workers prove that a rolling restart deployed the new file.

include!(concat!(env!("OUT_DIR"), "/build_id.rs"));

const PREFIX: usize = "RSBUILDID=".len();

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The 16-hex-digit build id read from the marker in this binary.
pub fn build_id() -> String {
    // A volatile read keeps the compiler from folding the marker into a
    // constant: the bytes must come from the file that was exec'd.
    // SAFETY: BUILD_MARKER is a valid, initialised, immutable static.
    let marker: [u8; 27] = unsafe { std::ptr::read_volatile(&raw const BUILD_MARKER) };
    String::from_utf8_lossy(&marker[PREFIX..PREFIX + 16]).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_id_is_16_hex_digits() {
        let id = super::build_id();
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
}
