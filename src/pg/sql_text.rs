//! Pieces of SQL text built from values and names: quoting that no value or name can break out of,
//! constants written as literals, type names as CARTO knows them. Plain string work, no catalog access.

use pgrx::pg_sys;

/// Always double-quotes, doubling embedded quotes: no name can break out of its identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal that means the same whatever `standard_conforming_strings` is remotely.
pub fn quote_literal(value: &str) -> String {
    if value.contains('\\') {
        format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

/// Drops a schema qualification before a type's name (`public.geometry(Point,4326)` →
/// `geometry(Point,4326)`, `x.h3index[]` → `h3index[]`): extension types may print qualified
/// locally, while CARTO has them on its search_path.
pub fn strip_schema(name: &str) -> String {
    let head_end = name.find('(').or_else(|| name.find('[')).unwrap_or(name.len());
    match name[..head_end].rfind('.') {
        Some(dot) => name[dot + 1..].to_string(),
        None => name.to_string(),
    }
}

/// A constant's literal: numbers and booleans bare when their text is plainly a number,
/// everything else quoted with an explicit cast.
pub fn literal_for_type(typid: pg_sys::Oid, text: &str, type_name: &str) -> String {
    let numeric = [pg_sys::INT2OID, pg_sys::INT4OID, pg_sys::INT8OID, pg_sys::NUMERICOID];
    if numeric.contains(&typid)
        && !text.is_empty()
        && text.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        return if typid == pg_sys::INT4OID { text.to_string() } else { format!("{text}::{type_name}") };
    }
    if typid == pg_sys::BOOLOID {
        return if text == "t" { "true".into() } else { "false".into() };
    }
    format!("{}::{type_name}", quote_literal(text))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn identifiers_and_literals_cannot_escape() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'"), "E'a\\\\b'''");
    }

    #[test]
    fn schema_stripped_from_extension_types() {
        assert_eq!(strip_schema("public.geometry(Point,4326)"), "geometry(Point,4326)");
        assert_eq!(strip_schema("geography"), "geography");
    }
}
