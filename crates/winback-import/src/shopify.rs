//! Shopify's order export: one row per line item; the order-level fields (Name, Email,
//! Created at, Total, Currency, Discount Code, Financial Status, billing address and phone) stand
//! only on the first row of each order. Refunded orders are flagged by their status.

use std::io::Read;

use winback_domain::{
    Channel, Consent, ConsentStatus, CustomerRecord, EmailAddress, ExternalId, LineItem, Money,
    OrderRecord, OrderStatus, PersonName, PhoneE164, PostalAddress,
};

use crate::{
    FileError, Item, ParsedRow, Rejected, RowError, RowResult, csvrows::CsvRows,
    orders::split_codes,
};

struct Cols {
    name: usize,
    email: Option<usize>,
    financial: Option<usize>,
    accepts: Option<usize>,
    currency: Option<usize>,
    total: usize,
    discount_code: Option<usize>,
    discount_amount: Option<usize>,
    refunded_amount: Option<usize>,
    created: usize,
    cancelled: Option<usize>,
    qty: Option<usize>,
    item_name: Option<usize>,
    item_price: Option<usize>,
    item_sku: Option<usize>,
    billing_name: Option<usize>,
    billing: [Option<usize>; 5],
    billing_phone: Option<usize>,
    phone: Option<usize>,
}

/// An order being assembled from its rows.
struct Pending {
    /// The order's Name, which its continuation rows repeat.
    name: String,
    line: u64,
    raw: Vec<String>,
    /// The order so far, or why its rows are refused.
    order: Result<(Vec<Item>, OrderRecord), RowError>,
}

pub(crate) fn parse<R: Read + Send + 'static>(
    mut rows: CsvRows<R>,
) -> Result<impl Iterator<Item = RowResult> + Send, FileError> {
    let cols = Cols {
        name: rows.require(&["name", "order_name"])?,
        email: rows.column(&["email"]),
        financial: rows.column(&["financial_status"]),
        accepts: rows.column(&["accepts_marketing"]),
        currency: rows.column(&["currency"]),
        total: rows.require(&["total"])?,
        discount_code: rows.column(&["discount_code"]),
        discount_amount: rows.column(&["discount_amount"]),
        refunded_amount: rows.column(&["refunded_amount"]),
        created: rows.require(&["created_at"])?,
        cancelled: rows.column(&["cancelled_at"]),
        qty: rows.column(&["lineitem_quantity"]),
        item_name: rows.column(&["lineitem_name"]),
        item_price: rows.column(&["lineitem_price"]),
        item_sku: rows.column(&["lineitem_sku"]),
        billing_name: rows.column(&["billing_name"]),
        billing: [
            rows.column(&["billing_address1", "billing_street"]),
            rows.column(&["billing_address2"]),
            rows.column(&["billing_zip"]),
            rows.column(&["billing_city"]),
            rows.column(&["billing_country"]),
        ],
        billing_phone: rows.column(&["billing_phone"]),
        phone: rows.column(&["phone"]),
    };
    let mut pending: Option<Pending> = None;
    let mut done = false;
    Ok(std::iter::from_fn(move || {
        loop {
            if done {
                return pending.take().map(finish);
            }
            let line = match rows.advance() {
                None => {
                    done = true;
                    continue;
                }
                Some(Err(rejected)) => return Some(Err(rejected)),
                Some(Ok(line)) => line,
            };
            let name = rows.get(Some(cols.name)).unwrap_or("").to_owned();
            let continues = pending.as_ref().is_some_and(|p| p.name == name);
            if continues {
                let p = pending.as_mut().expect("checked above");
                p.raw.push(rows.raw());
                if let Ok((_, order)) = &mut p.order {
                    if let Err(e) = add_line_item(&rows, &cols, line, order) {
                        p.order = Err(e);
                    }
                }
                continue;
            }
            let next = start_order(&rows, &cols, line, &name);
            let previous = pending.replace(next);
            if let Some(prev) = previous {
                return Some(finish(prev));
            }
        }
    }))
}

fn finish(p: Pending) -> RowResult {
    match p.order {
        Err(error) => Err(Rejected {
            error,
            raw: p.raw.join("\n"),
        }),
        Ok((mut items, order)) => {
            items.push(Item::Order(order));
            Ok(ParsedRow {
                line: p.line,
                items,
                warnings: Vec::new(),
            })
        }
    }
}

fn start_order<R: Read>(rows: &CsvRows<R>, cols: &Cols, line: u64, name: &str) -> Pending {
    Pending {
        name: name.to_owned(),
        line,
        raw: vec![rows.raw()],
        order: first_row(rows, cols, line, name),
    }
}

fn first_row<R: Read>(
    rows: &CsvRows<R>,
    cols: &Cols,
    line: u64,
    name: &str,
) -> Result<(Vec<Item>, OrderRecord), RowError> {
    rows.check_width(line)?;
    let ctx = &rows.ctx;
    if name.is_empty() {
        return Err(ctx.err(line, "Name", "is required but empty"));
    }
    let external_id = ExternalId::parse(&format!("shopify:{name}"))
        .map_err(|e| ctx.err(line, "Name", e.to_string()))?;
    let created = rows.get(Some(cols.created)).ok_or_else(|| {
        ctx.err(line, "Created at", "is empty on the first row of the order (order-level fields must stand on its first row)")
    })?;
    let ordered_at = rows.date(line, created, "Created at")?;
    let currency = rows.currency(line, cols.currency, "Currency")?;
    let total = rows.money(
        line,
        rows.req(line, cols.total, "Total")?,
        "Total",
        currency,
    )?;
    let discount = match rows.get(cols.discount_amount) {
        Some(d) => rows.money(line, d, "Discount Amount", currency)?,
        None => Money::zero(currency),
    };
    let discount_codes = split_codes(rows.get(cols.discount_code).unwrap_or(""))
        .map_err(|e| ctx.err(line, "Discount Code", e))?;
    let mut status = match rows.get(cols.financial) {
        Some(s) => s
            .parse::<OrderStatus>()
            .map_err(|e| ctx.err(line, "Financial Status", e))?,
        None => OrderStatus::Paid,
    };
    if rows.get(cols.cancelled).is_some() {
        status = OrderStatus::Cancelled;
    }
    // A partly refunded order counts for what the customer kept: Total less Refunded Amount.
    let total = match rows.get(cols.refunded_amount) {
        Some(r) if status == OrderStatus::PartiallyRefunded => {
            let refunded = rows.money(line, r, "Refunded Amount", currency)?;
            let net = total.minor() - refunded.minor();
            if net < 0 {
                return Err(ctx.err(
                    line,
                    "Refunded Amount",
                    format!("`{r}` is more than the order's Total"),
                ));
            }
            Money::from_minor(net, currency)
        }
        _ => total,
    };
    let email = rows
        .get(cols.email)
        .map(EmailAddress::parse)
        .transpose()
        .map_err(|e| ctx.err(line, "Email", e.to_string()))?;
    let phone_raw = rows
        .get(cols.billing_phone)
        .or_else(|| rows.get(cols.phone));
    // A national number is read in the billing country, when there is one.
    let region = rows
        .get(cols.billing[4])
        .and_then(|c| winback_domain::Region::parse(c).ok())
        .unwrap_or(ctx.opts.default_region);
    let phone = phone_raw
        .map(|p| PhoneE164::parse(p, region))
        .transpose()
        .map_err(|e| ctx.err(line, "Billing Phone", e.to_string()))?;
    // A buyer is known by email, else by phone, else only as the guest of this order.
    let customer = match (&email, &phone) {
        (Some(e), _) => ExternalId::for_email(e),
        (None, Some(p)) => ExternalId::parse(&format!("phone:{p}"))
            .map_err(|e| ctx.err(line, "Billing Phone", e.to_string()))?,
        (None, None) => ExternalId::parse(&format!("shopify-guest:{name}"))
            .map_err(|e| ctx.err(line, "Name", e.to_string()))?,
    };
    let (first_name, last_name) = match rows.get(cols.billing_name) {
        Some(full) => {
            let (f, l) = full.split_once(' ').unwrap_or((full, ""));
            let p = |s: &str| {
                if s.trim().is_empty() {
                    Ok(None)
                } else {
                    PersonName::parse(s).map(Some)
                }
            };
            (
                p(f).map_err(|e| ctx.err(line, "Billing Name", e.to_string()))?,
                p(l).map_err(|e| ctx.err(line, "Billing Name", e.to_string()))?,
            )
        }
        None => (None, None),
    };
    let part = |i: Option<usize>| rows.get(i).unwrap_or("");
    let address = PostalAddress::parse(
        part(cols.billing[0]),
        part(cols.billing[1]),
        part(cols.billing[2]),
        part(cols.billing[3]),
        part(cols.billing[4]),
    )
    .map_err(|e| ctx.err(line, "Billing Address", e.to_string()))?;
    let mut hint = CustomerRecord::stub(customer.clone());
    hint.email = email;
    hint.phone = phone;
    hint.first_name = first_name;
    hint.last_name = last_name;
    hint.address = address;
    if let Some(accepts) = rows.get(cols.accepts) {
        let status = accepts
            .parse::<ConsentStatus>()
            .map_err(|e| ctx.err(line, "Accepts Marketing", e.to_string()))?;
        hint.consents.push(Consent {
            channel: Channel::Email,
            status,
            source: "shopify:accepts_marketing".into(),
            at: ordered_at,
            wording_version: None,
        });
    }
    let mut order = OrderRecord {
        external_id,
        customer,
        ordered_at,
        total,
        discount,
        status,
        category: None,
        item_count: 0,
        discount_codes,
        items: Vec::new(),
    };
    add_line_item(rows, cols, line, &mut order)?;
    Ok((vec![Item::CustomerHint(hint)], order))
}

fn add_line_item<R: Read>(
    rows: &CsvRows<R>,
    cols: &Cols,
    line: u64,
    order: &mut OrderRecord,
) -> Result<(), RowError> {
    let ctx = &rows.ctx;
    let Some(name) = rows.get(cols.item_name) else {
        return Ok(());
    };
    let quantity = match rows.get(cols.qty) {
        Some(q) => q.parse::<u32>().map_err(|_| {
            ctx.err(
                line,
                "Lineitem quantity",
                format!("`{q}` is not a whole number"),
            )
        })?,
        None => 1,
    };
    let unit_price = match rows.get(cols.item_price) {
        Some(p) => rows.money(line, p, "Lineitem price", order.total.currency())?,
        None => Money::zero(order.total.currency()),
    };
    order.item_count += quantity;
    order.items.push(LineItem {
        sku: rows.get(cols.item_sku).map(str::to_owned),
        name: name.to_owned(),
        // Shopify's order export has no product type; the vendor is not a category.
        category: None,
        quantity,
        unit_price,
    });
    Ok(())
}
