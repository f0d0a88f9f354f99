//! With the `wdk` feature on a Windows host: our hand-written layouts must equal the WDK's
//! bindgen output for every type both define. Compiled only there (wdk-sys does not build
//! elsewhere), so a mismatch with the installed WDK fails that build.

macro_rules! same_layout {
    ($ours:ty, $theirs:ty, [$($field:ident),* $(,)?]) => {
        const _: () = {
            ::static_assertions::const_assert_eq!(
                ::core::mem::size_of::<$ours>(), ::core::mem::size_of::<$theirs>());
            ::static_assertions::const_assert_eq!(
                ::core::mem::align_of::<$ours>(), ::core::mem::align_of::<$theirs>());
            $( ::static_assertions::const_assert_eq!(
                ::core::mem::offset_of!($ours, $field), ::core::mem::offset_of!($theirs, $field)); )*
        };
    };
}

same_layout!(
    crate::GROUP_AFFINITY,
    wdk_sys::GROUP_AFFINITY,
    [Mask, Group, Reserved]
);
same_layout!(
    crate::PROCESSOR_NUMBER,
    wdk_sys::PROCESSOR_NUMBER,
    [Group, Number, Reserved]
);
same_layout!(
    crate::UNICODE_STRING,
    wdk_sys::UNICODE_STRING,
    [Length, MaximumLength, Buffer]
);
same_layout!(
    crate::IO_INTERRUPT_MESSAGE_INFO,
    wdk_sys::IO_INTERRUPT_MESSAGE_INFO,
    [UnifiedIrql, MessageCount, MessageInfo]
);
same_layout!(
    crate::IO_INTERRUPT_MESSAGE_INFO_ENTRY,
    wdk_sys::IO_INTERRUPT_MESSAGE_INFO_ENTRY,
    [
        MessageAddress,
        TargetProcessorSet,
        InterruptObject,
        MessageData,
        Vector,
        Irql,
        Mode,
        Polarity
    ]
);
same_layout!(
    crate::IO_CONNECT_INTERRUPT_FULLY_SPECIFIED_PARAMETERS,
    wdk_sys::IO_CONNECT_INTERRUPT_FULLY_SPECIFIED_PARAMETERS,
    [
        PhysicalDeviceObject,
        InterruptObject,
        ServiceRoutine,
        ServiceContext,
        SpinLock,
        SynchronizeIrql,
        FloatingSave,
        ShareVector,
        Vector,
        Irql,
        InterruptMode,
        ProcessorEnableMask,
        Group
    ]
);
same_layout!(
    crate::IO_CONNECT_INTERRUPT_LINE_BASED_PARAMETERS,
    wdk_sys::IO_CONNECT_INTERRUPT_LINE_BASED_PARAMETERS,
    [
        PhysicalDeviceObject,
        InterruptObject,
        ServiceRoutine,
        ServiceContext,
        SpinLock,
        SynchronizeIrql,
        FloatingSave
    ]
);
same_layout!(
    crate::IO_CONNECT_INTERRUPT_MESSAGE_BASED_PARAMETERS,
    wdk_sys::IO_CONNECT_INTERRUPT_MESSAGE_BASED_PARAMETERS,
    [
        PhysicalDeviceObject,
        ConnectionContext,
        MessageServiceRoutine,
        ServiceContext,
        SpinLock,
        SynchronizeIrql,
        FloatingSave,
        FallBackServiceRoutine
    ]
);
same_layout!(
    crate::IO_CONNECT_INTERRUPT_PARAMETERS,
    wdk_sys::IO_CONNECT_INTERRUPT_PARAMETERS,
    [Version]
);
same_layout!(
    crate::IO_DISCONNECT_INTERRUPT_PARAMETERS,
    wdk_sys::IO_DISCONNECT_INTERRUPT_PARAMETERS,
    [Version, ConnectionContext]
);
same_layout!(
    crate::CM_PARTIAL_RESOURCE_DESCRIPTOR,
    wdk_sys::CM_PARTIAL_RESOURCE_DESCRIPTOR,
    [Type, ShareDisposition, Flags, u]
);
same_layout!(
    crate::CM_PARTIAL_RESOURCE_LIST,
    wdk_sys::CM_PARTIAL_RESOURCE_LIST,
    [Version, Revision, Count, PartialDescriptors]
);

// Constants both define.
const _: () = {
    ::static_assertions::const_assert_eq!(
        crate::CONNECT_FULLY_SPECIFIED as u64,
        wdk_sys::CONNECT_FULLY_SPECIFIED as u64
    );
    ::static_assertions::const_assert_eq!(
        crate::CONNECT_LINE_BASED as u64,
        wdk_sys::CONNECT_LINE_BASED as u64
    );
    ::static_assertions::const_assert_eq!(
        crate::CONNECT_MESSAGE_BASED as u64,
        wdk_sys::CONNECT_MESSAGE_BASED as u64
    );
    ::static_assertions::const_assert_eq!(
        crate::POOL_FLAG_NON_PAGED as u64,
        wdk_sys::POOL_FLAG_NON_PAGED as u64
    );
};
