//! The allocation meter of the targets that promise a memory bound: a counting allocator over
//! the system one, per thread, so what another thread allocates or frees meanwhile (libFuzzer
//! runs inputs off the main thread, the test harness runs tests side by side) never counts.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

/// Install as the binary's allocator: `#[global_allocator] static A: Meter = Meter;`.
pub struct Meter;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grow(bytes: usize) {
    // `try_with`: allocations while a thread is torn down are not counted, never a panic.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + bytes as isize;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrink(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get() - bytes as isize));
}

// SAFETY: every call is handed to `System` unchanged; the counting touches only thread-locals
// that are const-initialised and have no destructor, so it never allocates.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grow(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grow(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            if new_size > layout.size() {
                grow(new_size - layout.size());
            } else {
                shrink(layout.size() - new_size);
            }
        }
        moved
    }
}

/// Bytes this thread allocated at the peak of `f`, above what it held before. Panics when
/// [`Meter`] is not the allocator: a meter that reads zero would pass every check.
pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let reset = || {
        LIVE.with(|live| live.set(0));
        PEAK.with(|peak| peak.set(0));
    };
    reset();
    drop(std::hint::black_box(Vec::<u8>::with_capacity(4096)));
    assert!(
        PEAK.with(Cell::get) >= 4096,
        "declare `#[global_allocator] static A: imagelake_fuzzing::Meter = imagelake_fuzzing::Meter;`"
    );
    reset();
    let out = f();
    (out, PEAK.with(Cell::get).max(0) as usize)
}
