#![no_main]

#[path = "classic_common.rs"]
mod classic_common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    classic_common::form(data);
});
