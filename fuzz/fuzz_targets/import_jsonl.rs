//! The events JSONL importer on arbitrary bytes: no panic, and refusals name file and line.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use winback_domain::Timestamp;
use winback_import::{ImportOptions, SourceKind, from_reader};

fuzz_target!(|data: &[u8]| {
    let options = ImportOptions::new(Timestamp::EPOCH);
    let Ok(rows) = from_reader(
        SourceKind::Events,
        Arc::from("fuzz.jsonl"),
        std::io::Cursor::new(data.to_vec()),
        &options,
        None,
    ) else {
        return;
    };
    for row in rows.take(10_000) {
        if let Err(r) = row {
            let text = r.error.to_string();
            assert!(
                text.starts_with("fuzz.jsonl:"),
                "a refusal names the file and line: {text}"
            );
        }
    }
});
