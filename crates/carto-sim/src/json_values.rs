//! PostgreSQL text values → the JSON CARTO sends. CARTO runs node-postgres (with parseFloat for int8,
//! float and numeric) and JSON.stringify with a replacer turning NaN/±Infinity into strings; this
//! module reproduces the result, including JavaScript's number formatting.
use serde_json::Value;
use tokio_postgres::types::{Kind, Type};

/// What the sim knows about one output column.
#[derive(Debug, Clone)]
pub struct ColInfo {
    pub name: String,
    pub oid: u32,
    /// Element type oid for arrays.
    pub elem: Option<u32>,
    /// CARTO's name for the type (`None`: CARTO does not know it → `unknown(oid)`).
    pub cname: Option<String>,
    pub typmod: i32,
}

impl ColInfo {
    pub fn from_column(name: &str, ty: &Type, typmod: i32) -> ColInfo {
        let oid = ty.oid();
        let elem = match ty.kind() {
            Kind::Array(e) => Some(e.oid()),
            _ => None,
        };
        // CARTO knows built-in types by a static table, extension types only for geometry/geography/raster.
        let cname = if oid == 114 {
            Some("JSON".to_string())
        } else if oid < 16384 || ["geometry", "geography", "raster"].contains(&ty.name()) {
            Some(ty.name().to_string())
        } else {
            None
        };
        ColInfo { name: name.to_string(), oid, elem, cname, typmod }
    }

    pub fn is_geo(&self) -> bool {
        matches!(self.cname.as_deref(), Some("geometry") | Some("geography") | Some("raster"))
    }
}

/// The `fields` entry of a column, as JSON text.
pub fn field_json(c: &ColInfo) -> String {
    let cname = match &c.cname {
        None => return format!("{{\"type\":{}}}", json_str(&format!("unknown({})", c.oid))),
        Some(n) => n,
    };
    let mut t = if cname.contains("bool") {
        "boolean".to_string()
    } else if cname.contains("int") || cname.contains("float") || cname.contains("numeric") {
        "number".to_string()
    } else if cname.contains("text") || cname.contains("char") || cname.contains("unknown") {
        "string".to_string()
    } else if cname.contains("date") || cname.contains("time") {
        "date".to_string()
    } else {
        cname.clone()
    };
    if cname.starts_with('_') {
        t.push_str("[]");
    }
    if c.is_geo() {
        let (wkbtype, dims, srid) = typmod_info(c.typmod);
        let mut s = format!("{{\"type\":{}", json_str(&t));
        if let Some(w) = wkbtype {
            s.push_str(&format!(",\"wkbtype\":{}", json_str(w)));
        }
        s.push_str(&format!(",\"dims\":{dims},\"srid\":{srid}}}"));
        s
    } else {
        format!("{{\"type\":{},\"pgtype\":{}}}", json_str(&t), json_str(cname))
    }
}

/// PostGIS typmod → (wkbtype, dims, srid), with JavaScript's 32-bit arithmetic.
pub fn typmod_info(typmod: i32) -> (Option<&'static str>, i32, i32) {
    const WKB: [&str; 15] = [
        "Unknown", "Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon",
        "GeometryCollection", "CircularString", "CompoundCurve", "CurvePolygon", "MultiCurvePolygon",
        "PolyhedralSurface", "Triangle", "TIN",
    ];
    let srid = ((typmod & 0x0FFF_FF00).wrapping_sub(typmod & 0x1000_0000)) >> 8;
    let lwtype = ((typmod & 0xFC) >> 2) as usize;
    let has_z = (typmod & 2) >> 1;
    let has_m = typmod & 1;
    (WKB.get(lwtype).copied(), 2 + has_z + has_m, srid)
}

pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// JavaScript's Number.prototype.toString for finite numbers; NaN/±Infinity become strings as CARTO's
/// JSON replacer does.
pub fn js_number(f: f64) -> String {
    if f.is_nan() {
        return "\"NaN\"".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "\"Infinity\"".into() } else { "\"-Infinity\"".into() };
    }
    if f == 0.0 {
        return "0".into();
    }
    let a = f.abs();
    if (1e-6..1e21).contains(&a) {
        // Rust's Display is the shortest round-trip form without exponent, like JS in this range.
        format!("{f}")
    } else {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    }
}

fn parse_float_js(s: &str) -> f64 {
    // parseFloat: leading number, "Infinity", "-Infinity"; anything else NaN.
    let t = s.trim();
    match t {
        "Infinity" | "+Infinity" => return f64::INFINITY,
        "-Infinity" => return f64::NEG_INFINITY,
        _ => {}
    }
    t.parse::<f64>().unwrap_or(f64::NAN)
}

/// Write one value (text form `v` from PostgreSQL, `None` = NULL) as JSON.
pub fn write_value(out: &mut String, c: &ColInfo, v: Option<&str>) {
    match v {
        None => out.push_str("null"),
        Some(s) => match c.elem {
            Some(e) if array_parsed(c.oid) => write_array(out, e, s),
            _ => write_scalar(out, c.oid, s),
        },
    }
}

fn array_parsed(oid: u32) -> bool {
    matches!(
        oid,
        1000 | 1001 | 1005 | 1007 | 1016 | 1017 | 1021 | 1022 | 1231 | 1014 | 1015 | 1008 | 1009 | 1040 | 1041
            | 1115 | 1182 | 1185 | 1187 | 199 | 3807 | 2951 | 791 | 1183 | 1270 | 1028 | 1002
    )
}

fn write_scalar(out: &mut String, oid: u32, s: &str) {
    match oid {
        16 => out.push_str(if s == "t" || s == "true" { "true" } else { "false" }),
        21 | 23 | 26 => out.push_str(&js_number(s.trim().parse::<f64>().unwrap_or(f64::NAN))),
        20 | 700 | 701 | 1700 => out.push_str(&js_number(parse_float_js(s))),
        114 | 3802 => match serde_json::from_str::<Value>(s) {
            Ok(v) => write_json(out, &v),
            Err(_) => out.push_str(&json_str(s)),
        },
        17 => write_bytea(out, s),
        1082 | 1114 | 1184 => write_date(out, s),
        1186 => write_interval(out, s),
        600 => write_point(out, s),
        718 => write_circle(out, s),
        _ => out.push_str(&json_str(s)),
    }
}

/// serde_json value → JSON text with JavaScript number formatting.
pub fn write_json(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&js_number(n.as_f64().unwrap_or(f64::NAN))),
        Value::String(s) => out.push_str(&json_str(s)),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_str(k));
                out.push(':');
                write_json(out, x);
            }
            out.push('}');
        }
    }
}

fn write_bytea(out: &mut String, s: &str) {
    out.push_str("{\"type\":\"Buffer\",\"data\":[");
    let bytes: Vec<u8> = if let Some(h) = s.strip_prefix("\\x") { hex::decode(h).unwrap_or_default() } else { unescape_bytea(s) };
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&b.to_string());
    }
    out.push_str("]}");
}

fn unescape_bytea(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
                continue;
            }
            if i + 3 < b.len() {
                if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Dates and timestamps → ISO-8601 UTC without fractional seconds ("2026-11-21T00:00:00Z").
fn write_date(out: &mut String, s: &str) {
    match s {
        "infinity" => return out.push_str("\"Infinity\""),
        "-infinity" => return out.push_str("\"-Infinity\""),
        _ => {}
    }
    match iso_utc(s) {
        Some(t) => out.push_str(&json_str(&t)),
        None => out.push_str(&json_str(s)),
    }
}

pub fn iso_utc(s: &str) -> Option<String> {
    use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
    if s.ends_with(" BC") {
        return None;
    }
    let (date_part, rest) = match s.split_once(' ') {
        Some((d, r)) => (d, Some(r)),
        None => (s, None),
    };
    let date = NaiveDate::parse_from_str(date_part, "%Y-%m-%d").ok()?;
    let Some(rest) = rest else {
        return Some(date.format("%Y-%m-%dT00:00:00Z").to_string());
    };
    // Split a trailing UTC offset (+HH, -HH:MM, +HH:MM:SS) from the time.
    let (time_s, offset_secs) = match rest.rfind(['+', '-']) {
        Some(p) => {
            let (t, o) = rest.split_at(p);
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let mut parts = o[1..].split(':').map(|x| x.parse::<i64>().unwrap_or(0));
            let h = parts.next().unwrap_or(0);
            let m = parts.next().unwrap_or(0);
            let sec = parts.next().unwrap_or(0);
            (t, sign * (h * 3600 + m * 60 + sec))
        }
        None => (rest, 0),
    };
    let time = NaiveTime::parse_from_str(time_s, "%H:%M:%S%.f").ok()?;
    let dt = NaiveDateTime::new(date, time) - chrono::Duration::seconds(offset_secs);
    Some(dt.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// postgres-interval's object: years, months, days, hours, minutes, seconds, milliseconds; zeros omitted.
fn write_interval(out: &mut String, s: &str) {
    let mut parts: Vec<(&str, f64)> = Vec::new();
    let (mut years, mut months, mut days) = (0f64, 0f64, 0f64);
    let (mut h, mut m, mut sec, mut ms) = (0f64, 0f64, 0f64, 0f64);
    let toks: Vec<&str> = s.split_whitespace().collect();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        if t.contains(':') {
            let neg = t.starts_with('-');
            let t = t.trim_start_matches(['+', '-']);
            let mut it = t.split(':');
            let hh = it.next().unwrap_or("0").parse::<f64>().unwrap_or(0.0);
            let mm = it.next().unwrap_or("0").parse::<f64>().unwrap_or(0.0);
            let ss = it.next().unwrap_or("0");
            let (whole, frac) = ss.split_once('.').unwrap_or((ss, ""));
            let sv = whole.parse::<f64>().unwrap_or(0.0);
            let msv = if frac.is_empty() {
                0.0
            } else {
                let padded = format!("{:0<6}", &frac[..frac.len().min(6)]);
                padded.parse::<f64>().unwrap_or(0.0) / 1000.0
            };
            let sign = if neg { -1.0 } else { 1.0 };
            h = sign * hh;
            m = sign * mm;
            sec = sign * sv;
            ms = sign * msv;
            i += 1;
            continue;
        }
        if let (Ok(n), Some(unit)) = (t.parse::<f64>(), toks.get(i + 1)) {
            if unit.starts_with("year") {
                years = n;
            } else if unit.starts_with("mon") {
                months = n;
            } else if unit.starts_with("day") {
                days = n;
            }
            i += 2;
            continue;
        }
        i += 1;
    }
    for (k, v) in [("years", years), ("months", months), ("days", days), ("hours", h), ("minutes", m), ("seconds", sec), ("milliseconds", ms)] {
        if v != 0.0 {
            parts.push((k, v));
        }
    }
    out.push('{');
    for (i, (k, v)) in parts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("\"{k}\":{}", js_number(*v)));
    }
    out.push('}');
}

fn nums(s: &str) -> Vec<f64> {
    s.split([',', '(', ')', '<', '>'])
        .filter(|x| !x.trim().is_empty())
        .map(parse_float_js)
        .collect()
}

fn write_point(out: &mut String, s: &str) {
    let n = nums(s);
    out.push_str(&format!("{{\"x\":{},\"y\":{}}}", js_number(*n.first().unwrap_or(&f64::NAN)), js_number(*n.get(1).unwrap_or(&f64::NAN))));
}

fn write_circle(out: &mut String, s: &str) {
    let n = nums(s);
    let g = |i: usize| js_number(*n.get(i).unwrap_or(&f64::NAN));
    out.push_str(&format!("{{\"x\":{},\"y\":{},\"radius\":{}}}", g(0), g(1), g(2)));
}

/// Parse PostgreSQL's array text (`{1,2,NULL}`, `{{a,b},{"c d",e}}`) and write it as nested JSON arrays.
fn write_array(out: &mut String, elem: u32, s: &str) {
    // Arrays may carry explicit bounds: "[0:1]={1,2}".
    let s = match s.find('=') {
        Some(p) if s.starts_with('[') => &s[p + 1..],
        _ => s,
    };
    let b = s.as_bytes();
    let mut i = 0;
    let mut first_stack: Vec<bool> = Vec::new();
    let delim = if elem == 603 { b';' } else { b',' };
    while i < b.len() {
        match b[i] {
            b'{' => {
                if let Some(f) = first_stack.last_mut() {
                    if !*f {
                        out.push(',');
                    }
                    *f = false;
                }
                out.push('[');
                first_stack.push(true);
                i += 1;
            }
            b'}' => {
                out.push(']');
                first_stack.pop();
                i += 1;
            }
            c if c == delim || c.is_ascii_whitespace() => i += 1,
            _ => {
                // One element, quoted or not.
                let (val, quoted, next) = if b[i] == b'"' {
                    let mut v = Vec::new();
                    let mut j = i + 1;
                    while j < b.len() && b[j] != b'"' {
                        if b[j] == b'\\' && j + 1 < b.len() {
                            j += 1;
                        }
                        v.push(b[j]);
                        j += 1;
                    }
                    (String::from_utf8_lossy(&v).into_owned(), true, j + 1)
                } else {
                    let mut j = i;
                    while j < b.len() && b[j] != delim && b[j] != b'}' {
                        j += 1;
                    }
                    (s[i..j].trim().to_string(), false, j)
                };
                if let Some(f) = first_stack.last_mut() {
                    if !*f {
                        out.push(',');
                    }
                    *f = false;
                }
                if !quoted && val == "NULL" {
                    out.push_str("null");
                } else {
                    write_scalar(out, elem, &val);
                }
                i = next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(oid: u32, s: &str) -> String {
        let mut o = String::new();
        write_scalar(&mut o, oid, s);
        o
    }

    #[test]
    fn numbers_like_javascript() {
        assert_eq!(js_number(1.0), "1");
        assert_eq!(js_number(-1.5), "-1.5");
        assert_eq!(js_number(0.1), "0.1");
        assert_eq!(js_number(-0.0), "0");
        assert_eq!(js_number(9007199254740993.0), "9007199254740992");
        assert_eq!(js_number(2f64.powi(60)), "1152921504606847000");
        assert_eq!(js_number(1.2345678901234568e29), "1.2345678901234568e+29");
        assert_eq!(js_number(1e21), "1e+21");
        assert_eq!(js_number(1e-7), "1e-7");
        assert_eq!(js_number(0.000001), "0.000001");
        assert_eq!(js_number(f64::NAN), "\"NaN\"");
        assert_eq!(js_number(f64::NEG_INFINITY), "\"-Infinity\"");
        assert_eq!(val(1700, "123456789012345678901234567890"), "1.2345678901234568e+29");
        assert_eq!(val(20, "9007199254740993"), "9007199254740992");
        assert_eq!(val(701, "Infinity"), "\"Infinity\"");
        assert_eq!(val(1700, "NaN"), "\"NaN\"");
        assert_eq!(val(23, "42"), "42");
    }

    #[test]
    fn dates() {
        assert_eq!(val(1082, "2026-11-21"), "\"2026-11-21T00:00:00Z\"");
        assert_eq!(val(1114, "2026-11-21 10:11:12.345"), "\"2026-11-21T10:11:12Z\"");
        assert_eq!(val(1184, "2026-11-21 10:11:12.9+01"), "\"2026-11-21T09:11:12Z\"");
        assert_eq!(val(1184, "2026-11-21 00:30:00-05:30"), "\"2026-11-21T06:00:00Z\"");
        assert_eq!(val(1114, "infinity"), "\"Infinity\"");
        assert_eq!(val(1083, "10:11:12"), "\"10:11:12\"");
    }

    #[test]
    fn other_types() {
        assert_eq!(val(16, "t"), "true");
        assert_eq!(val(17, "\\x0102ff"), "{\"type\":\"Buffer\",\"data\":[1,2,255]}");
        assert_eq!(val(114, "{\"a\": 1, \"b\": [1.50, \"x\"]}"), "{\"a\":1,\"b\":[1.5,\"x\"]}");
        assert_eq!(val(1186, "1 day 02:03:04.5"), "{\"days\":1,\"hours\":2,\"minutes\":3,\"seconds\":4,\"milliseconds\":500}");
        assert_eq!(val(1186, "00:00:00"), "{}");
        assert_eq!(val(1186, "-1 years -2 mons +3 days -04:05:06"), "{\"years\":-1,\"months\":-2,\"days\":3,\"hours\":-4,\"minutes\":-5,\"seconds\":-6}");
        assert_eq!(val(600, "(1.5,2)"), "{\"x\":1.5,\"y\":2}");
        let mut o = String::new();
        write_array(&mut o, 23, "{1,2,NULL}");
        assert_eq!(o, "[1,2,null]");
        let mut o = String::new();
        write_array(&mut o, 25, "{{a,\"b c\"},{\"NULL\",\"q\\\"x\"}}");
        assert_eq!(o, "[[\"a\",\"b c\"],[\"NULL\",\"q\\\"x\"]]");
    }

    #[test]
    fn fields() {
        let c = |oid, cname: &str, typmod| ColInfo { name: "x".into(), oid, elem: None, cname: Some(cname.into()), typmod };
        assert_eq!(field_json(&c(23, "int4", -1)), "{\"type\":\"number\",\"pgtype\":\"int4\"}");
        assert_eq!(field_json(&c(1007, "_int4", -1)), "{\"type\":\"number[]\",\"pgtype\":\"_int4\"}");
        assert_eq!(field_json(&c(1186, "interval", -1)), "{\"type\":\"number\",\"pgtype\":\"interval\"}");
        assert_eq!(field_json(&c(1083, "time", -1)), "{\"type\":\"date\",\"pgtype\":\"time\"}");
        assert_eq!(field_json(&c(114, "JSON", -1)), "{\"type\":\"JSON\",\"pgtype\":\"JSON\"}");
        assert_eq!(field_json(&c(99999, "geometry", -1)), "{\"type\":\"geometry\",\"dims\":4,\"srid\":-1}");
        // geometry(Point,4326)
        assert_eq!(field_json(&c(99999, "geometry", (4326 << 8) | (1 << 2))), "{\"type\":\"geometry\",\"wkbtype\":\"Point\",\"dims\":2,\"srid\":4326}");
        assert_eq!(field_json(&c(99999, "geometry", 4326 << 8)), "{\"type\":\"geometry\",\"wkbtype\":\"Unknown\",\"dims\":2,\"srid\":4326}");
        let u = ColInfo { name: "x".into(), oid: 77777, elem: None, cname: None, typmod: -1 };
        assert_eq!(field_json(&u), "{\"type\":\"unknown(77777)\"}");
    }
}
