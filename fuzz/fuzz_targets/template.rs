//! The template renderer: arbitrary subject templates through the sandbox (bounded fuel, no
//! file or environment access), and arbitrary personal data through every HTML template, which
//! must come out escaped.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use winback_channels::render::Renderer;
use winback_engine::ports::Dispatch;

fn renderer() -> &'static Renderer {
    static R: OnceLock<Renderer> = OnceLock::new();
    R.get_or_init(|| Renderer::new("Fuzz & Co"))
}

fn dispatch(template: &str, first_name: &str, product: &str) -> Dispatch {
    Dispatch {
        key: "k".into(),
        channel: winback_engine::MessageChannel::Email,
        to: "a@example.com".into(),
        campaign: "fuzz".into(),
        step: "s".into(),
        variant: "a".into(),
        template: template.into(),
        subject: Some("Hi".into()),
        preheader: None,
        sender_name: None,
        customer: "c1".into(),
        first_name: Some(first_name.into()),
        locale: Some("en".into()),
        offer: None,
        products: vec![product.into()],
        wallet_pass: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\u{1}');
    let source = parts.next().unwrap_or("");
    let name = parts.next().unwrap_or("");
    let product = parts.next().unwrap_or("");
    let r = renderer();
    let _ = r.render_line(source, &dispatch("we-miss-you", name, product));
    let templates = Renderer::templates();
    let template = templates[name.len() % templates.len()];
    // The name starts with a marker no template contains: escaped, it reads `&lt;fz`; only an
    // unescaped name could put `<fz` into the HTML.
    let marked = format!("<fz{name}");
    if let Ok(out) = r.render(&dispatch(template, &marked, product), &winback_channels::render::Links::default()) {
        assert!(!out.html.contains("<fz"), "personal data reached the HTML unescaped");
    }
});
