//! A full disk under the SQLite file: the starts that cannot be written fail with a Twilio 5xx
//! and leave nothing behind (not fetchable, no code in the outbox, no count in any bucket);
//! everything acknowledged before stays; once space is freed the same process serves again,
//! and a restart finds exactly what was acknowledged.
//!
//! Runs as root (it mounts a small tmpfs), as the test command does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fixtures::{Chain, create_chain};
use crate::harness::{Client, ServerOptions, TestServer};

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_small_tmpfs(dir: &Path) -> Mounted {
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(dir)
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "this test mounts a 4 MiB tmpfs and must run as root (the test command does)"
    );
    Mounted(dir.to_owned())
}

/// Fills the file system until it has no room left; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).and_then(|_| f.flush()).is_ok() {}
    let _ = f.sync_all();
    path
}

fn phone(i: usize) -> String {
    format!("+1555{:07}", i)
}

async fn start(c: &Client, service: &str, i: usize) -> crate::harness::Reply {
    let to = phone(i);
    let limits = format!(r#"{{"ip":"v{i}"}}"#);
    c.post_form(
        &format!("/v2/Services/{service}/Verifications"),
        &[("To", &to), ("Channel", "sms"), ("RateLimits", &limits)],
    )
    .await
}

async fn fetch_status(c: &Client, service: &str, i: usize) -> u16 {
    c.get(&format!(
        "/v2/Services/{service}/Verifications/%2B{}",
        &phone(i)[1..]
    ))
    .await
    .status
}

async fn codes(c: &Client, i: usize) -> usize {
    c.get(&format!("/emulator/v1/Outbox?To=%2B{}", &phone(i)[1..]))
        .await
        .expect(200)["messages"]
        .as_array()
        .unwrap()
        .len()
}

async fn counted(c: &Client, service: &str, i: usize) -> usize {
    c.get(&format!(
        "/emulator/v1/Services/{service}/Usage?RateLimit=ip&Value=v{i}"
    ))
    .await
    .expect(200)["usage"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_full_disk_loses_nothing_acknowledged_and_shows_nothing_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let _mounted = mount_small_tmpfs(dir.path());
    let url = format!("sqlite://{}", dir.path().join("verilimit.db").display());
    let mut server = TestServer::start(ServerOptions::new().database_url(url)).await;
    let c = server.a();
    let Chain { service, .. } =
        create_chain(&c, &[("FriendlyName", "disk")], &[("ip", &[(10, 3600)])]).await;

    let mut acknowledged = Vec::new();
    for i in 0..5 {
        start(&c, &service, i).await.expect(201);
        acknowledged.push(i);
    }
    let filler = fill(dir.path());
    let mut failed = None;
    for i in 5..20_000 {
        let r = start(&c, &service, i).await;
        match r.status {
            201 => acknowledged.push(i),
            500..=599 => {
                r.check_error().unwrap_or_else(|e| panic!("{e}"));
                failed = Some(i);
                break;
            }
            other => panic!("a start on a full disk answered {other}: {}", r.body),
        }
    }
    let failed = failed.expect("no write failed although the disk is full");

    // Nothing of the failed start is visible.
    assert_eq!(
        fetch_status(&c, &service, failed).await,
        404,
        "a ghost verification"
    );
    assert_eq!(
        codes(&c, failed).await,
        0,
        "a code of an unacknowledged start"
    );
    assert_eq!(
        counted(&c, &service, failed).await,
        0,
        "an unacknowledged admission"
    );
    // Everything acknowledged is, its code too (reads stay whole while writes cannot).
    for &i in acknowledged.iter().rev().take(20) {
        assert_eq!(
            fetch_status(&c, &service, i).await,
            200,
            "acknowledged start {i}"
        );
        assert_eq!(
            codes(&c, i).await,
            1,
            "the code of acknowledged start {i} on a full disk"
        );
        assert_eq!(
            counted(&c, &service, i).await,
            1,
            "the admission of acknowledged start {i} on a full disk"
        );
    }

    // Space comes back: the same process serves again.
    std::fs::remove_file(filler).unwrap();
    start(&c, &service, failed).await.expect(201);
    assert_eq!(codes(&c, failed).await, 1);
    assert_eq!(counted(&c, &service, failed).await, 1);

    // And a restart finds exactly what was acknowledged.
    server.kill9();
    let server = TestServer::start(ServerOptions::new().database_of(&server)).await;
    let c = server.a();
    for &i in acknowledged.iter().chain([&failed]) {
        assert_eq!(
            fetch_status(&c, &service, i).await,
            200,
            "start {i} after restart"
        );
        assert_eq!(codes(&c, i).await, 1, "codes of start {i} after restart");
    }
}
