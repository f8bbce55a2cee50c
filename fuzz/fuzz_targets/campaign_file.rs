//! The campaign-file parser (TOML, audiences in CEL, offers, durations) on arbitrary text: no
//! panic, and every error names the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use winback_engine::Campaign;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Campaign::parse("fuzz.toml", text) {
        Ok(c) => {
            // What parsed can be described and planned without panicking.
            let _ = c.channels();
            for (i, _) in c.steps.iter().enumerate() {
                let _ = c.message_for(i, "a");
                let _ = c.wait_for(i, "a");
            }
        }
        Err(e) => assert!(e.to_string().contains("fuzz.toml"), "{e}"),
    }
});
