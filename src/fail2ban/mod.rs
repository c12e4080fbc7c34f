//! fail2ban compatibility: loads fail2ban filter `.conf` files unchanged and runs them.
//!
//! Owns fail2ban's configuration language (INI, includes, interpolation, `<tags>`), the
//! translation of Python regexes for Rust, date stripping and the stateful line matcher. It is
//! a filter source for the jail stage: it must not import anything from ban, enforce or daemon.

pub mod ini;
