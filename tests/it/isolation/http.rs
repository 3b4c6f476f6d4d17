//! The status port under attack (issue 13, items 6 and 8): a flood of refused requests must not
//! grow the log without bound nor put raw escape sequences in it; a signed webhook delivery
//! replayed must trigger nothing; forged deliveries must not starve a genuine one.
//!
//! The daemon listens on 127.0.0.1; each test client binds an address of its own in
//! 127.0.0.0/8, so "the attacker" and "the forge" are different clients, as they are in life.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::reconcile_support::{
    DaemonExtra, Fixture, IMAGE_1, IMAGE_2, IMAGE_3, TierExtra, base_files, deployment,
};
use crate::support::eventually;

const FIRST_SYNC: Duration = Duration::from_secs(45);
/// Far below the poll interval (1h): only a webhook or a sync request brings a commit this soon.
const SOON: Duration = Duration::from_secs(30);

const SECRET: &str = "webhook-secret-for-isolation-tests";
const TOKEN: &str = "api-token-for-isolation-tests";

const ATTACKER: [u8; 4] = [127, 0, 0, 66];
const FORGE: [u8; 4] = [127, 0, 0, 77];
const OPERATOR: [u8; 4] = [127, 0, 0, 88];

/// An answer: status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 request from `from` (a loopback address) to the daemon, `Connection: close`.
/// `path` is sent as it is (raw bytes included).
async fn request(
    from: [u8; 4],
    port: u16,
    method: &str,
    path: &[u8],
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((Ipv4Addr::from(from), 0)))
        .expect("bind a loopback address");
    let mut stream = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect to the daemon");
    let mut req = Vec::new();
    req.extend_from_slice(method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(path);
    req.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n").as_bytes(),
    );
    for (k, v) in headers {
        req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    stream.write_all(&req).await.expect("send the request");
    let mut raw = Vec::new();
    // The server may close after answering without reading everything: keep what arrived.
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn push_body(after: &str) -> Vec<u8> {
    serde_json::json!({"ref": "refs/heads/main", "after": after, "commits": []})
        .to_string()
        .into_bytes()
}

/// A GitHub push delivery of `main` at `after`, signed with `secret`, with delivery id `id`.
async fn github_push(from: [u8; 4], port: u16, secret: &str, id: &str, body: &[u8]) -> Answer {
    let sig = github_signature(secret, body);
    request(
        from,
        port,
        "POST",
        b"/webhook/git",
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", id),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await
}

/// The webhook secret and the API token in `dir`, and a poll interval of an hour: only a
/// webhook or a sync request brings a commit in soon.
fn secured(dir: &Path) -> DaemonExtra {
    let secret = dir.join("webhook-secret");
    let token = dir.join("api-token");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("write secret");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("write token");
    DaemonExtra {
        interval: "1h".into(),
        source: vec![format!("webhookSecretFile: {}", secret.display())],
        http: vec![format!("tokenFile: {}", token.display())],
    }
}

/// The value of one series of the daemon's /metrics (0 when absent).
async fn metric(port: u16, series: &str) -> f64 {
    let a = request(OPERATOR, port, "GET", b"/metrics", &[], b"").await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn log_of(f: &mut Fixture) -> Vec<u8> {
    std::fs::read(&f.daemon().log).expect("read the daemon's log")
}

async fn started(test: &str, secrets: &Path) -> (Fixture, String) {
    let (f, first) = Fixture::with_daemon(
        test,
        base_files(IMAGE_1),
        TierExtra::default(),
        secured(secrets),
    )
    .started(FIRST_SYNC)
    .await;
    (f, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_requests_leaves_a_bounded_escaped_log_and_the_token_still_works() {
    let secrets = tempfile::tempdir().expect("temp dir");
    let (mut f, _) = started("httpflood", secrets.path()).await;
    let before = log_of(&mut f);

    // Long tier names full of escape sequences (percent-encoded, as a URL carries them: the
    // handler sees them decoded), a forged log line, and bidi overrides.
    let evil = format!(
        "%1b%5b2J%1b%5d0%3bpwned%07%c2%9b31m%0d%0a%7b%22level%22%3a%22ERROR%22%7d%e2%80%ae{}",
        "A".repeat(4000)
    );
    let path = format!("/api/v1/tiers/{evil}/sync");
    let flood = 2000;
    let started = std::time::Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    let mut retry_after = None;
    for i in 0..flood {
        let auth = if i % 2 == 0 { "Bearer wrong" } else { "" };
        let headers: &[(&str, &str)] = if auth.is_empty() {
            &[("X-Gitopsd-User", "mallory")]
        } else {
            &[("Authorization", auth)]
        };
        let a = request(ATTACKER, f.port, "POST", path.as_bytes(), headers, b"").await;
        if a.status == 429 {
            retry_after = a.header("retry-after").map(str::to_owned);
        }
        *statuses.entry(a.status).or_default() += 1;
    }
    // Unknown routes and other tiers' reads count too.
    for i in 0..200 {
        let a = request(
            ATTACKER,
            f.port,
            "GET",
            format!("/no/such/route/%1b{i}").as_bytes(),
            &[],
            b"",
        )
        .await;
        *statuses.entry(a.status).or_default() += 1;
    }
    let took = started.elapsed();
    println!(
        "answers to {} refused requests in {took:?}: {statuses:?}",
        flood + 200
    );
    // The budget: 30 at once, one more every 2 s. A refill may land during the unknown-route
    // reads, so a 404 spends the budget as a 401 does; everything over it is a 429.
    let budget = 30 + took.as_secs() as u32 / 2 + 1;
    let answered = |code| statuses.get(&code).copied().unwrap_or(0);
    let within_budget = answered(401) + answered(404);
    assert!(
        answered(401) >= 30 && within_budget <= budget,
        "{statuses:?} (budget {budget})"
    );
    assert_eq!(
        statuses.values().sum::<u32>() - within_budget,
        answered(429),
        "{statuses:?}"
    );
    let wait: u64 = retry_after
        .expect("429 says when to retry")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&wait), "Retry-After {wait}");

    // Raw control bytes in the request line or a header never reach a handler (hyper answers
    // 400 itself); a C1 control in UTF-8 (obs-text) does, and is not logged raw either.
    for (path, user) in [
        (&b"/api/v1/tiers/\x1b[2J/sync"[..], "x"),
        (&b"/api/v1/tiers/a\x07b/sync"[..], "x"),
        (&b"/api/v1/tiers/ok/sync"[..], "\u{1b}[31mred"),
        (&b"/api/v1/tiers/\xc2\x9b31m/sync"[..], "\u{9b}31m\u{202e}"),
    ] {
        let a = request(
            [127, 0, 0, 99],
            f.port,
            "POST",
            path,
            &[("X-Gitopsd-User", user)],
            b"",
        )
        .await;
        assert!(matches!(a.status, 400 | 401), "{}: {}", a.status, a.body);
    }

    // Many addresses, a few refusals each: the log budget of all of them together holds.
    for last in 100..=199u8 {
        for _ in 0..3 {
            let a = request(
                [127, 0, 1, last],
                f.port,
                "POST",
                b"/api/v1/tiers/x%1b/sync",
                &[],
                b"",
            )
            .await;
            assert_eq!(a.status, 401);
        }
    }

    // The operator, from its own address, is not concerned: its sync brings a new commit.
    f.write_files(&vec![(
        "base/deployment.yaml".to_owned(),
        deployment(IMAGE_2, false),
    )]);
    let second = f.commit("image 1.4.3");
    let sync = format!("/api/v1/tiers/{}/sync", f.tier);
    let auth = format!("Bearer {TOKEN}");
    let a = request(
        OPERATOR,
        f.port,
        "POST",
        sync.as_bytes(),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    f.wait_synced_healthy(&second, SOON).await;
    // The flooding address is heard again once its budget refills, token in hand.
    let port = f.port;
    eventually("the flooding address to be heard again", SOON, || {
        let (sync, auth) = (sync.clone(), auth.clone());
        async move {
            let a = request(
                ATTACKER,
                port,
                "POST",
                sync.as_bytes(),
                &[("Authorization", &auth)],
                b"",
            )
            .await;
            (a.status == 202).then_some(())
        }
    })
    .await;

    // Every refusal is counted, though few are logged.
    let over = metric(f.port, r#"gitopsd_http_refused_total{reason="over_limit"}"#).await;
    let unauthorized_total = metric(
        f.port,
        r#"gitopsd_http_refused_total{reason="unauthorized"}"#,
    )
    .await;
    assert!(over >= f64::from(flood + 200 - budget), "{over}");
    assert!(
        unauthorized_total >= f64::from(answered(401) + 300),
        "{unauthorized_total}"
    );

    let after = log_of(&mut f);
    let added = &after[before.len()..];
    let text = String::from_utf8_lossy(added);
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("request refused"))
        .collect();
    println!(
        "log: {} lines, {} bytes added by {} refused requests ({} of them 'request refused')",
        text.lines().count(),
        added.len(),
        flood + 200 + 300,
        refused.len()
    );
    for l in refused
        .iter()
        .take(2)
        .chain(refused.iter().filter(|l| l.contains("\"nth\":1000")))
    {
        println!("  {l}");
    }
    // 2,500 refusals: a few lines per address and reason, and the global budget.
    // At most 40 lines a minute for everyone together: the test may straddle two minutes.
    assert!(
        refused.len() <= 80,
        "{} refusal lines:\n{}",
        refused.len(),
        refused.join("\n")
    );
    assert!(added.len() < 64 * 1024, "{} bytes added", added.len());
    assert!(
        refused
            .iter()
            .any(|l| l.contains("\"not_logged\":") && !l.contains("\"not_logged\":0")),
        "no line counts what was left out:\n{}",
        refused.join("\n")
    );
    // A power-of-ten line of the 429s: the 1000th, counting the ones before it.
    assert!(
        refused
            .iter()
            .any(|l| l.contains("\"nth\":1000") && l.contains("over_limit")),
        "{}",
        refused.join("\n")
    );
    // Nothing raw: no escape byte, no C1 control, no bidi override, no forged line, and the
    // path cut short.
    assert!(!added.contains(&0x1b), "a raw ESC in the log");
    assert!(!text.contains('\u{9b}') && !text.contains('\u{202e}'));
    assert!(!text.contains("\\u001b"), "an ESC escaped only by JSON");
    assert!(!text.contains("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    assert!(
        !text.contains("mallory"),
        "the user header of a refused request is not logged"
    );
    for line in text.lines() {
        assert!(
            line.starts_with('{') && serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not one JSON line: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_signed_delivery_triggers_no_fetch() {
    let secrets = tempfile::tempdir().expect("temp dir");
    let (f, _) = started("httpreplay", secrets.path()).await;
    let port = f.port;

    f.write_files(&vec![(
        "base/deployment.yaml".to_owned(),
        deployment(IMAGE_2, false),
    )]);
    let second = f.commit("image 1.4.3");
    let body = push_body(&second);
    let a = github_push(FORGE, port, SECRET, "delivery-0001", &body).await;
    assert_eq!(a.status, 202, "{}", a.body);
    f.wait_synced_healthy(&second, SOON).await;
    let fetches = metric(port, "gitopsd_git_fetch_duration_seconds_count").await;

    // The attacker captured that delivery: the same bytes again, then under new ids, then
    // from the forge's own address.
    for (from, id) in [
        (ATTACKER, "delivery-0001"),
        (ATTACKER, "delivery-9999"),
        (ATTACKER, ""),
        (FORGE, "delivery-0002"),
    ] {
        let a = github_push(from, port, SECRET, id, &body).await;
        assert_eq!(a.status, 200, "{id}: {}", a.body);
        assert_eq!(a.body, "duplicate delivery, ignored\n", "{id}");
    }
    // Many replays (more than the shared bucket holds) take nothing from it: a genuine
    // delivery of a new commit gets through at once.
    for i in 0..40 {
        let a = github_push(ATTACKER, port, SECRET, &format!("r-{i}"), &body).await;
        assert!(matches!(a.status, 200 | 429), "{}: {}", a.status, a.body);
    }
    f.write_files(&vec![(
        "base/deployment.yaml".to_owned(),
        deployment(IMAGE_3, false),
    )]);
    let third = f.commit("image 1.4.4");
    let a = github_push(FORGE, port, SECRET, "delivery-0003", &push_body(&third)).await;
    assert_eq!(a.status, 202, "{}", a.body);
    f.wait_synced_healthy(&third, SOON).await;

    // The daemon has processed everything sent before the third delivery: one fetch more
    // (the third's), none for the replays.
    let duplicate = r#"gitopsd_webhook_requests_total{result="duplicate"}"#;
    let accepted = r#"gitopsd_webhook_requests_total{result="accepted"}"#;
    assert!(metric(port, duplicate).await >= 4.0 + 25.0);
    assert_eq!(metric(port, accepted).await, 2.0);
    assert_eq!(
        metric(port, "gitopsd_git_fetch_duration_seconds_count").await,
        fetches + 1.0,
        "a replay made the daemon fetch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_forged_deliveries_does_not_starve_a_genuine_one() {
    let secrets = tempfile::tempdir().expect("temp dir");
    let (f, first) = started("httpforged", secrets.path()).await;
    let port = f.port;

    f.write_files(&vec![(
        "base/deployment.yaml".to_owned(),
        deployment(IMAGE_2, false),
    )]);
    let second = f.commit("image 1.4.3");
    let body = push_body(&second);
    // More forged deliveries than the shared bucket's burst (20), and than this address's
    // refusal budget (30): signed with a guessed secret, GitLab tokens guessed, no signature.
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    let started = std::time::Instant::now();
    for i in 0..60 {
        let a = match i % 3 {
            0 => github_push(ATTACKER, port, "guessed-secret", &format!("f-{i}"), &body).await,
            1 => {
                request(
                    ATTACKER,
                    port,
                    "POST",
                    b"/webhook/git",
                    &[
                        ("X-Gitlab-Event", "Push Hook"),
                        ("X-Gitlab-Token", &format!("guess-{i}")),
                    ],
                    &body,
                )
                .await
            }
            _ => {
                request(
                    ATTACKER,
                    port,
                    "POST",
                    b"/webhook/git",
                    &[("X-GitHub-Event", "push")],
                    &body,
                )
                .await
            }
        };
        *statuses.entry(a.status).or_default() += 1;
    }
    let budget = 30 + started.elapsed().as_secs() as u32 / 2 + 1;
    let unauthorized = statuses.get(&401).copied().unwrap_or(0);
    assert!(
        (30..=budget).contains(&unauthorized),
        "{statuses:?} (budget {budget})"
    );
    assert_eq!(
        statuses.get(&429).copied().unwrap_or(0),
        60 - unauthorized,
        "{statuses:?}"
    );
    // Nothing forged brought the commit in.
    assert_eq!(f.status()["revision"], first.as_str());

    let a = github_push(FORGE, port, SECRET, "genuine-1", &body).await;
    assert_eq!(a.status, 202, "{}", a.body);
    f.wait_synced_healthy(&second, SOON).await;
    assert_eq!(
        metric(
            port,
            r#"gitopsd_webhook_requests_total{result="unauthorized"}"#
        )
        .await,
        f64::from(unauthorized)
    );
    assert_eq!(
        metric(
            port,
            r#"gitopsd_webhook_requests_total{result="rate_limited"}"#
        )
        .await,
        0.0,
        "forged deliveries took nothing from the shared bucket"
    );
}
