//! The enforcement backends' compiled settings: which backend `[ban]` selects, and the
//! `command` backend's argv templates. Plain data; the backends themselves live in `enforce`.

use std::path::PathBuf;
use std::time::Duration;

/// Where bans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Local nftables.
    Nftables,
    /// ipset sets matched by one iptables/ip6tables rule per hook.
    Ipset(IpsetConfig),
    /// Entries in a tcp-wrappers file.
    HostsDeny(HostsDenyConfig),
    /// A program run per ban and unban.
    Command(CommandConfig),
    /// Only log decisions.
    Log,
}

impl Backend {
    /// The name `[ban] backend` takes.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Nftables => "nftables",
            Backend::Ipset(_) => "ipset",
            Backend::HostsDeny(_) => "hosts-deny",
            Backend::Command(_) => "command",
            Backend::Log => "log",
        }
    }
}

/// What enforces bans on a `[target.NAME]`, over its SSH session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetBackend {
    /// nftables (the table `[target.NAME] table`).
    Nftables,
    /// ipset sets and iptables rules named after the table.
    Ipset(IpsetConfig),
    /// Entries in the host's tcp-wrappers file.
    HostsDeny(HostsDenyConfig),
    /// A program on the host per ban and unban (`command_timeout` limits each run).
    Command(CommandConfig),
}

impl TargetBackend {
    /// The name `[target.NAME] backend` takes.
    pub fn name(&self) -> &'static str {
        match self {
            TargetBackend::Nftables => "nftables",
            TargetBackend::Ipset(_) => "ipset",
            TargetBackend::HostsDeny(_) => "hosts-deny",
            TargetBackend::Command(_) => "command",
        }
    }
}

/// The `ipset` backend's tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsetConfig {
    /// The ipset binary.
    pub ipset: PathBuf,
    /// The iptables binary (IPv4 rules).
    pub iptables: PathBuf,
    /// The ip6tables binary (IPv6 rules).
    pub ip6tables: PathBuf,
}

/// The `hosts-deny` backend's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsDenyConfig {
    /// The tcp-wrappers file (default `/etc/hosts.deny`).
    pub path: PathBuf,
    /// The daemon list of each entry (default `ALL`).
    pub daemons: String,
}

/// Whether `daemons` is a tcp-wrappers daemon list such as `ALL` or `sshd, vsftpd` (nothing
/// that could end an entry's line or start another field).
pub fn daemon_list_ok(daemons: &str) -> bool {
    !daemons.is_empty()
        && daemons
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" ,._-@".contains(&b))
}

/// The `command` backend's programs: each an argv template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    /// Run for each ban (and again when a ban is restored or extended).
    pub ban: ArgvTemplate,
    /// Run for each unban and expiry.
    pub unban: ArgvTemplate,
    /// Run once before the first ban.
    pub start: Option<ArgvTemplate>,
    /// Run once after the last unban on a clean stop.
    pub stop: Option<ArgvTemplate>,
    /// Longest one run may take before it is killed.
    pub timeout: Duration,
    /// Most runs at once.
    pub concurrency: usize,
}

/// What a command template's placeholders stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `<ip>`: the address or prefix.
    Ip,
    /// `<jail>`.
    Jail,
    /// `<failures>`.
    Failures,
    /// `<bantime>`: seconds, `-1` when permanent.
    Bantime,
    /// `<origin>`: the attacked host's name as its logs gave it.
    Origin,
    /// `<ports>`: `tcp:22,tcp:2222` for a per-service ban, empty when every port is banned.
    Ports,
}

impl Placeholder {
    /// Every placeholder, with its spelling.
    pub const ALL: [(&'static str, Placeholder); 6] = [
        ("<ip>", Placeholder::Ip),
        ("<jail>", Placeholder::Jail),
        ("<failures>", Placeholder::Failures),
        ("<bantime>", Placeholder::Bantime),
        ("<origin>", Placeholder::Origin),
        ("<ports>", Placeholder::Ports),
    ];
}

/// One argv element of a template: literal text and placeholders, joined into exactly one
/// element whatever the values hold (no shell ever sees it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgPart {
    /// Text as written.
    Literal(String),
    /// A value filled in per run.
    Value(Placeholder),
}

/// A program and its arguments; the program (element 0) is plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgvTemplate {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<Vec<ArgPart>>,
}

impl ArgvTemplate {
    /// Parses `argv`; an unknown `<name>` or a placeholder in the program is an error.
    pub fn parse(argv: &[String]) -> Result<ArgvTemplate, String> {
        let (program, rest) = argv.split_first().ok_or_else(|| {
            "must name a program: [\"/path/to/program\", \"<ip>\", ...]".to_string()
        })?;
        if program.is_empty() || program.contains('<') {
            return Err(format!(
                "the program \"{program}\" must be a plain path (placeholders go in the arguments)"
            ));
        }
        let args = rest
            .iter()
            .map(|arg| parse_arg(arg))
            .collect::<Result<_, _>>()?;
        Ok(ArgvTemplate {
            program: PathBuf::from(program),
            args,
        })
    }

    /// The arguments with `value` filled in: one element per template element.
    pub fn fill(&self, value: impl Fn(Placeholder) -> String) -> Vec<String> {
        self.args
            .iter()
            .map(|parts| {
                parts
                    .iter()
                    .map(|part| match part {
                        ArgPart::Literal(text) => text.clone(),
                        ArgPart::Value(p) => value(*p),
                    })
                    .collect()
            })
            .collect()
    }
}

fn parse_arg(arg: &str) -> Result<Vec<ArgPart>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '<' {
            literal.push(c);
            continue;
        }
        // A placeholder is `<` lowercase letters or `_` `>`; anything else is literal text.
        let mut ahead = chars.clone();
        let mut name = String::new();
        let mut closed = false;
        while let Some(&n) = ahead.peek() {
            ahead.next();
            if n == '>' {
                closed = true;
                break;
            }
            if !(n.is_ascii_lowercase() || n == '_') {
                break;
            }
            name.push(n);
        }
        if !closed || name.is_empty() {
            literal.push('<');
            continue;
        }
        let token = format!("<{name}>");
        let Some((_, placeholder)) = Placeholder::ALL.iter().find(|(t, _)| *t == token) else {
            let known: Vec<&str> = Placeholder::ALL.iter().map(|(t, _)| *t).collect();
            return Err(format!(
                "unknown placeholder {token} in \"{arg}\" (it takes: {})",
                known.join(" ")
            ));
        };
        if !literal.is_empty() {
            parts.push(ArgPart::Literal(std::mem::take(&mut literal)));
        }
        parts.push(ArgPart::Value(*placeholder));
        chars = ahead;
    }
    if !literal.is_empty() {
        parts.push(ArgPart::Literal(literal));
    }
    Ok(parts)
}
