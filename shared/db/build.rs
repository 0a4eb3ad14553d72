//! `embed_migrations!` reads the migration folders at compile time, but cargo does not
//! know it: without this, a new migration folder is left out of the binaries until
//! something else in the crate changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
