// SPDX-License-Identifier: GPL-2.0
//! What 6.12's `KVec` lacks: removing elements.

use kernel::alloc::{Allocator, Vec};

/// Removes and returns the last element.
pub(crate) fn pop<T, A: Allocator>(v: &mut Vec<T, A>) -> Option<T> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    // SAFETY: element n-1 is initialized; after set_len(n-1) the vector no longer
    // owns it, so reading it out moves ownership to the caller exactly once.
    unsafe {
        let item = core::ptr::read(v.as_ptr().add(n - 1));
        v.set_len(n - 1);
        Some(item)
    }
}

/// Removes element `i` by swapping the last one into its place.
pub(crate) fn swap_remove<T, A: Allocator>(v: &mut Vec<T, A>, i: usize) -> Option<T> {
    let n = v.len();
    if i >= n {
        return None;
    }
    v.as_mut_slice().swap(i, n - 1);
    pop(v)
}
