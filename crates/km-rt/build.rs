//! Tells the build script of a driver crate that depends on km-rt directly that it does
//! (`DEP_KM_RT_RUNTIME`, read by `km_build::configure_driver_link`): with `links = "km_rt"`, Cargo
//! passes this metadata to direct dependents only.
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::metadata=runtime=1");
}
