//! `make run`'s runner, scripts/dev-fleet.sh, as a developer uses it: the fleet comes
//! up behind nginx, and Ctrl-C (SIGINT to the terminal's process group) stops all of it.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use flotilla_testkit::{
    Proc, TempDir, bin_dir, free_port, signal_group, wait_until, workspace_root,
};
use reqwest::StatusCode;

/// The live (non-zombie) processes of a process group.
fn group_members(pgid: i32) -> Vec<(i32, String)> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (state, group) = (fields[0], fields[2].parse::<i32>().unwrap_or(-1));
        if group == pgid && state != "Z" {
            members.push((
                pid,
                head.split_once('(')
                    .map(|(_, c)| c.to_owned())
                    .unwrap_or_default(),
            ));
        }
    }
    members
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn make_run_serves_everything_and_ctrl_c_leaves_no_process() {
    let fixed = [7101, 7102, 7103, 7104, 7105, 7110, 7111, 7112, 7190];
    assert!(
        fixed.iter().all(|p| port_is_free(*p)),
        "the fleet's default ports (7101-7105, 7110-7112, 7190) are in use: stop `make run` to run this test"
    );
    let dir = TempDir::new("make-run");
    let port = free_port();
    let mut command = Command::new(workspace_root().join("scripts/dev-fleet.sh"));
    command
        .env("FLOTILLA_BIN_DIR", bin_dir())
        .env("FLOTILLA_DATA_DIR", dir.path().join("var"))
        .env("FLOTILLA_HTTP_PORT", port.to_string())
        .env("FLOTILLA_LOG_STYLE", "never")
        .env_remove("FLOTILLA_LOG")
        .env_remove("DATABASE_URL")
        .process_group(0);
    let mut fleet = Proc::spawn("make run", command);
    let pgid = fleet.pid();
    let client = reqwest::blocking::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let up = wait_until(Duration::from_secs(60), || {
        fleet.logs().contains("flotilla is up on") || fleet.try_exit().is_some()
    });
    assert!(
        up && fleet.try_exit().is_none(),
        "make run did not come up:\n{}",
        fleet.logs()
    );

    for path in [
        "/",
        "/people/",
        "/signup/health",
        "/login/health",
        "/profile/health",
        "/admin/health",
        "/hello/welcome",
    ] {
        assert_eq!(
            client.get(url(path)).send().unwrap().status(),
            StatusCode::OK,
            "{path}"
        );
    }
    assert_eq!(
        client.get(url("/signup/metrics")).send().unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // The example app is behind login's door.
    let hello = client.get(url("/hello/api/me")).send().unwrap();
    assert_eq!(hello.status(), StatusCode::UNAUTHORIZED);
    // The developer sees a mail's link on the terminal (the file transport logs it at
    // debug under `mail_link`, which make run turns on; never at info).
    let signed_up = client
        .post(url("/signup"))
        .json(&serde_json::json!({"email": "dev@example.org", "password": "correct horse battery staple"}))
        .send()
        .unwrap();
    assert_eq!(signed_up.status(), StatusCode::ACCEPTED);
    assert!(
        wait_until(Duration::from_secs(15), || fleet
            .logs()
            .contains("/signup/verify?token=")),
        "no link shown:\n{}",
        fleet.logs()
    );
    // The command it printed for becoming admin works as printed.
    let logs = fleet.logs();
    let promote = logs
        .lines()
        .find_map(|line| line.trim().strip_suffix("promote YOUR-EMAIL"))
        .unwrap_or_else(|| panic!("no promote command shown:\n{logs}"));
    let promoted = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{promote}promote dev@example.org"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&promoted.stdout);
    assert!(
        promoted.status.success() && printed.contains("dev@example.org is now an admin"),
        "{printed}{}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    // Every service's log line reaches the one terminal, prefixed by its name.
    for name in [
        "worker", "signup", "login", "profile", "admin", "pages", "hello",
    ] {
        assert!(
            logs.contains(&format!("{name:<8} | ")),
            "no {name} lines:\n{logs}"
        );
    }
    let members = group_members(pgid);
    assert!(
        members.len() >= 9,
        "script, five services, the page watcher, the example app and nginx: {members:?}"
    );

    // Ctrl-C: the terminal sends SIGINT to the whole foreground process group.
    signal_group(pgid, libc::SIGINT);
    let status = fleet.wait_exit(Duration::from_secs(20));
    assert!(status.is_some(), "make run did not stop:\n{}", fleet.logs());
    assert!(
        wait_until(Duration::from_secs(10), || group_members(pgid).is_empty()),
        "processes left behind: {:?}",
        group_members(pgid)
    );
    for p in fixed.iter().copied().chain([port]) {
        assert!(
            wait_until(Duration::from_secs(5), || port_is_free(p)),
            "port {p} still taken"
        );
    }
}
