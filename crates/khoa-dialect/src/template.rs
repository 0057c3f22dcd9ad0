//! JSON templates: a definition's answer bodies. A template is the JSON the partner's document
//! shows, with values taken from the issued tokens or the refusal:
//!
//! - `"{expires_in}"`, a placeholder alone in its string, keeps the value's type: a number stays
//!   a number. `"{expires_in?}"` leaves the member out when there is no value (a token answer
//!   without a refresh token). `"{null}"` is JSON `null`, which TOML cannot write.
//! - `"{code} {message}"`, placeholders among text, makes a string.
//! - Filters, left to right after `|`: `string` (a number as text), `ms` (seconds as
//!   milliseconds), `offset:+07:00` or `offset:Asia/Jakarta` (the time zone of a time),
//!   `rfc3339`, `format:dd/MM/yyyy HH:mm:ss` (Java-style pattern letters `yyyy MM dd HH mm ss
//!   SSS`, and `XXX` for the offset).
//! - `{{` and `}}` are literal braces.
//!
//! Object members keep the order they are written in.

use serde_json::{Map, Value};

/// A compiled template.
#[derive(Clone, Debug, PartialEq)]
pub enum Template {
    Const(Value),
    /// One placeholder: typed; omitted from its object when optional and absent.
    Var(Placeholder),
    /// Text with placeholders: a string.
    Text(Vec<Piece>),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Lit(String),
    Var(Placeholder),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Placeholder {
    pub name: String,
    pub optional: bool,
    pub filters: Vec<Filter>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    String,
    Millis,
    /// Seconds east of UTC.
    Offset(i32),
    Rfc3339,
    Format(String),
}

/// A mistake in a template: the dotted path under the template's own key, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub path: Vec<String>,
    pub message: String,
}

/// A time in a template's values: Unix seconds (or milliseconds, after `ms`) and an offset.
#[derive(Clone, Copy, Debug)]
struct Time {
    secs: i64,
    offset: i32,
}

impl Template {
    /// Compiles `value`, accepting only the placeholder names `known` accepts.
    pub fn compile(value: &Value, known: &dyn Fn(&str) -> bool) -> Result<Self, TemplateError> {
        compile(value, known, &mut Vec::new())
    }

    /// Every placeholder name, for checks such as "the answer carries the access token".
    pub fn names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Template::Const(_) => {}
            Template::Var(p) => out.push(&p.name),
            Template::Text(pieces) => pieces.iter().for_each(|p| {
                if let Piece::Var(v) = p {
                    out.push(&v.name)
                }
            }),
            Template::Object(m) => m.iter().for_each(|(_, t)| t.collect(out)),
            Template::Array(a) => a.iter().for_each(|t| t.collect(out)),
        }
    }

    /// Renders with `lookup` giving each placeholder's value (`None`: absent).
    pub fn render(&self, lookup: &dyn Fn(&str) -> Option<Value>) -> Value {
        self.render_opt(lookup).unwrap_or(Value::Null)
    }

    fn render_opt(&self, lookup: &dyn Fn(&str) -> Option<Value>) -> Option<Value> {
        Some(match self {
            Template::Const(v) => v.clone(),
            Template::Var(p) => match lookup(&p.name) {
                Some(v) => apply(v, &p.filters),
                None if p.optional => return None,
                None => Value::Null,
            },
            Template::Text(pieces) => {
                let mut s = String::new();
                for p in pieces {
                    match p {
                        Piece::Lit(l) => s.push_str(l),
                        Piece::Var(p) => match lookup(&p.name).map(|v| apply(v, &p.filters)) {
                            Some(Value::String(v)) => s.push_str(&v),
                            Some(Value::Null) | None => {}
                            Some(other) => s.push_str(&other.to_string()),
                        },
                    }
                }
                Value::String(s)
            }
            Template::Object(members) => {
                let mut m = Map::with_capacity(members.len());
                for (k, t) in members {
                    if let Some(v) = t.render_opt(lookup) {
                        m.insert(k.clone(), v);
                    }
                }
                Value::Object(m)
            }
            Template::Array(items) => {
                Value::Array(items.iter().map(|t| t.render(lookup)).collect())
            }
        })
    }

    /// The values of an answer rendered from this template, read back: each placeholder that
    /// stands alone in its string, with the value at the same place in `answer` (the client
    /// side reads a partner's token answer through the definition the server renders it
    /// with). Placeholders among text are not read back; a place the answer leaves out
    /// (`{refresh_token?}`) is simply not in the list.
    pub fn read_back<'t, 'a>(&'t self, answer: &'a Value) -> Vec<(&'t Placeholder, &'a Value)> {
        let mut out = Vec::new();
        self.read_into(answer, &mut out);
        out
    }

    fn read_into<'t, 'a>(&'t self, answer: &'a Value, out: &mut Vec<(&'t Placeholder, &'a Value)>) {
        match (self, answer) {
            (Template::Var(p), v) => out.push((p, v)),
            (Template::Object(members), Value::Object(m)) => {
                for (k, t) in members {
                    if let Some(v) = m.get(k) {
                        t.read_into(v, out);
                    }
                }
            }
            (Template::Array(items), Value::Array(a)) => {
                for (t, v) in items.iter().zip(a) {
                    t.read_into(v, out);
                }
            }
            _ => {}
        }
    }

    /// The template at a dotted path of objects, for `errors.mirror`.
    pub fn at(&self, path: &str) -> Option<&Template> {
        let mut at = self;
        for seg in path.split('.') {
            let Template::Object(members) = at else {
                return None;
            };
            at = &members.iter().find(|(k, _)| k == seg)?.1;
        }
        Some(at)
    }
}

fn compile(
    value: &Value,
    known: &dyn Fn(&str) -> bool,
    path: &mut Vec<String>,
) -> Result<Template, TemplateError> {
    let fail = |path: &Vec<String>, message: String| TemplateError {
        path: path.clone(),
        message,
    };
    Ok(match value {
        Value::String(s) => {
            let pieces = parse_text(s).map_err(|m| fail(path, m))?;
            for p in &pieces {
                if let Piece::Var(v) = p
                    && v.name != "null"
                    && !known(&v.name)
                {
                    return Err(fail(
                        path,
                        format!(
                            "the template names {{{}}}, which this answer does not have",
                            v.name
                        ),
                    ));
                }
            }
            match pieces.as_slice() {
                [] => Template::Const(Value::String(String::new())),
                [Piece::Lit(l)] => Template::Const(Value::String(l.clone())),
                [Piece::Var(v)] if v.name == "null" => Template::Const(Value::Null),
                [Piece::Var(v)] => Template::Var(v.clone()),
                _ => {
                    if let Some(v) = pieces.iter().find_map(|p| match p {
                        Piece::Var(v) if v.optional => Some(v),
                        _ => None,
                    }) {
                        return Err(fail(
                            path,
                            format!(
                                "{{{}?}} may only stand alone in its string: text around it \
                                 cannot be left out",
                                v.name
                            ),
                        ));
                    }
                    Template::Text(pieces)
                }
            }
        }
        Value::Object(m) => {
            let mut members = Vec::with_capacity(m.len());
            for (k, v) in m {
                path.push(k.clone());
                members.push((k.clone(), compile(v, known, path)?));
                path.pop();
            }
            Template::Object(members)
        }
        Value::Array(a) => {
            let mut items = Vec::with_capacity(a.len());
            for (i, v) in a.iter().enumerate() {
                path.push(i.to_string());
                items.push(compile(v, known, path)?);
                path.pop();
            }
            Template::Array(items)
        }
        other => Template::Const(other.clone()),
    })
}

fn parse_text(s: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let rest = &s[i + 1..];
                let end = rest
                    .find('}')
                    .ok_or_else(|| format!("unclosed {{ in \"{s}\" (write {{{{ for a brace)"))?;
                let inner = &rest[..end];
                for _ in 0..inner.chars().count() + 1 {
                    chars.next();
                }
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Var(parse_placeholder(inner)?));
            }
            '}' => return Err(format!("stray }} in \"{s}\" (write }}}} for a brace)")),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(pieces)
}

fn parse_placeholder(inner: &str) -> Result<Placeholder, String> {
    let mut parts = inner.split('|');
    let head = parts.next().unwrap_or_default().trim();
    let (name, optional) = match head.strip_suffix('?') {
        Some(n) => (n, true),
        None => (head, false),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!("{{{inner}}} is not a placeholder name"));
    }
    let filters = parts.map(parse_filter).collect::<Result<_, _>>()?;
    Ok(Placeholder {
        name: name.to_owned(),
        optional,
        filters,
    })
}

fn parse_filter(f: &str) -> Result<Filter, String> {
    let (name, arg) = match f.split_once(':') {
        Some((n, a)) => (n.trim(), Some(a)),
        None => (f.trim(), None),
    };
    Ok(match (name, arg) {
        ("string", None) => Filter::String,
        ("ms", None) => Filter::Millis,
        ("rfc3339", None) => Filter::Rfc3339,
        ("offset", Some(a)) => Filter::Offset(parse_offset(a.trim())?),
        ("format", Some(p)) if !p.is_empty() => {
            check_pattern(p)?;
            Filter::Format(p.to_owned())
        }
        _ => {
            return Err(format!(
                "unknown filter |{f} (string, ms, offset:+07:00, rfc3339, format:PATTERN)"
            ));
        }
    })
}

/// One piece of a time pattern: quoted text, or a run of one pattern letter (or other char).
enum Run {
    Text(String),
    Letter(char, usize),
}

/// Splits a Java-style pattern into runs; text in single quotes is literal.
fn runs(p: &str) -> Result<Vec<Run>, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&q| q == '\'')
                .ok_or_else(|| format!("format:{p}: unclosed quote"))?;
            out.push(Run::Text(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
            continue;
        }
        let n = chars[i..].iter().take_while(|&&x| x == c).count();
        out.push(Run::Letter(c, n));
        i += n;
    }
    Ok(out)
}

/// Refuses pattern letters [`format_time`] does not implement, rather than copying them into
/// every answer: `yyyy` (or `yy`), `MM`, `dd`, `HH`, `mm`, `ss`, `S…`, `XXX`; text in quotes.
fn check_pattern(p: &str) -> Result<(), String> {
    for run in runs(p)? {
        let Run::Letter(c, n) = run else { continue };
        let ok = match c {
            'y' => n == 2 || n == 4,
            'M' | 'd' | 'H' | 'm' | 's' => n == 2,
            'S' => n <= 9,
            'X' => n == 3,
            c => !c.is_ascii_alphabetic(),
        };
        if !ok {
            return Err(format!(
                "format:{p}: {} is not a pattern khoa writes (yyyy or yy, MM, dd, HH, mm, ss, \
                 S…, XXX; quote literal text with ')",
                String::from(c).repeat(n)
            ));
        }
    }
    Ok(())
}

/// `+07:00`, `-0530`, `Z`, `UTC`, or a time zone whose offset never changes. Zones with
/// daylight saving time are refused: their offset depends on the date, which needs a time zone
/// database khoa does not carry.
pub fn parse_offset(s: &str) -> Result<i32, String> {
    const FIXED: [(&str, i32); 8] = [
        ("UTC", 0),
        ("Etc/UTC", 0),
        ("Asia/Ho_Chi_Minh", 7 * 3600),
        ("Asia/Jakarta", 7 * 3600),
        ("Asia/Bangkok", 7 * 3600),
        ("Asia/Singapore", 8 * 3600),
        ("Asia/Manila", 8 * 3600),
        ("Asia/Tokyo", 9 * 3600),
    ];
    if s == "Z" {
        return Ok(0);
    }
    if let Some((_, o)) = FIXED.iter().find(|(n, _)| *n == s) {
        return Ok(*o);
    }
    let bad = || {
        format!(
            "offset {s:?} is not +HH:MM, Z or a fixed-offset zone ({})",
            FIXED.map(|f| f.0).join(", ")
        )
    };
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (i32, i32) = (digits[..2].parse().unwrap(), digits[2..].parse().unwrap());
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

fn apply(mut v: Value, filters: &[Filter]) -> Value {
    let mut time: Option<Time> = None;
    for f in filters {
        let secs = time.map(|t| t.secs).or_else(|| v.as_i64());
        match f {
            Filter::String => {
                v = match &v {
                    Value::String(_) => v,
                    other => Value::String(other.to_string()),
                }
            }
            Filter::Millis => {
                if let Some(n) = v.as_i64() {
                    v = Value::from(n.saturating_mul(1000));
                }
            }
            Filter::Offset(o) => {
                if let Some(secs) = secs {
                    time = Some(Time { secs, offset: *o });
                }
            }
            Filter::Rfc3339 => {
                if let Some(secs) = secs {
                    let t = time.unwrap_or(Time { secs, offset: 0 });
                    v = Value::String(format_time(t, "yyyy-MM-dd'T'HH:mm:ssXXX"));
                }
            }
            Filter::Format(p) => {
                if let Some(secs) = secs {
                    let t = time.unwrap_or(Time { secs, offset: 0 });
                    v = Value::String(format_time(t, p));
                }
            }
        }
    }
    v
}

/// Formats a time with Java-style pattern letters (the patterns partner documents quote),
/// checked at load by [`check_pattern`].
fn format_time(t: Time, pattern: &str) -> String {
    let local = t.secs + i64::from(t.offset);
    let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    let mut out = String::new();
    for run in runs(pattern).unwrap_or_default() {
        let (c, n) = match run {
            Run::Text(t) => {
                out.push_str(&t);
                continue;
            }
            Run::Letter(c, n) => (c, n),
        };
        match c {
            'y' if n == 2 => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            'y' => out.push_str(&format!("{y:04}")),
            'M' => out.push_str(&format!("{mo:02}")),
            'd' => out.push_str(&format!("{d:02}")),
            'H' => out.push_str(&format!("{:02}", secs / 3600)),
            'm' => out.push_str(&format!("{:02}", secs % 3600 / 60)),
            's' => out.push_str(&format!("{:02}", secs % 60)),
            'S' => out.push_str(&"0".repeat(n)),
            'X' if t.offset == 0 => out.push('Z'),
            'X' => {
                let o = t.offset.abs();
                let sign = if t.offset < 0 { '-' } else { '+' };
                out.push_str(&format!("{sign}{:02}:{:02}", o / 3600, o % 3600 / 60));
            }
            c => (0..n).for_each(|_| out.push(c)),
        }
    }
    out
}

/// Unix seconds of an RFC 3339 time (`2026-12-07T17:00:00+07:00`, `…Z`, fractions of a second
/// ignored), the form signature timestamps take; `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o => i64::from(
            parse_offset(o)
                .ok()
                .filter(|_| o.len() == 6 && &o[3..4] == ":")?,
        ),
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`): hand-written, as a calendar crate would be a dependency for two
/// functions. Also used by the `khoa audit` CLI.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of a day count since 1970-01-01, `days_from_civil`'s inverse.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: Value, vars: Value) -> Value {
        let t = Template::compile(&t, &|_| true).unwrap();
        t.render(&|n| vars.get(n).cloned())
    }

    #[test]
    fn a_lone_placeholder_keeps_its_type_and_text_makes_a_string() {
        let out = render(
            json!({"ttl": "{expires_in}", "s": "{expires_in|string}", "d": "{code} {message}"}),
            json!({"expires_in": 900, "code": -107, "message": "wrong"}),
        );
        assert_eq!(out, json!({"ttl": 900, "s": "900", "d": "-107 wrong"}));
        assert_eq!(out.to_string(), r#"{"ttl":900,"s":"900","d":"-107 wrong"}"#);
    }

    #[test]
    fn an_answer_is_read_back_at_the_places_its_template_puts_values() {
        let t = Template::compile(
            &json!({"code": 201, "data": {"token": "{access_token}", "ttl": "{expires_in|ms}"},
                    "r": "{refresh_token?}", "note": "id {client_id}"}),
            &|_| true,
        )
        .unwrap();
        let answer = json!({"code": 201, "data": {"token": "abc", "ttl": 4500}, "note": "id x"});
        let read: Vec<_> = t
            .read_back(&answer)
            .into_iter()
            .map(|(p, v)| (p.name.as_str(), p.filters.clone(), v.clone()))
            .collect();
        assert_eq!(
            read,
            [
                ("access_token", vec![], json!("abc")),
                ("expires_in", vec![Filter::Millis], json!(4500)),
            ]
        );
    }

    #[test]
    fn optional_members_are_left_out_and_null_is_written() {
        let out = render(
            json!({"a": "{access_token}", "r": "{refresh_token?}", "n": "{null}"}),
            json!({"access_token": "x"}),
        );
        assert_eq!(out.to_string(), r#"{"a":"x","n":null}"#);
    }

    #[test]
    fn times_render_in_every_documented_form() {
        // 2026-12-07T10:00:00Z
        let v = json!({"t": 1_796_637_600});
        let out = render(
            json!({
                "unix": "{t}", "ms": "{t|ms}", "utc": "{t|rfc3339}",
                "hcm": "{t|offset:Asia/Ho_Chi_Minh|rfc3339}",
                "vn": "{t|offset:+07:00|format:dd/MM/yyyy HH:mm:ss}",
                "short": "{t|format:yyMMdd'T'HHmmss}",
            }),
            v,
        );
        assert_eq!(out["unix"], 1_796_637_600);
        assert_eq!(out["ms"], 1_796_637_600_000i64);
        assert_eq!(out["utc"], "2026-12-07T10:00:00Z");
        assert_eq!(out["hcm"], "2026-12-07T17:00:00+07:00");
        assert_eq!(out["vn"], "07/12/2026 17:00:00");
        assert_eq!(out["short"], "261207T100000");
    }

    #[test]
    fn mistakes_are_refused_with_their_path() {
        let known = |n: &str| n == "access_token";
        let e = Template::compile(&json!({"data": {"t": "{acces_token}"}}), &known).unwrap_err();
        assert_eq!(e.path, ["data", "t"]);
        assert!(e.message.contains("{acces_token}"), "{}", e.message);
        for bad in [
            "{access_token",
            "x}",
            "{access_token|nope}",
            "a {access_token?}",
        ] {
            assert!(Template::compile(&json!(bad), &known).is_err(), "{bad}");
        }
        assert!(parse_offset("Europe/Berlin").is_err());
        assert_eq!(parse_offset("-05:30"), Ok(-(5 * 3600 + 30 * 60)));
    }

    #[test]
    fn signing_times_parse_with_their_offset() {
        assert_eq!(
            parse_rfc3339("2026-12-07T17:00:00+07:00"),
            Some(1_796_637_600)
        );
        assert_eq!(parse_rfc3339("2026-12-07T10:00:00Z"), Some(1_796_637_600));
        assert_eq!(
            parse_rfc3339("2026-12-07T10:00:00.123Z"),
            Some(1_796_637_600)
        );
        for bad in [
            "2026-12-07 10:00",
            "2026-13-07T10:00:00Z",
            "2026-12-07T10:00:00",
            "x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn braces_are_escaped_by_doubling() {
        assert_eq!(render(json!("{{x}}"), json!({})), json!("{x}"));
    }
}
