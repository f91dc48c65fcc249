//! The few C library functions that openjp2 (a c2rust port of OpenJPEG, the JPEG 2000 codec
//! of dicom-rs) calls, for `wasm32-unknown-unknown`, which has no libc: `malloc`, `calloc`,
//! `realloc`, `free` and `strcpy`, on Rust's allocator. A final wasm module (the edge worker,
//! the demo) links this crate; elsewhere it is empty.
//!
//! Each block carries its size in a 16-byte header before the pointer handed out, so `free`
//! and `realloc` can rebuild the `Layout` Rust's allocator needs.
//!
//! The global allocator forwards to the system one but ignores deallocation of null pointers:
//! openjp2 frees some never-allocated code-block buffers through `dealloc(null, ...)`, which
//! glibc tolerates and dlmalloc on wasm32 turns into an out-of-bounds trap (measured; see
//! the team's wasm-toolchain notes, §4.1). Tested by decoding JPEG 2000 in the worker and the
//! browser against GDCM.
#![cfg(target_arch = "wasm32")]
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::null_mut;

/// The system allocator, tolerant of `dealloc(null)`.
struct NullTolerant;

// SAFETY: every method forwards to `System` with the caller's arguments; `dealloc` skips null
// pointers, which never came from `alloc`.
unsafe impl GlobalAlloc for NullTolerant {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !ptr.is_null() {
            unsafe { System.dealloc(ptr, layout) }
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: NullTolerant = NullTolerant;

const HEADER: usize = 16;

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
}

/// C `malloc`.
///
/// # Safety
/// As C's: the result is freed with [`free`] only.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut u8 {
    let Some(l) = layout(size) else {
        return null_mut();
    };
    // SAFETY: `l` has a non-zero size (the header).
    unsafe {
        let base = std::alloc::alloc(l);
        if base.is_null() {
            return base;
        }
        (base as *mut usize).write(size);
        base.add(HEADER)
    }
}

/// C `calloc`.
///
/// # Safety
/// As C's.
#[no_mangle]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut u8 {
    let Some(l) = count.checked_mul(size).and_then(layout) else {
        return null_mut();
    };
    // SAFETY: as in `malloc`, zeroed.
    unsafe {
        let base = std::alloc::alloc_zeroed(l);
        if base.is_null() {
            return base;
        }
        (base as *mut usize).write(l.size() - HEADER);
        base.add(HEADER)
    }
}

/// C `free`.
///
/// # Safety
/// `ptr` is null or came from [`malloc`], [`calloc`] or [`realloc`] and was not freed.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: the header before `ptr` holds the size it was allocated with.
    unsafe {
        let base = ptr.sub(HEADER);
        let size = (base as *const usize).read();
        if let Some(l) = layout(size) {
            std::alloc::dealloc(base, l);
        }
    }
}

/// C `realloc`.
///
/// # Safety
/// As [`free`] for `ptr`.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut u8, size: usize) -> *mut u8 {
    if ptr.is_null() {
        return unsafe { malloc(size) };
    }
    let (Some(_), Some(new_total)) = (layout(size), size.checked_add(HEADER)) else {
        return null_mut();
    };
    // SAFETY: the header holds the old size; the new block gets a new header.
    unsafe {
        let base = ptr.sub(HEADER);
        let old = (base as *const usize).read();
        let Some(old_layout) = layout(old) else {
            return null_mut();
        };
        let moved = std::alloc::realloc(base, old_layout, new_total);
        if moved.is_null() {
            return moved;
        }
        (moved as *mut usize).write(size);
        moved.add(HEADER)
    }
}

/// C `strcpy`.
///
/// # Safety
/// `src` is NUL-terminated and `dst` has room for it.
#[no_mangle]
pub unsafe extern "C" fn strcpy(dst: *mut u8, src: *const u8) -> *mut u8 {
    let mut i = 0;
    // SAFETY: per the contract above.
    unsafe {
        loop {
            let b = src.add(i).read();
            dst.add(i).write(b);
            if b == 0 {
                return dst;
            }
            i += 1;
        }
    }
}
