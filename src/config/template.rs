//! Message templates (a mail's subject and body): text with `<name>` fields, checked when the
//! config is read so that a misspelt field is an error naming its key, not a mail that says
//! `<fialures>`.
//!
//! A template is filled in one pass: a value is inserted as it is and never read again as
//! template text, so what a log line or a WHOIS answer says can not become a field, a header
//! or a command. Owns the parsing and the filling; what each field's value is, and any
//! escaping for where the text goes, is the notifier's.

/// A template's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `<event>`: `ban` or `unban`.
    Event,
    /// `<ip>`: the banned address or prefix.
    Ip,
    /// `<jail>`.
    Jail,
    /// `<failures>`.
    Failures,
    /// `<bantime>`: e.g. `10m`, or `permanent`.
    Bantime,
    /// `<origin>`: the attacked host.
    Origin,
    /// `<started>`: when the ban started (RFC 3339, UTC).
    Started,
    /// `<expires>`: when it ends (RFC 3339, UTC), or `never`.
    Expires,
    /// `<lines>`: the matched lines, one per line.
    Lines,
    /// `<whois>`: the RDAP summary of the address (empty when the lookup is off or failed).
    Whois,
}

impl Field {
    /// Every field, with its spelling.
    pub const ALL: [(&'static str, Field); 10] = [
        ("<event>", Field::Event),
        ("<ip>", Field::Ip),
        ("<jail>", Field::Jail),
        ("<failures>", Field::Failures),
        ("<bantime>", Field::Bantime),
        ("<origin>", Field::Origin),
        ("<started>", Field::Started),
        ("<expires>", Field::Expires),
        ("<lines>", Field::Lines),
        ("<whois>", Field::Whois),
    ];
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text as written.
    Text(String),
    /// A field's value.
    Field(Field),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`; a `<word>` that is not a field is an error (write `<<` for a literal
    /// `<`).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('<') {
            let (before, from) = rest.split_at(at);
            literal.push_str(before);
            if let Some(after) = from.strip_prefix("<<") {
                literal.push('<');
                rest = after;
                continue;
            }
            if let Some((spelling, field)) = Field::ALL.iter().find(|(s, _)| from.starts_with(s)) {
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Field(*field));
                rest = from.split_at(spelling.len()).1;
                continue;
            }
            let word: String = from
                .chars()
                .skip(1)
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !word.is_empty() && from.chars().nth(word.chars().count() + 1) == Some('>') {
                let known: Vec<&str> = Field::ALL.iter().map(|(s, _)| *s).collect();
                return Err(format!(
                    "<{word}> is not a field; use {} (or << for a literal <)",
                    known.join(" ")
                ));
            }
            literal.push('<');
            rest = from.split_at(1).1;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    /// Whether the template uses `field`.
    pub fn uses(&self, field: Field) -> bool {
        self.pieces.contains(&Piece::Field(field))
    }

    /// The text with each field replaced by `value(field)`, in one pass.
    pub fn fill(&self, mut value: impl FnMut(Field) -> String) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Field(field) => out.push_str(&value(*field)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_filled_once_and_values_stay_text() {
        let t = Template::parse("[<jail>] <ip> after <failures> (a << b) </x>").unwrap();
        let filled = t.fill(|f| match f {
            Field::Jail => "sshd".into(),
            // A value that looks like a field stays as it is.
            Field::Ip => "<jail> $(id)".into(),
            Field::Failures => "5".into(),
            _ => unreachable!(),
        });
        assert_eq!(filled, "[sshd] <jail> $(id) after 5 (a < b) </x>");
        assert!(t.uses(Field::Ip) && !t.uses(Field::Whois));
    }

    #[test]
    fn a_misspelt_field_is_an_error_naming_it() {
        let e = Template::parse("banned <ip> after <fialures>").unwrap_err();
        assert!(e.starts_with("<fialures> is not a field"), "{e}");
        assert!(Template::parse("a < b, x<y").is_ok());
    }
}
