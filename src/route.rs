//! Routing: program name → the jails that hear it, as a hash index plus a short list of
//! prefixes (`postfix*` hears `postfix/smtpd`, `postfix/submission/smtpd`, ...).
//!
//! Owns only the program-name lookup. It runs no regex (a message for a program no jail hears
//! costs one hash lookup and one `starts_with` per prefix) and knows nothing of what jails do
//! with a message.

use std::borrow::Cow;
use std::collections::HashMap;

/// Index of a jail in the daemon's jail list.
pub type JailIndex = usize;

/// Program name → jail indexes.
#[derive(Debug, Default, Clone)]
pub struct Router {
    index: HashMap<String, Vec<JailIndex>>,
    /// `(prefix, jail)` for program patterns ending in `*`.
    prefixes: Vec<(String, JailIndex)>,
}

impl Router {
    /// Builds the index from each jail's program list (position = jail index).
    pub fn new<'a, I, P>(jail_programs: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: IntoIterator<Item = &'a str>,
    {
        let mut index: HashMap<String, Vec<JailIndex>> = HashMap::new();
        let mut prefixes = Vec::new();
        for (jail, programs) in jail_programs.into_iter().enumerate() {
            for program in programs {
                if let Some(prefix) = program.strip_suffix('*') {
                    if !prefixes.contains(&(prefix.to_string(), jail)) {
                        prefixes.push((prefix.to_string(), jail));
                    }
                    continue;
                }
                let jails = index.entry(program.to_string()).or_default();
                if !jails.contains(&jail) {
                    jails.push(jail);
                }
            }
        }
        Router { index, prefixes }
    }

    /// The jails that hear `program` (empty when none), each once, exact names first.
    pub fn jails_for(&self, program: &str) -> Cow<'_, [JailIndex]> {
        let exact = self.index.get(program).map_or(&[][..], Vec::as_slice);
        let mut matching = self
            .prefixes
            .iter()
            .filter(|(prefix, jail)| program.starts_with(prefix.as_str()) && !exact.contains(jail))
            .peekable();
        if matching.peek().is_none() {
            return Cow::Borrowed(exact);
        }
        let mut all = exact.to_vec();
        for (_, jail) in matching {
            if !all.contains(jail) {
                all.push(*jail);
            }
        }
        Cow::Owned(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_exact_program_name() {
        let router = Router::new([
            vec!["sshd", "sshd-session"],
            vec!["sshd", "dropbear"],
            vec![],
        ]);
        assert_eq!(router.jails_for("sshd").as_ref(), &[0, 1]);
        assert_eq!(router.jails_for("sshd-session").as_ref(), &[0]);
        assert_eq!(router.jails_for("dropbear").as_ref(), &[1]);
        assert!(router.jails_for("cron").is_empty());
        assert!(router.jails_for("SSHD").is_empty());
        assert!(router.jails_for("").is_empty());
    }

    #[test]
    fn a_trailing_star_routes_by_prefix() {
        let router = Router::new([
            vec!["postfix*"],
            vec!["postfix/smtpd", "postfix/*"],
            vec!["*"],
        ]);
        assert_eq!(router.jails_for("postfix/smtpd").as_ref(), &[1, 0, 2]);
        assert_eq!(router.jails_for("postfix-587/smtpd").as_ref(), &[0, 2]);
        assert_eq!(router.jails_for("cron").as_ref(), &[2]);
        let exact_only = Router::new([vec!["sshd"]]);
        assert!(matches!(exact_only.jails_for("sshd"), Cow::Borrowed(&[0])));
    }
}
