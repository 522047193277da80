//! The component's allocator: per-size free lists in front of a general allocator.
//!
//! A frame allocates and frees ~16 small blocks (fields, the event's JSON, the
//! effect list), and in the component the general allocator was 12 % of the time
//! per frame. Blocks of up to 2 KiB are rounded up to a power of two and kept on a
//! free list per size when freed, so the next block of that size is a pop. Each
//! list is capped, so memory a burst needed goes back to the general allocator
//! instead of staying reserved for one size.
//!
//! Wasm components without the threads proposal are single-threaded, which is the
//! only reason the lists need no lock (see the `Sync` impl).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;

/// Smallest class: room for the free-list link, and 16-byte aligned blocks.
const MIN_SHIFT: u32 = 4;
/// Largest class, 2 KiB; larger blocks go straight to the inner allocator.
const MAX_SHIFT: u32 = 11;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Every cached block is allocated with this alignment, so any request with an
/// alignment up to it can be served from a list.
const BLOCK_ALIGN: usize = 16;
/// Freed blocks kept per class; beyond that they go back to the inner allocator.
const MAX_CACHED: u32 = 256;

struct Lists {
    head: [*mut u8; CLASSES],
    len: [u32; CLASSES],
}

/// Size-class free lists over `A`.
pub struct SizeClasses<A> {
    inner: A,
    lists: UnsafeCell<Lists>,
}

// SAFETY: only compiled where the component is single-threaded (wasm without the
// atomics feature); the lists are never touched from two threads.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl<A: Sync> Sync for SizeClasses<A> {}

impl<A> SizeClasses<A> {
    /// Wraps `inner`; all lists start empty.
    pub const fn new(inner: A) -> Self {
        SizeClasses {
            inner,
            lists: UnsafeCell::new(Lists {
                head: [ptr::null_mut(); CLASSES],
                len: [0; CLASSES],
            }),
        }
    }

    /// The class of a request, or `None` if it is too large or over-aligned.
    fn class(layout: Layout) -> Option<usize> {
        if layout.size() > 1 << MAX_SHIFT || layout.align() > BLOCK_ALIGN {
            return None;
        }
        let size = layout.size().max(1 << MIN_SHIFT);
        let shift = usize::BITS - (size - 1).leading_zeros();
        Some((shift - MIN_SHIFT) as usize)
    }

    fn class_layout(class: usize) -> Layout {
        // Sizes 16..=2048 with alignment 16 are always valid layouts.
        Layout::from_size_align(1 << (class as u32 + MIN_SHIFT), BLOCK_ALIGN)
            .unwrap_or(Layout::new::<u8>())
    }
}

// SAFETY: every block handed out is either from `inner` with the caller's layout,
// or from `inner` with its class layout (at least as large, alignment 16) and
// returned to `inner` with that same class layout. A cached block is unused memory
// whose first word links the list.
unsafe impl<A: GlobalAlloc> GlobalAlloc for SizeClasses<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = Self::class(layout) else {
            return unsafe { self.inner.alloc(layout) };
        };
        // SAFETY: single-threaded (see the Sync impl); no reference outlives this call.
        let lists = unsafe { &mut *self.lists.get() };
        let block = lists.head[class];
        if block.is_null() {
            return unsafe { self.inner.alloc(Self::class_layout(class)) };
        }
        // SAFETY: a cached block starts with the link to the next one.
        lists.head[class] = unsafe { block.cast::<*mut u8>().read() };
        lists.len[class] -= 1;
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = Self::class(layout) else {
            return unsafe { self.inner.dealloc(block, layout) };
        };
        let lists = unsafe { &mut *self.lists.get() };
        if lists.len[class] >= MAX_CACHED {
            return unsafe { self.inner.dealloc(block, Self::class_layout(class)) };
        }
        // SAFETY: the block is at least 16 bytes, 16-aligned, and no longer used.
        unsafe { block.cast::<*mut u8>().write(lists.head[class]) };
        lists.head[class] = block;
        lists.len[class] += 1;
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        match (Self::class(layout), Self::class(new_layout)) {
            // Still fits its block: nothing moves (a growing String in a class).
            (Some(old), Some(new)) if old == new => block,
            // Both large: the inner allocator may grow in place.
            (None, None) => unsafe { self.inner.realloc(block, layout, new_size) },
            _ => {
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    let n = layout.size().min(new_size);
                    // SAFETY: both blocks hold at least `n` bytes and are distinct.
                    unsafe { ptr::copy_nonoverlapping(block, moved, n) };
                    unsafe { self.dealloc(block, layout) };
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;
    use std::collections::HashSet;

    #[test]
    fn classes_round_up_to_powers_of_two() {
        let class = |size, align| {
            SizeClasses::<System>::class(Layout::from_size_align(size, align).unwrap())
        };
        assert_eq!(class(0, 1), Some(0));
        assert_eq!(class(16, 8), Some(0));
        assert_eq!(class(17, 1), Some(1));
        assert_eq!(class(2048, 16), Some(CLASSES - 1));
        assert_eq!(class(2049, 1), None);
        assert_eq!(class(64, 32), None);
    }

    #[test]
    fn freed_blocks_are_reused_and_never_handed_out_twice() {
        let a = SizeClasses::new(System);
        let layout = Layout::from_size_align(40, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            a.dealloc(p, layout);
            // Same class (33..=64 bytes): the same block comes back.
            assert_eq!(a.alloc(Layout::from_size_align(60, 4).unwrap()), p);
            let mut live = HashSet::new();
            assert!(live.insert(p as usize));
            for _ in 0..1000 {
                let q = a.alloc(layout);
                assert!(!q.is_null());
                assert_eq!(q as usize % BLOCK_ALIGN, 0);
                assert!(live.insert(q as usize), "a live block was handed out again");
                q.write_bytes(0xAB, layout.size());
            }
            for q in live {
                a.dealloc(q as *mut u8, layout);
            }
            assert_eq!((*a.lists.get()).len[2], MAX_CACHED);
        }
    }

    #[test]
    fn realloc_keeps_contents_across_classes_and_sizes() {
        let a = SizeClasses::new(System);
        unsafe {
            let mut layout = Layout::from_size_align(5, 1).unwrap();
            let mut p = a.alloc(layout);
            p.copy_from_nonoverlapping(b"hello".as_ptr(), 5);
            for new_size in [7, 16, 17, 300, 2048, 5000, 40, 5] {
                let q = a.realloc(p, layout, new_size);
                assert!(!q.is_null());
                assert_eq!(std::slice::from_raw_parts(q, 5), b"hello");
                p = q;
                layout = Layout::from_size_align(new_size, 1).unwrap();
            }
            a.dealloc(p, layout);
        }
    }
}
