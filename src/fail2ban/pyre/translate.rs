//! Python pattern syntax rewritten for Rust, and the linear "relaxed" superset that lets a
//! backtracking pattern be skipped cheaply on texts it cannot match.

/// A linear pattern matching a superset of what the translated backtracking pattern `p`
/// matches: look-around assertions become empty groups, back-references become `(?s:.*)`,
/// conditionals `(?(c)yes|no)` become `(?:yes|no)?` and atomic groups plain groups. Each of
/// these only widens the language, so a text the result rejects cannot match `p`.
pub fn relax(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len());
    // Per open group: what closes it in `out`, and whether it started a dropped stretch.
    let mut closers: Vec<(&'static str, bool)> = Vec::new();
    let mut dropping = false;
    let mut i = 0;
    let emit = |out: &mut String, dropping: bool, s: &str| {
        if !dropping {
            out.push_str(s);
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let rest = |n: usize| -> String { chars[i..].iter().take(n).collect() };
        match c {
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    emit(&mut out, dropping, r"\\");
                    i += 1;
                    continue;
                };
                if n.is_ascii_digit() && n != '0' {
                    // A back-reference (all its digits).
                    emit(&mut out, dropping, "(?s:.*)");
                    i += 2;
                    while chars.get(i).is_some_and(char::is_ascii_digit) {
                        i += 1;
                    }
                } else {
                    let mut s = String::from('\\');
                    s.push(n);
                    emit(&mut out, dropping, &s);
                    i += 2;
                }
            }
            '[' => {
                // Copied whole: `(`, `)` and `\1` in a class are not syntax.
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != ']' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i = (i + 1).min(chars.len());
                let class: String = chars[start..i].iter().collect();
                emit(&mut out, dropping, &class);
            }
            '(' => {
                let head = rest(4);
                let lookaround = head.starts_with("(?=")
                    || head.starts_with("(?!")
                    || head.starts_with("(?<=")
                    || head.starts_with("(?<!");
                if lookaround || head.starts_with("(?P=") {
                    // A group of its own, so that a quantifier after it still applies to it.
                    emit(
                        &mut out,
                        dropping,
                        if lookaround { "(?:)" } else { "(?s:.*)" },
                    );
                    closers.push(("", !dropping));
                    dropping = true;
                    i += 3;
                } else if head.starts_with("(?(") {
                    // Skip the condition `(?(name)` / `(?(<name>)`.
                    let close = chars[i + 3..].iter().position(|&c| c == ')');
                    emit(&mut out, dropping, "(?:");
                    closers.push((")?", false));
                    i += 3 + close.map_or(chars.len(), |p| p + 1);
                } else if head.starts_with("(?>") {
                    emit(&mut out, dropping, "(?:");
                    closers.push((")", false));
                    i += 3;
                } else {
                    emit(&mut out, dropping, "(");
                    closers.push((")", false));
                    i += 1;
                }
            }
            ')' => {
                let (close, ends_drop) = closers.pop().unwrap_or((")", false));
                emit(&mut out, dropping, close);
                if ends_drop {
                    dropping = false;
                }
                i += 1;
            }
            _ => {
                emit(&mut out, dropping, c.encode_utf8(&mut [0; 4]));
                i += 1;
            }
        }
    }
    out
}

/// The result of translating a Python pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// Pattern text for the Rust engines.
    pub pattern: String,
    /// It uses look-around, back-references or conditionals.
    pub needs_backtracking: bool,
}

/// Rewrites Python syntax that Rust reads differently or rejects.
pub fn translate(py: &str) -> Translated {
    let chars: Vec<char> = py.chars().collect();
    let mut out = String::with_capacity(py.len() + 8);
    let mut hoisted = String::new();
    let mut needs_backtracking = false;
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    // A trailing backslash is an error in Python; keep it literal.
                    out.push_str(r"\\");
                    i += 1;
                    continue;
                };
                i += 2;
                match n {
                    'Z' => out.push_str(r"\z"),
                    // Python's octal escape `\0`, `\012`: Rust has none.
                    '0' => {
                        let mut value = 0u32;
                        let mut digits = 0;
                        while digits < 2 && chars.get(i).is_some_and(|d| ('0'..='7').contains(d)) {
                            value = value * 8 + chars[i].to_digit(8).unwrap_or(0);
                            i += 1;
                            digits += 1;
                        }
                        out.push_str(&format!(r"\x{{{value:x}}}"));
                    }
                    '1'..='9' => {
                        needs_backtracking = true;
                        out.push('\\');
                        out.push(n);
                    }
                    'A' | 'b' | 'B' | 'd' | 'D' | 's' | 'S' | 'w' | 'W' | 'n' | 't' | 'r' | 'f'
                    | 'v' | 'x' | 'u' | 'U' | 'N' | 'a' => {
                        out.push('\\');
                        out.push(n);
                    }
                    _ => push_literal(&mut out, n),
                }
            }
            '[' => {
                let (class, next) = translate_class(&chars, i);
                out.push_str(&class);
                i = next;
            }
            '{' => {
                if let Some((q, next)) = quantifier(&chars, i) {
                    out.push_str(&q);
                    i = next;
                } else {
                    out.push_str(r"\{");
                    i += 1;
                }
            }
            '}' => {
                out.push_str(r"\}");
                i += 1;
            }
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    let rest: String = chars[i + 2..].iter().take(3).collect();
                    if rest.starts_with('#') {
                        // (?#comment): drop it.
                        while i < chars.len() && chars[i] != ')' {
                            i += 1;
                        }
                        i += 1;
                        continue;
                    }
                    // Python's conditional on a named group `(?(name)yes|no)` is
                    // `(?(<name>)yes|no)` for fancy-regex.
                    if rest.starts_with('(') {
                        let close = chars[i + 3..].iter().position(|&c| c == ')');
                        if let Some(len) = close {
                            let name: String = chars[i + 3..i + 3 + len].iter().collect();
                            if !name.is_empty()
                                && name.chars().all(|c| c.is_alphanumeric() || c == '_')
                                && !name.chars().all(|c| c.is_ascii_digit())
                            {
                                needs_backtracking = true;
                                out.push_str(&format!("(?(<{name}>)"));
                                depth += 1;
                                i += 3 + len + 1;
                                continue;
                            }
                        }
                    }
                    if rest.starts_with('=')
                        || rest.starts_with('!')
                        || rest.starts_with("<=")
                        || rest.starts_with("<!")
                        || rest.starts_with("P=")
                        || rest.starts_with('(')
                        || rest.starts_with('>')
                    {
                        needs_backtracking = true;
                    }
                    // A bare global flag group `(?i)` in mid-pattern applies to the whole
                    // pattern in Python (before 3.11, which fail2ban's filters were written
                    // for); Rust would apply it from that point on. Hoist it.
                    let mut j = i + 2;
                    while j < chars.len() && chars[j].is_ascii_alphabetic() {
                        j += 1;
                    }
                    if j > i + 2 && chars.get(j) == Some(&')') {
                        let flags: String = chars[i + 2..j].iter().collect();
                        let flags: String = flags.chars().filter(|f| "imsx".contains(*f)).collect();
                        if depth == 0 || i == 0 {
                            hoisted.push_str(&flags);
                        } else if !flags.is_empty() {
                            out.push_str(&format!("(?{flags})"));
                        }
                        i = j + 1;
                        continue;
                    }
                    // Scoped flags `(?iu:...)`: drop the flags Rust lacks or that are defaults.
                    if j > i + 2 && chars.get(j) == Some(&':') {
                        let flags: String = chars[i + 2..j]
                            .iter()
                            .filter(|f| "imsx".contains(**f))
                            .collect();
                        out.push_str(&format!("(?{flags}:"));
                        depth += 1;
                        i = j + 1;
                        continue;
                    }
                }
                depth += 1;
                out.push('(');
                i += 1;
            }
            ')' => {
                depth = depth.saturating_sub(1);
                out.push(')');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    let pattern = if hoisted.is_empty() {
        out
    } else {
        format!("(?{hoisted}){out}")
    };
    Translated {
        pattern,
        needs_backtracking,
    }
}

/// A literal character, escaped so that neither Rust engine reads it as syntax (`\<` is a
/// word boundary in Rust but a plain `<` in Python).
fn push_literal(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        // An unknown letter escape is an error in Python; keep the letter.
        out.push(c);
    } else if c.is_ascii_punctuation() && c != '<' && c != '>' {
        out.push('\\');
        out.push(c);
    } else if c == ' ' {
        out.push_str(r"\x20");
    } else {
        out.push_str(&format!(r"\x{{{:x}}}", c as u32));
    }
}

/// `{m}`, `{m,}`, `{m,n}`, `{,n}` at `chars[i]`, or None when Python reads `{` literally.
fn quantifier(chars: &[char], i: usize) -> Option<(String, usize)> {
    let mut j = i + 1;
    let mut min = String::new();
    while j < chars.len() && chars[j].is_ascii_digit() {
        min.push(chars[j]);
        j += 1;
    }
    let mut max = None;
    if chars.get(j) == Some(&',') {
        j += 1;
        let mut m = String::new();
        while j < chars.len() && chars[j].is_ascii_digit() {
            m.push(chars[j]);
            j += 1;
        }
        max = Some(m);
    }
    if chars.get(j) != Some(&'}') {
        return None;
    }
    match (min.is_empty(), &max) {
        (true, None) => None,
        (true, Some(m)) if m.is_empty() => None,
        (true, Some(m)) => Some((format!("{{0,{m}}}"), j + 1)),
        (false, None) => Some((format!("{{{min}}}"), j + 1)),
        (false, Some(m)) => Some((format!("{{{min},{m}}}"), j + 1)),
    }
}

/// A character class starting at `chars[start] == '['`; returns it and the index after it.
fn translate_class(chars: &[char], start: usize) -> (String, usize) {
    let mut out = String::from("[");
    let mut i = start + 1;
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    // A ']' first in the class is literal in Python.
    if chars.get(i) == Some(&']') {
        out.push_str(r"\]");
        i += 1;
    }
    while i < chars.len() {
        let c = chars[i];
        match c {
            ']' => return (out + "]", i + 1),
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    out.push_str(r"\\");
                    i += 1;
                    continue;
                };
                i += 2;
                match n {
                    'd' | 'D' | 's' | 'S' | 'w' | 'W' | 'n' | 't' | 'r' | 'f' | 'v' | 'x' | 'u'
                    | 'U' | 'a' => {
                        out.push('\\');
                        out.push(n);
                    }
                    'b' => out.push_str(r"\x08"),
                    '0' => out.push_str(r"\x00"),
                    _ => push_literal(&mut out, n),
                }
            }
            // Rust reads these as nested classes or set operations; Python as literals.
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                out.push_str(r"\-");
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Unterminated: let the engine report it.
    (out, i)
}
