//! The pages contacts see (unsubscribe, preferences, survey), rendered by minijinja with HTML
//! auto-escaping: every value that comes from stored data is escaped.

use minijinja::{AutoEscape, Environment, Value};

const LAYOUT: &str = r#"<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{% block title %}{{ shop }}{% endblock %}</title>
<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}
button{font-size:1rem;padding:.6rem 1.2rem;border-radius:.4rem;border:0;background:#222;color:#fff;cursor:pointer}
fieldset{border:1px solid #ddd;border-radius:.4rem;margin:1rem 0}label{display:block;margin:.3rem 0}</style>
</head><body><h1>{{ shop }}</h1>{% block body %}{% endblock %}</body></html>"#;

/// (page, English, Dutch, Polish). The Polish copy addresses the reader without a gendered
/// form.
const PAGES: &[(&str, &str, &str, &str)] = &[
    (
        "unsubscribe.html",
        r#"{% extends "layout.html" %}{% block body %}
<p>Unsubscribe <strong>{{ recipient }}</strong> from {{ shop }}'s marketing email?</p>
<form method="post" action="{{ action }}"><button type="submit">Unsubscribe</button></form>
<p>Too many emails? <a href="{{ preferences }}">Get fewer instead</a>.</p>
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p><strong>{{ recipient }}</strong> afmelden voor de marketingmails van {{ shop }}?</p>
<form method="post" action="{{ action }}"><button type="submit">Afmelden</button></form>
<p>Te veel mails? <a href="{{ preferences }}">Ontvang er liever minder</a>.</p>
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p>Wypisać adres <strong>{{ recipient }}</strong> z wiadomości marketingowych {{ shop }}?</p>
<form method="post" action="{{ action }}"><button type="submit">Wypisz</button></form>
<p>Za dużo e-maili? <a href="{{ preferences }}">Otrzymuj mniej</a>.</p>
{% endblock %}"#,
    ),
    (
        "unsubscribed.html",
        r#"{% extends "layout.html" %}{% block body %}
<p>You are unsubscribed. You will get no more marketing email from {{ shop }}.</p>
<p>Changed your mind? <a href="{{ preferences }}">Your preferences</a>.</p>
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p>Je bent afgemeld. Je krijgt geen marketingmails meer van {{ shop }}.</p>
<p>Toch van gedachten veranderd? <a href="{{ preferences }}">Je voorkeuren</a>.</p>
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p>Adres wypisany. Nie otrzymasz już wiadomości marketingowych od {{ shop }}.</p>
<p>Zmiana decyzji? <a href="{{ preferences }}">Twoje ustawienia</a>.</p>
{% endblock %}"#,
    ),
    (
        "preferences.html",
        r#"{% extends "layout.html" %}{% block body %}
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
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p>Je voorkeuren voor <strong>{{ recipient }}</strong>.</p>
<form method="post" action="{{ action }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<fieldset><legend>Hoe vaak</legend>
<label><input type="radio" name="frequency" value="normal"{% if not prefs.low_frequency %} checked{% endif %}> Elke mail</label>
<label><input type="radio" name="frequency" value="low"{% if prefs.low_frequency %} checked{% endif %}> Minder: hoogstens één per twee weken</label>
</fieldset>
<fieldset><legend>Onderwerpen</legend>
{% for t in topics %}<label><input type="checkbox" name="topic_{{ t }}" value="on"{% if t not in prefs.topics_off %} checked{% endif %}> {{ t | replace("_", " ") }}</label>
{% endfor %}</fieldset>
<fieldset><legend>Kanalen</legend>
<label><input type="checkbox" name="email" value="on"{% if prefs.email %} checked{% endif %}> E-mail</label>
<label><input type="checkbox" name="sms" value="on"{% if prefs.sms %} checked{% endif %}> Sms</label>
</fieldset>
<button type="submit">Opslaan</button></form>
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p>Ustawienia dla <strong>{{ recipient }}</strong>.</p>
<form method="post" action="{{ action }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<fieldset><legend>Jak często</legend>
<label><input type="radio" name="frequency" value="normal"{% if not prefs.low_frequency %} checked{% endif %}> Każdy e-mail</label>
<label><input type="radio" name="frequency" value="low"{% if prefs.low_frequency %} checked{% endif %}> Rzadziej: najwyżej jeden na dwa tygodnie</label>
</fieldset>
<fieldset><legend>Tematy</legend>
{% for t in topics %}<label><input type="checkbox" name="topic_{{ t }}" value="on"{% if t not in prefs.topics_off %} checked{% endif %}> {{ t | replace("_", " ") }}</label>
{% endfor %}</fieldset>
<fieldset><legend>Kanały</legend>
<label><input type="checkbox" name="email" value="on"{% if prefs.email %} checked{% endif %}> E-mail</label>
<label><input type="checkbox" name="sms" value="on"{% if prefs.sms %} checked{% endif %}> SMS</label>
</fieldset>
<button type="submit">Zapisz</button></form>
{% endblock %}"#,
    ),
    (
        "saved.html",
        r#"{% extends "layout.html" %}{% block body %}
<p>Saved. Thank you for telling us.</p>
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p>Opgeslagen. Bedankt dat je het ons laat weten.</p>
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p>Zapisano. Dziękujemy za informację.</p>
{% endblock %}"#,
    ),
    (
        "survey.html",
        r#"{% extends "layout.html" %}{% block body %}
<p>You chose: <strong>{{ label }}</strong>.</p>
<form method="post" action="{{ action }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Anything else you want us to know? (optional)<br><textarea name="comment" rows="3" cols="40" maxlength="1000"></textarea></label>
<button type="submit">Send my answer</button></form>
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p>Je koos: <strong>{{ label }}</strong>.</p>
<form method="post" action="{{ action }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Wil je ons nog iets laten weten? (niet verplicht)<br><textarea name="comment" rows="3" cols="40" maxlength="1000"></textarea></label>
<button type="submit">Verstuur mijn antwoord</button></form>
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p>Twój wybór: <strong>{{ label }}</strong>.</p>
<form method="post" action="{{ action }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Chcesz dodać coś jeszcze? (nieobowiązkowo)<br><textarea name="comment" rows="3" cols="40" maxlength="1000"></textarea></label>
<button type="submit">Wyślij odpowiedź</button></form>
{% endblock %}"#,
    ),
    (
        "thanks.html",
        r#"{% extends "layout.html" %}{% block body %}
<p>Thank you{% if first_name %}, {{ first_name }}{% endif %}. Your answer helps us do better.</p>
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p>Bedankt{% if first_name %}, {{ first_name }}{% endif %}. Met je antwoord kunnen we het beter doen.</p>
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p>Dziękujemy{% if first_name %}, {{ first_name }}{% endif %}. Twoja odpowiedź pomoże nam się poprawić.</p>
{% endblock %}"#,
    ),
    (
        "not_found.html",
        r#"{% extends "layout.html" %}{% block body %}
<p>This link is not valid. It may have expired.</p>
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p>Deze link is niet geldig. Misschien is hij verlopen.</p>
{% endblock %}"#,
        r#"{% extends "layout.html" %}{% block body %}
<p>Ten link jest nieprawidłowy lub wygasł.</p>
{% endblock %}"#,
    ),
];

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
        env.add_template("layout.html", LAYOUT)
            .expect("page templates parse");
        for (name, en, nl, pl) in PAGES {
            for (lang, src) in [("en", en), ("nl", nl), ("pl", pl)] {
                env.add_template_owned(format!("{lang}/{name}"), *src)
                    .expect("page templates parse");
            }
        }
        Self { env }
    }

    /// Renders a page in the language of `locale` (English when the pages lack it).
    pub fn render(&self, name: &str, locale: &str, ctx: Value) -> Result<String, minijinja::Error> {
        let lang = winback_channels::locale::language(locale);
        let ctx = minijinja::context! { lang => lang, ..ctx };
        self.env
            .get_template(&format!("{lang}/{name}"))?
            .render(ctx)
    }
}

/// Human label of a survey reason key in the language of `locale`.
pub fn reason_label(reason: &str, locale: &str) -> String {
    let label = match (winback_channels::locale::language(locale), reason) {
        ("nl", "too_many_emails") => "Ik krijg te veel e-mails",
        ("nl", "not_relevant") => "De e-mails zijn niet relevant voor mij",
        ("nl", "price") => "De prijzen zijn te hoog",
        ("nl", "quality") => "De kwaliteit viel tegen",
        ("nl", "competitor") => "Ik koop nu ergens anders",
        ("nl", "other") => "Iets anders",
        ("pl", "too_many_emails") => "Za dużo e-maili",
        ("pl", "not_relevant") => "Wiadomości mnie nie dotyczą",
        ("pl", "price") => "Za drogo",
        ("pl", "quality") => "Jakość mnie rozczarowała",
        ("pl", "competitor") => "Kupuję w innym sklepie",
        ("pl", "other") => "Coś innego",
        (_, "too_many_emails") => "I get too many emails",
        (_, "not_relevant") => "The emails are not relevant to me",
        (_, "price") => "The prices are too high",
        (_, "quality") => "I was not happy with the quality",
        (_, "competitor") => "I buy elsewhere now",
        (_, "other") => "Something else",
        (_, other) => return other.replace('_', " "),
    };
    label.to_owned()
}
