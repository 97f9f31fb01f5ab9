//! Embeds a build id: a hash of the crate's sources and version, so that a
//! worker can prove which build it runs (see `src/build_info.rs`).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;

fn hash_dir(dir: &Path, h: &mut DefaultHasher) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            hash_dir(&p, h);
        } else if let Ok(bytes) = std::fs::read(&p) {
            p.to_string_lossy().hash(h);
            bytes.hash(h);
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");
    let mut h = DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    hash_dir(Path::new("src"), &mut h);
    let id = format!("{:016x}", h.finish());
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let code = format!(
        "/// `RSBUILDID=` + 16 hex digits + `;`, kept verbatim in the binary.\n\
         #[used]\npub static BUILD_MARKER: [u8; 27] = *b\"RSBUILDID={id};\";\n"
    );
    std::fs::write(Path::new(&out).join("build_id.rs"), code).expect("write build_id.rs");
}
