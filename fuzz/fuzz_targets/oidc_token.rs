#![no_main]

// Counted, so the targets that promise a memory bound can check it.
#[global_allocator]
static GLOBAL: &peakmem_alloc::PeakMemAlloc<std::alloc::System> =
    &peakmem_alloc::INSTRUMENTED_SYSTEM;

libfuzzer_sys::fuzz_target!(|data: &[u8]| imagelake_fuzzing::requests::oidc_token(data));
