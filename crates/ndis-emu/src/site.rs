//! Where driver code made an allocation, for leak reports.
//!
//! A stack is captured, unresolved (return addresses only: a few microseconds), whenever the
//! emulator records a driver allocation (pool, NDIS memory, the driver's Rust heap); it is
//! resolved to symbols only when a leak is reported. The report names the innermost frames that
//! are driver code: not the standard library, not the emulator or its import seam, not the
//! unwinder. A frame inside a loaded driver image (the shipped `.sys`, which the host unwinder
//! cannot walk past) is named by image and offset, which the package's `.map` file resolves.

use backtrace::Backtrace;

/// Frames of the emulator's own machinery and of the runtime, skipped in a report.
const NOT_DRIVER_CODE: [&str; 12] = [
    "backtrace::",
    "std::",
    "core::",
    "alloc::",
    "ndis_emu::",
    "ndis_sys::",
    "__rust",
    "__rdl",
    "__rg",
    "rust_begin_unwind",
    "_start",
    "__libc",
];

/// How many driver frames a report names.
const FRAMES: usize = 3;

/// A captured, not yet resolved stack.
pub(crate) struct Site(Backtrace);

/// The stack of the allocation being made now.
pub(crate) fn capture() -> Site {
    Site(Backtrace::new_unresolved())
}

/// A loaded driver image: (name, base, size), to name frames inside it.
pub(crate) type ImageRange = (String, usize, usize);

fn is_driver_symbol(name: &str) -> bool {
    let name = name.trim_start_matches('<');
    !NOT_DRIVER_CODE.iter().any(|p| name.starts_with(p))
}

impl Site {
    /// The innermost driver frames, e.g. `vionet::device::Device::build (src/device/mod.rs:277)
    /// <- vionet::adapter::initialize (src/adapter.rs:399)`; a frame in a driver image as
    /// `vionet.sys+0x1a2b`. "unknown" when no frame could be named.
    pub(crate) fn describe(&mut self, images: &[ImageRange]) -> String {
        self.0.resolve();
        let mut named = Vec::new();
        for frame in self.0.frames() {
            if named.len() == FRAMES {
                break;
            }
            let ip = frame.ip() as usize;
            if let Some((name, base, _)) = images
                .iter()
                .find(|(_, base, size)| ip >= *base && ip < base + size)
            {
                named.push(format!("{name}+{:#x}", ip - base));
                continue;
            }
            for symbol in frame.symbols() {
                let Some(name) = symbol.name().map(|n| format!("{n:#}")) else {
                    continue;
                };
                if !is_driver_symbol(&name) {
                    continue;
                }
                let place = match (symbol.filename(), symbol.lineno()) {
                    (Some(file), Some(line)) => format!(" ({}:{line})", short_path(file)),
                    _ => String::new(),
                };
                named.push(format!("{name}{place}"));
                break;
            }
        }
        if named.is_empty() {
            "unknown".into()
        } else {
            named.join(" <- ")
        }
    }
}

/// A source path relative to the deepest directory it shares with the working directory (the
/// package a test runs in, or the workspace above it), or whole when they share only `/`.
fn short_path(file: &std::path::Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    cwd.ancestors()
        .filter(|a| a.parent().is_some())
        .find_map(|a| file.strip_prefix(a).ok())
        .unwrap_or(file)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn allocating_function() -> Site {
        capture()
    }

    #[test]
    fn a_site_names_the_code_that_allocated_not_the_machinery() {
        let mut site = allocating_function();
        let text = site.describe(&[]);
        // This test module is `ndis_emu::site::tests`, which the filter skips as emulator code:
        // the innermost frames left are the test harness's. The point here: nothing of the
        // capture itself, std or core is named.
        assert!(!text.contains("backtrace::"), "{text}");
        assert!(!text.starts_with("std::"), "{text}");
        assert!(is_driver_symbol("vionet::device::Device::build"));
        assert!(is_driver_symbol(
            "<vionet::adapter::Vionet as ndis::miniport::Miniport>::initialize"
        ));
        assert!(!is_driver_symbol(
            "<alloc::vec::Vec<T> as core::clone::Clone>::clone"
        ));
        assert!(!is_driver_symbol("ndis_emu::memory::allocate"));
    }

    #[test]
    fn a_frame_inside_a_loaded_image_is_named_by_image_and_offset() {
        let mut site = allocating_function();
        // Pretend `allocating_function`'s code is a loaded image's: its frame (the return
        // address after the capture) lies inside it.
        let base = allocating_function as fn() -> Site as usize;
        let text = site.describe(&[("fake.sys".into(), base, 0x1000)]);
        let first = text.split(" <- ").next().unwrap();
        assert!(first.starts_with("fake.sys+0x"), "{text}");
        let offset = usize::from_str_radix(first.trim_start_matches("fake.sys+0x"), 16).unwrap();
        assert!(offset > 0 && offset < 0x1000, "{text}");
    }

    #[test]
    fn paths_are_shortened_to_what_the_working_directory_shares() {
        // Tests run in the package directory (crates/ndis-emu).
        let cwd = std::env::current_dir().unwrap();
        let workspace = cwd.parent().and_then(|p| p.parent()).unwrap();
        assert_eq!(short_path(&cwd.join("src/heap.rs")), "src/heap.rs");
        assert_eq!(
            short_path(&workspace.join("crates/ndis/src/heap.rs")),
            "ndis/src/heap.rs"
        );
        assert_eq!(
            short_path(std::path::Path::new("/elsewhere/x.rs")),
            "/elsewhere/x.rs"
        );
    }
}
