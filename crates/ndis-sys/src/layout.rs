//! Compile-time layout checks.
//!
//! Every `#[repr(C)]` type in this crate is followed by a `layout!` invocation that pins its size,
//! alignment and every field offset to the Windows x64 values from the WDK headers (computed twice,
//! see `docs/ndis-sys.md`). The checks run for every 64-bit target, the Linux host included, so the
//! structures the emulator hands to a driver are byte-identical to what `ndis.sys` hands it. A
//! changed offset fails the build, not a test.

/// `layout!(Type, size = N, align = A, { Field: offset, ... });`
macro_rules! layout {
    ($ty:ty, size = $size:expr, align = $align:expr, { $($field:tt : $off:expr),* $(,)? }) => {
        #[cfg(target_pointer_width = "64")]
        const _: () = {
            ::static_assertions::const_assert_eq!(::core::mem::size_of::<$ty>(), $size);
            ::static_assertions::const_assert_eq!(::core::mem::align_of::<$ty>(), $align);
            $( ::static_assertions::const_assert_eq!(::core::mem::offset_of!($ty, $field), $off); )*
        };
    };
}
pub(crate) use layout;
