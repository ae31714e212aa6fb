//! The operator console (`console/dist/`) is embedded by `rust-embed` when this crate compiles:
//! rebuild when any file there is added, changed or removed.
fn main() {
    println!("cargo:rerun-if-changed=../../console/dist");
}
