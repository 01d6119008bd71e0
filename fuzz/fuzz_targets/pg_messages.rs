#![no_main]

// Counted, so the targets that promise a memory bound can check it.
#[global_allocator]
static METER: imagelake_fuzzing::Meter = imagelake_fuzzing::Meter;

libfuzzer_sys::fuzz_target!(|data: &[u8]| imagelake_fuzzing::pg::messages(data));
