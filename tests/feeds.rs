//! Blocklist feeds with the whole daemon in this process (as `inprocess.rs` runs it) and a
//! local HTTP server publishing the list: its addresses are banned within one interval, an
//! address taken off the list is lifted at the next fetch while a jail's own ban of another
//! stays, and a 404 or a page of garbage keeps the previous list and is reported.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use syslog2ban::control::protocol::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::inprocess::{
    ask, banned, bound_port, send_failures, stop_cleanly, until, wait_answering, Setup,
};

/// What the server answers: status line and body.
type Page = Arc<Mutex<(String, String)>>;

/// Serves `page` to every GET; counts conditional requests it answered 304.
async fn serve(page: Page) -> (u16, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let not_modified = Arc::new(Mutex::new(0usize));
    let counter = not_modified.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let (page, counter) = (page.clone(), counter.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 2048];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request).into_owned();
                let (status, body) = page.lock().expect("page").clone();
                let etag = format!("\"{}\"", body.len());
                let answer = if status.starts_with("200")
                    && request.contains(&format!("If-None-Match: {etag}"))
                {
                    *counter.lock().expect("counter") += 1;
                    "HTTP/1.0 304 Not Modified\r\n\r\n".to_string()
                } else {
                    format!(
                        "HTTP/1.0 {status}\r\nETag: {etag}\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, not_modified)
}

async fn feed_status(socket: &std::path::Path) -> serde_json::Value {
    match ask(socket, Request::Status).await {
        Some(Response::Status(status)) => {
            serde_json::to_value(&status.feeds[0]).expect("serializes")
        }
        other => panic!("status: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_bans_its_list_lifts_what_leaves_it_and_keeps_it_through_bad_fetches() {
    let page: Page = Arc::new(Mutex::new((
        "200 OK".into(),
        "# test list\n198.51.100.150\n198.51.100.151 scanner\n2001:db8:bad::/48\n".into(),
    )));
    let (port, not_modified) = serve(page.clone()).await;
    let setup = Setup::new(&format!(
        "\n[feed.bl]\nurl = \"http://127.0.0.1:{port}/list.txt\"\ninterval = \"1s\"\n"
    ));
    setup.jail_banning_for(3, "1h");
    let socket = setup.socket();
    let (run, stop) = setup.start(None);
    wait_answering(&socket).await;
    let has = |list: &[String], a: &str| list.iter().any(|b| b == a);
    assert!(
        until(Duration::from_secs(5), async || {
            let b = banned(&socket).await;
            has(&b, "198.51.100.150") && has(&b, "198.51.100.151") && has(&b, "2001:db8:bad::/48")
        })
        .await,
        "the list was not banned: {:?} {}",
        banned(&socket).await,
        feed_status(&socket).await
    );
    // A jail's own ban of a listed address: lifting the feed's hold must leave it.
    let syslog = bound_port(&socket).await;
    send_failures(syslog, "198.51.100.151", 3);
    assert!(
        until(Duration::from_secs(5), async || {
            match ask(&socket, Request::Banned).await {
                Some(Response::Banned { bans }) => bans.iter().any(|b| b.jail == "sshd"),
                _ => false,
            }
        })
        .await
    );
    // Unchanged lists are not fetched again in full.
    assert!(
        until(Duration::from_secs(5), async || *not_modified
            .lock()
            .expect("counter")
            > 0)
        .await,
        "no conditional GET"
    );

    page.lock().expect("page").1 = "198.51.100.150\n".into();
    assert!(
        until(Duration::from_secs(5), async || {
            let b = banned(&socket).await;
            !has(&b, "2001:db8:bad::/48") && has(&b, "198.51.100.150")
        })
        .await,
        "the address taken off the list is still banned: {:?}",
        banned(&socket).await
    );
    assert!(
        has(&banned(&socket).await, "198.51.100.151"),
        "the sshd jail's own ban went with the feed's"
    );

    // A 404, then a page of HTML: the list stays, the failure is reported.
    *page.lock().expect("page") = ("404 Not Found".into(), "gone".into());
    assert!(
        until(Duration::from_secs(5), async || {
            feed_status(&socket).await["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("404"))
        })
        .await,
        "a 404 is not reported: {}",
        feed_status(&socket).await
    );
    *page.lock().expect("page") = (
        "200 OK".into(),
        "<html><body>Service unavailable</body></html>\n".into(),
    );
    assert!(
        until(Duration::from_secs(5), async || {
            feed_status(&socket).await["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("no usable entry"))
        })
        .await,
        "garbage is not reported: {}",
        feed_status(&socket).await
    );
    assert!(
        has(&banned(&socket).await, "198.51.100.150"),
        "the list was dropped"
    );
    assert_eq!(feed_status(&socket).await["entries"], 1);
    stop_cleanly(run, stop).await;
}

/// `reload` starts a feed the config did not have; a feed moved to another list starts again
/// from the bans its jail holds (the new list's address is banned, the old one's lifted); a
/// feed removed has its bans lifted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_a_feed_and_moves_one_to_another_list() {
    let first: Page = Arc::new(Mutex::new(("200 OK".into(), "198.51.100.160\n".into())));
    let second: Page = Arc::new(Mutex::new(("200 OK".into(), "198.51.100.161\n".into())));
    let (first_port, _) = serve(first).await;
    let (second_port, _) = serve(second).await;
    let setup = Setup::new("");
    setup.jail_banning_for(3, "1h");
    let socket = setup.socket();
    let (run, stop) = setup.start(None);
    wait_answering(&socket).await;
    let main = setup.dir.path().join("syslog2ban.toml");
    let base = std::fs::read_to_string(&main).expect("read config");
    let feed = |port: u16| {
        format!(
            "{base}\n[feed.bl]\nurl = \"http://127.0.0.1:{port}/list.txt\"\ninterval = \"1s\"\n"
        )
    };
    let has = |list: &[String], a: &str| list.iter().any(|b| b == a);

    std::fs::write(&main, feed(first_port)).expect("write config");
    let answer = ask(&socket, Request::Reload).await;
    assert!(
        matches!(&answer, Some(Response::Done { message }) if message.contains("1 feed(s)")),
        "{answer:?}"
    );
    assert!(
        until(Duration::from_secs(5), async || has(
            &banned(&socket).await,
            "198.51.100.160"
        ))
        .await,
        "the feed added by reload banned nothing: {:?}",
        banned(&socket).await
    );

    std::fs::write(&main, feed(second_port)).expect("write config");
    let answer = ask(&socket, Request::Reload).await;
    assert!(matches!(answer, Some(Response::Done { .. })), "{answer:?}");
    assert!(
        until(Duration::from_secs(5), async || {
            let b = banned(&socket).await;
            has(&b, "198.51.100.161") && !has(&b, "198.51.100.160")
        })
        .await,
        "the moved feed did not take its new list: {:?}",
        banned(&socket).await
    );

    // Removed: its bans (for as long as listed, by default) are lifted.
    std::fs::write(&main, &base).expect("write config");
    let answer = ask(&socket, Request::Reload).await;
    assert!(
        matches!(&answer, Some(Response::Done { message }) if message.contains("0 feed(s)")),
        "{answer:?}"
    );
    assert!(
        until(Duration::from_secs(5), async || !has(
            &banned(&socket).await,
            "198.51.100.161"
        ))
        .await,
        "a removed feed's ban stayed: {:?}",
        banned(&socket).await
    );
    stop_cleanly(run, stop).await;
}
