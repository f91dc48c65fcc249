//! The few C library functions that openjp2 (a c2rust port of OpenJPEG, the JPEG 2000 codec
//! of dicom-rs) calls, for `wasm32-unknown-unknown`, which has no libc: `malloc`, `calloc`,
//! `realloc`, `free` and `strcpy`, on Rust's allocator. A final wasm module (the edge worker,
//! the demo) links this crate; elsewhere it is empty.
//!
//! Each block, from the C functions or from Rust's allocator alike, carries its size and
//! alignment in a header before the pointer handed out, so `free` and `realloc` can rebuild
//! the system `Layout`, and either side may free what the other allocated.
//!
//! The global allocator forwards to the system one but, like glibc, tolerates what openjp2
//! does to it: deallocation of null pointers (it frees some never-allocated code-block buffers
//! through `dealloc(null, ...)`, which dlmalloc on wasm32 turns into an out-of-bounds trap;
//! the team's wasm-toolchain notes, §4.1) and, in its encoder, deallocation with a layout
//! other than the allocation's (dlmalloc asserts on the size). Tested by decoding and encoding
//! JPEG 2000 in the worker (against GDCM and OpenJPEG) and decoding it in the browser.
#![cfg(target_arch = "wasm32")]
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::null_mut;

/// The system allocator, tolerant of `dealloc(null)` and of a `dealloc`/`realloc` layout that
/// is not the one the block was allocated with.
///
/// Every block carries its true size and alignment in a header just before the pointer
/// handed out (16 bytes, or the alignment when larger, so the pointer stays aligned);
/// `dealloc` and `realloc` use those, not the caller's layout. glibc's `free` ignores the
/// size too, which is why the same openjp2 encoder runs clean natively (also under
/// AddressSanitizer: no out-of-bounds access) while dlmalloc on wasm32 asserts
/// `psize >= size + min_overhead` on it.
struct Tolerant;

fn header(align: usize) -> usize {
    align.max(16)
}

// SAFETY: each block is a `System` block of `header + size` bytes aligned to
// `max(align, 16)`; the returned pointer is `header` bytes in, so it is aligned to `align`
// and has `size` usable bytes. The two words before it hold the block's size and alignment,
// from which `dealloc` and `realloc` rebuild the exact `System` layout.
unsafe impl GlobalAlloc for Tolerant {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { tolerant_alloc(layout, false) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { tolerant_alloc(layout, true) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        if ptr.is_null() {
            return;
        }
        unsafe {
            let (base, outer) = outer_of(ptr);
            System.dealloc(base, outer);
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ptr.is_null() {
            return unsafe {
                self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()))
            };
        }
        unsafe {
            let (base, outer) = outer_of(ptr);
            let align = (ptr.sub(8) as *const usize).read();
            let h = header(align);
            let Some(total) = new_size.checked_add(h) else {
                return null_mut();
            };
            let moved = System.realloc(base, outer, total);
            if moved.is_null() {
                return moved;
            }
            let user = moved.add(h);
            (user.sub(16) as *mut usize).write(new_size);
            (user.sub(8) as *mut usize).write(align);
            user
        }
    }
}

/// A block for `layout` with its header.
unsafe fn tolerant_alloc(layout: Layout, zeroed: bool) -> *mut u8 {
    let h = header(layout.align());
    let Some(outer) = layout
        .size()
        .checked_add(h)
        .and_then(|t| Layout::from_size_align(t, h).ok())
    else {
        return null_mut();
    };
    unsafe {
        let base = if zeroed {
            System.alloc_zeroed(outer)
        } else {
            System.alloc(outer)
        };
        if base.is_null() {
            return base;
        }
        let user = base.add(h);
        (user.sub(16) as *mut usize).write(layout.size());
        (user.sub(8) as *mut usize).write(layout.align());
        user
    }
}

/// The `System` block and layout behind a pointer from `tolerant_alloc`.
unsafe fn outer_of(ptr: *mut u8) -> (*mut u8, Layout) {
    unsafe {
        let size = (ptr.sub(16) as *const usize).read();
        let align = (ptr.sub(8) as *const usize).read();
        let h = header(align);
        (ptr.sub(h), Layout::from_size_align_unchecked(size + h, h))
    }
}

#[global_allocator]
static ALLOCATOR: Tolerant = Tolerant;

// The C functions share the global allocator's block format, so a block may come from either
// side and go back through the other: openjp2 frees with `free` memory that Rust code
// allocated (and the reverse), which is harmless where both are glibc's malloc (natively)
// and was an out-of-bounds read here before they were made one.

/// C `malloc`.
///
/// # Safety
/// As C's: the result is freed with [`free`] (or Rust's `dealloc`) only.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut u8 {
    match Layout::from_size_align(size, 16) {
        Ok(l) => unsafe { tolerant_alloc(l, false) },
        Err(_) => null_mut(),
    }
}

/// C `calloc`.
///
/// # Safety
/// As C's.
#[no_mangle]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut u8 {
    match count
        .checked_mul(size)
        .and_then(|n| Layout::from_size_align(n, 16).ok())
    {
        Some(l) => unsafe { tolerant_alloc(l, true) },
        None => null_mut(),
    }
}

/// C `free`.
///
/// # Safety
/// `ptr` is null or came from this allocator (C or Rust side) and was not freed.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    unsafe {
        let (base, outer) = outer_of(ptr);
        System.dealloc(base, outer);
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
    // SAFETY: `Tolerant::realloc` reads the block's own layout; the one passed is ignored.
    unsafe { Tolerant.realloc(ptr, Layout::from_size_align_unchecked(size, 1), size) }
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
