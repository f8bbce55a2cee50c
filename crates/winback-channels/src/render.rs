//! Rendering in three stages: minijinja personalises an MJML template (escaping every value as
//! HTML), mrml turns the MJML into HTML, and html2text derives the plain-text part.
//!
//! The sandbox: templates come only from the embedded library (no loader, so no file access),
//! minijinja has no function that reads the environment, every render has a fuel limit, and an
//! undefined value is an error unless the template gives an explicit default
//! (`{{ first_name | default("there") }}`).

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value, context};
use winback_engine::ports::Dispatch;

use crate::library;

/// Instructions one render may spend: generous for any real message, small enough that a
/// runaway loop stops in milliseconds.
pub const FUEL: u64 = 200_000;

/// Locales with their own templates; others fall back to English.
pub const LOCALES: [&str; 3] = ["en", "nl", "pl"];

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rendered {
    /// Locale the templates came from.
    pub locale: String,
    /// Subject.
    pub subject: String,
    /// Preheader (the preview line).
    pub preheader: Option<String>,
    /// HTML part.
    pub html: String,
    /// Plain-text part.
    pub text: String,
}

/// Links a message carries; all already signed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Links {
    /// The unsubscribe page (GET shows, POST confirms).
    pub unsubscribe: String,
    /// The preference centre (lower frequency, topics, channels).
    pub preferences: String,
    /// One-click survey answers by reason.
    pub survey: BTreeMap<String, String>,
    /// The call to action (a tracked click to the shop).
    pub shop: String,
    /// "Yes, keep me subscribed": a tracked click (so a journey's `clicked` branch sees it)
    /// that opens the preference centre.
    pub keep: String,
    /// The open pixel.
    pub pixel: String,
    /// Add the contact's wallet pass (when a wallet step issued one): the layout shows a
    /// button.
    pub wallet: Option<String>,
}

/// Why a message could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// No template of that name in any locale.
    #[error("no template named `{0}` (see `winback templates list`)")]
    UnknownTemplate(String),
    /// Personalisation failed (undefined value, fuel exhausted, syntax).
    #[error("template `{template}`: {message}")]
    Template {
        /// Template.
        template: String,
        /// What went wrong, with the line.
        message: String,
    },
    /// A file of the shop's own templates folder could not be read or is not a template.
    #[error("{path}: {message}")]
    Folder {
        /// The file or folder.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The personalised MJML is not valid MJML.
    #[error("template `{template}`: MJML: {message}")]
    Mjml {
        /// Template.
        template: String,
        /// What went wrong.
        message: String,
    },
}

fn template_error(template: &str, e: &minijinja::Error) -> RenderError {
    let mut message = e.to_string();
    if let Some(line) = e.line() {
        message = format!("line {line}: {message}");
    }
    RenderError::Template {
        template: template.to_owned(),
        message,
    }
}

/// The renderer over the embedded template library.
pub struct Renderer {
    bodies: Environment<'static>,
    subjects: Environment<'static>,
    shop_name: String,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("shop_name", &self.shop_name)
            .finish()
    }
}

fn sandboxed(escape: bool) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(move |_| {
        if escape {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
}

impl Renderer {
    /// A renderer for a shop called `shop_name`.
    pub fn new(shop_name: &str) -> Self {
        let mut bodies = sandboxed(true);
        for (path, source) in library::TEMPLATES {
            bodies
                .add_template(path, source)
                .unwrap_or_else(|e| panic!("embedded template {path} does not parse: {e}"));
        }
        Self {
            bodies,
            subjects: sandboxed(false),
            shop_name: shop_name.to_owned(),
        }
    }

    /// Adds the shop's own templates from `dir`: `en/NAME.mjml`, `nl/NAME.mjml`,
    /// `pl/NAME.mjml` (minijinja over MJML, like the library's, and free to
    /// `{% extends "nl/layout.mjml" %}`). A file named like a library template replaces it; a
    /// new name needs an English version, the fallback of every language. Each file is
    /// parsed now, so a broken template stops the worker at start, not a send.
    pub fn with_templates_dir(mut self, dir: &std::path::Path) -> Result<Self, RenderError> {
        let folder_error = |path: &std::path::Path, message: String| RenderError::Folder {
            path: path.display().to_string(),
            message,
        };
        if !dir.is_dir() {
            return Err(folder_error(dir, "not a folder".into()));
        }
        let mut added = Vec::new();
        for lang in LOCALES {
            let sub = dir.join(lang);
            if !sub.is_dir() {
                continue;
            }
            let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&sub)
                .map_err(|e| folder_error(&sub, e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "mjml"))
                .collect();
            files.sort();
            for path in files {
                let name = path
                    .file_stem()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                if !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
                    || name.is_empty()
                {
                    return Err(folder_error(
                        &path,
                        "template names are lowercase letters, digits, - or _".into(),
                    ));
                }
                let source = std::fs::read_to_string(&path)
                    .map_err(|e| folder_error(&path, e.to_string()))?;
                self.bodies
                    .add_template_owned(format!("{lang}/{name}.mjml"), source)
                    .map_err(|e| {
                        let line = e.line().map(|l| format!("line {l}: ")).unwrap_or_default();
                        folder_error(&path, format!("{line}{e}"))
                    })?;
                added.push((lang, name, path));
            }
        }
        for (lang, name, path) in &added {
            if name != "layout"
                && self
                    .bodies
                    .get_template(&format!("en/{name}.mjml"))
                    .is_err()
            {
                return Err(folder_error(
                    path,
                    format!(
                        "`{name}` has no English version (en/{name}.mjml): English is every language's fallback ({lang} given)"
                    ),
                ));
            }
        }
        Ok(self)
    }

    /// Whether an email template of this name exists (in English, every language's fallback).
    pub fn has_template(&self, name: &str) -> bool {
        name != "layout" && self.bodies.get_template(&format!("en/{name}.mjml")).is_ok()
    }

    /// Every template name this renderer knows, with the languages it has (the library's and
    /// the shop's own).
    pub fn template_languages(&self) -> BTreeMap<String, Vec<&'static str>> {
        let mut out: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        for (path, _) in self.bodies.templates() {
            let Some((lang, file)) = path.split_once('/') else {
                continue;
            };
            let Some(lang) = LOCALES.iter().find(|l| **l == lang) else {
                continue;
            };
            let name = file.trim_end_matches(".mjml");
            if name != "layout" {
                out.entry(name.to_owned()).or_default().push(lang);
            }
        }
        for langs in out.values_mut() {
            langs.sort_unstable();
            langs.dedup();
        }
        out
    }

    /// Template names in the library (any locale).
    pub fn templates() -> Vec<&'static str> {
        let mut names: Vec<&str> = library::TEMPLATES
            .iter()
            .filter_map(|(p, _)| p.split_once('/'))
            .map(|(_, n)| n.trim_end_matches(".mjml"))
            .filter(|n| *n != "layout")
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    fn locale_for(&self, d: &Dispatch) -> &'static str {
        let wanted = d
            .locale
            .as_deref()
            .and_then(|l| l.split(['-', '_']).next())
            .unwrap_or("en")
            .to_ascii_lowercase();
        let found = LOCALES.iter().find(|l| **l == wanted).copied();
        match found {
            Some(l)
                if self
                    .bodies
                    .get_template(&format!("{l}/{}.mjml", d.template))
                    .is_ok() =>
            {
                l
            }
            _ => "en",
        }
    }

    /// Renders a string (a subject, a preheader) without HTML escaping: it goes into a header.
    pub fn render_line(&self, source: &str, d: &Dispatch) -> Result<String, RenderError> {
        let ctx = self.context(d, None, true);
        let out = self
            .subjects
            .render_str(source, ctx)
            .map_err(|e| template_error("subject", &e))?;
        // A header is one line.
        Ok(out.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    fn context(&self, d: &Dispatch, links: Option<&Links>, line: bool) -> Value {
        let mut map: BTreeMap<&str, Value> = BTreeMap::new();
        // Absent, not null: `{{ first_name | default("there") }}` then applies, and a bare
        // `{{ first_name }}` fails loudly under strict undefined rather than printing "none".
        if let Some(n) = d.first_name.as_deref().filter(|n| !n.trim().is_empty()) {
            map.insert("first_name", Value::from(n));
        }
        map.insert("shop", Value::from(self.shop_name.as_str()));
        map.insert("campaign", Value::from(d.campaign.as_str()));
        map.insert("products", Value::from_serialize(&d.products));
        if let Some(o) = &d.offer {
            // Worded, priced and dated in the language the body is rendered in.
            let lang = self.locale_for(d);
            // The shop's words when the rung gives them in this language (a JSON table),
            // else the kind worded as the language words it.
            let description = o
                .description
                .trim_start()
                .starts_with('{')
                .then(|| serde_json::from_str::<BTreeMap<String, String>>(&o.description).ok())
                .flatten()
                .and_then(|t| t.get(lang).cloned())
                .unwrap_or_else(|| crate::locale::offer(lang, &o.kind, &o.currency));
            if line {
                map.insert("offer", Value::from(description));
            } else {
                map.insert(
                    "offer",
                    context! {
                        code => o.code.as_str(),
                        description => description,
                        expires => crate::locale::date(o.expires_at.date_local(), lang),
                        min_order_minor => o.min_order_minor,
                        min_order => crate::locale::money(o.min_order_minor, &o.currency, lang),
                        kind => o.kind.as_str(),
                    },
                );
            }
        }
        if let Some(l) = links {
            map.insert("links", Value::from_serialize(l));
        }
        Value::from_iter(map)
    }

    /// Renders a message: subject and preheader lines, then the body's three stages.
    pub fn render(&self, d: &Dispatch, links: &Links) -> Result<Rendered, RenderError> {
        // Every template exists in English, the fallback locale.
        if self
            .bodies
            .get_template(&format!("en/{}.mjml", d.template))
            .is_err()
        {
            return Err(RenderError::UnknownTemplate(d.template.clone()));
        }
        let locale = self.locale_for(d);
        let name = format!("{locale}/{}.mjml", d.template);
        // A campaign's line is one text for everyone, or one per language (stored as a JSON
        // object): the contact's language is taken, else the library's subject in it, so a
        // Dutch body never gets an English subject from a table that lacks Dutch.
        let own_subject = d.subject.as_deref().and_then(|s| line_for(s, locale));
        let subject = match own_subject {
            Some(s) => self.render_line(&s, d)?,
            None => {
                let default = library::SUBJECTS
                    .iter()
                    .find(|(l, n, _)| *l == locale && *n == d.template)
                    .map_or(self.shop_name.as_str(), |(_, _, s)| s);
                self.render_line(default, d)?
            }
        };
        let preheader = d
            .preheader
            .as_deref()
            .and_then(|p| line_for(p, locale))
            .map(|p| self.render_line(&p, d))
            .transpose()?;
        let mut ctx = self.context(d, Some(links), false);
        if let Some(p) = &preheader {
            ctx = context! { preheader => p.as_str(), ..ctx };
        }
        let mjml = self
            .bodies
            .get_template(&name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| template_error(&d.template, &e))?;
        let parsed = mrml::parse(&mjml).map_err(|e| RenderError::Mjml {
            template: d.template.clone(),
            message: e.to_string(),
        })?;
        let html = parsed
            .element
            .render(&mrml::prelude::render::RenderOptions::default())
            .map_err(|e| RenderError::Mjml {
                template: d.template.clone(),
                message: e.to_string(),
            })?;
        // The text part comes from the same personalised MJML, reduced to plain HTML (text
        // blocks and buttons without MJML's table layout): html2text then reads a tenth of the
        // markup, which made rendering 2.5× faster, and no table border or layout cell leaks
        // into the text. A wrapped URL is a broken link, so links are not wrapped.
        let text = html2text::config::plain()
            .no_table_borders()
            .no_link_wrapping()
            .string_from_read(text_html(&mjml).as_bytes(), 78)
            .map_err(|e| RenderError::Mjml {
                template: d.template.clone(),
                message: format!("text part: {e}"),
            })?;
        Ok(Rendered {
            locale: locale.to_owned(),
            subject,
            preheader,
            html,
            text,
        })
    }
}

/// A stored message line as a person reads it: the text, or each language's text.
pub fn display_line(stored: &str) -> String {
    if stored.trim_start().starts_with('{') {
        if let Ok(table) = serde_json::from_str::<BTreeMap<String, String>>(stored) {
            return table
                .iter()
                .map(|(l, t)| format!("{l}: {t}"))
                .collect::<Vec<_>>()
                .join(" · ");
        }
    }
    stored.to_owned()
}

/// A campaign's message line for `locale`: a plain text applies to everyone; a per-language
/// table (a JSON object) gives the contact's language or nothing.
pub(crate) fn line_for(stored: &str, locale: &str) -> Option<String> {
    if stored.trim_start().starts_with('{') {
        if let Ok(table) = serde_json::from_str::<BTreeMap<String, String>>(stored) {
            return table.get(locale).cloned();
        }
    }
    Some(stored.to_owned())
}

/// The value of attribute `name` in one tag's source.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[at..].split('"').next()
}

/// The MJML body as plain HTML for the text part: `mj-text` becomes a paragraph, `mj-button` a
/// link in a paragraph, and the layout and image elements disappear. Everything inside a text
/// block is HTML already and stays as it is.
fn text_html(mjml: &str) -> String {
    let body = match (mjml.find("<mj-body"), mjml.rfind("</mj-body>")) {
        (Some(a), Some(b)) if a < b => &mjml[a..b],
        _ => mjml,
    };
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find('>').map(|e| e + 1) else {
            break;
        };
        let tag = &rest[..end];
        if tag.starts_with("<mj-text") {
            out.push_str("<p>");
        } else if tag == "</mj-text>" {
            out.push_str("</p>");
        } else if tag.starts_with("<mj-button") {
            out.push_str("<p><a href=\"");
            out.push_str(attribute(tag, "href").unwrap_or_default());
            out.push_str("\">");
        } else if tag == "</mj-button>" {
            out.push_str("</a></p>");
        } else if !tag.starts_with("<mj-") && !tag.starts_with("</mj-") {
            out.push_str(tag);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
