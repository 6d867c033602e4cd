//! Links the `chima` binary with packed relative relocations (`DT_RELR`).
//!
//! chima is a position-independent executable, so the dynamic loader patches some
//! 41,000 pointers in it at every start. As classic `RELA` entries that table is
//! 1 MB which every chima process reads (and keeps mapped) before `main`; packed it
//! is 12 KB. That is most of the difference between chima's idle RSS and its
//! 15 MB budget (BENCHMARKS.md, item 15). Nothing else changes: the same code, the
//! same address-space randomisation.
//!
//! `DT_RELR` needs glibc 2.36 or later at run time (Debian 12, Ubuntu 22.10, and
//! later); the linker records that as a version dependency, so an older glibc
//! refuses to start the binary with a clear message instead of misbehaving. Set
//! `CHIMA_NO_RELR=1` to build without it for such a system.
fn main() {
    println!("cargo:rerun-if-env-changed=CHIMA_NO_RELR");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu && std::env::var_os("CHIMA_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
