//! Link configuration of the kernel image (`*-windows-*` targets only; host builds need nothing).
fn main() {
    km_build::configure_driver_link();
}
