//! `winback report --html FILE`: the report as one self-contained HTML file with its charts
//! drawn as inline SVG (no script, no CDN, opens offline and in any mail client). Rendered by
//! minijinja with HTML auto-escaping, so campaign names and descriptions cannot inject markup.

use anyhow::Result;
use minijinja::{AutoEscape, Environment, context};
use serde::Serialize;

use crate::kpi::Report;

const TEMPLATE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>winback report {{ as_of }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:70rem;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.5rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{padding:.25rem .6rem;text-align:right;border-bottom:1px solid #eee}
th:first-child,td:first-child{text-align:left}.note{color:#8a5a00}.good{color:#1a7f37}.bad{color:#b42318}
.muted{color:#595959;font-size:.9rem}svg text{font-size:11px;fill:#333}
.scroll{overflow-x:auto;max-width:100%}.verdict{font-weight:600;white-space:nowrap}
.v-keep{color:#1a7f37}.v-change_or_stop{color:#b42318}.v-too_early{color:#7a4d00}.v-nothing_sent{color:#595959}
.axis{stroke:#595959}.ci-good{stroke:#1a7f37}.ci-bad{stroke:#b42318}.ci-open{stroke:#595959}
.est-good{fill:#1a7f37}.est-bad{fill:#b42318}.est-open{fill:#595959}tfoot th,tfoot td{border-top:2px solid #999;font-weight:600}
pre{overflow-x:auto}
</style></head><body>
<header><h1>winback report</h1>
<p class="muted">As of {{ as_of }}; contacts who entered {{ from }} to {{ until }}. Intervals are 95%. Money in {{ currency }}.</p></header>
<main>
<section aria-labelledby="programme"><h2 id="programme">What makes money, what to stop</h2>
<div class="scroll" tabindex="0"><table id="programme-table">
<caption class="muted">Incremental margin: what the messaged earned beyond the holdout, after discounts and sending. Its 95% interval holds however often the campaign is read (so it is wider than a one-off interval), and verdicts follow it.</caption>
<thead><tr><th scope="col">Campaign</th><th scope="col">Verdict</th><th scope="col">Entered</th><th scope="col">Held out</th><th scope="col">Messaged</th><th scope="col">Sent</th><th scope="col">Delivered</th><th scope="col">Not sent</th><th scope="col">Buyers</th><th scope="col">Incremental margin (95% at every look)</th><th scope="col">On one axis ({{ p.axis.left }} to {{ p.axis.right }})</th></tr></thead>
<tbody>{% for r in p.rows %}<tr data-campaign="{{ r.name }}"><th scope="row">{{ r.name }}</th><td class="verdict v-{{ r.verdict }}">{{ r.verdict_label }}</td><td>{{ r.entered }}</td><td>{{ r.held_out }}</td><td>{{ r.messaged }}</td><td>{{ r.sent }}</td><td>{{ r.delivered }}</td><td{% if r.dropped_reasons %} title="{{ r.dropped_reasons }}"{% endif %}>{{ r.dropped }}</td><td>{{ r.buyers }}</td>
<td>{% if r.margin %}<span class="{% if r.margin.negative %}bad{% elif r.margin.positive %}good{% endif %}">{{ r.margin.short }}</span>{% else %}–{% endif %}</td>
<td>{% if r.bar %}<svg width="{{ p.axis.width }}" height="14" role="img" aria-label="{{ r.margin.text }}"><line x1="{{ p.axis.zero }}" y1="0" x2="{{ p.axis.zero }}" y2="14" class="axis"/><line x1="{{ r.bar.low }}" y1="7" x2="{{ r.bar.high }}" y2="7" stroke-width="3" class="ci-{{ r.bar.tone }}"/><circle cx="{{ r.bar.est }}" cy="7" r="4" class="est-{{ r.bar.tone }}"/></svg>{% endif %}</td></tr>
{% endfor %}</tbody>
<tfoot><tr><th scope="row">{{ p.total.name }}</th><td>{{ p.total.verdict_label }}</td><td>{{ p.total.entered }}</td><td>{{ p.total.held_out }}</td><td>{{ p.total.messaged }}</td><td>{{ p.total.sent }}</td><td>{{ p.total.delivered }}</td><td>{{ p.total.dropped }}</td><td>{{ p.total.buyers }}</td><td>{% if p.total.margin %}<span class="{% if p.total.margin.negative %}bad{% elif p.total.margin.positive %}good{% endif %}">{{ p.total.margin.short }}</span>{% else %}–{% endif %}</td><td></td></tr></tfoot>
</table></div>
<ul id="verdicts">{% for r in p.rows %}<li><b>{{ r.name }}</b>: <span class="verdict v-{{ r.verdict }}">{{ r.verdict_label }}</span>, {{ r.why }}.{% if r.lift %} Reactivation against the holdout: {{ r.lift }}.{% endif %}</li>{% endfor %}</ul>
{% if p.total_note %}<p class="muted">{{ p.total_note }}</p>{% endif %}
</section>
{% for c in campaigns %}
<section aria-label="campaign {{ c.name }}">
<h2>{{ c.name }} <span class="muted">[{{ c.status }}]</span></h2>
<p>{{ c.description }}</p>
{% if not c.arms %}<p class="muted">Nobody entered in this period.</p>{% else %}
<div class="scroll" tabindex="0"><table><tr><th>arm</th><th>contacts</th><th>bought</th><th>rate</th><th>revenue</th><th>AOV</th><th>redeemed</th><th>discount</th><th>messages</th></tr>
{% for a in c.arms %}<tr><td>{{ a.label }}</td><td>{{ a.contacts }}</td><td>{{ a.converted }}</td><td>{{ a.rate }}</td><td>{{ a.revenue }}</td><td>{{ a.aov }}</td><td>{{ a.redeemed }}</td><td>{{ a.discount }}</td><td>{{ a.messages }}</td></tr>
{% endfor %}</table></div>
{% if c.intervals %}
<div class="scroll" tabindex="0"><svg width="640" height="{{ 30 + 26 * c.intervals|length }}" role="img" aria-label="reactivation-rate difference against the holdout: {% for i in c.intervals %}{{ i.label }} {{ i.text }}{% if not loop.last %}; {% endif %}{% endfor %}">
<line x1="{{ c.zero }}" y1="10" x2="{{ c.zero }}" y2="{{ 20 + 26 * c.intervals|length }}" stroke="#999" stroke-dasharray="3,3"/>
<text x="{{ c.zero + 3 }}" y="10">0</text>
{% for i in c.intervals %}
<text x="0" y="{{ 34 + 26 * loop.index0 }}">{{ i.label }}</text>
<line x1="{{ i.x_low }}" y1="{{ 30 + 26 * loop.index0 }}" x2="{{ i.x_high }}" y2="{{ 30 + 26 * loop.index0 }}" stroke="{{ i.colour }}" stroke-width="3"/>
<circle cx="{{ i.x }}" cy="{{ 30 + 26 * loop.index0 }}" r="5" fill="{{ i.colour }}"/>
<text x="{{ i.x_high + 6 }}" y="{{ 34 + 26 * loop.index0 }}">{{ i.text }}</text>
{% endfor %}</svg></div>
{% endif %}
{% for r in c.readouts %}<p><b>{{ r.label }}</b>: {% for line in r.lines %}{{ line }}<br>{% endfor %}</p>{% endfor %}
{% if c.winner %}<p class="{{ 'good' if c.winner_chosen else 'muted' }}">{{ c.winner }}</p>{% endif %}
{% if c.stay %}<h3>Did they stay?</h3><div class="scroll" tabindex="0"><table><thead><tr><th scope="col"></th><th scope="col">people</th><th scope="col">again in 30 d</th><th scope="col">90 d</th><th scope="col">180 d</th><th scope="col">lapsed again</th><th scope="col">revenue after</th><th scope="col">mean CLV</th></tr></thead><tbody>
{% for s in c.stay %}<tr><th scope="row">{{ s.label }}</th><td>{{ s.people }}</td><td>{{ s.again_30d }}</td><td>{{ s.again_90d }}</td><td>{{ s.again_180d }}</td><td>{{ s.lapsed_again }}</td><td>{{ s.revenue_after }}</td><td>{{ s.clv }}</td></tr>{% endfor %}
</tbody></table></div>{% if c.reward_only %}<p>Reward only: {{ c.reward_only }}</p>{% endif %}{% endif %}
{% if c.funnel %}
<div class="scroll" tabindex="0"><table><tr><th>step</th><th>variant</th><th>channel</th><th>sent</th><th>delivered</th><th>hard</th><th>soft</th><th>opened</th><th>machine opens</th><th>clicked</th><th>unsubscribed</th><th>spam</th></tr>
{% for f in c.funnel %}<tr><td>{{ f.step }}</td><td>{{ f.variant }}</td><td>{{ f.channel }}</td><td>{{ f.sent }}</td><td>{{ f.delivered }}</td><td>{{ f.hard_bounced }}</td><td>{{ f.soft_bounced }}</td><td>{{ f.opened_human }}</td><td>{{ f.opened_machine }}</td><td>{{ f.clicked }}</td><td>{{ f.unsubscribed }}</td><td>{{ f.complained }}</td></tr>
{% endfor %}</table></div>
{% endif %}{% endif %}
</section>
{% endfor %}
<section aria-labelledby="hygiene"><h2 id="hygiene">List hygiene</h2>
<div class="scroll" tabindex="0"><svg width="640" height="{{ 20 + 24 * hygiene_bars|length }}" role="img" aria-label="idle addresses: {% for b in hygiene_bars %}{{ b.label }} {{ b.text }}{% if not loop.last %}; {% endif %}{% endfor %}">
{% for b in hygiene_bars %}
<text x="0" y="{{ 18 + 24 * loop.index0 }}">{{ b.label }}</text>
<rect x="160" y="{{ 6 + 24 * loop.index0 }}" width="{{ b.width }}" height="16" fill="{{ b.colour }}"/>
<text x="{{ 166 + b.width }}" y="{{ 18 + 24 * loop.index0 }}">{{ b.text }}</text>
{% endfor %}</svg></div>
<p>{{ hygiene_text }}</p></section>
{% if stages %}<section aria-labelledby="base"><h2 id="base">Base health</h2>
<div class="scroll" tabindex="0"><svg width="640" height="60" role="img" aria-label="people per lifecycle stage: {% for s in stages %}{{ s.label }}{% if not loop.last %}, {% endif %}{% endfor %}">
{% for s in stages %}<rect x="{{ s.x }}" y="6" width="{{ s.width }}" height="22" fill="{{ s.colour }}"><title>{{ s.label }}</title></rect>{% endfor %}
</svg></div>
<p>{% for s in stages %}<span style="color:{{ s.colour }}">■</span> {{ s.label }} &nbsp; {% endfor %}</p>
</section>{% endif %}
</main>
<footer class="muted">Made by winback. Every figure here is also in <code>winback report --json</code>, <code>GET /v1/report</code> and the dashboard.</footer>
</body></html>
"##;

#[derive(Serialize)]
struct ArmRow {
    label: String,
    contacts: String,
    converted: String,
    rate: String,
    revenue: String,
    aov: String,
    redeemed: String,
    discount: String,
    messages: String,
}

#[derive(Serialize)]
struct IntervalBar {
    label: String,
    x: f64,
    x_low: f64,
    x_high: f64,
    colour: &'static str,
    text: String,
}

#[derive(Serialize)]
struct ReadoutText {
    label: String,
    lines: Vec<String>,
}

#[derive(Serialize)]
struct CampaignView<'a> {
    name: &'a str,
    description: &'a str,
    status: &'a str,
    arms: Vec<ArmRow>,
    intervals: Vec<IntervalBar>,
    zero: f64,
    readouts: Vec<ReadoutText>,
    winner: Option<String>,
    winner_chosen: bool,
    funnel: &'a [winback_store::MessageFunnel],
    stay: Vec<winback_report::present::StayRow>,
    reward_only: Option<String>,
}

#[derive(Serialize)]
struct Bar {
    label: String,
    width: f64,
    colour: &'static str,
    text: String,
    x: f64,
}

const PALETTE: [&str; 8] = [
    "#1a7f37", "#d29922", "#bf8700", "#cf222e", "#8250df", "#0969da", "#57606a", "#a40e26",
];

/// Renders the report as one HTML page.
pub fn render(r: &Report) -> Result<String> {
    let cur = &r.currency;
    let money = |m: i64| crate::report::money(m, cur);
    let mut campaigns = Vec::new();
    for c in &r.campaigns {
        let arms: Vec<ArmRow> = c
            .arms
            .iter()
            .filter(|a| a.contacts > 0)
            .map(|a| ArmRow {
                label: if a.holdout {
                    "holdout".into()
                } else {
                    a.variant.clone()
                },
                contacts: crate::report::n(a.contacts as u64),
                converted: crate::report::n(a.converted as u64),
                rate: winback_report::present::percent_of(a.converted as u64, a.contacts as u64),
                revenue: money(a.revenue_minor),
                aov: a
                    .average_order_minor
                    .map(money)
                    .unwrap_or_else(|| "-".into()),
                redeemed: crate::report::n(a.redeemed as u64),
                discount: money(a.discount_minor),
                messages: money(a.message_cost_minor),
            })
            .collect();
        // The interval chart spans the widest interval shown, and always zero.
        let readouts: Vec<(String, &winback_measure::Readout)> = c
            .arms
            .iter()
            .filter_map(|a| {
                a.readout
                    .as_ref()
                    .map(|x| (format!("variant {}", a.variant), x))
            })
            .chain(
                c.overall
                    .iter()
                    .filter(|_| c.arms.iter().filter(|a| !a.holdout).count() > 1)
                    .map(|x| ("all variants".to_owned(), x)),
            )
            .collect();
        let (mut lo, mut hi) = (0.0f64, 0.0f64);
        for (_, x) in &readouts {
            if let Some(d) = x.rate_difference {
                lo = lo.min(d.low);
                hi = hi.max(d.high);
            }
        }
        let span = (hi - lo).max(1e-9);
        let scale = |v: f64| 130.0 + (v - lo) / span * 330.0;
        let intervals = readouts
            .iter()
            .filter_map(|(label, x)| {
                let d = x.rate_difference?;
                Some(IntervalBar {
                    label: label.clone(),
                    x: scale(d.estimate),
                    x_low: scale(d.low),
                    x_high: scale(d.high),
                    colour: if d.positive() {
                        "#1a7f37"
                    } else if d.negative() {
                        "#cf222e"
                    } else {
                        "#57606a"
                    },
                    text: winback_report::present::Figure::points(&d).text,
                })
            })
            .collect();
        let (winner, chosen) = match &c.winner {
            Some(winback_measure::Winner::Chosen { reason, .. }) => {
                (Some(format!("Winner: {reason}")), true)
            }
            Some(winback_measure::Winner::NotYet { reason }) => {
                (Some(format!("No winner yet: {reason}")), false)
            }
            None => (None, false),
        };
        campaigns.push(CampaignView {
            name: &c.name,
            description: &c.description,
            status: &c.status,
            arms,
            intervals,
            zero: scale(0.0),
            readouts: readouts
                .iter()
                .map(|(label, x)| ReadoutText {
                    label: label.clone(),
                    lines: crate::kpi::readout_lines(x, cur, false),
                })
                .collect(),
            winner,
            winner_chosen: chosen,
            funnel: &c.messages,
            stay: winback_report::present::stay_rows(&c.stay, cur),
            reward_only: (c.stay.reactivated.reward_only.eligible > 0).then(|| {
                format!(
                    "{} of {} who came back with the campaign's code bought nothing more within 90 days.",
                    crate::report::n(c.stay.reactivated.reward_only.yes),
                    crate::report::n(c.stay.reactivated.reward_only.eligible)
                )
            }),
        });
    }
    let h = &r.hygiene;
    let share = |k: u64| {
        if h.addresses == 0 {
            0.0
        } else {
            k as f64 / h.addresses as f64
        }
    };
    let hygiene_bars: Vec<Bar> = [
        ("idle 6+ months", h.idle_6m, "#d29922"),
        ("idle 12+ months", h.idle_12m, "#cf222e"),
        ("idle 24+ months", h.idle_24m, "#a40e26"),
        ("never engaged", h.never_engaged, "#57606a"),
    ]
    .into_iter()
    .map(|(label, k, colour)| Bar {
        label: label.into(),
        width: 400.0 * share(k),
        colour,
        text: format!(
            "{} ({})",
            crate::report::n(k),
            winback_report::present::percent(share(k))
        ),
        x: 0.0,
    })
    .collect();
    let hygiene_text = format!(
        "{} people with an email address. Addresses idle 12 months or more are a spam-trap risk. Hard bounces suppressed: {}; complaints: {} ({:.3}% of {} emails); duplicates merged: {}; unsubscribed by sunset: {}; erased people: {}.",
        crate::report::n(h.addresses),
        crate::report::n(h.hard_bounces),
        crate::report::n(h.complaints),
        100.0 * h.complaint_rate,
        crate::report::n(h.emails_sent),
        crate::report::n(h.duplicates_merged),
        crate::report::n(h.sunset),
        crate::report::n(h.erased_profiles)
    );
    let total: i64 = r.base.stages.iter().map(|(_, k)| k).sum();
    let mut x = 0.0;
    let stages: Vec<Bar> = r
        .base
        .stages
        .iter()
        .enumerate()
        .map(|(i, (s, k))| {
            let width = 620.0 * *k as f64 / total.max(1) as f64;
            let bar = Bar {
                label: format!(
                    "{} {}",
                    winback_report::present::label(s),
                    winback_report::present::percent_of(*k as u64, total as u64)
                ),
                width,
                colour: PALETTE[i % PALETTE.len()],
                text: String::new(),
                x,
            };
            x += width;
            bar
        })
        .collect();
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_template("report.html", TEMPLATE)?;
    Ok(env.get_template("report.html")?.render(context! {
        as_of => r.as_of.date_local().to_string(),
        from => r.from.date_local().to_string(),
        until => r.until.date_local().to_string(),
        currency => &r.currency,
        campaigns,
        p => winback_report::present::programme(r),
        hygiene_bars,
        hygiene_text,
        stages,
    })?)
}

#[cfg(test)]
mod tests {
    use winback_domain::Timestamp;
    use winback_measure::{Arm, Economics, Readout};

    use winback_report::{ArmReport, CampaignReport, Report};

    fn arm(variant: &str, holdout: bool, contacts: i64, converted: i64) -> ArmReport {
        ArmReport {
            variant: variant.into(),
            holdout,
            contacts,
            messaged: if holdout { 0 } else { contacts },
            converted,
            orders: converted,
            revenue_minor: converted * 5_000,
            average_order_minor: Some(5_000),
            offers: 0,
            redeemed: 0,
            discount_minor: 0,
            message_cost_minor: 0,
            readout: None,
        }
    }

    #[test]
    fn the_html_report_escapes_names_and_draws_its_charts_without_script() {
        let evil = "<img src=x onerror=alert(1)>";
        let mut treated = arm("a", false, 2_000, 200);
        let t = Arm {
            contacts: 2_000,
            converted: 200,
            revenue_minor: 1_000_000,
            revenue_sq: 200.0 * 5_000f64.powi(2),
            ..Arm::default()
        };
        let h = Arm {
            contacts: 500,
            converted: 25,
            revenue_minor: 125_000,
            revenue_sq: 25.0 * 5_000f64.powi(2),
            ..Arm::default()
        };
        treated.readout = Some(Readout::new(
            t,
            h,
            Economics {
                margin: 0.4,
                ..Economics::default()
            },
        ));
        let mut report = Report {
            as_of: Timestamp::EPOCH,
            from: Timestamp::EPOCH,
            until: Timestamp::EPOCH,
            currency: "EUR".into(),
            margin: 0.4,
            campaigns: vec![CampaignReport {
                name: evil.into(),
                description: format!("{evil} & friends"),
                status: "active".into(),
                window_days: 30.0,
                arms: vec![treated, arm("a", true, 500, 25)],
                overall: None,
                messages: vec![],
                journey: vec![],
                journey_version: 1,
                journey_other_versions: 0,
                by_locale: vec![],
                results_by_locale: vec![],
                results_by_provider: vec![],
                deliverability: vec![],
                winner: None,
                dropped_by_reason: Default::default(),
                stay: Default::default(),
                exports: vec![],
                wallet: None,
                summary: Default::default(),
            }],
            hygiene: Default::default(),
            base: winback_report::BaseHealth {
                stages: vec![("active".into(), 3), ("lapsed".into(), 1)],
                ..Default::default()
            },
            providers: vec![],
            transport_pauses: Vec::new(),
            total: winback_report::summary::ProgrammeTotal::new(&[], "EUR"),
            deliverability: vec![],
        };
        let c = &mut report.campaigns[0];
        c.summary = winback_report::summary::CampaignSummary::new(c, "EUR");
        report.total = winback_report::summary::ProgrammeTotal::new(
            &[report.campaigns[0].summary.clone()],
            "EUR",
        );
        let html = super::render(&report).unwrap();
        // Landmarks, and the programme table with the campaign's verdict.
        for landmark in ["<header>", "<main>", "<footer"] {
            assert!(html.contains(landmark), "{landmark}");
        }
        assert!(html.contains("id=\"programme-table\""));
        assert!(!html.contains(evil), "unescaped");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!html.contains("<script"), "no script at all");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing loaded from elsewhere"
        );
        assert!(html.contains("<svg"), "charts are inline SVG");
        assert!(
            html.contains("+5.0 points (95% CI"),
            "the interval chart labels the lift"
        );
        assert!(html.contains("active 75.0%"));
    }
}
