use super::render::label;
use super::*;
use std::time::Duration;

#[test]
fn renders_labelled_counters() {
    let m = Metrics::default();
    Metrics::inc(&m.listener("udp:127.0.0.1:514").messages);
    Metrics::inc(&m.jail("sshd").bans);
    m.target("local")
        .latency
        .observe(Duration::from_micros(1500));
    m.register_queue("input", Box::new(|| 7));
    let text = m.render();
    assert!(text.contains("syslog2ban_messages_received_total{listener=\"udp:127.0.0.1:514\"} 1\n"));
    assert!(text.contains("syslog2ban_bans_total{jail=\"sshd\"} 1\n"));
    assert!(text.contains("syslog2ban_active_bans 0\n"));
    assert!(text.contains("syslog2ban_queue_depth{queue=\"input\"} 7\n"));
    assert!(text
        .contains("syslog2ban_enforce_latency_seconds_bucket{target=\"local\",le=\"0.0001\"} 0\n"));
    assert!(text
        .contains("syslog2ban_enforce_latency_seconds_bucket{target=\"local\",le=\"0.001\"} 0\n"));
    assert!(text
        .contains("syslog2ban_enforce_latency_seconds_bucket{target=\"local\",le=\"0.002\"} 1\n"));
    assert!(text.contains("syslog2ban_enforce_latency_seconds_count{target=\"local\"} 1\n"));
}

#[test]
fn the_same_name_gives_the_same_counters() {
    let m = Metrics::default();
    Metrics::inc(&m.jail("sshd").failures);
    Metrics::inc(&m.jail("sshd").failures);
    assert_eq!(Metrics::get(&m.jail("sshd").failures), 2);
    assert_eq!(m.jails().len(), 1);
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(
        label("listener", "udp:0.0.0.0:514"),
        "{listener=\"udp:0.0.0.0:514\"}"
    );
    assert_eq!(
        label("listener", "unix:/run/a\"b\\c\nd"),
        "{listener=\"unix:/run/a\\\"b\\\\c\\nd\"}"
    );
}
