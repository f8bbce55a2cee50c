//! The bounce and complaint report reader (mail from strangers, posted to `/v1/webhooks/dsn` or
//! read from the return-path mailbox): arbitrary bytes are read or refused without panicking,
//! and what is read keeps its promises: a VERP tag is 16 hex digits, and only a recipient whose
//! delivery `failed` can be a bounce.
#![no_main]

use libfuzzer_sys::fuzz_target;
use winback_channels::reports::{Verdict, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(report) = parse(data) else {
        return;
    };
    if let Some(tag) = &report.verp_tag {
        assert!(tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()), "{tag}");
    }
    for r in &report.recipients {
        if matches!(r.verdict, Verdict::Hard | Verdict::Soft | Verdict::Sender) {
            assert_eq!(report.kind, "dsn");
            assert_eq!(r.action, "failed", "{r:?}");
        }
        if r.verdict == Verdict::Complaint {
            assert_eq!(report.kind, "arf");
        }
    }
});
