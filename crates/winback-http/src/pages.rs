//! The pages contacts see (unsubscribe, preferences, survey), rendered by minijinja with HTML
//! auto-escaping: every value that comes from stored data is escaped.

use minijinja::{AutoEscape, Environment, Value};

const LAYOUT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{% block title %}{{ shop }}{% endblock %}</title>
<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}
button{font-size:1rem;padding:.6rem 1.2rem;border-radius:.4rem;border:0;background:#222;color:#fff;cursor:pointer}
fieldset{border:1px solid #ddd;border-radius:.4rem;margin:1rem 0}label{display:block;margin:.3rem 0}</style>
</head><body><h1>{{ shop }}</h1>{% block body %}{% endblock %}</body></html>"#;

const UNSUBSCRIBE: &str = r#"{% extends "layout.html" %}{% block body %}
<p>Unsubscribe <strong>{{ recipient }}</strong> from {{ shop }}'s marketing email?</p>
<form method="post" action="{{ action }}"><button type="submit">Unsubscribe</button></form>
<p>Too many emails? <a href="{{ preferences }}">Get fewer instead</a>.</p>
{% endblock %}"#;

const UNSUBSCRIBED: &str = r#"{% extends "layout.html" %}{% block body %}
<p>You are unsubscribed. You will get no more marketing email from {{ shop }}.</p>
<p>Changed your mind? <a href="{{ preferences }}">Your preferences</a>.</p>
{% endblock %}"#;

const PREFERENCES: &str = r#"{% extends "layout.html" %}{% block body %}
<p>Your preferences for <strong>{{ recipient }}</strong>.</p>
<form method="post" action="{{ action }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<fieldset><legend>How often</legend>
<label><input type="radio" name="frequency" value="normal"{% if not prefs.low_frequency %} checked{% endif %}> Every email</label>
<label><input type="radio" name="frequency" value="low"{% if prefs.low_frequency %} checked{% endif %}> Fewer: at most one every two weeks</label>
</fieldset>
<fieldset><legend>Topics</legend>
{% for t in topics %}<label><input type="checkbox" name="topic_{{ t }}" value="on"{% if t not in prefs.topics_off %} checked{% endif %}> {{ t | replace("_", " ") }}</label>
{% endfor %}</fieldset>
<fieldset><legend>Channels</legend>
<label><input type="checkbox" name="email" value="on"{% if prefs.email %} checked{% endif %}> Email</label>
<label><input type="checkbox" name="sms" value="on"{% if prefs.sms %} checked{% endif %}> Text messages</label>
</fieldset>
<button type="submit">Save</button></form>
{% endblock %}"#;

const SAVED: &str = r#"{% extends "layout.html" %}{% block body %}
<p>Saved. Thank you for telling us.</p>
{% endblock %}"#;

const SURVEY: &str = r#"{% extends "layout.html" %}{% block body %}
<p>You chose: <strong>{{ label }}</strong>.</p>
<form method="post" action="{{ action }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Anything else you want us to know? (optional)<br><textarea name="comment" rows="3" cols="40" maxlength="1000"></textarea></label>
<button type="submit">Send my answer</button></form>
{% endblock %}"#;

const THANKS: &str = r#"{% extends "layout.html" %}{% block body %}
<p>Thank you{% if first_name %}, {{ first_name }}{% endif %}. Your answer helps us do better.</p>
{% endblock %}"#;

const NOT_FOUND: &str = r#"{% extends "layout.html" %}{% block body %}
<p>This link is not valid. It may have expired.</p>
{% endblock %}"#;

/// The page templates.
pub struct Pages {
    env: Environment<'static>,
}

impl Pages {
    /// Loads the pages for `shop`.
    pub fn new(shop: &str) -> Self {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.add_global("shop", Value::from(shop.to_owned()));
        for (name, src) in [
            ("layout.html", LAYOUT),
            ("unsubscribe.html", UNSUBSCRIBE),
            ("unsubscribed.html", UNSUBSCRIBED),
            ("preferences.html", PREFERENCES),
            ("saved.html", SAVED),
            ("survey.html", SURVEY),
            ("thanks.html", THANKS),
            ("not_found.html", NOT_FOUND),
        ] {
            env.add_template(name, src).expect("page templates parse");
        }
        Self { env }
    }

    /// Renders a page.
    pub fn render(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }
}

/// Human label of a survey reason key.
pub fn reason_label(reason: &str) -> String {
    match reason {
        "too_many_emails" => "I get too many emails".into(),
        "not_relevant" => "The emails are not relevant to me".into(),
        "price" => "The prices are too high".into(),
        "quality" => "I was not happy with the quality".into(),
        "competitor" => "I buy elsewhere now".into(),
        "other" => "Something else".into(),
        other => other.replace('_', " "),
    }
}
