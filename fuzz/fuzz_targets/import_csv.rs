//! Every CSV importer (customers, orders, order lines, Shopify) on arbitrary bytes: no panic,
//! and every refused row names its line and field.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use winback_domain::Timestamp;
use winback_import::{ImportOptions, SourceKind, from_reader};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let kind = match selector % 4 {
        0 => SourceKind::Customers,
        1 => SourceKind::Orders,
        2 => SourceKind::OrderItems,
        _ => SourceKind::Shopify,
    };
    let options = ImportOptions::new(Timestamp::EPOCH);
    let Ok(rows) = from_reader(
        kind,
        Arc::from("fuzz.csv"),
        std::io::Cursor::new(body.to_vec()),
        &options,
        None,
    ) else {
        return;
    };
    for row in rows.take(10_000) {
        if let Err(r) = row {
            let text = r.error.to_string();
            assert!(
                text.starts_with("fuzz.csv:"),
                "a refusal names the file and line: {text}"
            );
        }
    }
});
