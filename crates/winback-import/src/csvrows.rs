//! Shared CSV reading: header lookup by winback's column names (with aliases and mapping-file
//! renames), per-record line numbers, and the raw text of a refused record.

use std::{collections::BTreeMap, collections::HashMap, io::Read, sync::Arc};

use winback_domain::{Currency, Money};

use crate::{DateParser, FileError, ImportOptions, Rejected, RowError};

/// What every parser of one file shares: its name, options and date conventions.
pub(crate) struct Context {
    pub file: Arc<str>,
    pub opts: ImportOptions,
    pub dates: DateParser,
}

impl Context {
    pub fn new(file: Arc<str>, opts: &ImportOptions, date_format: Option<String>) -> Self {
        let dates = DateParser::new(
            opts.default_time_zone.time_zone(),
            opts.date_order,
            date_format,
        );
        Self {
            file,
            opts: opts.clone(),
            dates,
        }
    }

    pub fn err(&self, line: u64, field: &str, reason: impl Into<String>) -> RowError {
        RowError {
            file: self.file.clone(),
            line,
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Lower-case, trimmed, spaces and dashes as underscores: `Lineitem quantity` → `lineitem_quantity`.
pub(crate) fn normalise_header(h: &str) -> String {
    h.trim()
        .trim_start_matches('\u{feff}')
        .to_lowercase()
        .replace([' ', '-', '.'], "_")
}

/// Turns CRLF line ends into LF as bytes stream through.
///
/// The csv crate counts a CRLF file's lines one short (it reports line 1 for the first record
/// after the header), and every error message names a line, so the bytes are normalised first.
/// A CR inside a quoted field followed by LF is folded too, which only changes that field's line
/// end.
pub(crate) struct CrlfToLf<R> {
    inner: std::io::BufReader<R>,
    /// A CR that ended the previous chunk, not yet known to precede an LF.
    pending_cr: bool,
}

impl<R: Read> CrlfToLf<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner: std::io::BufReader::with_capacity(1 << 16, inner),
            pending_cr: false,
        }
    }
}

impl<R: Read> Read for CrlfToLf<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use std::io::BufRead;
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                if std::mem::take(&mut self.pending_cr) {
                    out[0] = b'\r';
                    return Ok(1);
                }
                return Ok(0);
            }
            if std::mem::take(&mut self.pending_cr) && buf[0] != b'\n' {
                out[0] = b'\r'; // a lone CR stays
                return Ok(1);
            }
            let (mut w, mut r) = (0, 0);
            while r < buf.len() && w < out.len() {
                let b = buf[r];
                if b == b'\r' {
                    if r + 1 == buf.len() {
                        self.pending_cr = true;
                        r += 1;
                        break;
                    }
                    if buf[r + 1] == b'\n' {
                        r += 1;
                        continue;
                    }
                }
                out[w] = b;
                w += 1;
                r += 1;
            }
            self.inner.consume(r);
            if w > 0 {
                return Ok(w);
            }
        }
    }
}

/// What a mapping file says about the columns: renames, value translations and columns to
/// ignore.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// winback column name → the file's header.
    pub renames: BTreeMap<String, String>,
    /// winback column name → (the file's value → winback's value), compared without case and
    /// surrounding spaces.
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    /// The file's headers to ignore entirely (neither a field nor an attribute).
    pub ignore: Vec<String>,
}

pub(crate) struct CsvRows<R: Read> {
    reader: csv::Reader<CrlfToLf<R>>,
    pub ctx: Context,
    /// Normalised header → column index.
    index: HashMap<String, usize>,
    /// Headers as written in the file.
    pub headers: Vec<String>,
    /// Columns claimed by a winback field (the rest become attributes).
    used: Vec<bool>,
    /// Column index → (lower-cased file value → winback value).
    translate: HashMap<usize, HashMap<String, String>>,
    record: csv::StringRecord,
}

impl<R: Read> CsvRows<R> {
    /// Reads the header row and applies a mapping file's plan (renames, value translations,
    /// ignored columns).
    pub fn new(reader: R, ctx: Context, plan: &Plan) -> Result<Self, FileError> {
        let renames = &plan.renames;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(ctx.opts.delimiter)
            .flexible(true)
            .has_headers(true)
            .from_reader(CrlfToLf::new(reader));
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| {
                FileError::Header(ctx.err(1, "header", format!("cannot read the header row: {e}")))
            })?
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_owned())
            .collect();
        let mut used = vec![false; headers.len()];
        let mut index: HashMap<String, usize> = HashMap::new();
        for ignored in &plan.ignore {
            let n = normalise_header(ignored);
            let Some(i) = headers.iter().position(|h| normalise_header(h) == n) else {
                return Err(FileError::Header(ctx.err(
                    1,
                    ignored,
                    format!(
                        "the mapping ignores column `{ignored}`, but the file has no such column"
                    ),
                )));
            };
            // Claimed, so it is not kept as an attribute either.
            used[i] = true;
        }
        for (i, h) in headers.iter().enumerate() {
            if !used[i] {
                index.entry(normalise_header(h)).or_insert(i);
            }
        }
        // A mapping file's renames point winback's names at the file's own headers.
        for (canonical, source) in renames {
            let Some(&i) = index.get(&normalise_header(source)) else {
                return Err(FileError::Header(ctx.err(
                    1,
                    source,
                    format!("the mapping names column `{source}` for `{canonical}`, but the file has no such column"),
                )));
            };
            index.insert(normalise_header(canonical), i);
        }
        let mut translate: HashMap<usize, HashMap<String, String>> = HashMap::new();
        for (field, table) in &plan.values {
            // A translation for a column the file lacks is harmless: nothing to translate.
            if let Some(&i) = index.get(&normalise_header(field)) {
                translate.insert(
                    i,
                    table
                        .iter()
                        .map(|(from, to)| (from.trim().to_lowercase(), to.clone()))
                        .collect(),
                );
            }
        }
        Ok(Self {
            reader,
            ctx,
            index,
            headers,
            used,
            translate,
            record: csv::StringRecord::new(),
        })
    }

    /// The index of the first of `names` present, marking it used.
    pub fn column(&mut self, names: &[&str]) -> Option<usize> {
        let i = names.iter().find_map(|n| self.index.get(*n).copied())?;
        self.used[i] = true;
        Some(i)
    }

    /// Like [`Self::column`], but a missing column is a header error.
    pub fn require(&mut self, names: &[&str]) -> Result<usize, FileError> {
        self.column(names).ok_or_else(|| {
            FileError::Header(self.ctx.err(
                1,
                names[0],
                format!(
                    "required column `{}` is missing (also accepted: {})",
                    names[0],
                    names[1..].join(", ")
                ),
            ))
        })
    }

    /// Columns no winback field claimed, as (header, index).
    pub fn unused_columns(&self) -> Vec<(String, usize)> {
        self.headers
            .iter()
            .enumerate()
            .filter(|(i, h)| !self.used[*i] && !h.is_empty())
            .map(|(i, h)| (h.clone(), i))
            .collect()
    }

    /// Advances to the next record. `Err` carries a record the CSV reader itself refused.
    pub fn advance(&mut self) -> Option<Result<u64, Rejected>> {
        match self.reader.read_record(&mut self.record) {
            Ok(true) => {
                let line = self.record.position().map_or(0, |p| p.line());
                Some(Ok(line))
            }
            Ok(false) => None,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                let reason = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "the record is not valid UTF-8".to_owned(),
                    _ => e.to_string(),
                };
                Some(Err(Rejected {
                    error: self.ctx.err(line, "row", reason),
                    raw: String::new(),
                }))
            }
        }
    }

    /// The current record's value in column `i`, trimmed and translated by the mapping's
    /// `[values]`; `None` when empty or absent.
    pub fn get(&self, i: Option<usize>) -> Option<&str> {
        let i = i?;
        let v = self.record.get(i)?.trim();
        if v.is_empty() {
            return None;
        }
        if let Some(table) = self.translate.get(&i) {
            if let Some(to) = table.get(&v.to_lowercase()) {
                return (!to.is_empty()).then_some(to.as_str());
            }
        }
        Some(v)
    }

    /// The current record's column `i`, required.
    pub fn req(&self, line: u64, i: usize, field: &str) -> Result<&str, RowError> {
        self.get(Some(i))
            .ok_or_else(|| self.ctx.err(line, field, "is required but empty"))
    }

    /// The current record as CSV text, for the rejects file.
    pub fn raw(&self) -> String {
        let mut w = csv::WriterBuilder::new()
            .delimiter(self.ctx.opts.delimiter)
            .from_writer(Vec::new());
        let _ = w.write_record(&self.record);
        let bytes = w.into_inner().unwrap_or_default();
        String::from_utf8_lossy(&bytes).trim_end().to_owned()
    }

    /// A record that has fewer fields than the header is almost always a broken export.
    pub fn check_width(&self, line: u64) -> Result<(), RowError> {
        if self.record.len() < self.headers.len()
            && !(self.record.len() == 1 && self.record.get(0) == Some(""))
        {
            return Err(self.ctx.err(
                line,
                "row",
                format!(
                    "has {} fields, the header has {}",
                    self.record.len(),
                    self.headers.len()
                ),
            ));
        }
        Ok(())
    }

    /// Parses an amount in the currency given.
    pub fn money(
        &self,
        line: u64,
        raw: &str,
        field: &str,
        currency: Currency,
    ) -> Result<Money, RowError> {
        Money::parse_decimal(raw, currency, self.ctx.opts.decimal)
            .map_err(|e| self.ctx.err(line, field, e.to_string()))
    }

    /// The currency of column `i`, or the default.
    pub fn currency(&self, line: u64, i: Option<usize>, field: &str) -> Result<Currency, RowError> {
        match self.get(i) {
            Some(c) => Currency::parse(c).map_err(|e| self.ctx.err(line, field, e.to_string())),
            None => Ok(self.ctx.opts.default_currency),
        }
    }

    /// Parses a date or time.
    pub fn date(
        &self,
        line: u64,
        raw: &str,
        field: &str,
    ) -> Result<winback_domain::Timestamp, RowError> {
        self.ctx
            .dates
            .parse(raw)
            .map_err(|e| self.ctx.err(line, field, e))
    }

    /// Turns a row error into a rejection carrying the record's text.
    pub fn reject(&self, error: RowError) -> Rejected {
        Rejected {
            error,
            raw: self.raw(),
        }
    }
}

/// Reads a line-oriented file (JSONL, CDNOW) and calls `parse` with each non-blank line, its
/// 1-based number and the file context; an unreadable line (not UTF-8) is refused and reading
/// goes on with the next one.
pub(crate) fn lines<R, F>(
    reader: R,
    ctx: Context,
    mut parse: F,
) -> impl Iterator<Item = crate::RowResult> + Send
where
    R: Read + Send + 'static,
    F: FnMut(&Context, u64, &str) -> Option<Result<crate::ParsedRow, RowError>> + Send + 'static,
{
    use std::io::BufRead;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, reader);
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    std::iter::from_fn(move || {
        loop {
            buf.clear();
            line_no += 1;
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    return Some(Err(Rejected {
                        error: ctx.err(line_no, "row", format!("cannot read the line: {e}")),
                        raw: String::new(),
                    }));
                }
            }
            let Ok(text) = std::str::from_utf8(&buf) else {
                let raw = String::from_utf8_lossy(&buf).trim().to_owned();
                return Some(Err(Rejected {
                    error: ctx.err(line_no, "row", "the line is not valid UTF-8"),
                    raw,
                }));
            };
            let text = text.trim_start_matches('\u{feff}').trim();
            if text.is_empty() {
                continue;
            }
            if let Some(result) = parse(&ctx, line_no, text) {
                return Some(result.map_err(|error| Rejected {
                    error,
                    raw: text.to_owned(),
                }));
            }
        }
    })
}

/// Turns a CSV file into parsed rows: `parse` sees each record with its line; a refusal carries
/// the record's text for the rejects file.
pub(crate) fn records<R, F>(
    mut rows: CsvRows<R>,
    mut parse: F,
) -> impl Iterator<Item = crate::RowResult> + Send
where
    R: Read + Send + 'static,
    F: FnMut(&CsvRows<R>, u64) -> Result<crate::ParsedRow, RowError> + Send + 'static,
{
    std::iter::from_fn(move || {
        let line = match rows.advance()? {
            Ok(line) => line,
            Err(rejected) => return Some(Err(rejected)),
        };
        Some(parse(&rows, line).map_err(|e| rows.reject(e)))
    })
}

/// Parses a non-negative whole number of units.
pub(crate) fn parse_count(raw: &str) -> Result<u32, String> {
    raw.trim()
        .parse::<u32>()
        .map_err(|_| format!("`{raw}` is not a whole number of units"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads through the adapter with a given chunk size.
    fn through(input: &[u8], chunk: usize) -> Vec<u8> {
        struct Chunky<'a>(&'a [u8], usize);
        impl Read for Chunky<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = CrlfToLf::new(Chunky(input, chunk));
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        out
    }

    proptest! {
        #[test]
        fn crlf_becomes_lf_whatever_the_chunking(s in "[a\r\n]{0,40}", chunk in 1usize..7) {
            let expected = s.replace("\r\n", "\n");
            prop_assert_eq!(String::from_utf8(through(s.as_bytes(), chunk)).unwrap(), expected);
        }
    }
}
