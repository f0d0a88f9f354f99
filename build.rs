//! Link configuration of the kernel image (`*-windows-*` targets only; host builds need nothing).

fn main() {
    if std::env::var_os("CARGO_FEATURE_WDK").is_some() {
        wdk_link_configuration();
    } else {
        km_build::configure_driver_link();
    }
}

/// The WDK path: wdk-build reads `[package.metadata.wdk.driver-model]` and the installed WDK.
#[cfg(all(windows, feature = "wdk"))]
fn wdk_link_configuration() {
    if let Err(e) = wdk_build::configure_wdk_binary_build() {
        panic!(
            "feature `wdk`: wdk-build could not configure the driver link (is the WDK installed?): {e}"
        );
    }
    // What km_build::configure_driver_link would tell `ndis::miniport_driver!`: the link is
    // configured (km-rt is not linked by the macro: the WDK path uses wdk-panic).
    println!("cargo::rustc-env={}=1", km_build::LINK_CONFIGURED_ENV);
}

#[cfg(not(all(windows, feature = "wdk")))]
fn wdk_link_configuration() {
    panic!(
        "the `wdk` feature needs a Windows host with the WDK installed (wdk-build and wdk-sys do not \
         build elsewhere). Build without it: the default build links with rust-lld and raw-dylib \
         imports and needs no WDK."
    );
}
