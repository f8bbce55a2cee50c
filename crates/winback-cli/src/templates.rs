//! `winback templates`: the email templates a campaign can name (the library's and the shop's
//! own `[email] templates_dir`), and a preview of one in a language with sample data, so a
//! marketer sees the words before a campaign sends them.

use anyhow::{Context, Result};
use clap::Subcommand;
use winback_channels::{Links, Renderer};
use winback_engine::ports::{Dispatch, OfferView};

use crate::config::Config;

/// `winback templates …`
#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Every template with its languages, and where the shop's own come from.
    List,
    /// A template as a contact would read it (subject, preheader, text part), with sample data:
    /// a first name, a € 10,00 offer, two products.
    Show {
        /// Template name.
        name: String,
        /// Language (en, nl, pl).
        #[arg(long, default_value = "en")]
        locale: String,
        /// Print the HTML part instead of the text.
        #[arg(long)]
        html: bool,
        /// Leave the first name out (what a contact without one gets).
        #[arg(long)]
        no_name: bool,
    },
}

/// Runs a `templates` command.
pub fn run(config: &Config, command: TemplatesCommand) -> Result<()> {
    let renderer = config.renderer()?;
    match command {
        TemplatesCommand::List => {
            let library: std::collections::BTreeSet<&str> =
                Renderer::templates().into_iter().collect();
            println!("{:<28} {:<10} source", "template", "languages");
            for (name, langs) in renderer.template_languages() {
                let source = if library.contains(name.as_str()) {
                    "library"
                } else {
                    "templates_dir"
                };
                println!("{name:<28} {:<10} {source}", langs.join(","));
            }
            match &config.email.templates_dir {
                Some(dir) => println!(
                    "\nThe shop's own templates come from {dir} (LANGUAGE/NAME.mjml); a library name there replaces the library's."
                ),
                None => println!(
                    "\nAdd your own or change a library template's words: set `[email] templates_dir = \"templates\"` and write templates/LANGUAGE/NAME.mjml (see the README)."
                ),
            }
            Ok(())
        }
        TemplatesCommand::Show {
            name,
            locale,
            html,
            no_name,
        } => {
            anyhow::ensure!(
                renderer.has_template(&name),
                "no email template `{name}` (see `winback templates list`)"
            );
            let d = sample(&name, &locale, !no_name);
            let public = config.email.public_url.trim_end_matches('/');
            let links = Links {
                unsubscribe: format!("{public}/u/TOKEN"),
                preferences: format!("{public}/p/TOKEN"),
                survey: winback_channels::email::SURVEY_REASONS
                    .iter()
                    .map(|r| ((*r).to_owned(), format!("{public}/s/TOKEN-{r}")))
                    .collect(),
                shop: format!("{public}/c/TOKEN"),
                keep: format!("{public}/c/TOKEN-keep"),
                pixel: format!("{public}/o/TOKEN"),
                wallet: None,
            };
            let r = renderer
                .render(&d, &links)
                .with_context(|| format!("rendering `{name}` in `{locale}`"))?;
            println!("Language: {}", r.locale);
            println!("Subject: {}", r.subject);
            if let Some(p) = &r.preheader {
                println!("Preheader: {p}");
            }
            println!();
            println!("{}", if html { &r.html } else { &r.text });
            Ok(())
        }
    }
}

fn sample(template: &str, locale: &str, name: bool) -> Dispatch {
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 14);
    Dispatch {
        key: winback_domain::MessageKey::stored(format!("preview/{template}")),
        channel: winback_engine::MessageChannel::Email,
        to: "anna@example.nl".into(),
        campaign: "preview".into(),
        step: "preview".into(),
        variant: "a".into(),
        template: template.into(),
        subject: None,
        preheader: None,
        sender_name: None,
        customer: "preview".into(),
        first_name: name.then(|| "Anna".into()),
        locale: Some(locale.into()),
        offer: Some(OfferView {
            code: "WB-PREVIEW".into(),
            kind: winback_engine::definition::OfferKind::Fixed { amount_minor: 1000 },
            currency: "EUR".into(),
            description: "10.00 EUR off".into(),
            expires_at: winback_domain::Timestamp::new(expires),
            min_order_minor: 5000,
        }),
        products: vec!["Linen shirt".into(), "Wool socks".into()],
        wallet_pass: None,
    }
}
