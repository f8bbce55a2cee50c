//! The CDNOW transaction files of `data/cdnow` (vendored): whitespace-separated
//! `customer date(YYYYMMDD) cds dollars` (master, with a header line) or
//! `master_id sample_id date cds dollars` (the 1/10 sample, no header). Amounts are US dollars.
//! CDNOW has no order numbers: an order's key is `cdnow:<customer>:<date>:<n>`, `n` counting the
//! customer's transactions on that day in file order, so the master and the sample give the same
//! keys for the same transactions and re-importing either is a no-op.

use std::{collections::HashMap, io::Read};

use winback_domain::{Currency, DecimalSeparator, ExternalId, Money, OrderRecord, OrderStatus};

use crate::{Item, ParsedRow, RowError, RowResult, csvrows::Context};

pub(crate) fn parse<R: Read + Send + 'static>(
    reader: R,
    ctx: Context,
) -> impl Iterator<Item = RowResult> + Send {
    let mut seen: HashMap<(String, String), u32> = HashMap::new();
    crate::csvrows::lines(reader, ctx, move |ctx, line, text| {
        let fields: Vec<&str> = text.split_whitespace().collect();
        // The master file's header line.
        if line == 1 && fields.first().is_some_and(|f| f.parse::<u64>().is_err()) {
            return None;
        }
        Some(parse_fields(ctx, line, &fields, &mut seen))
    })
}

fn parse_fields(
    ctx: &Context,
    line: u64,
    fields: &[&str],
    seen: &mut HashMap<(String, String), u32>,
) -> Result<ParsedRow, RowError> {
    let (customer, date, cds, dollars) = match fields {
        [c, d, n, v] => (*c, *d, *n, *v),
        [c, _sample, d, n, v] => (*c, *d, *n, *v),
        _ => {
            return Err(ctx.err(
                line,
                "row",
                format!(
                    "expected 4 or 5 whitespace-separated fields, found {}",
                    fields.len()
                ),
            ));
        }
    };
    if customer.parse::<u64>().is_err() {
        return Err(ctx.err(
            line,
            "customer_id",
            format!("`{customer}` is not a CDNOW customer number"),
        ));
    }
    let customer =
        ExternalId::parse(customer).map_err(|e| ctx.err(line, "customer_id", e.to_string()))?;
    if date.len() != 8 {
        return Err(ctx.err(line, "date", format!("`{date}` is not YYYYMMDD")));
    }
    let ordered_at = ctx
        .dates
        .parse(date)
        .map_err(|e| ctx.err(line, "date", e))?;
    let quantity: u32 = cds
        .parse()
        .map_err(|_| ctx.err(line, "cds", format!("`{cds}` is not a whole number")))?;
    let total = Money::parse_decimal(dollars, Currency::USD, DecimalSeparator::Dot)
        .map_err(|e| ctx.err(line, "dollars", e.to_string()))?;
    if total.minor() < 0 {
        return Err(ctx.err(line, "dollars", "must not be negative"));
    }
    let n = seen
        .entry((customer.as_str().to_owned(), date.to_owned()))
        .or_insert(0);
    *n += 1;
    let external_id = ExternalId::parse(&format!("cdnow:{customer}:{date}:{n}"))
        .map_err(|e| ctx.err(line, "row", e.to_string()))?;
    let order = OrderRecord {
        external_id,
        customer,
        ordered_at,
        total,
        discount: Money::zero(Currency::USD),
        status: OrderStatus::Paid,
        category: Some("music".into()),
        item_count: quantity,
        discount_codes: Vec::new(),
        // CDNOW records units, not products: `item_count` carries the number of CDs.
        items: Vec::new(),
    };
    Ok(ParsedRow {
        line,
        items: vec![Item::Order(order)],
        warnings: Vec::new(),
    })
}
