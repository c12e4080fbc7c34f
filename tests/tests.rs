//! The tests that need no root, in one binary (one link instead of six). Each module says what
//! it covers; `tracker_memory` is apart (it installs a counting global allocator), and the
//! root-only end-to-end tests with real peers in network namespaces are in `integration/`
//! (`cargo test --test netns`).

// Every raw capture from real senders through the framer and parser.
mod captures;
// Two or three collectors sharing a real redis-server: split attacks, a collector going away,
// a paused engine, an emptied one.
mod cluster;
// Config files: everything in tests/config/valid loads, everything in invalid/ names its key.
mod config_files;
// fail2ban's annotated sample logs through their filters (skipped without the corpus).
mod fail2ban_compat;
// Blocklist feeds from a local HTTP server, with the daemon in this process.
mod feeds;
// Every shipped jail against its fixtures.
mod filters;
// The source's shape: no import cycle between files, no stage importing a later one.
mod layers;
// The whole daemon in this process: ingest, bans, expiry, reload, stage deaths.
mod inprocess;
// install-deps.sh leaves the host's own services alone and says what it stops.
mod install_deps;
// The packaged man pages are the CLI's current ones.
mod manpages;
// Webhook notifications through outages and restarts, with the daemon in this process.
mod notify;
// Mail notifications to a real SMTP server (aiosmtpd) with RDAP, the daemon in this process.
mod notify_mail;
// Real daemons' lines under real attacks (the capture lab's fixtures) through the shipped jails.
mod real_captures;
// `syslog2ban regex` as a user runs it.
mod regex_cli;
