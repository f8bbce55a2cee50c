//! `events.jsonl`: one JSON object per line, with a `type` tag:
//! `{"event_id":"e1","customer_id":"C1","at":"2024-03-01T10:00:00Z","type":"email_clicked","url":"…"}`.
//! `email` may stand in for `customer_id`. Blank lines are skipped.

use std::io::Read;

use winback_domain::{CustomerRecord, EmailAddress, EventKind, EventRecord, ExternalId};

use crate::{Item, ParsedRow, RowError, RowResult, csvrows::Context};

pub(crate) fn parse<R: Read + Send + 'static>(
    reader: R,
    ctx: Context,
) -> impl Iterator<Item = RowResult> + Send {
    crate::csvrows::lines(reader, ctx, |ctx, line, text| {
        Some(parse_line(ctx, line, text))
    })
}

/// Which field of `map` makes `EventKind` fail with `message`: the one whose removal changes the
/// error. serde loses the field path inside an internally tagged enum, and a message such as
/// "unknown variant `maybe`" alone does not say which field held `maybe`.
fn culprit(map: &serde_json::Map<String, serde_json::Value>, message: &str) -> String {
    for marker in ["missing field `", "unknown field `", "duplicate field `"] {
        if let Some(name) = message
            .split(marker)
            .nth(1)
            .and_then(|r| r.split('`').next())
        {
            return name.to_owned();
        }
    }
    if !map.contains_key("type")
        || message.contains("unknown variant") && !map.keys().any(|k| k != "type")
    {
        return "type".to_owned();
    }
    for key in map.keys().filter(|k| k.as_str() != "type") {
        let mut fewer = map.clone();
        fewer.remove(key);
        match serde_json::from_value::<EventKind>(serde_json::Value::Object(fewer)) {
            Ok(_) => return key.clone(),
            Err(e) if e.to_string() != message => return key.clone(),
            Err(_) => {}
        }
    }
    "type".to_owned()
}

/// Takes a string-or-number field out of the object.
fn take_text(
    map: &mut serde_json::Map<String, serde_json::Value>,
    names: &[&str],
) -> Result<Option<String>, String> {
    for name in names {
        if let Some(v) = map.remove(*name) {
            return match v {
                serde_json::Value::String(s) => Ok(Some(s)),
                serde_json::Value::Number(n) => Ok(Some(n.to_string())),
                serde_json::Value::Null => Ok(None),
                other => Err(format!("expected a string, found {other}")),
            };
        }
    }
    Ok(None)
}

fn parse_line(ctx: &Context, line: u64, text: &str) -> Result<ParsedRow, RowError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        ctx.err(
            line,
            "row",
            format!(
                "not valid JSON: {}",
                message.split(" at line ").next().unwrap_or(&message)
            ),
        )
    })?;
    let serde_json::Value::Object(mut map) = value else {
        return Err(ctx.err(line, "row", "each line must be a JSON object"));
    };
    let text_field = |map: &mut serde_json::Map<String, serde_json::Value>, names: &[&str]| {
        take_text(map, names).map_err(|e| ctx.err(line, names[0], e))
    };
    let event_id = text_field(&mut map, &["event_id", "id"])?
        .map(|s| ExternalId::parse(&s).map_err(|e| ctx.err(line, "event_id", e.to_string())))
        .transpose()?;
    let customer_id = text_field(&mut map, &["customer_id"])?
        .map(|s| ExternalId::parse(&s).map_err(|e| ctx.err(line, "customer_id", e.to_string())))
        .transpose()?;
    let email = text_field(&mut map, &["email"])?
        .map(|s| EmailAddress::parse(&s).map_err(|e| ctx.err(line, "email", e.to_string())))
        .transpose()?;
    let at_raw = text_field(&mut map, &["at", "timestamp", "occurred_at"])?
        .ok_or_else(|| ctx.err(line, "at", "missing field `at`"))?;
    let kind: EventKind =
        serde_json::from_value(serde_json::Value::Object(map.clone())).map_err(|e| {
            let message = e.to_string();
            ctx.err(line, &culprit(&map, &message), message)
        })?;
    kind.validate().map_err(|e| match e {
        winback_domain::EventError::Field { field, reason } => ctx.err(line, field, reason),
    })?;
    let customer = match (customer_id, &email) {
        (Some(c), _) => c,
        (None, Some(e)) => ExternalId::for_email(e),
        (None, None) => {
            return Err(ctx.err(
                line,
                "customer_id",
                "an event needs a `customer_id` or an `email`",
            ));
        }
    };
    let at = ctx
        .dates
        .parse(&at_raw)
        .map_err(|e| ctx.err(line, "at", e))?;
    let mut items = Vec::with_capacity(2);
    if let Some(email) = email {
        let mut hint = CustomerRecord::stub(customer.clone());
        hint.email = Some(email);
        items.push(Item::CustomerHint(hint));
    }
    items.push(Item::Event(EventRecord {
        source_id: event_id,
        customer,
        at,
        kind,
    }));
    Ok(ParsedRow {
        line,
        items,
        warnings: Vec::new(),
    })
}
