//! `[feed.NAME]`: blocklist feeds.

use std::collections::BTreeMap;
use std::time::Duration;

use super::jail::Settings;
use super::Compiler;
use crate::config::notify::HttpUrl;
use crate::config::raw::RawFeed;
use crate::config::types::{BanTime, JailName};
use crate::config::types::{FeedConfig, FeedSource};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_ENTRIES: usize = 100_000;

impl Compiler<'_> {
    /// Compiles every `[feed.NAME]`; `defaults` gives placement and ignoreip.
    pub(super) fn feeds(
        &mut self,
        raw: &BTreeMap<String, RawFeed>,
        defaults: &Settings,
    ) -> Vec<FeedConfig> {
        raw.iter()
            .filter_map(|(name, f)| self.feed(name, f, defaults))
            .collect()
    }

    fn feed(&mut self, name: &str, raw: &RawFeed, defaults: &Settings) -> Option<FeedConfig> {
        let prefix = format!("feed.{name}");
        let key = |field: &str| format!("{prefix}.{field}");
        let jail = match JailName::new(&format!("{}{name}", crate::config::types::FEED_JAIL_PREFIX))
        {
            Ok(jail) => jail,
            Err(_) => {
                self.error(
                    &prefix,
                    format!("\"{name}\" must be 1-27 of A-Z a-z 0-9 _ - (its bans are held by jail feed-{name})"),
                );
                return None;
            }
        };
        let source = match raw.url.as_deref() {
            None => {
                self.error(
                    &key("url"),
                    "required: http://, https:// or file:// URL of the list",
                );
                return None;
            }
            Some(url) => match url.strip_prefix("file://") {
                Some(path) if path.starts_with('/') => FeedSource::File(path.into()),
                Some(_) => {
                    self.error(
                        &key("url"),
                        "a file:// URL needs an absolute path: file:///etc/...",
                    );
                    return None;
                }
                None => match HttpUrl::parse(url) {
                    Ok(url) => FeedSource::Http(url),
                    Err(e) => {
                        self.error(&key("url"), e);
                        return None;
                    }
                },
            },
        };
        let interval = match &raw.interval {
            None => DEFAULT_INTERVAL,
            Some(d) => self.positive(&key("interval"), d)?,
        };
        let timeout = match &raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(d) => self.positive(&key("timeout"), d)?,
        };
        let bantime = match &raw.bantime {
            None => BanTime::Permanent,
            Some(d) => self.bantime(&key("bantime"), d)?,
        };
        let placement = match &raw.placement {
            None => defaults.placement().to_vec(),
            Some(list) => self.placement(&key("placement"), list)?,
        };
        let max_entries = match raw.max_entries {
            None => DEFAULT_MAX_ENTRIES,
            Some(n) => match usize::try_from(n) {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.error(&key("max_entries"), format!("{n} must be at least 1"));
                    return None;
                }
            },
        };
        Some(FeedConfig {
            name: name.to_string(),
            jail,
            source,
            interval,
            bantime,
            placement,
            max_entries,
            timeout,
            ignoreip: defaults.ignoreip().to_vec(),
        })
    }
}
