//! Integration tests of the importers on files as shops export them.

use std::{io::Cursor, path::PathBuf, sync::Arc};

use winback_domain::{ConsentStatus, EventKind, OrderStatus, Timestamp};
use winback_import::{
    ImportOptions, Item, Mapping, ParsedRow, Rejected, SourceKind, from_reader, open,
};

fn opts() -> ImportOptions {
    let mut o = ImportOptions::new(Timestamp::from_micros(1_700_000_000_000_000).unwrap());
    o.default_time_zone = winback_domain::TimeZoneName::parse("Europe/Amsterdam").unwrap();
    o
}

fn parse(kind: SourceKind, name: &str, text: &str) -> (Vec<ParsedRow>, Vec<Rejected>) {
    parse_with(kind, name, text, &opts(), None)
}

fn parse_with(
    kind: SourceKind,
    name: &str,
    text: &str,
    o: &ImportOptions,
    m: Option<&Mapping>,
) -> (Vec<ParsedRow>, Vec<Rejected>) {
    let it = from_reader(
        kind,
        Arc::from(name),
        Cursor::new(text.as_bytes().to_vec()),
        o,
        m,
    )
    .expect("header accepted");
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for r in it {
        match r {
            Ok(row) => ok.push(row),
            Err(rej) => bad.push(rej),
        }
    }
    (ok, bad)
}

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn customers_with_bom_crlf_quotes_and_attributes() {
    let text = "\u{feff}customer_id,email,first_name,last_name,phone,address1,postal_code,city,country,locale,time_zone,email_consent,loyalty_tier\r\n\
        C1,Anna@Example.nl,Anna,\"de Vries, jr.\",06 12345678,Keizersgracht 12,1015 CS,Amsterdam,NL,nl,Europe/Amsterdam,yes,gold\r\n\
        C2,,Piotr,Nowak,,,,,,pl,,withdrawn,\r\n";
    let (ok, bad) = parse(SourceKind::Customers, "customers.csv", text);
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(ok.len(), 2);
    let Item::Customer(c) = &ok[0].items[0] else {
        panic!("customer expected")
    };
    assert_eq!(ok[0].line, 2);
    assert_eq!(c.external_id.as_str(), "C1");
    assert_eq!(c.email.as_ref().unwrap().as_str(), "anna@example.nl");
    assert_eq!(c.last_name.as_ref().unwrap().as_str(), "de Vries, jr.");
    assert_eq!(c.phone.as_ref().unwrap().as_str(), "+31612345678");
    assert_eq!(
        c.attributes.get("loyalty_tier").map(String::as_str),
        Some("gold")
    );
    assert_eq!(c.consents[0].status, ConsentStatus::OptIn);
    assert_eq!(c.consents[0].source, "import:customers.csv");
    let Item::Customer(c2) = &ok[1].items[0] else {
        panic!()
    };
    assert_eq!(c2.consents[0].status, ConsentStatus::Withdrawn);
    assert!(
        c2.attributes.is_empty(),
        "empty attribute values are not stored"
    );
}

#[test]
fn bad_rows_name_file_line_and_field_and_good_rows_still_parse() {
    let text = "customer_id,email,phone,created_at\n\
        C1,ok@example.nl,,2024-01-05\n\
        C2,not-an-email,,2024-01-05\n\
        C3,c3@example.nl,12,2024-01-05\n\
        C4,c4@example.nl,,03/04/2024\n\
        C5,c5@example.nl\n";
    // --strict: an unreadable optional field refuses the record (the behaviour before
    // optional fields were made lenient).
    let strict = ImportOptions {
        strict: true,
        ..opts()
    };
    let (ok, bad) = parse_with(SourceKind::Customers, "customers.csv", text, &strict, None);
    assert_eq!(ok.len(), 1);
    let msgs: Vec<String> = bad.iter().map(|r| r.error.to_string()).collect();
    assert!(
        msgs[0].starts_with("customers.csv:3: email: `not-an-email` is not a valid email address"),
        "{}",
        msgs[0]
    );
    assert!(
        msgs[1].starts_with("customers.csv:4: phone:"),
        "{}",
        msgs[1]
    );
    assert!(
        msgs[2].starts_with("customers.csv:5: created_at: `03/04/2024` is ambiguous"),
        "{}",
        msgs[2]
    );
    assert!(
        msgs[3].starts_with("customers.csv:6: row: has 2 fields, the header has 4"),
        "{}",
        msgs[3]
    );
    assert_eq!(bad[0].raw, "C2,not-an-email,,2024-01-05");
}

#[test]
fn an_unreadable_optional_field_is_left_out_and_the_record_kept() {
    let text = "customer_id;email;telefoon;land;taal;created_at\n\
        C1;ok@example.nl;n.v.t.;Nederland;nl;2024-01-05\n\
        C2;not-an-email;+31 6 12345678;Atlantis;nl;03/04/2024\n\
        C3;c3@example.nl;+3161234567890123;Polska;12345;2024-01-05\n\
        ;broken;;;;\n";
    let mut o = opts();
    o.delimiter = b';';
    let m = Mapping::parse(
        "klanten.toml",
        "kind = \"customers\"\ndelimiter = \";\"\n[columns]\nphone = \"telefoon\"\ncountry = \"land\"\nlocale = \"taal\"\n",
    )
    .unwrap();
    let (ok, bad) = parse_with(SourceKind::Customers, "klanten.csv", text, &o, Some(&m));
    assert_eq!(ok.len(), 3, "{bad:?}");
    // Required fields still refuse: no customer id and no readable email.
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0]
            .error
            .to_string()
            .starts_with("klanten.csv:5: email:"),
        "{}",
        bad[0].error
    );
    let warnings: Vec<String> = ok
        .iter()
        .flat_map(|r| r.warnings.iter().map(ToString::to_string))
        .collect();
    for expected in [
        "klanten.csv:2: phone:",
        "klanten.csv:3: email:",
        "klanten.csv:3: country: `Atlantis` is not a country",
        "klanten.csv:3: created_at:",
        "klanten.csv:4: phone:",
        "klanten.csv:4: locale:",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with(expected)),
            "{expected} in {warnings:#?}"
        );
    }
    let Item::Customer(c1) = &ok[0].items[0] else {
        panic!()
    };
    assert!(c1.phone.is_none());
    assert_eq!(
        c1.address.as_ref().map(|a| a.country()),
        None,
        "no street, no address"
    );
    let Item::Customer(c2) = &ok[1].items[0] else {
        panic!()
    };
    assert!(c2.email.is_none() && c2.phone.is_some());
}

#[test]
fn mapping_translates_values_and_ignores_columns() {
    let text = "Bestelnummer;Klant;Datum;Totaal;Status;Betaalstatus\n\
        1001;K1;05-03-2024;€ 1.234,56;verzonden;Voltooid\n\
        1002;K2;06-03-2024;12,50;verzonden;geannuleerd\n\
        1003;K3;07-03-2024;7,00;open;In behandeling\n";
    let m = Mapping::parse(
        "bestellingen.toml",
        r#"kind = "orders"
delimiter = ";"
date_order = "dmy"
decimal = "comma"
currency = "EUR"
ignore = ["Status"]

[columns]
order_id = "Bestelnummer"
customer_id = "Klant"
ordered_at = "Datum"
total = "Totaal"
status = "Betaalstatus"

[values.status]
voltooid = "paid"
geannuleerd = "cancelled"
"in behandeling" = "pending"
"#,
    )
    .unwrap();
    let (ok, bad) = parse_with(
        SourceKind::Orders,
        "bestellingen.csv",
        text,
        &opts(),
        Some(&m),
    );
    assert!(bad.is_empty(), "{bad:?}");
    let statuses: Vec<OrderStatus> = ok
        .iter()
        .map(|r| match &r.items[0] {
            Item::Order(o) => o.status,
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        statuses,
        [
            OrderStatus::Paid,
            OrderStatus::Cancelled,
            OrderStatus::Pending
        ]
    );
    let Item::Order(o) = &ok[0].items[0] else {
        panic!()
    };
    assert_eq!(o.total.minor(), 123_456);
    // The ignored `Status` column is neither the status nor an attribute.
    assert!(!format!("{o:?}").contains("verzonden"));
    // A translation for a column that is not the kind's is refused with its line.
    let e = Mapping::parse(
        "m.toml",
        "kind = \"orders\"\n[columns]\norder_id = \"x\"\n\n[values.statsu]\na = \"b\"\n",
    )
    .unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (5, "statsu"), "{e}");
    // Ignoring a column the file lacks names it.
    let m = Mapping::parse("m.toml", "kind = \"orders\"\nignore = [\"Nope\"]\n").unwrap();
    let err = from_reader(
        SourceKind::Orders,
        Arc::from("o.csv"),
        Cursor::new(b"order_id,customer_id,ordered_at,total\n".to_vec()),
        &opts(),
        Some(&m),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("`Nope`"), "{err}");
}

#[test]
fn shopify_partly_refunded_orders_count_net_of_the_refund() {
    let text = "Name,Email,Financial Status,Currency,Total,Refunded Amount,Created at,Lineitem quantity,Lineitem name,Lineitem price\n\
        #2001,a@example.nl,partially_refunded,EUR,80.00,30.00,2024-02-01 10:00:00 +0100,1,Jas,80.00\n\
        #2002,b@example.nl,paid,EUR,50.00,0.00,2024-02-02 10:00:00 +0100,1,Trui,50.00\n\
        #2003,c@example.nl,partially_refunded,EUR,20.00,25.00,2024-02-03 10:00:00 +0100,1,Sok,20.00\n";
    let (ok, bad) = parse(SourceKind::Shopify, "orders_export.csv", text);
    let totals: Vec<i64> = ok
        .iter()
        .flat_map(|r| r.items.iter())
        .filter_map(|i| match i {
            Item::Order(o) => Some(o.total.minor()),
            _ => None,
        })
        .collect();
    assert_eq!(
        totals,
        [5_000, 5_000],
        "80.00 less 30.00 refunded; 50.00 paid"
    );
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0]
            .error
            .to_string()
            .contains("Refunded Amount: `25.00` is more than"),
        "{}",
        bad[0].error
    );
}

#[test]
fn missing_required_columns_refuse_the_file() {
    let err = from_reader(
        SourceKind::Orders,
        Arc::from("orders.csv"),
        Cursor::new(b"order_id,customer_id,total\n".to_vec()),
        &opts(),
        None,
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .starts_with("orders.csv:1: ordered_at: required column `ordered_at` is missing"),
        "{err}"
    );
}

#[test]
fn orders_with_email_only_create_an_email_keyed_customer() {
    let text = "order_id,email,ordered_at,total,currency,discount,discount_codes,status,category\n\
        O1,Jan.Jansen+shop@gmail.com,2024-03-01T10:00:00Z,\"1.234,50\",EUR,10,\"welkom10; VIP\",paid,Fashion\n\
        O2,x@example.nl,2024-03-01T10:00:00Z,12.00,ABC,,,,\n\
        O3,x@example.nl,2024-03-01T10:00:00Z,12.00,EUR,,,teleported,\n";
    let (ok, bad) = parse(SourceKind::Orders, "orders.csv", text);
    assert_eq!(ok.len(), 1);
    let Item::CustomerHint(hint) = &ok[0].items[0] else {
        panic!("hint expected")
    };
    assert_eq!(hint.external_id.as_str(), "email:janjansen@gmail.com");
    let Item::Order(o) = &ok[0].items[1] else {
        panic!("order expected")
    };
    assert_eq!(o.total.minor(), 123_450);
    assert_eq!(o.discount.minor(), 1000);
    assert_eq!(
        o.discount_codes
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        ["WELKOM10", "VIP"]
    );
    assert_eq!(o.category.as_deref(), Some("fashion"));
    assert!(
        bad[0]
            .error
            .to_string()
            .starts_with("orders.csv:3: currency:"),
        "{}",
        bad[0].error
    );
    assert!(
        bad[1]
            .error
            .to_string()
            .starts_with("orders.csv:4: status:"),
        "{}",
        bad[1].error
    );
}

#[test]
fn order_items_number_lines_per_order_in_file_order() {
    let text = "order_id,sku,name,category,quantity,unit_price\nO1,A,Shirt,fashion,2,19.95\nO2,B,Mug,home,1,5\nO1,C,Socks,fashion,1,3.50\n";
    let (ok, bad) = parse(SourceKind::OrderItems, "order_items.csv", text);
    assert!(bad.is_empty());
    let lines: Vec<(String, u32, i64)> = ok
        .iter()
        .map(|r| match &r.items[0] {
            Item::OrderItem {
                order,
                line_no,
                item,
            } => (order.to_string(), *line_no, item.unit_price.minor()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("O1".to_string(), 1, 1995),
            ("O2".into(), 1, 500),
            ("O1".into(), 2, 350)
        ]
    );
}

#[test]
fn events_jsonl_parse_and_refuse_precisely() {
    let text = "{\"event_id\":\"e1\",\"customer_id\":\"C1\",\"at\":\"2024-03-01T10:00:00Z\",\"type\":\"email_bounced\",\"bounce\":\"hard\"}\n\
        \n\
        {\"email\":\"A@x.nl\",\"at\":\"2024-03-01T10:00:00Z\",\"type\":\"survey_answered\",\"reason\":\"too_expensive\"}\n\
        {\"customer_id\":\"C1\",\"at\":\"2024-03-01T10:00:00Z\",\"type\":\"email_bounced\",\"bounce\":\"maybe\"}\n\
        {\"customer_id\":\"C1\",\"at\":\"2024-03-01T10:00:00Z\",\"type\":\"teleported\"}\n\
        {\"customer_id\":\"C1\",\"type\":\"site_visited\"}\n\
        {\"customer_id\":\"C1\",\"at\":\"soon\",\"type\":\"site_visited\"}\n\
        {\"customer_id\":\"C1\",\"at\":\"2024-03-01T10:00:00Z\",\"type\":\"custom\",\"name\":\"Bad Name\"}\n\
        {not json\n\
        {\"customer_id\":12,\"at\":\"2024-03-01T10:00:00Z\",\"type\":\"custom\",\"name\":\"assortment_updated\",\"properties\":{\"category\":\"linen\"}}\n";
    let (ok, bad) = parse(SourceKind::Events, "events.jsonl", text);
    assert_eq!(ok.len(), 3);
    let Item::Event(e) = &ok[0].items[0] else {
        panic!()
    };
    assert!(matches!(
        e.kind,
        EventKind::EmailBounced {
            bounce: winback_domain::BounceKind::Hard,
            ..
        }
    ));
    assert_eq!(ok[1].line, 3, "blank lines still count");
    assert!(
        matches!(&ok[1].items[0], Item::CustomerHint(h) if h.external_id.as_str() == "email:a@x.nl")
    );
    let msgs: Vec<String> = bad.iter().map(|r| r.error.to_string()).collect();
    assert!(
        msgs[0].starts_with("events.jsonl:4: bounce: unknown variant `maybe`"),
        "{}",
        msgs[0]
    );
    assert!(
        msgs[1].starts_with("events.jsonl:5: type: unknown variant `teleported`"),
        "{}",
        msgs[1]
    );
    assert!(
        msgs[2].starts_with("events.jsonl:6: at: missing field `at`"),
        "{}",
        msgs[2]
    );
    assert!(
        msgs[3].starts_with("events.jsonl:7: at: `soon` is not a date"),
        "{}",
        msgs[3]
    );
    assert!(msgs[4].starts_with("events.jsonl:8: name:"), "{}", msgs[4]);
    assert!(msgs[5].starts_with("events.jsonl:9: "), "{}", msgs[5]);
}

#[test]
fn shopify_export_groups_rows_into_orders() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shopify_orders.csv");
    let rows: Vec<_> = open(SourceKind::Shopify, &path, &opts(), None)
        .unwrap()
        .collect();
    let ok: Vec<&ParsedRow> = rows.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        rows.len(),
        4,
        "#1001 appears twice, not consecutively: the second run is its own record"
    );
    let orders: Vec<_> = ok
        .iter()
        .flat_map(|r| &r.items)
        .filter_map(|i| {
            if let Item::Order(o) = i {
                Some(o)
            } else {
                None
            }
        })
        .collect();
    let first = orders[0];
    assert_eq!(first.external_id.as_str(), "shopify:#1001");
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.items[1].name, "Sjaal, wol");
    assert_eq!(first.total.minor(), 6485);
    assert_eq!(first.discount_codes[0].as_str(), "WELKOM10");
    assert_eq!(first.item_count, 2);
    assert_eq!(orders[1].status, OrderStatus::Refunded);
    assert_eq!(orders[1].total.currency().code(), "PLN");
    // No email: the buyer is known by phone.
    assert_eq!(orders[2].customer.as_str(), "phone:+31612345670");
    let Item::CustomerHint(anna) = &ok[0].items[0] else {
        panic!()
    };
    assert_eq!(anna.last_name.as_ref().unwrap().as_str(), "de Vries");
    assert_eq!(anna.consents[0].status, ConsentStatus::OptIn);
    // The stray continuation row of #1001 has no order-level fields: refused, with its line.
    let rejected = rows
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("one rejected");
    assert!(
        rejected
            .error
            .to_string()
            .contains(":6: Created at: is empty on the first row"),
        "{}",
        rejected.error
    );
}

#[test]
fn cdnow_master_and_sample_have_the_published_counts() {
    let count = |file: &str| {
        let mut orders = 0;
        let mut customers = std::collections::HashSet::new();
        let mut cents = 0i64;
        for r in open(SourceKind::Cdnow, &repo_file(file), &opts(), None).unwrap() {
            let row = r.expect("every CDNOW row parses");
            for i in row.items {
                if let Item::Order(o) = i {
                    orders += 1;
                    cents += o.total.minor();
                    customers.insert(o.customer);
                }
            }
        }
        (orders, customers.len(), cents)
    };
    let (orders, customers, _) = count("data/cdnow/CDNOW_master.txt");
    assert_eq!((orders, customers), (69_659, 23_570));
    let (orders, customers, _) = count("data/cdnow/CDNOW_sample.txt");
    assert_eq!((orders, customers), (6_919, 2_357));
}

#[test]
fn mapping_files_rename_columns_and_set_conventions() {
    let m = Mapping::parse(
        "shop.toml",
        "kind = \"orders\"\ndelimiter = \";\"\ndate_order = \"dmy\"\ndecimal = \"comma\"\ncurrency = \"PLN\"\n[columns]\norder_id = \"Numer\"\ncustomer_id = \"Klient\"\nordered_at = \"Data\"\ntotal = \"Kwota\"\n",
    )
    .unwrap();
    let text = "Numer;Klient;Data;Kwota;Kanał\nZ-1;K9;03/04/2024;1.299,00;www\n";
    let (ok, bad) = parse_with(
        SourceKind::Orders,
        "zamowienia.csv",
        text,
        &opts(),
        Some(&m),
    );
    assert!(bad.is_empty(), "{bad:?}");
    let Item::Order(o) = &ok[0].items[0] else {
        panic!()
    };
    assert_eq!(o.total.minor(), 129_900);
    assert_eq!(o.total.currency().code(), "PLN");
    assert_eq!(o.ordered_at.to_string(), "2024-04-02T22:00:00Z");

    let err = Mapping::parse(
        "shop.toml",
        "kind = \"orders\"\n[columns]\norder_id = \"A\"\ntotl = \"B\"\n",
    )
    .unwrap_err();
    assert_eq!(err.line, 4);
    assert!(
        err.to_string().starts_with(
            "shop.toml:4: totl: `totl` is not a column winback reads from orders files"
        ),
        "{err}"
    );
    let err = Mapping::parse("shop.toml", "kind = \"orders\"\nfoo = 1\n").unwrap_err();
    assert!(err.to_string().starts_with("shop.toml:2: foo:"), "{err}");
    let err = from_reader(
        SourceKind::Orders,
        Arc::from("z.csv"),
        Cursor::new(b"A;B\n".to_vec()),
        &opts(),
        Some(&m),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .contains("z.csv:1: Klient: the mapping names column `Klient` for `customer_id`"),
        "{err}"
    );
}

#[test]
fn a_line_that_is_not_utf8_is_refused_and_reading_goes_on() {
    let mut bytes =
        b"{\"customer_id\":\"C1\",\"at\":\"2024-03-01T10:00:00Z\",\"type\":\"logged_in\"}\n"
            .to_vec();
    bytes.extend_from_slice(b"{\"customer_id\":\"C\xff\"}\n");
    bytes.extend_from_slice(
        b"{\"customer_id\":\"C2\",\"at\":\"2024-03-01T10:00:00Z\",\"type\":\"logged_in\"}\n",
    );
    let it = from_reader(
        SourceKind::Events,
        Arc::from("e.jsonl"),
        Cursor::new(bytes),
        &opts(),
        None,
    )
    .unwrap();
    let results: Vec<_> = it.collect();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok());
    let err = results[1].as_ref().unwrap_err();
    assert_eq!(
        err.error.to_string(),
        "e.jsonl:2: row: the line is not valid UTF-8"
    );

    let csv =
        b"customer_id,email\nC1,a@example.nl\nC2,b\xff@example.nl\nC3,c@example.nl\n".to_vec();
    let it = from_reader(
        SourceKind::Customers,
        Arc::from("c.csv"),
        Cursor::new(csv),
        &opts(),
        None,
    )
    .unwrap();
    let results: Vec<_> = it.collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
    let err = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(
        err.error.to_string().starts_with("c.csv:3: row:"),
        "{}",
        err.error
    );
}
