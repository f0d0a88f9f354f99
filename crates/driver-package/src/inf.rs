//! A reader for INF files that keeps the line number of everything it reads, because every INF
//! error worth reporting has to say which line is wrong. Section and key names compare
//! case-insensitively, as Windows compares them.

/// One `key = value, value` or `value, value` line (continuations joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number of the line's first physical line.
    pub line: usize,
    pub key: Option<String>,
    /// Comma-separated fields with surrounding blanks and quotes removed (`""` inside quotes is a
    /// literal quote). Empty fields stay as empty strings, because position matters in INF syntax.
    pub values: Vec<String>,
}

impl Entry {
    pub fn key_is(&self, name: &str) -> bool {
        self.key
            .as_deref()
            .is_some_and(|k| k.eq_ignore_ascii_case(name))
    }

    pub fn value(&self, i: usize) -> Option<&str> {
        self.values.get(i).map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// Line of the `[name]` header.
    pub line: usize,
    pub entries: Vec<Entry>,
}

impl Section {
    /// The first entry with this key.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key_is(key))
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.key_is(key))
    }
}

/// A line the reader could not make sense of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct Inf {
    /// Sections in file order; a name that appears twice appears twice here too (Windows merges
    /// them, and so do the lookups below).
    pub sections: Vec<Section>,
    pub syntax_errors: Vec<SyntaxError>,
    /// Total number of lines, so that "missing" errors can point at the end of the file.
    pub lines: usize,
}

impl Inf {
    pub fn parse(text: &str) -> Inf {
        let mut inf = Inf::default();
        let physical: Vec<&str> = text.split('\n').collect();
        inf.lines = physical.len();
        let mut i = 0;
        while i < physical.len() {
            let first = i + 1;
            let mut logical = strip_comment(physical[i].trim_end_matches('\r')).to_string();
            i += 1;
            // A trailing backslash continues the line.
            while logical.trim_end().ends_with('\\') && i < physical.len() {
                let t = logical.trim_end();
                logical = t[..t.len() - 1].to_string();
                logical.push_str(strip_comment(physical[i].trim_end_matches('\r')));
                i += 1;
            }
            let line = logical.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                match rest.find(']') {
                    Some(end) if rest[end + 1..].trim().is_empty() => {
                        inf.sections.push(Section {
                            name: rest[..end].trim().to_string(),
                            line: first,
                            entries: Vec::new(),
                        });
                    }
                    _ => inf.syntax_errors.push(SyntaxError {
                        line: first,
                        message: format!("malformed section header `{line}`"),
                    }),
                }
                continue;
            }
            let Some(section) = inf.sections.last_mut() else {
                inf.syntax_errors.push(SyntaxError {
                    line: first,
                    message: format!("`{line}` appears before any [section]"),
                });
                continue;
            };
            if unbalanced_quotes(line) {
                inf.syntax_errors.push(SyntaxError {
                    line: first,
                    message: "unterminated quoted string".into(),
                });
            }
            let (key, rest) = match find_unquoted(line, '=') {
                Some(eq) => (Some(unquote(line[..eq].trim())), &line[eq + 1..]),
                None => (None, line),
            };
            section.entries.push(Entry {
                line: first,
                key,
                values: split_fields(rest),
            });
        }
        inf
    }

    /// Every section with this name (case-insensitive), in file order.
    pub fn sections_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.sections
            .iter()
            .filter(move |s| s.name.eq_ignore_ascii_case(name))
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// Entries of all sections with this name, as Windows merges them.
    pub fn entries<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.sections_named(name).flat_map(|s| s.entries.iter())
    }
}

/// Removes a `;` comment that is not inside double quotes.
pub fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unbalanced_quotes(line: &str) -> bool {
    line.chars().filter(|&c| c == '"').count() % 2 != 0
}

fn find_unquoted(line: &str, needle: char) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == needle && !quoted {
            return Some(i);
        }
    }
    None
}

fn split_fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == ',' && !quoted {
            out.push(unquote(s[start..i].trim()));
            start = i + 1;
        }
    }
    out.push(unquote(s[start..].trim()));
    out
}

/// Removes the quotes of a quoted field: `"a""b"` reads as `a"b`; unquoted parts pass through.
fn unquote(s: &str) -> String {
    if !s.contains('"') {
        return s.to_string();
    }
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if c == '"' {
            if quoted && chars.peek() == Some(&'"') {
                out.push('"');
                chars.next();
            } else {
                quoted = !quoted;
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sections_entries_and_line_numbers() {
        let inf = Inf::parse(
            "; header\r\n[Version]\r\nSignature = \"$WINDOWS NT$\" ; c\r\n\r\n[a.B]\r\nHKR, Ndi, Service, 0, \"x;y\"\r\nk = a, \\\r\n  b\r\n",
        );
        assert!(inf.syntax_errors.is_empty(), "{:?}", inf.syntax_errors);
        let v = inf.section("version").unwrap();
        assert_eq!(v.line, 2);
        let sig = v.get("signature").unwrap();
        assert_eq!((sig.line, sig.value(0)), (3, Some("$WINDOWS NT$")));
        let s = inf.section("A.b").unwrap();
        assert_eq!(s.entries[0].key, None);
        assert_eq!(s.entries[0].values, ["HKR", "Ndi", "Service", "0", "x;y"]);
        assert_eq!(s.entries[1].line, 7);
        assert_eq!(s.entries[1].values, ["a", "b"]);
    }

    #[test]
    fn reports_lines_it_cannot_read() {
        let inf = Inf::parse("x = 1\n[Version\n[V]\na = \"open\n");
        let lines: Vec<usize> = inf.syntax_errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 2, 4]);
    }
}
