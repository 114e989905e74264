//! GBNF (llama.cpp's grammar format) → llguidance's Lark syntax.
//!
//! GBNF: `name ::= alternatives` rules (a rule ends at a newline outside parentheses, or after
//! `|` continues), `"literal"` with `\n \t \r \\ \" \xHH \uHHHH \UHHHHHHHH` escapes, character
//! classes `[a-z]` / `[^...]`, `.` (any character), grouping, `* + ?` and `{m}` `{m,}` `{m,n}`,
//! `#` comments; `root` is the start rule. Lark gets one lowercase rule per GBNF rule, each
//! literal as a Lark string and each class as a regex, and `start: <root>`.

use crate::error::{Error, Result};

fn err(pos: usize, msg: &str) -> Error {
    Error::InvalidArgument(format!("GBNF grammar: {msg} at byte {pos}"))
}

/// Converts a GBNF grammar to Lark; a syntax error is `InvalidArgument` naming its position.
pub fn gbnf_to_lark(src: &str) -> Result<String> {
    let mut p = Parser { s: src.as_bytes(), src, i: 0 };
    let mut rules = Vec::new();
    let mut has_root = false;
    loop {
        p.space(true);
        if p.i >= p.s.len() {
            break;
        }
        let start = p.i;
        let name = p.name().ok_or_else(|| err(start, "expected a rule name"))?;
        p.space(false);
        if !p.eat("::=") {
            return Err(err(p.i, &format!("expected '::=' after rule name '{name}'")));
        }
        // The body may start on the next line (`object ::=\n  "{" ...`).
        p.space(true);
        let body = p.alternatives(false)?;
        has_root |= name == "root";
        rules.push(format!("{}: {body}", rule_name(name)));
        p.space(false);
        if p.i < p.s.len() && !p.eat("\n") && !p.eat("\r\n") {
            return Err(err(p.i, "unexpected character (expected end of line)"));
        }
    }
    if !has_root {
        return Err(Error::InvalidArgument("GBNF grammar: no 'root' rule".into()));
    }
    let mut out = format!("start: {}\n", rule_name("root"));
    for r in rules {
        out.push_str(&r);
        out.push('\n');
    }
    Ok(out)
}

/// GBNF names (`[A-Za-z0-9-]+`) as Lark rule names (lowercase): `g_` prefix, uppercase `X` →
/// `_x`, `-` → `__`, so distinct GBNF names stay distinct.
fn rule_name(gbnf: &str) -> String {
    let mut s = String::from("g_");
    for c in gbnf.chars() {
        match c {
            'A'..='Z' => {
                s.push('_');
                s.push(c.to_ascii_lowercase());
            }
            '-' => s.push_str("__"),
            _ => s.push(c),
        }
    }
    s
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, t: &str) -> bool {
        if self.s[self.i..].starts_with(t.as_bytes()) {
            self.i += t.len();
            true
        } else {
            false
        }
    }

    /// Skips blanks and `#` comments, and newlines too when `newlines`.
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' => self.i += 1,
                b'\r' | b'\n' if newlines => self.i += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Option<&'a str> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'-') {
            self.i += 1;
        }
        (self.i > start).then(|| &self.src[start..self.i])
    }

    fn alternatives(&mut self, nested: bool) -> Result<String> {
        let mut alts = vec![self.sequence(nested)?];
        loop {
            // A rule may also go on with `| ...` on the next line.
            let save = self.i;
            self.space(true);
            if self.peek() != Some(b'|') {
                self.i = save;
                break;
            }
            self.i += 1;
            self.space(true);
            alts.push(self.sequence(nested)?);
        }
        Ok(alts.join(" | "))
    }

    fn sequence(&mut self, nested: bool) -> Result<String> {
        let mut items: Vec<String> = Vec::new();
        loop {
            self.space(nested);
            // Outside parentheses a newline ends the rule.
            let Some(c) = self.peek() else { break };
            if c == b'|' || c == b')' || c == b'\n' || c == b'\r' {
                break;
            }
            let start = self.i;
            let atom = match c {
                b'"' => self.literal()?,
                b'[' => self.class()?,
                b'.' => {
                    self.i += 1;
                    "/(?s:.)/".to_string()
                }
                b'(' => {
                    self.i += 1;
                    self.space(true);
                    let inner = self.alternatives(true)?;
                    self.space(true);
                    if !self.eat(")") {
                        return Err(err(self.i, "expected ')'"));
                    }
                    if inner.is_empty() {
                        "\"\"".to_string()
                    } else {
                        format!("({inner})")
                    }
                }
                c if c.is_ascii_alphanumeric() || c == b'-' => {
                    let n = self.name().unwrap_or_default();
                    rule_name(n)
                }
                _ => return Err(err(start, &format!("unexpected character {:?}", c as char))),
            };
            let atom = self.repetition(atom)?;
            items.push(atom);
        }
        Ok(if items.is_empty() { "\"\"".to_string() } else { items.join(" ") })
    }

    fn repetition(&mut self, mut atom: String) -> Result<String> {
        loop {
            match self.peek() {
                Some(op @ (b'*' | b'+' | b'?')) => {
                    self.i += 1;
                    atom = format!("({atom}){}", op as char);
                }
                Some(b'{') => {
                    let start = self.i;
                    self.i += 1;
                    let end = self.s[self.i..]
                        .iter()
                        .position(|&c| c == b'}')
                        .map(|k| self.i + k)
                        .ok_or_else(|| err(start, "unclosed '{'"))?;
                    let body: String = self.src[self.i..end].chars().filter(|c| !c.is_whitespace()).collect();
                    let num = |t: &str| -> Result<Option<u32>> {
                        if t.is_empty() {
                            return Ok(None);
                        }
                        t.parse::<u32>().map(Some).map_err(|_| err(start, &format!("bad repetition count '{t}'")))
                    };
                    let (m, n) = match body.split_once(',') {
                        None => {
                            let m = num(&body)?.ok_or_else(|| err(start, "empty repetition '{}'"))?;
                            (m, Some(m))
                        }
                        Some((a, b)) => (num(a)?.unwrap_or(0), num(b)?),
                    };
                    if n.is_some_and(|n| n < m) {
                        return Err(err(start, &format!("repetition {{{body}}} has max < min")));
                    }
                    self.i = end + 1;
                    atom = match n {
                        Some(n) => format!("({atom}){{{m},{n}}}"),
                        None => format!("({atom}){{{m},}}"),
                    };
                }
                _ => return Ok(atom),
            }
        }
    }

    /// One escaped character of a literal or class (after the backslash).
    fn escape(&mut self) -> Result<char> {
        let start = self.i;
        let c = self.peek().ok_or_else(|| err(start, "unfinished escape"))?;
        self.i += 1;
        let hex = |p: &mut Self, n: usize| -> Result<char> {
            let digits = p.src.get(p.i..p.i + n).ok_or_else(|| err(start, "short hex escape"))?;
            let v = u32::from_str_radix(digits, 16).map_err(|_| err(start, "bad hex escape"))?;
            p.i += n;
            char::from_u32(v).ok_or_else(|| err(start, "escape is not a Unicode scalar value"))
        };
        Ok(match c {
            b'n' => '\n',
            b't' => '\t',
            b'r' => '\r',
            b'x' => hex(self, 2)?,
            b'u' => hex(self, 4)?,
            b'U' => hex(self, 8)?,
            b'\\' | b'"' | b'[' | b']' | b'-' | b'^' | b'/' => c as char,
            _ => return Err(err(start, &format!("unknown escape '\\{}'", c as char))),
        })
    }

    /// The next (possibly escaped) character of a literal or class.
    fn char_in(&mut self) -> Result<char> {
        if self.peek() == Some(b'\\') {
            self.i += 1;
            return self.escape();
        }
        let c = self.src[self.i..].chars().next().ok_or_else(|| err(self.i, "unexpected end"))?;
        self.i += c.len_utf8();
        Ok(c)
    }

    fn literal(&mut self) -> Result<String> {
        let start = self.i;
        self.i += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err(err(start, "unterminated string literal")),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                _ => text.push(self.char_in()?),
            }
        }
        // serde_json writes exactly the escapes a Lark (JSON-style) string literal accepts.
        Ok(serde_json::to_string(&text).unwrap_or_else(|_| "\"\"".into()))
    }

    fn class(&mut self) -> Result<String> {
        let start = self.i;
        self.i += 1;
        let mut re = String::from("/[");
        if self.peek() == Some(b'^') {
            self.i += 1;
            re.push('^');
        }
        let mut any = false;
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err(err(start, "unterminated character class")),
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                _ => {
                    let lo = self.char_in()?;
                    push_class_char(&mut re, lo);
                    if self.peek() == Some(b'-') && self.s.get(self.i + 1).is_some_and(|&c| c != b']') {
                        self.i += 1;
                        let hi = self.char_in()?;
                        if hi < lo {
                            return Err(err(start, &format!("character range {lo:?}-{hi:?} is reversed")));
                        }
                        re.push('-');
                        push_class_char(&mut re, hi);
                    }
                    any = true;
                }
            }
        }
        if !any {
            return Err(err(start, "empty character class"));
        }
        re.push_str("]/");
        Ok(re)
    }
}

/// A character inside a Rust-regex class in a `/…/` Lark regex: metacharacters and `/` escaped,
/// control characters as `\x{..}`.
fn push_class_char(re: &mut String, c: char) {
    match c {
        '\\' | ']' | '[' | '^' | '-' | '&' | '~' | '/' => {
            re.push('\\');
            re.push(c);
        }
        c if c.is_control() => re.push_str(&format!("\\x{{{:x}}}", c as u32)),
        c => re.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_the_constructs() {
        let g = "root ::= \"a\\n\" item* (x | \"y\")+ [a-z0-9_]{2,3} [^\"\\\\] . Big-Name?\n\
                 item ::= \"[\" [\\x41-\\u005A] \"]\" # comment\n\
                 x ::= \"x\"\n  | \"X\"\n\
                 Big-Name ::= ( \"q\"\n  \"r\" ){1,}\n";
        let lark = gbnf_to_lark(g).unwrap();
        let lines: Vec<&str> = lark.lines().collect();
        assert_eq!(lines[0], "start: g_root");
        assert_eq!(
            lines[1],
            r#"g_root: "a\n" (g_item)* ((g_x | "y"))+ (/[a-z0-9_]/){2,3} /[^"\\]/ /(?s:.)/ (g__big___name)?"#
        );
        assert_eq!(lines[2], r#"g_item: "[" /[A-Z]/ "]""#);
        assert_eq!(lines[3], r#"g_x: "x" | "X""#);
        assert_eq!(lines[4], r#"g__big___name: (("q" "r")){1,}"#);
    }

    #[test]
    fn errors_name_the_problem() {
        for (g, what) in [
            ("root ::= \"abc", "unterminated string"),
            ("root ::= [abc", "unterminated character class"),
            ("root ::= (\"a\"", "expected ')'"),
            ("root = \"a\"", "expected '::='"),
            ("item ::= \"a\"", "no 'root' rule"),
            ("root ::= \"a\"{3,1}", "max < min"),
            ("root ::= [z-a]", "reversed"),
            ("root ::= \"\\q\"", "unknown escape"),
            ("root ::= @", "unexpected character"),
        ] {
            match gbnf_to_lark(g) {
                Err(Error::InvalidArgument(m)) => assert!(m.contains(what), "{g}: {m}"),
                other => panic!("{g}: {other:?}"),
            }
        }
    }
}
