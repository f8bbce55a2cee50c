//! `winback-synth` generates realistic, deterministic shops for the demo, tests and benchmarks.
//!
//! Purchases follow a buy-till-you-die process (the BG/NBD story): each customer buys at their
//! own rate (category cycle × a Gamma-distributed personal factor) and, after each purchase,
//! leaves for good with their own probability (Beta-distributed). That yields one-time buyers,
//! loyal customers and customers who lapse, with category repurchase cycles (beauty ~2 months,
//! books ~4, fashion ~6, household appliances ~2 years). Email engagement decays after a
//! customer leaves; Apple Mail Privacy Protection users open every mail within seconds
//! (machine opens). Some customers order under a second email address, linked to the first
//! only by phone or by postal address and family name (seed 000). Locales are nl, pl and en
//! with their time zones; consent, complaints, referrals, loyalty points, surveys, carts,
//! bounces and unsubscribes are mixed in. The same seed and `as_of` give the same files.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma, LogNormal};
use winback_domain::Timestamp;

const DAY: i64 = 86_400;

/// What to generate.
#[derive(Debug, Clone)]
pub struct ShopSpec {
    /// Customers (people; duplicate records come on top).
    pub customers: u64,
    /// Random seed.
    pub seed: u64,
    /// The shop's "now": history ends here.
    pub as_of: Timestamp,
    /// Years of history.
    pub years: u32,
    /// Write `events.jsonl`.
    pub events: bool,
    /// Write `order_items.csv`.
    pub items: bool,
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShopStats {
    /// People.
    pub people: u64,
    /// Customer records (people plus second identities).
    pub customer_records: u64,
    /// People with a second identity.
    pub duplicates: u64,
    /// Orders.
    pub orders: u64,
    /// Order lines.
    pub items: u64,
    /// Events.
    pub events: u64,
    /// People still "alive" at `as_of` in the generating process (ground truth).
    pub alive: u64,
    /// People with exactly one order.
    pub one_time_buyers: u64,
}

/// The files of a generated shop.
#[derive(Debug, Clone)]
pub struct ShopFiles {
    /// `customers.csv`
    pub customers: PathBuf,
    /// `orders.csv`
    pub orders: PathBuf,
    /// `order_items.csv`, when generated.
    pub items: Option<PathBuf>,
    /// `events.jsonl`, when generated.
    pub events: Option<PathBuf>,
    /// `truth.csv`: each person's hidden rate, dropout probability and whether they are alive.
    pub truth: PathBuf,
}

struct Category {
    name: &'static str,
    /// Mean days between purchases while active.
    cycle_days: f64,
    /// Mean order value in cents.
    mean_value: f64,
    products: &'static [&'static str],
}

const CATEGORIES: [(Category, f64); 4] = [
    (
        Category {
            name: "fashion",
            cycle_days: 180.0,
            mean_value: 6500.0,
            products: &["Linen shirt", "Wool scarf", "Denim jacket", "Summer dress"],
        },
        0.40,
    ),
    (
        Category {
            name: "beauty",
            cycle_days: 60.0,
            mean_value: 3200.0,
            products: &["Day cream", "Shampoo", "Lip balm", "Serum"],
        },
        0.30,
    ),
    (
        Category {
            name: "books",
            cycle_days: 120.0,
            mean_value: 2400.0,
            products: &["Novel", "Cookbook", "Travel guide", "Comic"],
        },
        0.15,
    ),
    (
        Category {
            name: "household appliances",
            cycle_days: 720.0,
            mean_value: 18_000.0,
            products: &["Kettle", "Blender", "Vacuum cleaner", "Toaster"],
        },
        0.15,
    ),
];

struct Locale {
    code: &'static str,
    zones: &'static [&'static str],
    country: &'static str,
    first: &'static [&'static str],
    last: &'static [&'static str],
    streets: &'static [&'static str],
    cities: &'static [&'static str],
}

const LOCALES: [(Locale, f64); 3] = [
    (
        Locale {
            code: "nl",
            zones: &["Europe/Amsterdam"],
            country: "NL",
            first: &[
                "Anna", "Daan", "Sanne", "Lars", "Emma", "Bram", "Fleur", "Joris", "Lotte",
                "Thijs", "Noor", "Sem",
            ],
            last: &[
                "de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder",
                "Bos", "Vos", "Peters", "Hendriks",
            ],
            streets: &[
                "Keizersgracht",
                "Dorpsstraat",
                "Kerkstraat",
                "Molenweg",
                "Stationsplein",
                "Lindelaan",
            ],
            cities: &[
                "Amsterdam",
                "Utrecht",
                "Gouda",
                "Zwolle",
                "Groningen",
                "Haarlem",
            ],
        },
        0.60,
    ),
    (
        Locale {
            code: "pl",
            zones: &["Europe/Warsaw"],
            country: "PL",
            first: &[
                "Anna",
                "Piotr",
                "Katarzyna",
                "Tomasz",
                "Zofia",
                "Jakub",
                "Maria",
                "Łukasz",
                "Agnieszka",
                "Michał",
            ],
            last: &[
                "Nowak",
                "Kowalski",
                "Wiśniewska",
                "Wójcik",
                "Kamińska",
                "Lewandowski",
                "Zielińska",
                "Szymański",
            ],
            streets: &[
                "ul. Długa",
                "ul. Polna",
                "ul. Leśna",
                "ul. Słoneczna",
                "ul. Krótka",
            ],
            cities: &["Warszawa", "Kraków", "Gdańsk", "Poznań", "Wrocław"],
        },
        0.25,
    ),
    (
        Locale {
            code: "en",
            zones: &["Europe/London", "Europe/London", "America/New_York"],
            country: "GB",
            first: &[
                "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Mia",
            ],
            last: &[
                "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans",
            ],
            streets: &["High Street", "Station Road", "Church Lane", "Park Avenue"],
            cities: &["London", "Leeds", "Bristol", "York"],
        },
        0.15,
    ),
];

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [(T, f64)]) -> &'a T {
    let mut x: f64 = rng.r#gen();
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

fn one<'a>(rng: &mut ChaCha8Rng, items: &'a [&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

/// The columns of `orders.csv`, as a shop's export has them.
const ORDER_COLUMNS: [&str; 10] = [
    "order_id",
    "customer_id",
    "ordered_at",
    "total",
    "currency",
    "discount",
    "discount_codes",
    "status",
    "category",
    "item_count",
];

/// The columns of `order_items.csv`.
const ITEM_COLUMNS: [&str; 7] = [
    "order_id",
    "sku",
    "name",
    "category",
    "quantity",
    "unit_price",
    "currency",
];

/// Writes an order's `n_items` lines, one product each from its category, splitting `value`
/// (minor units) so that the lines add up to it; returns how many were written.
fn write_lines<W: Write>(
    w: &mut csv::Writer<W>,
    rng: &mut ChaCha8Rng,
    order_id: &str,
    cat: &Category,
    value: i64,
    n_items: u32,
) -> io::Result<u64> {
    let mut left = value;
    for line in 0..n_items {
        let price = if line + 1 == n_items {
            left
        } else {
            left / i64::from(n_items - line)
        };
        left -= price;
        let product = one(rng, cat.products);
        w.write_record([
            order_id,
            &format!("{}-{}", &cat.name[..2].to_uppercase(), product.len()),
            product,
            cat.name,
            "1",
            &money(price),
            "EUR",
        ])?;
    }
    Ok(u64::from(n_items))
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn iso(secs: i64) -> String {
    Timestamp::from_micros(secs * 1_000_000)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Writes `customers.csv`, `orders.csv` and, as asked, `order_items.csv`, `events.jsonl` and
/// `truth.csv` into `dir`.
pub fn generate(spec: &ShopSpec, dir: &Path) -> io::Result<(ShopFiles, ShopStats)> {
    std::fs::create_dir_all(dir)?;
    let files = ShopFiles {
        customers: dir.join("customers.csv"),
        orders: dir.join("orders.csv"),
        items: spec.items.then(|| dir.join("order_items.csv")),
        events: spec.events.then(|| dir.join("events.jsonl")),
        truth: dir.join("truth.csv"),
    };
    let mut customers = csv::Writer::from_writer(BufWriter::with_capacity(
        1 << 20,
        File::create(&files.customers)?,
    ));
    customers.write_record([
        "customer_id",
        "email",
        "phone",
        "first_name",
        "last_name",
        "address1",
        "postal_code",
        "city",
        "country",
        "time_zone",
        "locale",
        "created_at",
        "email_consent",
        "email_consent_at",
        "sms_consent",
        "sms_consent_at",
        "loyalty_member",
    ])?;
    let mut orders = csv::Writer::from_writer(BufWriter::with_capacity(
        1 << 20,
        File::create(&files.orders)?,
    ));
    orders.write_record(ORDER_COLUMNS)?;
    let mut items = match &files.items {
        Some(p) => {
            let mut w =
                csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, File::create(p)?));
            w.write_record(ITEM_COLUMNS)?;
            Some(w)
        }
        None => None,
    };
    let mut events = match &files.events {
        Some(p) => Some(BufWriter::with_capacity(1 << 20, File::create(p)?)),
        None => None,
    };
    let mut truth = csv::Writer::from_writer(BufWriter::new(File::create(&files.truth)?));
    truth.write_record(["customer_id", "daily_rate", "dropout_p", "alive", "orders"])?;

    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let now = spec.as_of.as_micros() / 1_000_000;
    let start = now - i64::from(spec.years.max(1)) * 365 * DAY;
    let rate_factor = Gamma::new(2.0, 0.5).expect("valid");
    let dropout = Beta::new(1.2, 3.0).expect("valid");
    let value_factor = Gamma::new(4.0, 0.25).expect("valid");
    let personal_value = LogNormal::new(0.0, 0.4).expect("valid");
    let mut stats = ShopStats {
        people: spec.customers,
        ..ShopStats::default()
    };
    let mut order_no = 0u64;
    let mut event_no = 0u64;

    for i in 1..=spec.customers {
        let loc = pick(&mut rng, &LOCALES);
        let cat = pick(&mut rng, &CATEGORIES);
        let id = format!("C{i:07}");
        let first = one(&mut rng, loc.first);
        let last = one(&mut rng, loc.last);
        let email = format!(
            "{}.{}{}@{}",
            deaccent(first),
            deaccent(last).replace(' ', ""),
            rng.gen_range(1..999),
            one(
                &mut rng,
                &[
                    "gmail.com",
                    "outlook.com",
                    "icloud.com",
                    "ziggo.nl",
                    "wp.pl",
                    "onet.pl",
                    "yahoo.com"
                ]
            )
        );
        let phone = match loc.code {
            "nl" if rng.gen_bool(0.6) => format!(
                "06-{}{:07}",
                rng.gen_range(1..=5),
                rng.gen_range(0..10_000_000)
            ),
            "pl" if rng.gen_bool(0.6) => {
                format!(
                    "+48 {} {:03} {:04}",
                    one(
                        &mut rng,
                        &[
                            "50", "51", "53", "57", "60", "66", "69", "72", "73", "78", "79", "88"
                        ]
                    ),
                    rng.gen_range(0..1000),
                    rng.gen_range(0..10_000)
                )
            }
            _ => String::new(),
        };
        let (street, postal) = match loc.code {
            "nl" => (
                format!("{} {}", one(&mut rng, loc.streets), rng.gen_range(1..200)),
                format!(
                    "{} {}{}",
                    rng.gen_range(1000..9999),
                    letter(&mut rng),
                    letter(&mut rng)
                ),
            ),
            "pl" => (
                format!("{} {}", one(&mut rng, loc.streets), rng.gen_range(1..120)),
                format!("{:02}-{:03}", rng.gen_range(0..99), rng.gen_range(0..999)),
            ),
            _ => (
                format!("{} {}", rng.gen_range(1..300), one(&mut rng, loc.streets)),
                format!(
                    "E{} {}{}{}",
                    rng.gen_range(1..20),
                    rng.gen_range(1..9),
                    letter(&mut rng),
                    letter(&mut rng)
                ),
            ),
        };
        let city = one(&mut rng, loc.cities);
        let zone = one(&mut rng, loc.zones);
        let apple_user = rng.gen_bool(if loc.code == "pl" { 0.10 } else { 0.30 });

        // The buy-till-you-die process.
        let subscriber_only = rng.gen_bool(0.08);
        let daily_rate = rate_factor.sample(&mut rng) / cat.cycle_days;
        let p_drop: f64 = dropout.sample(&mut rng);
        let mean_value = cat.mean_value * personal_value.sample(&mut rng);
        let first_at = rng.gen_range(start..now - DAY);
        let signed_up = first_at - rng.gen_range(0..30 * DAY);
        let mut purchases: Vec<i64> = Vec::new();
        let mut alive = true;
        if !subscriber_only {
            let mut t = first_at;
            let gap = Exp::new(daily_rate).expect("positive rate");
            while t < now {
                purchases.push(t);
                if rng.gen_bool(p_drop) {
                    alive = false;
                    break;
                }
                t += (gap.sample(&mut rng) * DAY as f64) as i64 + DAY / 2;
            }
        } else {
            alive = rng.gen_bool(0.5);
        }
        let death = if alive {
            now
        } else {
            purchases.last().copied().unwrap_or(signed_up) + rng.gen_range(0..60 * DAY)
        };
        stats.alive += u64::from(alive);
        stats.one_time_buyers += u64::from(purchases.len() == 1);

        // A second identity: orders after the switch go to another email address (seed 000).
        let duplicate = purchases.len() >= 2 && rng.gen_bool(0.06);
        let alt_id = format!("{id}-B");
        let switch_at = if duplicate {
            purchases[purchases.len() / 2]
        } else {
            i64::MAX
        };
        let email_consent = match rng.gen_range(0..100) {
            0..=64 => "opt_in",
            65..=89 => "soft_opt_in",
            90..=96 => "none",
            _ => "withdrawn",
        };
        let sms_consent = if !phone.is_empty() && rng.gen_bool(0.35) {
            "opt_in"
        } else {
            ""
        };
        let loyalty = rng.gen_bool(0.4);
        let sms_at = if sms_consent.is_empty() {
            String::new()
        } else {
            iso(signed_up)
        };
        customers.write_record([
            id.as_str(),
            &email,
            &phone,
            first,
            last,
            &street,
            &postal,
            city,
            loc.country,
            zone,
            loc.code,
            &iso(signed_up),
            email_consent,
            &iso(signed_up),
            sms_consent,
            &sms_at,
            if loyalty { "yes" } else { "no" },
        ])?;
        stats.customer_records += 1;
        if duplicate {
            stats.duplicates += 1;
            stats.customer_records += 1;
            // Linked by phone when there is one, else by address and family name.
            let alt_email = format!(
                "{}.{}@work-mail.example",
                deaccent(first),
                rng.gen_range(1000..9999)
            );
            let alt_phone = phone.clone();
            customers.write_record([
                alt_id.as_str(),
                &alt_email,
                &alt_phone,
                first,
                last,
                &street,
                &postal,
                city,
                loc.country,
                zone,
                loc.code,
                &iso(switch_at - DAY),
                "soft_opt_in",
                &iso(switch_at - DAY),
                "",
                "",
                "no",
            ])?;
        }

        let mut ev = |w: &mut Option<BufWriter<File>>,
                      who: &str,
                      at: i64,
                      body: serde_json::Value|
         -> io::Result<()> {
            if let Some(w) = w.as_mut() {
                event_no += 1;
                let mut obj = serde_json::json!({"event_id": format!("ev{event_no}"), "customer_id": who, "at": iso(at)});
                if let (Some(o), serde_json::Value::Object(b)) = (obj.as_object_mut(), body) {
                    o.extend(b);
                }
                serde_json::to_writer(&mut *w, &obj)?;
                w.write_all(b"\n")?;
                stats.events += 1;
            }
            Ok(())
        };

        let complaint_order = if !purchases.is_empty() && rng.gen_bool(0.03) {
            Some(rng.gen_range(0..purchases.len()))
        } else {
            None
        };
        for (k, &t) in purchases.iter().enumerate() {
            order_no += 1;
            let who = if t >= switch_at {
                alt_id.as_str()
            } else {
                id.as_str()
            };
            let value = ((mean_value * value_factor.sample(&mut rng)) as i64).max(100);
            let coded = rng.gen_bool(0.12);
            let discount = if coded { value / 10 } else { 0 };
            let status = match rng.gen_range(0..100) {
                0..=2 => "refunded",
                3 => "cancelled",
                _ => "paid",
            };
            let n_items = rng.gen_range(1..=3u32);
            let order_id = format!("O{order_no:09}");
            orders.write_record([
                order_id.as_str(),
                who,
                &iso(t),
                &money(value - discount),
                "EUR",
                &money(discount),
                if coded { "WELCOME10" } else { "" },
                status,
                cat.name,
                &n_items.to_string(),
            ])?;
            stats.orders += 1;
            if let Some(w) = items.as_mut() {
                stats.items += write_lines(w, &mut rng, &order_id, cat, value, n_items)?;
            }
            ev(
                &mut events,
                who,
                t - rng.gen_range(600..7200),
                serde_json::json!({"type": "site_visited", "url": format!("/{}", cat.name.replace(' ', "-"))}),
            )?;
            if loyalty {
                ev(
                    &mut events,
                    who,
                    t + 60,
                    serde_json::json!({"type": "loyalty_points_changed", "delta": value / 100}),
                )?;
            }
            if complaint_order == Some(k) {
                ev(
                    &mut events,
                    who,
                    t + 5 * DAY,
                    serde_json::json!({"type": "complaint_opened", "complaint_id": format!("K{order_no}")}),
                )?;
                if rng.gen_bool(0.7) {
                    ev(
                        &mut events,
                        who,
                        t + 12 * DAY,
                        serde_json::json!({"type": "complaint_resolved", "complaint_id": format!("K{order_no}"), "satisfied": rng.gen_bool(0.75)}),
                    )?;
                }
            }
        }
        if !purchases.is_empty() && rng.gen_bool(0.06) {
            let t = rng.gen_range(purchases[0]..=now.min(death.max(purchases[0])));
            ev(
                &mut events,
                &id,
                t,
                serde_json::json!({"type": "referral_made"}),
            )?;
        }
        // Newsletter every two weeks over the last year, with engagement that decays after leaving.
        if events.is_some() && email_consent != "withdrawn" && email_consent != "none" {
            let hard_bounce = rng.gen_bool(0.01);
            let mut send = now - 365 * DAY + rng.gen_range(0..14 * DAY);
            let mut unsubscribed = false;
            while send < now && !unsubscribed {
                let msg = format!("nl-{}", send / (14 * DAY));
                if hard_bounce {
                    ev(
                        &mut events,
                        &id,
                        send + 5,
                        serde_json::json!({"type": "email_bounced", "bounce": "hard", "message_id": msg}),
                    )?;
                    break;
                }
                ev(
                    &mut events,
                    &id,
                    send + 2,
                    serde_json::json!({"type": "email_delivered", "message_id": msg}),
                )?;
                if apple_user {
                    ev(
                        &mut events,
                        &id,
                        send + rng.gen_range(3..9),
                        serde_json::json!({"type": "email_opened", "message_id": msg, "user_agent": "Mozilla/5.0"}),
                    )?;
                }
                let months_gone = ((send - death).max(0) as f64) / (30.0 * DAY as f64);
                let p_open = if send < death {
                    0.35
                } else {
                    0.35 * (-months_gone / 3.0).exp()
                };
                if rng.gen_bool(p_open) {
                    let opened = send + rng.gen_range(1800..3 * DAY);
                    ev(
                        &mut events,
                        &id,
                        opened,
                        serde_json::json!({"type": "email_opened", "message_id": msg, "user_agent": "Mozilla/5.0 (Windows NT 10.0) Thunderbird/115.0"}),
                    )?;
                    if rng.gen_bool(0.25) {
                        ev(
                            &mut events,
                            &id,
                            opened + 20,
                            serde_json::json!({"type": "email_clicked", "message_id": msg, "url": "https://shop.example/new"}),
                        )?;
                        if rng.gen_bool(0.1) {
                            ev(
                                &mut events,
                                &id,
                                opened + 300,
                                serde_json::json!({"type": "cart_abandoned", "value_minor": (mean_value as i64).max(100), "currency": "EUR"}),
                            )?;
                        }
                    }
                }
                if send > death && rng.gen_bool(0.01) {
                    ev(
                        &mut events,
                        &id,
                        send + DAY,
                        serde_json::json!({"type": "email_unsubscribed", "message_id": msg}),
                    )?;
                    unsubscribed = true;
                }
                send += 14 * DAY;
            }
        }
        if !alive && rng.gen_bool(0.02) {
            let reason = one(
                &mut rng,
                &[
                    "too_expensive",
                    "bad_experience",
                    "hard_to_understand",
                    "forgot_us",
                    "quality",
                    "other",
                ],
            );
            ev(
                &mut events,
                &id,
                now - rng.gen_range(DAY..90 * DAY),
                serde_json::json!({"type": "survey_answered", "reason": reason}),
            )?;
        }
        truth.write_record([
            id.as_str(),
            &format!("{daily_rate:.6}"),
            &format!("{p_drop:.4}"),
            if alive { "1" } else { "0" },
            &purchases.len().to_string(),
        ])?;
    }
    customers.flush()?;
    orders.flush()?;
    if let Some(w) = items.as_mut() {
        w.flush()?;
    }
    if let Some(w) = events.as_mut() {
        w.flush()?;
    }
    truth.flush()?;
    Ok((files, stats))
}

/// One simulated day's files of an existing shop ([`daily_delta`]).
#[derive(Debug, Clone)]
pub struct DayFiles {
    /// `day-orders.csv`: the day's orders, in the shop export's columns.
    pub orders: PathBuf,
    /// `day-order_items.csv`: their lines.
    pub items: PathBuf,
    /// `day-events.jsonl`: half the day's engagement, for `winback import events`.
    pub events: PathBuf,
    /// `day-api-events.ndjson`: the other half, in the `/v1/events` body's shape.
    pub api_events: PathBuf,
}

/// What [`daily_delta`] wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct DayStats {
    /// Orders.
    pub orders: u64,
    /// Order lines.
    pub items: u64,
    /// Events in the file.
    pub file_events: u64,
    /// Events for the API.
    pub api_events: u64,
}

/// One day of an existing shop of `customers` (ids `C0000001`…, as [`generate`] writes them):
/// about 1% of customers order and about 10% engage (email opens and clicks, site visits), all
/// within the 24 hours from `day`. Order and event ids carry the day, so the same day written
/// twice is the same data, and another day never collides with the history.
pub fn daily_delta(
    customers: u64,
    seed: u64,
    day: Timestamp,
    dir: &Path,
) -> io::Result<(DayFiles, DayStats)> {
    std::fs::create_dir_all(dir)?;
    let files = DayFiles {
        orders: dir.join("day-orders.csv"),
        items: dir.join("day-order_items.csv"),
        events: dir.join("day-events.jsonl"),
        api_events: dir.join("day-api-events.ndjson"),
    };
    let start = day.as_micros().div_euclid(1_000_000);
    let tag = start.div_euclid(DAY);
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (tag as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut orders = csv::Writer::from_writer(BufWriter::with_capacity(
        1 << 20,
        File::create(&files.orders)?,
    ));
    orders.write_record(ORDER_COLUMNS)?;
    let mut items = csv::Writer::from_writer(BufWriter::with_capacity(
        1 << 20,
        File::create(&files.items)?,
    ));
    items.write_record(ITEM_COLUMNS)?;
    let mut events = BufWriter::with_capacity(1 << 20, File::create(&files.events)?);
    let mut api = BufWriter::with_capacity(1 << 20, File::create(&files.api_events)?);
    let mut stats = DayStats::default();
    let value_factor = LogNormal::new(0.0, 0.4).expect("valid lognormal");
    for i in 1..=customers {
        let id = format!("C{i:07}");
        if rng.gen_bool(0.01) {
            stats.orders += 1;
            let cat = pick(&mut rng, &CATEGORIES);
            let at = start + rng.gen_range(0..DAY);
            let value = ((cat.mean_value * value_factor.sample(&mut rng)) as i64).max(100);
            let n_items = rng.gen_range(1..=3u32);
            let order_id = format!("D{tag}-{}", stats.orders);
            orders.write_record([
                order_id.as_str(),
                &id,
                &iso(at),
                &money(value),
                "EUR",
                &money(0),
                "",
                "paid",
                cat.name,
                &n_items.to_string(),
            ])?;
            stats.items += write_lines(&mut items, &mut rng, &order_id, cat, value, n_items)?;
        }
        if rng.gen_bool(0.10) {
            let at = start + rng.gen_range(0..DAY);
            let message = format!("day{tag}-{i}");
            let mut kinds = vec![
                serde_json::json!({"type": "email_opened", "message_id": message, "user_agent": "Mozilla/5.0"}),
            ];
            if rng.gen_bool(0.3) {
                kinds.push(serde_json::json!({"type": "email_clicked", "message_id": message, "url": "https://shop.example/new"}));
            }
            if rng.gen_bool(0.5) {
                kinds.push(serde_json::json!({"type": "site_visited", "url": "/new"}));
            }
            for (k, body) in kinds.into_iter().enumerate() {
                let event_id = format!("day{tag}-{i}-{k}");
                let at = iso(at + 60 * k as i64);
                // Every other customer's engagement arrives through the API.
                let (w, key, n) = if i % 2 == 0 {
                    (&mut api, "occurred_at", &mut stats.api_events)
                } else {
                    (&mut events, "at", &mut stats.file_events)
                };
                let mut obj = serde_json::json!({"event_id": event_id, "customer_id": id});
                if let (Some(o), serde_json::Value::Object(b)) = (obj.as_object_mut(), body) {
                    o.insert(key.into(), at.into());
                    o.extend(b);
                }
                serde_json::to_writer(&mut *w, &obj)?;
                w.write_all(b"\n")?;
                *n += 1;
            }
        }
    }
    orders.flush()?;
    items.flush()?;
    events.flush()?;
    api.flush()?;
    Ok((files, stats))
}

/// Writes an `orders.csv` of exactly `n` orders (no other files): the import benchmark's input.
pub fn orders_only(n: u64, seed: u64, as_of: Timestamp, path: &Path) -> io::Result<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut w = csv::Writer::from_writer(BufWriter::with_capacity(1 << 22, File::create(path)?));
    w.write_record([
        "order_id",
        "customer_id",
        "ordered_at",
        "total",
        "currency",
        "status",
        "category",
    ])?;
    let now = as_of.as_micros() / 1_000_000;
    let customers = (n / 4).max(1);
    for i in 1..=n {
        let c = rng.gen_range(1..=customers);
        let t = now - rng.gen_range(0..3 * 365 * DAY);
        let cat = &CATEGORIES[rng.gen_range(0..CATEGORIES.len())].0;
        let value = rng.gen_range(100..(cat.mean_value as i64 * 2));
        w.write_record([
            format!("O{i:010}").as_str(),
            &format!("C{c:08}"),
            &iso(t),
            &money(value),
            "EUR",
            "paid",
            cat.name,
        ])?;
    }
    w.flush()?;
    Ok(n)
}

/// `n` customer histories `(x, t_x, T)` in weeks, drawn from a BG/NBD process with parameters
/// `(r, alpha, a, b)` (alpha in weeks): each customer is acquired 1 to 78 weeks before the end,
/// buys at rate λ ~ Gamma(r, 1/alpha) while alive, and drops out after each purchase with
/// probability p ~ Beta(a, b). Times are whole days, as shop data is. For model benchmarks.
pub fn bgnbd_histories(n: usize, params: [f64; 4], seed: u64) -> Vec<(f64, f64, f64)> {
    let [r, alpha, a, b] = params;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rate = Gamma::new(r, 1.0 / alpha).expect("valid BG/NBD parameters");
    let dropout = Beta::new(a, b).expect("valid BG/NBD parameters");
    (0..n)
        .map(|_| {
            let t_days = rng.gen_range(7..=546) as f64;
            let lambda_per_day = rate.sample(&mut rng) / 7.0;
            let p: f64 = dropout.sample(&mut rng);
            let (mut x, mut last, mut now) = (0u32, 0.0f64, 0.0f64);
            if lambda_per_day > 0.0 {
                loop {
                    let u: f64 = rng.r#gen::<f64>().max(f64::MIN_POSITIVE);
                    now += -u.ln() / lambda_per_day;
                    let day = now.floor();
                    if day > t_days {
                        break;
                    }
                    if day > last {
                        x += 1;
                        last = day;
                    }
                    if rng.gen_bool(p.clamp(0.0, 1.0)) {
                        break;
                    }
                }
            }
            (f64::from(x), last / 7.0, t_days / 7.0)
        })
        .collect()
}

fn letter(rng: &mut ChaCha8Rng) -> char {
    (b'A' + rng.gen_range(0..26)) as char
}

fn deaccent(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ł' | 'Ł' => 'l',
            'ś' => 's',
            'ń' => 'n',
            'ó' => 'o',
            'ż' | 'ź' => 'z',
            'ą' => 'a',
            'ę' => 'e',
            'ć' => 'c',
            other => other,
        })
        .filter(|c| c.is_ascii_alphanumeric() || *c == ' ')
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64) -> ShopSpec {
        ShopSpec {
            customers: 400,
            seed,
            as_of: Timestamp::from_micros(1_717_200_000_000_000).unwrap(),
            years: 3,
            events: true,
            items: true,
        }
    }

    #[test]
    fn same_seed_same_shop_and_realistic_mix() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (fa, sa) = generate(&spec(7), a.path()).unwrap();
        let (fb, sb) = generate(&spec(7), b.path()).unwrap();
        assert_eq!(sa, sb);
        for (x, y) in [(&fa.customers, &fb.customers), (&fa.orders, &fb.orders)] {
            assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
        }
        assert_eq!(
            std::fs::read(fa.events.unwrap()).unwrap(),
            std::fs::read(fb.events.unwrap()).unwrap()
        );
        let (_, other) = generate(&spec(8), b.path()).unwrap();
        assert_ne!(other, sa, "another seed, another shop");
        // The mix the demo relies on: one-time buyers, lapsed and alive customers, duplicates.
        assert!(
            sa.one_time_buyers > 40 && sa.one_time_buyers < 250,
            "{sa:?}"
        );
        assert!(sa.alive > 40 && sa.alive < 360, "{sa:?}");
        assert!(sa.duplicates > 0, "{sa:?}");
        assert!(sa.orders > sa.people, "{sa:?}");
    }

    #[test]
    fn orders_only_writes_exactly_n_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.csv");
        orders_only(
            1234,
            1,
            Timestamp::from_micros(1_717_200_000_000_000).unwrap(),
            &p,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 1235);
    }

    #[test]
    fn a_day_is_one_percent_ordering_ten_percent_engaging_within_the_day_and_repeatable() {
        let day = Timestamp::from_micros(1_717_243_200_000_000).unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (files, stats) = daily_delta(20_000, 7, day, a.path()).unwrap();
        let (_, again) = daily_delta(20_000, 7, day, b.path()).unwrap();
        assert_eq!(
            std::fs::read(&files.orders).unwrap(),
            std::fs::read(b.path().join("day-orders.csv")).unwrap(),
            "the same day twice is the same data"
        );
        assert_eq!(stats.orders, again.orders);
        // 1% of 20,000 order (binomial: 200 ± 3σ ≈ 42).
        assert!((158..=242).contains(&stats.orders), "{stats:?}");
        // Every engaged customer opens; ~10% engage.
        let text = std::fs::read_to_string(&files.events).unwrap()
            + &std::fs::read_to_string(&files.api_events).unwrap();
        let opens = text.matches("email_opened").count();
        assert!((1_800..=2_200).contains(&opens), "{opens}");
        let start = day.as_micros() / 1_000_000;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let at = v["at"].as_str().or(v["occurred_at"].as_str()).unwrap();
            let t = at.parse::<jiff::Timestamp>().unwrap().as_second();
            assert!((start..start + DAY + 600).contains(&t), "{line}");
            assert!(v["customer_id"].as_str().unwrap().starts_with('C'));
        }
        let mut rows = csv::Reader::from_path(&files.orders).unwrap();
        for r in rows.records() {
            let r = r.unwrap();
            assert!(
                r[0].starts_with('D'),
                "order ids cannot collide with the history"
            );
        }
    }
}
