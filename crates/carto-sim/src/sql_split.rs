//! Split a multi-statement `q` on `;`, respecting quotes, dollar quotes and comments.
//! Needed because the sim prepares each statement on its own to learn its column types.
//! Also: whether a `q` of /copyfrom or /copyto is a COPY.

/// Whether `q` starts with COPY (CARTO's check on /copyfrom and /copyto).
pub fn starts_with_copy(q: &str) -> bool {
    q.trim_start().get(..4).is_some_and(|s| s.eq_ignore_ascii_case("copy"))
}

/// Statements of `sql`, trimmed, without the `;` and without empty (or comment-only) ones.
pub fn split(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut has_code = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' => {
                // E'...' strings take backslash escapes.
                let escapes = i > 0 && (b[i - 1] == b'e' || b[i - 1] == b'E') && (i < 2 || !is_ident(b[i - 2]));
                i = skip_quoted(b, i, b'\'', escapes);
                has_code = true;
            }
            b'"' => {
                i = skip_quoted(b, i, b'"', false);
                has_code = true;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' if i == 0 || !is_ident(b[i - 1]) => {
                if let Some(tag_end) = dollar_tag(b, i) {
                    let tag = &b[i..=tag_end];
                    let mut j = tag_end + 1;
                    let mut end = b.len();
                    while j + tag.len() <= b.len() {
                        if &b[j..j + tag.len()] == tag {
                            end = j + tag.len();
                            break;
                        }
                        j += 1;
                    }
                    i = end;
                    has_code = true;
                } else {
                    i += 1;
                    has_code = true;
                }
            }
            b';' => {
                if has_code {
                    out.push(sql[start..i].trim().to_string());
                }
                i += 1;
                start = i;
                has_code = false;
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                i += 1;
                has_code = true;
            }
        }
    }
    if has_code {
        let s = sql[start..].trim();
        if !s.is_empty() {
            out.push(s.to_string());
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// Index just past the closing quote (doubled quotes stay inside).
fn skip_quoted(b: &[u8], start: usize, q: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// If a dollar-quote tag (`$$` or `$tag$`) starts at `i`, the index of its closing `$`.
fn dollar_tag(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        let c = b[j];
        if c == b'$' {
            return Some(j);
        }
        let ok = if j == i + 1 { c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 } else { is_ident(c) };
        if !ok {
            return None;
        }
        j += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn plain() {
        assert_eq!(split("select 1; select 2"), vec!["select 1", "select 2"]);
        assert_eq!(split("select 1;"), vec!["select 1"]);
        assert_eq!(split(" ; ;select 1;; "), vec!["select 1"]);
        assert!(split("").is_empty());
    }

    #[test]
    fn quotes_and_comments() {
        assert_eq!(split("select 'a;b'; select \"x;y\" from t"), vec!["select 'a;b'", "select \"x;y\" from t"]);
        assert_eq!(split("select 'it''s;'; select 2"), vec!["select 'it''s;'", "select 2"]);
        assert_eq!(split("select E'a\\';b'; select 2"), vec!["select E'a\\';b'", "select 2"]);
        assert_eq!(split("select 1 -- c;omment\n; select 2"), vec!["select 1 -- c;omment", "select 2"]);
        assert_eq!(split("select /* a; /* nested; */ b; */ 1; select 2"), vec!["select /* a; /* nested; */ b; */ 1", "select 2"]);
        assert_eq!(split("-- only a comment;\n"), Vec::<String>::new());
    }

    #[test]
    fn dollar_quotes() {
        let f = "create function f() returns int as $$ begin return 1; end $$ language plpgsql";
        assert_eq!(split(&format!("{f}; select f()")), vec![f, "select f()"]);
        let g = "do $body$ begin perform 1; end $body$";
        assert_eq!(split(&format!("{g};select 1")), vec![g, "select 1"]);
        assert_eq!(split("select $1; select 2"), vec!["select $1", "select 2"]);
        assert_eq!(split("select a$b; select 2"), vec!["select a$b", "select 2"]);
    }
}
