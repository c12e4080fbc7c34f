//! Routing: program name → the jails that hear it, as a hash index.
//!
//! Owns only the program-name lookup. It runs no regex (a message for a program no jail hears
//! costs one hash lookup) and knows nothing of what jails do with a message.

use std::collections::HashMap;

/// Index of a jail in the daemon's jail list.
pub type JailIndex = usize;

/// Program name → jail indexes.
#[derive(Debug, Default, Clone)]
pub struct Router {
    index: HashMap<String, Vec<JailIndex>>,
}

impl Router {
    /// Builds the index from each jail's program list (position = jail index).
    pub fn new<'a, I, P>(jail_programs: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: IntoIterator<Item = &'a str>,
    {
        let mut index: HashMap<String, Vec<JailIndex>> = HashMap::new();
        for (jail, programs) in jail_programs.into_iter().enumerate() {
            for program in programs {
                let jails = index.entry(program.to_string()).or_default();
                if !jails.contains(&jail) {
                    jails.push(jail);
                }
            }
        }
        Router { index }
    }

    /// The jails that hear `program` (empty when none).
    pub fn jails_for(&self, program: &str) -> &[JailIndex] {
        self.index.get(program).map_or(&[], Vec::as_slice)
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
        assert_eq!(router.jails_for("sshd"), &[0, 1]);
        assert_eq!(router.jails_for("sshd-session"), &[0]);
        assert_eq!(router.jails_for("dropbear"), &[1]);
        assert!(router.jails_for("cron").is_empty());
        assert!(router.jails_for("SSHD").is_empty());
        assert!(router.jails_for("").is_empty());
    }
}
