//! Internal traffic: the bus accepts only messages sealed with the fleet's secret, the
//! JWKS comes over https from a CA the service is told to trust, answers carry HSTS
//! behind an https public URL, and secrets open to other users stop a service at start.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flotilla_bus::{BusEndpoint, BusSecret, Event, EventPublisher, Waker};
use flotilla_testkit::{Proc, TempDir, binary, free_port, wait_until};
use reqwest::Method;
use reqwest::StatusCode;
use reqwest::header::STRICT_TRANSPORT_SECURITY;
use zeromq::{Socket, SocketSend, ZmqMessage};

use super::login::{bus_is_up, decode_part, me, sign_in, slow_catch_up, verified_account};
use super::*;

/// A secret the fleet does not have.
fn wrong_secret() -> BusSecret {
    BusSecret::from_bytes(&[0x5a; 32]).unwrap()
}

/// A counter of a service's `/metrics` (0 when absent).
fn metric(fleet: &Fleet, service: &str, series: &str) -> u64 {
    let text = fleet
        .client()
        .get(fleet.direct_url(service, &format!("/{service}/metrics")))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

fn rejected(service: &str, kind: &str, reason: &str) -> String {
    format!(
        "flotilla_bus_messages_rejected_total{{service=\"{service}\",kind=\"{kind}\",reason=\"{reason}\"}}"
    )
}

/// Sends `message` from a raw PUB socket connected to `endpoint` until `done()`.
fn send_raw_until(
    runtime: &tokio::runtime::Runtime,
    endpoint: &str,
    message: impl Fn() -> ZmqMessage,
    done: impl Fn() -> bool,
) -> bool {
    let mut socket = runtime.block_on(async {
        let mut socket = zeromq::PubSocket::new();
        socket.connect(endpoint).await.unwrap();
        socket
    });
    wait_until(Duration::from_secs(10), || {
        let message = message();
        let _ = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), socket.send(message)).await
        });
        done()
    })
}

on_both_databases! {
    fn a_forged_revocation_on_the_bus_revokes_nothing_and_is_counted(db: TestDb) {
        let fleet = slow_catch_up(db);
        verified_account(&fleet, "ada@example.org");
        bus_is_up(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let sid = decode_part(&access, 1)["sid"].as_str().unwrap().to_owned();
        let forged = Event::SessionRevoked { sids: vec![sid] };
        let events_in = fleet.env_var("FLOTILLA_BUS_EVENTS_IN").to_owned();

        // Sealed with another secret, through the library as a genuine publisher would.
        let bad_mac = rejected("worker", "event", "bad_mac");
        let forger = EventPublisher::start(&BusEndpoint::new(&events_in, &wrong_secret())).unwrap();
        let dropped = wait_until(Duration::from_secs(10), || {
            forger.send(&forged);
            metric(&fleet, "worker", &bad_mac) > 0
        });
        assert!(dropped, "the forwarder never saw the forgery:\n{}", fleet.all_logs());

        // Without any seal, from a bare ZeroMQ socket.
        let unsealed = rejected("worker", "event", "unsealed");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let plain = || {
            let mut message = ZmqMessage::from(forged.topic().as_str().to_owned());
            message.push_back(forged.encode().into());
            message
        };
        assert!(send_raw_until(&runtime, &events_in, plain, || metric(&fleet, "worker", &unsealed) > 0));

        // Nothing reached the services: the session lives (a genuine revocation takes
        // milliseconds, and the catch-up is a minute away).
        let still = wait_until(Duration::from_secs(1), || me(&fleet, &access).0 != StatusCode::OK);
        assert!(!still, "a forged revocation ended the session");
        assert_eq!(me(&fleet, &access).0, StatusCode::OK);
        let logs = fleet.all_logs();
        assert!(logs.contains("dropped a bus event that failed its check"), "{logs}");
        // And a genuine one still does, within a second.
        let at = Instant::now();
        assert_eq!(super::login::bearer_post(&fleet, "/login/logout", &access), StatusCode::NO_CONTENT);
        super::login::refused_within(&fleet, &access, at, Duration::from_secs(1));
        // The mails (live links) are in a folder of the worker's alone.
        assert_eq!(mode(&fleet.data_dir().join("mail")), 0o700);
        // An answer over http carries no HSTS.
        assert!(fleet.get("/login/health").headers().get(STRICT_TRANSPORT_SECURITY).is_none());
    }

    fn a_forged_wake_up_starts_no_pass_and_is_counted(db: TestDb) {
        let fleet = Fleet::builder(db).env("FLOTILLA_WORKER_POLL_MS", "3600000").start();
        let passes = "flotilla_worker_passes_total{service=\"worker\",kind=\"wake\"}";
        let wake = fleet.env_var("FLOTILLA_BUS_WAKE").to_owned();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let mut forger = Waker::connect(&BusEndpoint::new(&wake, &wrong_secret())).await.unwrap();
            assert!(forger.wake("email").await);
            let mut raw = zeromq::PushSocket::new();
            raw.connect(&wake).await.unwrap();
            raw.send(ZmqMessage::from("email")).await.unwrap();
        });
        let counted = wait_until(Duration::from_secs(5), || {
            metric(&fleet, "worker", &rejected("worker", "wake", "bad_mac")) == 1
                && metric(&fleet, "worker", &rejected("worker", "wake", "unsealed")) == 1
        });
        assert!(counted, "{}", fleet.all_logs());
        assert_eq!(metric(&fleet, "worker", passes), 0, "a forged wake-up started a pass");

        runtime.block_on(async {
            let mut waker = Waker::connect(&fleet.bus_endpoint("FLOTILLA_BUS_WAKE")).await.unwrap();
            assert!(waker.wake("email").await);
        });
        assert!(
            wait_until(Duration::from_secs(5), || metric(&fleet, "worker", passes) == 1),
            "{}", fleet.all_logs()
        );
    }

    fn profile_fetches_the_jwks_over_https_from_the_ca_it_trusts(db: TestDb) {
        let pki = TempDir::new("pki");
        make_pki(pki.path());
        let port = free_port();
        let url = format!("https://localhost:{port}/login/.well-known/jwks.json");
        let ca = pki.path().join("ca.pem");
        let fleet = Fleet::builder(db)
            .env("FLOTILLA_JWKS_URL", &url)
            .env("FLOTILLA_JWKS_CA_FILE", ca.to_str().unwrap())
            .start();
        // nginx terminating TLS in front of login's JWKS (through the fleet's nginx).
        let _tls = tls_proxy(pki.path(), port, &fleet.origin());
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let trusted = wait_until(Duration::from_secs(15), || me(&fleet, &access).0 == StatusCode::OK);
        assert!(trusted, "{}", fleet.all_logs());

        // The same profile told to trust another CA: no key, not ready, tokens refused,
        // and the log says why.
        let mut command = fleet.command("flotilla-profile");
        command
            .env("FLOTILLA_PROFILE_LISTEN", "127.0.0.1:0")
            .env("FLOTILLA_JWKS_CA_FILE", pki.path().join("other-ca.pem"));
        let mut doubting = Proc::spawn("profile-other-ca", command);
        let addr = doubting.wait_listening(Duration::from_secs(20));
        let logged = wait_until(Duration::from_secs(15), || doubting.logs().contains("certificate verify failed"));
        assert!(logged, "{}", doubting.logs());
        let ready = fleet.client().get(format!("http://{addr}/profile/ready")).send().unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        let refused = fleet.client().get(format!("http://{addr}/profile/me")).bearer_auth(&access).send().unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let line = doubting.log_lines().into_iter().find(|l| l.contains("certificate verify failed")).unwrap();
        assert!(line.contains(&url), "the line names the URL: {line}");
        doubting.stop(Duration::from_secs(5));
    }

    fn behind_an_https_public_url_every_answer_carries_hsts(db: TestDb) {
        let fleet = Fleet::builder(db).env("FLOTILLA_PUBLIC_URL", "https://accounts.example.org").start();
        for path in ["/login", "/signup", "/profile/me", "/login/nowhere", "/profile/health"] {
            let response = fleet.get(path);
            let hsts = response.headers().get(STRICT_TRANSPORT_SECURITY).map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(hsts.as_deref(), Some("max-age=31536000"), "{path} ({})", response.status());
        }
        let refused = fleet.request(Method::POST, "/login").json(&serde_json::json!({})).send().unwrap();
        assert!(refused.status().is_client_error());
        assert!(refused.headers().get(STRICT_TRANSPORT_SECURITY).is_some());
    }
}

/// A test CA, a certificate for localhost and 127.0.0.1 signed by it, and another CA.
fn make_pki(dir: &Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ca_ext = [
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ];
    for name in ["ca", "other-ca"] {
        let (key, pem, subject) = (
            format!("{name}.key"),
            format!("{name}.pem"),
            format!("/CN=flotilla test {name}"),
        );
        let mut args = vec![
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        args.extend([
            "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subject,
        ]);
        args.extend(ca_ext);
        openssl(&args);
    }
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

/// nginx on `port` with the test certificate, passing everything to `upstream`.
fn tls_proxy(dir: &Path, port: u16, upstream: &str) -> ProcGuard {
    let conf = format!(
        "daemon off;\npid {dir}/tls-nginx.pid;\nerror_log stderr warn;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/tmp;\n  proxy_temp_path {dir}/tmp;\n\
           fastcgi_temp_path {dir}/tmp;\n  uwsgi_temp_path {dir}/tmp;\n  scgi_temp_path {dir}/tmp;\n\
           server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {dir}/server.pem;\n\
             ssl_certificate_key {dir}/server.key;\n    location / {{ proxy_pass {upstream}; }}\n  }}\n}}\n",
        dir = dir.display()
    );
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("tls-nginx.conf"), conf).unwrap();
    let mut command = Command::new(flotilla_testkit::nginx_binary());
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("tls-nginx.conf"))
        .args(["-e", "stderr"]);
    let mut proc = Proc::spawn("tls-nginx", command);
    let up = wait_until(Duration::from_secs(10), || {
        proc.try_exit().is_some() || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        up && proc.try_exit().is_none(),
        "the TLS nginx did not start:\n{}",
        proc.logs()
    );
    ProcGuard(proc)
}

/// Stops the process when the test ends.
struct ProcGuard(Proc);

impl Drop for ProcGuard {
    fn drop(&mut self) {
        self.0.stop(Duration::from_secs(5));
    }
}

/// A service command with its own data folder, isolated from the caller's environment.
fn service(name: &str, data: &Path) -> Command {
    let mut command = Command::new(binary(name));
    command
        .env_clear()
        .env("FLOTILLA_DATA_DIR", data)
        .env("FLOTILLA_LOG_STYLE", "never")
        .env("FLOTILLA_HTTP_WORKERS", "1")
        .env("FLOTILLA_LOGIN_LISTEN", "127.0.0.1:0");
    for socket in ["WAKE", "EVENTS_IN", "EVENTS_OUT"] {
        command.env(
            format!("FLOTILLA_BUS_{socket}"),
            format!("tcp://127.0.0.1:{}", free_port()),
        );
    }
    command
}

fn refused(command: &mut Command, path: &Path, fix: &str) {
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!("{fix} {}", path.display())),
        "{stderr}"
    );
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn secrets_open_to_other_users_stop_a_service_naming_the_file() {
    let dir = TempDir::new("modes");
    let data = dir.path().join("var");
    // Made by the service itself: the data folder 0711, the database, bus secret and
    // keys readable by their owner only.
    let migrated = service("flotilla-login", &data)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let made = service("flotilla-login", &data)
        .args(["keys", "generate"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let keys = data.join("keys");
    let key = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pem"))
        .unwrap();
    assert_eq!(mode(&data), 0o711);
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&data.join("flotilla.db")), 0o600);
    assert_eq!(mode(&data.join("bus.secret")), 0o600);

    chmod(&data, 0o755);
    refused(
        service("flotilla-login", &data).arg("serve"),
        &data,
        "chmod 711",
    );
    refused(
        service("flotilla-profile", &data).arg("migrate"),
        &data,
        "chmod 711",
    );
    chmod(&data, 0o711);

    // Each file open to others is refused, naming it and the fix; put right, the next.
    let database = data.join("flotilla.db");
    let secret = data.join("bus.secret");
    for (path, open, own, fix) in [
        (&key, 0o644, 0o600, "chmod 600"),
        (&keys, 0o755, 0o700, "chmod 700"),
        (&database, 0o644, 0o600, "chmod 600"),
        (&secret, 0o644, 0o600, "chmod 600"),
    ] {
        chmod(path, open);
        refused(service("flotilla-login", &data).arg("serve"), path, fix);
        chmod(path, own);
    }

    // Put right, the service starts.
    let mut login = Proc::spawn("login", service("flotilla-login", &data));
    login.wait_listening(Duration::from_secs(20));
    login.stop(Duration::from_secs(5));
}
