//! `orders.csv` (one row per order) and `order_items.csv` (one row per product line).

use std::{collections::HashMap, io::Read};

use winback_domain::{
    CustomerRecord, DiscountCode, EmailAddress, ExternalId, LineItem, Money, OrderRecord,
    OrderStatus, normalise_category,
};

use crate::{
    FileError, Item, ParsedRow, RowError, RowResult,
    csvrows::{CsvRows, parse_count},
};

/// Columns of an order file.
pub(crate) const ORDER_COLUMNS: &[&[&str]] = &[
    &["order_id", "id", "order_number"],
    &["customer_id", "customer"],
    &["email", "email_address"],
    &["ordered_at", "created_at", "order_date", "date"],
    &["total", "amount", "total_price", "revenue"],
    &["currency"],
    &["discount", "discount_amount"],
    &["discount_codes", "discount_code", "coupon", "coupons"],
    &["status", "financial_status"],
    &["category"],
    &["item_count", "quantity", "items"],
];

/// Columns of an order-items file.
pub(crate) const ITEM_COLUMNS: &[&[&str]] = &[
    &["order_id", "order", "order_number"],
    &["sku"],
    &["name", "product_name", "title", "product"],
    &["category"],
    &["quantity", "qty"],
    &["unit_price", "price"],
    &["currency"],
];

pub(crate) fn parse_orders<R: Read + Send + 'static>(
    mut rows: CsvRows<R>,
) -> Result<impl Iterator<Item = RowResult> + Send, FileError> {
    let id = rows.require(ORDER_COLUMNS[0])?;
    let customer = rows.column(ORDER_COLUMNS[1]);
    let email = rows.column(ORDER_COLUMNS[2]);
    if customer.is_none() && email.is_none() {
        return Err(FileError::Header(rows.ctx.err(
            1,
            "customer_id",
            "an order file needs a `customer_id` or an `email` column",
        )));
    }
    let at = rows.require(ORDER_COLUMNS[3])?;
    let total = rows.require(ORDER_COLUMNS[4])?;
    let rest: Vec<Option<usize>> = ORDER_COLUMNS[5..]
        .iter()
        .map(|names| rows.column(names))
        .collect();
    let (currency, discount, codes, status, category, count) =
        (rest[0], rest[1], rest[2], rest[3], rest[4], rest[5]);
    Ok(crate::csvrows::records(
        rows,
        move |rows, line| -> Result<ParsedRow, RowError> {
            rows.check_width(line)?;
            let ctx = &rows.ctx;
            let external_id = ExternalId::parse(rows.req(line, id, "order_id")?)
                .map_err(|e| ctx.err(line, "order_id", e.to_string()))?;
            let email = rows
                .get(email)
                .map(EmailAddress::parse)
                .transpose()
                .map_err(|e| ctx.err(line, "email", e.to_string()))?;
            let customer_id = match (rows.get(customer), &email) {
                (Some(c), _) => {
                    ExternalId::parse(c).map_err(|e| ctx.err(line, "customer_id", e.to_string()))?
                }
                (None, Some(e)) => ExternalId::for_email(e),
                (None, None) => {
                    return Err(ctx.err(
                        line,
                        "customer_id",
                        "is empty and the order has no email",
                    ));
                }
            };
            let ordered_at = rows.date(line, rows.req(line, at, "ordered_at")?, "ordered_at")?;
            let cur = rows.currency(line, currency, "currency")?;
            let total = rows.money(line, rows.req(line, total, "total")?, "total", cur)?;
            if total.minor() < 0 {
                return Err(ctx.err(
                    line,
                    "total",
                    "must not be negative (record refunds with status = refunded)",
                ));
            }
            let discount = match rows.get(discount) {
                Some(d) => rows.money(line, d, "discount", cur)?,
                None => Money::zero(cur),
            };
            let discount_codes = split_codes(rows.get(codes).unwrap_or(""))
                .map_err(|e| ctx.err(line, "discount_codes", e))?;
            let status = match rows.get(status) {
                Some(s) => s
                    .parse::<OrderStatus>()
                    .map_err(|e| ctx.err(line, "status", e))?,
                None => OrderStatus::Paid,
            };
            let item_count = rows
                .get(count)
                .map(parse_count)
                .transpose()
                .map_err(|e| ctx.err(line, "item_count", e))?
                .unwrap_or(1);
            let mut items = Vec::with_capacity(2);
            if let Some(email) = email {
                let mut hint = CustomerRecord::stub(customer_id.clone());
                hint.email = Some(email);
                items.push(Item::CustomerHint(hint));
            }
            items.push(Item::Order(OrderRecord {
                external_id,
                customer: customer_id,
                ordered_at,
                total,
                discount,
                status,
                category: rows.get(category).and_then(normalise_category),
                item_count,
                discount_codes,
                items: Vec::new(),
            }));
            Ok(ParsedRow {
                line,
                items,
                warnings: Vec::new(),
            })
        },
    ))
}

/// Splits `A10, B20;C30` into codes.
pub(crate) fn split_codes(raw: &str) -> Result<Vec<DiscountCode>, String> {
    raw.split([',', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(DiscountCode::parse)
        .collect()
}

pub(crate) fn parse_items<R: Read + Send + 'static>(
    mut rows: CsvRows<R>,
) -> Result<impl Iterator<Item = RowResult> + Send, FileError> {
    let order = rows.require(ITEM_COLUMNS[0])?;
    let sku = rows.column(ITEM_COLUMNS[1]);
    let name = rows.column(ITEM_COLUMNS[2]);
    if sku.is_none() && name.is_none() {
        return Err(FileError::Header(rows.ctx.err(
            1,
            "name",
            "an order-items file needs a `name` or `sku` column",
        )));
    }
    let category = rows.column(ITEM_COLUMNS[3]);
    let quantity = rows.column(ITEM_COLUMNS[4]);
    let price = rows.require(ITEM_COLUMNS[5])?;
    let currency = rows.column(ITEM_COLUMNS[6]);
    // Line numbers within each order follow file order, so re-importing the file is idempotent.
    let mut line_numbers: HashMap<String, u32> = HashMap::new();
    Ok(crate::csvrows::records(
        rows,
        move |rows, line| -> Result<ParsedRow, RowError> {
            rows.check_width(line)?;
            let ctx = &rows.ctx;
            let order = ExternalId::parse(rows.req(line, order, "order_id")?)
                .map_err(|e| ctx.err(line, "order_id", e.to_string()))?;
            let cur = rows.currency(line, currency, "currency")?;
            let unit_price = rows.money(
                line,
                rows.req(line, price, "unit_price")?,
                "unit_price",
                cur,
            )?;
            let quantity = rows
                .get(quantity)
                .map(parse_count)
                .transpose()
                .map_err(|e| ctx.err(line, "quantity", e))?
                .unwrap_or(1);
            let sku = rows.get(sku).map(str::to_owned);
            let name = rows
                .get(name)
                .map(str::to_owned)
                .or_else(|| sku.clone())
                .unwrap_or_default();
            let n = line_numbers.entry(order.as_str().to_owned()).or_insert(0);
            *n += 1;
            let item = LineItem {
                sku,
                name,
                category: rows.get(category).and_then(normalise_category),
                quantity,
                unit_price,
            };
            Ok(ParsedRow {
                line,
                items: vec![Item::OrderItem {
                    order,
                    line_no: *n,
                    item,
                }],
                warnings: Vec::new(),
            })
        },
    ))
}
