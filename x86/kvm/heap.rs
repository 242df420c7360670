// SPDX-License-Identifier: GPL-2.0
//! Large buffers straight on the heap. `KBox::new([0u8; N])` builds the
//! array on the stack first and then moves it: kernel stacks are 16K, and a
//! few such frames on the KVM_RUN path (ioctl, run loop, exit handler) once
//! overflowed it. These helpers never place the value on the stack.

use kernel::prelude::*;

/// A zeroed byte array of `N` bytes on the heap.
pub(crate) fn zeroed_bytes<const N: usize>() -> Result<KBox<[u8; N]>> {
    let b = KBox::<[u8; N]>::new_uninit(GFP_KERNEL | __GFP_ZERO)?;
    // SAFETY: __GFP_ZERO zeroed the allocation, and all-zero bytes are a
    // valid [u8; N].
    Ok(unsafe { b.assume_init() })
}
