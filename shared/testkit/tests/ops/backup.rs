//! `scripts/backup` and `scripts/restore`, run as a sysadmin runs them, with a host's env
//! file: a backup taken while the fleet runs, restored into a fresh installation, signs
//! in the account made before it, and the access token issued before it is still
//! accepted (the keys came back), and the data folder's bus secret and second factors'
//! key come back with them. An altered archive, a database that holds accounts and one
//! still in use are refused, and nothing changes. A factor key set in the env file is
//! not saved, and a restore onto a host whose key is not the backup's is warned about.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use flotilla_testkit::{
    SERVICES, TempDir, bin_dir, binary, link_param, wait_until, workspace_root,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;

const EMAIL: &str = "keeper@example.org";
const PASSWORD: &str = "correct horse battery staple";
/// Put in the env file's PostgreSQL URL (the test cluster trusts local connections, so
/// it is never checked): no output of the scripts may show it.
const DB_PASSWORD: &str = "never-shown-5f1d0c";

/// Signs up `email` and follows the link of the verification mail.
fn verified_account(fleet: &Fleet, email: &str) {
    let response = fleet
        .request(Method::POST, "/signup")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mails = fleet.wait_for_mails(email, 1);
    let token = link_param(&mails[0], "token").unwrap();
    let verified = fleet
        .request(Method::POST, "/signup/verify")
        .json(&json!({ "token": token }))
        .send()
        .unwrap();
    assert_eq!(verified.status(), StatusCode::OK);
}

/// Signs in with the password; returns the access token.
fn sign_in(fleet: &Fleet, email: &str) -> String {
    let response = fleet
        .request(Method::POST, "/login")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .unwrap();
    let status = response.status();
    let body: Value = response.json().unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::OK, "{body}\n{}", fleet.all_logs());
    body["access_token"].as_str().unwrap().to_owned()
}

/// What profile (a service that did not issue the token) says about it.
fn me(fleet: &Fleet, access: &str) -> (StatusCode, Value) {
    let response = fleet
        .request(Method::GET, "/profile/me")
        .bearer_auth(access)
        .send()
        .unwrap();
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

/// A database of the same kind as `db`, empty.
fn another(postgres: bool) -> TestDb {
    if postgres {
        TestDb::postgres().expect("the cluster that ran the first database")
    } else {
        TestDb::sqlite()
    }
}

fn with_password(url: &str) -> String {
    url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{DB_PASSWORD}@"),
        1,
    )
}

/// Writes a host's env file (as deploy writes /etc/flotilla/flotilla.env): `vars`, the
/// database URL with a password when it is PostgreSQL.
fn env_file<'a>(dir: &Path, vars: impl IntoIterator<Item = (&'a String, &'a String)>) -> PathBuf {
    let mut text = String::from("# the host's env file\n\n");
    for (name, value) in vars {
        let value = if name == "DATABASE_URL" {
            with_password(value)
        } else {
            value.clone()
        };
        text.push_str(&format!("{name}={value}\n"));
    }
    let path = dir.join(format!("flotilla-{:08x}.env", rand::random::<u32>()));
    fs::write(&path, text).unwrap();
    path
}

/// Runs `scripts/<name>` with only the env file to say where things are.
fn script(name: &str, env_file: &Path, extra: &[(&str, &str)], args: &[&str]) -> Output {
    let output = Command::new(workspace_root().join("scripts").join(name))
        .args(args)
        .current_dir(env_file.parent().unwrap())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FLOTILLA_ENV_FILE", env_file)
        .env("FLOTILLA_BIN_DIR", bin_dir())
        .envs(extra.iter().copied())
        .output()
        .unwrap();
    let all = text(&output);
    assert!(
        !all.contains(DB_PASSWORD),
        "scripts/{name} showed the database password:\n{all}"
    );
    output
}

fn text(output: &Output) -> String {
    format!(
        "exit status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The archives in `dir`, oldest first.
fn archives(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("flotilla-backup-") && name.ends_with(".tar.gz")
        })
        .collect();
    found.sort();
    found
}

fn the_archive(dir: &Path) -> PathBuf {
    let found = archives(dir);
    assert_eq!(
        found.len(),
        1,
        "one archive in {}: {found:?}",
        dir.display()
    );
    found[0].clone()
}

fn checksum_of(archive: &Path) -> PathBuf {
    PathBuf::from(format!("{}.sha256", archive.display()))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A folder's files and their bytes (none when it does not exist).
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The names in a folder (none when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn tar(args: &[&str]) -> Output {
    let output = Command::new("tar").args(args).output().unwrap();
    assert!(output.status.success(), "tar {args:?}: {}", text(&output));
    output
}

fn manifest(archive: &Path) -> String {
    stdout(&tar(&[
        "-xzOf",
        archive.to_str().unwrap(),
        "--wildcards",
        "*/MANIFEST",
    ]))
}

fn sha256_line(path: &Path) -> String {
    let output = Command::new("sha256sum")
        .arg(path.file_name().unwrap())
        .current_dir(path.parent().unwrap())
        .output()
        .unwrap();
    assert!(output.status.success());
    stdout(&output)
}

fn newest_migration(db: &TestDb) -> String {
    db.strings("SELECT MAX(version) AS v FROM __diesel_schema_migrations")
        .remove(0)
}

fn user_emails(db: &TestDb) -> Vec<String> {
    db.strings("SELECT email AS v FROM users ORDER BY email")
}

/// Whether the database holds no table at all (nothing was restored into it).
fn is_empty(db: &TestDb) -> bool {
    if db.is_postgres() {
        db.strings("SELECT tablename::text AS v FROM pg_tables WHERE schemaname = 'public'")
            .is_empty()
    } else {
        !Path::new(db.url().trim_start_matches("sqlite://")).exists()
    }
}

/// Waits until login and profile have their keys.
fn wait_ready(fleet: &Fleet) {
    for name in ["login", "profile"] {
        let url = fleet.direct_url(name, &format!("/{name}/ready"));
        let ready = wait_until(Duration::from_secs(15), || {
            fleet
                .client()
                .get(&url)
                .send()
                .is_ok_and(|r| r.status() == StatusCode::OK)
        });
        assert!(ready, "{name} is not ready:\n{}", fleet.all_logs());
    }
}

on_both_databases! {
    fn a_restored_installation_signs_in_the_old_account_and_accepts_its_old_token(db: TestDb) {
        let postgres = db.is_postgres();
        let fleet = Fleet::start(db);
        verified_account(&fleet, EMAIL);
        let access = sign_in(&fleet, EMAIL);
        assert_eq!(me(&fleet, &access).0, StatusCode::OK);
        let work = TempDir::new("backup");
        let out = work.path().join("backups");

        // Taken while the fleet runs.
        let backup = script("backup", &env_file(work.path(), fleet.envs()), &[], &["--out", out.to_str().unwrap()]);
        assert!(backup.status.success(), "{}", text(&backup));
        let archive = the_archive(&out);
        let name = archive.file_name().unwrap().to_string_lossy().into_owned();
        let stamp = name.strip_prefix("flotilla-backup-").and_then(|s| s.strip_suffix(".tar.gz")).unwrap();
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        assert!(
            stamp.len() == 16 && digits(&stamp[..8]) && &stamp[8..9] == "T" && digits(&stamp[9..15]) && stamp.ends_with('Z'),
            "a UTC time yyyymmddThhmmssZ: {name}"
        );
        assert!(stdout(&backup).contains(archive.to_str().unwrap()), "{}", text(&backup));
        assert_eq!(mode(&archive), 0o600, "it holds the keys");
        assert_eq!(mode(&out), 0o700);
        assert_eq!(fs::read_to_string(checksum_of(&archive)).unwrap(), sha256_line(&archive));
        let manifest = manifest(&archive);
        let expected = [
            "format=1".to_owned(),
            format!("backend={}", fleet.db.backend_name()),
            format!("schema={}", newest_migration(&fleet.db)),
            "accounts=1".to_owned(),
            "keys=1".to_owned(),
        ];
        for line in expected {
            assert!(manifest.lines().any(|l| l == line), "{line} in the MANIFEST:\n{manifest}");
        }
        assert!(manifest.contains("created_at=20") && manifest.contains("release="), "{manifest}");
        for note in ["bus_secret=included (", "factor_key=included ("] {
            assert!(manifest.lines().any(|l| l.starts_with(note)), "{note} in the MANIFEST:\n{manifest}");
        }
        assert!(stdout(&backup).contains("factors   included ("), "{}", text(&backup));
        let keys = fleet.data_dir().join("keys");
        let old_keys = contents(&keys);
        let listing = stdout(&tar(&["-tzf", archive.to_str().unwrap()]));
        let stem = name.trim_end_matches(".tar.gz");
        let database = if postgres { "database.pgdump" } else { "database.sqlite" };
        for member in ["MANIFEST", "SHA256SUMS", database, "bus.secret", "factor.key"]
            .into_iter()
            .map(str::to_owned)
            .chain(old_keys.keys().map(|k| format!("keys/{k}")))
        {
            assert!(listing.lines().any(|l| l == format!("{stem}/{member}")), "{member} in\n{listing}");
        }
        let old_bus_secret = fs::read(fleet.data_dir().join("bus.secret")).unwrap();
        // Made by login at its start (no FLOTILLA_FACTOR_KEY): the second factors' key.
        let old_factor_key = fs::read(fleet.data_dir().join("factor.key")).unwrap();
        // The old host is gone, its database with it.
        drop(fleet);

        // A fresh installation: its own database (migrated, no account) and data folder,
        // a key and a bus secret of its own, its services running.
        let mut fresh = Fleet::start(another(postgres));
        let fresh_env = env_file(work.path(), fresh.envs());
        let fresh_keys = fresh.data_dir().join("keys");
        let before = contents(&fresh_keys);
        assert_eq!(before.len(), 1, "the fresh login made a key");
        let fresh_factor_key = fs::read(fresh.data_dir().join("factor.key")).unwrap();
        assert_ne!(fresh_factor_key, old_factor_key, "the fresh login made a factor key of its own");
        let in_use = script("restore", &fresh_env, &[], &[archive.to_str().unwrap()]);
        assert_eq!(in_use.status.code(), Some(1), "{}", text(&in_use));
        assert!(stderr(&in_use).contains("stop the services"), "{}", text(&in_use));
        assert_eq!(contents(&fresh_keys), before, "nothing changed");
        assert!(user_emails(&fresh.db).is_empty());

        for (service, _) in SERVICES {
            fresh.stop_service(service, libc::SIGTERM);
        }
        let restored = script("restore", &fresh_env, &[], &[archive.to_str().unwrap()]);
        assert!(restored.status.success(), "{}", text(&restored));
        let said = stdout(&restored);
        assert!(said.contains("1 account(s)") && said.contains("1 signing key(s)"), "{said}");
        for kid in old_keys.keys() {
            assert!(said.contains(kid.trim_end_matches(".pem")), "{said}");
        }
        assert_eq!(contents(&fresh_keys), old_keys, "the keys came back, alone");
        assert_eq!(mode(&fresh_keys), 0o700);
        for kid in old_keys.keys() {
            assert_eq!(mode(&fresh_keys.join(kid)), 0o600);
        }
        let aside: Vec<String> = names(&fresh.data_dir()).into_iter().filter(|n| n.starts_with("keys.replaced-")).collect();
        assert_eq!(aside.len(), 1, "the fresh key was moved aside, not deleted");
        assert_eq!(contents(&fresh.data_dir().join(&aside[0])), before);
        let bus_secret = fresh.data_dir().join("bus.secret");
        assert_eq!(fs::read(&bus_secret).unwrap(), old_bus_secret);
        assert_eq!(mode(&bus_secret), 0o600);
        let factor_key = fresh.data_dir().join("factor.key");
        assert_eq!(fs::read(&factor_key).unwrap(), old_factor_key, "the second factors' key came back");
        assert_eq!(mode(&factor_key), 0o600);
        assert!(said.contains(&format!("factor.key into {}", factor_key.display())), "{said}");
        let aside: Vec<String> = names(&fresh.data_dir()).into_iter().filter(|n| n.starts_with("factor.key.replaced-")).collect();
        assert_eq!(aside.len(), 1, "the fresh factor key was moved aside, not deleted");
        assert_eq!(fs::read(fresh.data_dir().join(&aside[0])).unwrap(), fresh_factor_key);
        assert!(!stderr(&restored).contains("FLOTILLA_FACTOR_KEY"), "no warning: {}", text(&restored));
        if !postgres {
            assert_eq!(mode(Path::new(fresh.db.url().trim_start_matches("sqlite://"))), 0o600);
        }
        assert_eq!(user_emails(&fresh.db), vec![EMAIL.to_owned()]);
        assert!(
            names(&fresh.data_dir()).iter().all(|n| !n.starts_with(".restore")),
            "the unpacked archive is gone: {:?}",
            names(&fresh.data_dir())
        );

        for (service, _) in SERVICES {
            fresh.start_service(service);
        }
        wait_ready(&fresh);
        // The token issued before the backup, checked by profile with the restored key.
        let (status, body) = me(&fresh, &access);
        assert_eq!(status, StatusCode::OK, "{body}\n{}", fresh.all_logs());
        assert_eq!(body["email"], EMAIL);
        assert_eq!(body["email_verified"], true);
        // The password set before the backup.
        let access = sign_in(&fresh, EMAIL);
        assert_eq!(me(&fresh, &access).0, StatusCode::OK);
    }

    fn restore_refuses_an_altered_archive_and_a_database_that_holds_accounts(db: TestDb) {
        let postgres = db.is_postgres();
        let fleet = Fleet::start(db);
        let signed_up = fleet
            .request(Method::POST, "/signup")
            .json(&json!({"email": EMAIL, "password": PASSWORD}))
            .send()
            .unwrap();
        assert_eq!(signed_up.status(), StatusCode::ACCEPTED);
        let work = TempDir::new("backup");
        let env = env_file(work.path(), fleet.envs());
        let out = work.path().join("backups");
        let backup = script("backup", &env, &[], &["--out", out.to_str().unwrap()]);
        assert!(backup.status.success(), "{}", text(&backup));
        let archive = the_archive(&out);
        let archive_arg = archive.to_str().unwrap();

        // Onto the installation it came from, which holds the account: refused, and
        // nothing changed.
        let keys = fleet.data_dir().join("keys");
        let bus_secret = fleet.data_dir().join("bus.secret");
        let factor_key = fleet.data_dir().join("factor.key");
        let before = (contents(&keys), fs::read(&bus_secret).unwrap(), user_emails(&fleet.db), names(&fleet.data_dir()), fs::read(&factor_key).unwrap());
        let refused = script("restore", &env, &[], &[archive_arg]);
        assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
        let said = stderr(&refused);
        assert!(said.contains("already holds 1 account(s)") && said.contains("fresh installation"), "{said}");
        assert!(said.contains(if postgres { "createdb" } else { "aside" }), "says how to start fresh: {said}");
        let after = (contents(&keys), fs::read(&bus_secret).unwrap(), user_emails(&fleet.db), names(&fleet.data_dir()), fs::read(&factor_key).unwrap());
        assert_eq!(after, before, "nothing changed");

        // Altered archives, into an empty database and data folder: refused, nothing written.
        let target_db = another(postgres);
        let target = TempDir::new("restore-target");
        let data_dir = target.path().join("var");
        fs::DirBuilder::new().mode(0o711).create(&data_dir).unwrap();
        let vars = BTreeMap::from([
            ("DATABASE_URL".to_owned(), target_db.url().to_owned()),
            ("FLOTILLA_DATA_DIR".to_owned(), data_dir.display().to_string()),
            ("FLOTILLA_LOG_STYLE".to_owned(), "never".to_owned()),
        ]);
        let target_env = env_file(target.path(), &vars);
        let name = archive.file_name().unwrap().to_str().unwrap().to_owned();
        let stem = name.trim_end_matches(".tar.gz").to_owned();
        let refuse = |altered: &Path, because: &str| {
            let output = script("restore", &target_env, &[], &[altered.to_str().unwrap()]);
            assert_eq!(output.status.code(), Some(65), "{because}: {}", text(&output));
            assert!(stderr(&output).contains(because), "{because}: {}", text(&output));
            assert!(is_empty(&target_db), "{because}: nothing restored");
            assert!(names(&data_dir).is_empty(), "{because}: nothing written: {:?}", names(&data_dir));
        };

        // One byte changed on the way: the .sha256 beside it does not match.
        let flipped_dir = work.path().join("flipped");
        fs::create_dir(&flipped_dir).unwrap();
        let flipped = flipped_dir.join(&name);
        let mut bytes = fs::read(&archive).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        fs::write(&flipped, bytes).unwrap();
        fs::copy(checksum_of(&archive), checksum_of(&flipped)).unwrap();
        refuse(&flipped, "checksum does not match");

        // Unpacked, altered and packed again with a .sha256 that matches: the files
        // inside do not match the archive's SHA256SUMS.
        let unpacked = work.path().join("unpacked");
        fs::create_dir(&unpacked).unwrap();
        tar(&["-xzf", archive_arg, "-C", unpacked.to_str().unwrap()]);
        let repack = |label: &str| -> PathBuf {
            let dir = work.path().join(label);
            fs::create_dir(&dir).unwrap();
            let repacked = dir.join(&name);
            tar(&["-czf", repacked.to_str().unwrap(), "-C", unpacked.to_str().unwrap(), &stem]);
            fs::write(checksum_of(&repacked), sha256_line(&repacked)).unwrap();
            repacked
        };
        let key = fs::read_dir(unpacked.join(&stem).join("keys")).unwrap().next().unwrap().unwrap().path();
        let genuine_key = fs::read(&key).unwrap();
        fs::write(&key, b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        refuse(&repack("other-key"), "does not match its SHA256SUMS");
        fs::write(&key, &genuine_key).unwrap();
        // Without the .sha256 beside it, the SHA256SUMS inside still guards it.
        let database = unpacked.join(&stem).join(if postgres { "database.pgdump" } else { "database.sqlite" });
        let genuine_database = fs::read(&database).unwrap();
        let mut altered = genuine_database.clone();
        let last = altered.len() - 1;
        altered[last] ^= 0x01;
        fs::write(&database, altered).unwrap();
        let without_sum = repack("no-sum");
        fs::remove_file(checksum_of(&without_sum)).unwrap();
        refuse(&without_sum, "does not match its SHA256SUMS");
        fs::write(&database, &genuine_database).unwrap();
        // A file no backup holds.
        let extra = unpacked.join(&stem).join("run-me.sh");
        fs::write(&extra, "#!/bin/sh\n").unwrap();
        refuse(&repack("extra-file"), "which no backup holds");
        fs::remove_file(&extra).unwrap();
        // A key that is a link to a file elsewhere.
        let link = unpacked.join(&stem).join("keys/zz-link.pem");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        refuse(&repack("link"), "links or special files");
        fs::remove_file(&link).unwrap();

        // The archive as it was, into the empty database: restored, the account with it.
        let restored = script("restore", &target_env, &[], &[archive_arg]);
        assert!(restored.status.success(), "{}", text(&restored));
        assert_eq!(user_emails(&target_db), vec![EMAIL.to_owned()]);
        assert_eq!(newest_migration(&target_db), newest_migration(&fleet.db));
        assert_eq!(contents(&data_dir.join("keys")), before.0);
        assert_eq!(fs::read(data_dir.join("bus.secret")).unwrap(), before.1);
        assert_eq!(fs::read(data_dir.join("factor.key")).unwrap(), before.4);
        assert_eq!(mode(&data_dir.join("factor.key")), 0o600);
        assert!(!stdout(&restored).contains("replaced"), "nothing was there to move aside");
    }
}

/// Migrates a SQLite database in `data_dir` and makes a signing key, as a fresh host
/// does, without starting any service.
fn installation(data_dir: &Path) -> BTreeMap<String, String> {
    let vars = BTreeMap::from([
        (
            "FLOTILLA_DATA_DIR".to_owned(),
            data_dir.display().to_string(),
        ),
        ("FLOTILLA_LOG_STYLE".to_owned(), "never".to_owned()),
    ]);
    for (program, args) in [
        ("flotilla-worker", vec!["migrate"]),
        ("flotilla-login", vec!["keys", "generate"]),
    ] {
        let output = Command::new(binary(program))
            .args(args)
            .env_clear()
            .envs(&vars)
            .output()
            .unwrap();
        assert!(output.status.success(), "{program}: {}", text(&output));
    }
    vars
}

#[test]
fn backup_keeps_the_newest_archives_and_refuses_bad_arguments_and_settings() {
    let work = TempDir::new("backup-keep");
    let data_dir = work.path().join("var");
    let env = env_file(work.path(), &installation(&data_dir));
    // As login makes it at its start.
    write_secret(&data_dir.join("factor.key"), &"5e".repeat(32));
    let out = data_dir.join("backups");

    // Older archives, and a file that is not one.
    fs::DirBuilder::new().mode(0o700).create(&out).unwrap();
    let old: Vec<String> = ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"]
        .iter()
        .map(|stamp| format!("flotilla-backup-{stamp}.tar.gz"))
        .collect();
    for name in &old {
        fs::write(out.join(name), "old").unwrap();
        fs::write(out.join(format!("{name}.sha256")), "old").unwrap();
    }
    fs::write(out.join("notes.txt"), "mine").unwrap();

    // Without --out: the data folder's backups/.
    let backup = script("backup", &env, &[("FLOTILLA_BACKUP_KEEP", "2")], &[]);
    assert!(backup.status.success(), "{}", text(&backup));
    let kept = archives(&out);
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[0], out.join(&old[2]), "the newest old one stays");
    assert!(kept[1].to_string_lossy() > out.join(&old[2]).to_string_lossy());
    let mut expected = vec![
        old[2].clone(),
        format!("{}.sha256", old[2]),
        "notes.txt".to_owned(),
    ];
    let new_name = kept[1].file_name().unwrap().to_string_lossy().into_owned();
    expected.push(new_name.clone());
    expected.push(format!("{new_name}.sha256"));
    expected.sort();
    assert_eq!(
        names(&out),
        expected,
        "the two oldest went with their .sha256, nothing else"
    );
    for removed in &old[..2] {
        assert!(stdout(&backup).contains(removed), "{}", text(&backup));
    }

    // Bad arguments: 64 with the usage line; bad settings: 78 naming the variable.
    for args in [&["--bogus"][..], &["--out"][..], &["a", "b"][..]] {
        let output = script("backup", &env, &[], args);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&output)
        );
        assert!(stderr(&output).contains("usage: "), "{}", text(&output));
    }
    for (variable, value) in [
        ("FLOTILLA_BACKUP_KEEP", "0"),
        ("FLOTILLA_BACKUP_KEEP", "many"),
        ("FLOTILLA_KEYS_DIR", "/nonexistent/keys"),
        ("FLOTILLA_BIN_DIR", "/nonexistent/bin"),
    ] {
        let output = script("backup", &env, &[(variable, value)], &[]);
        assert_eq!(
            output.status.code(),
            Some(78),
            "{variable}={value}: {}",
            text(&output)
        );
        assert!(
            stderr(&output).contains(variable),
            "{variable}: {}",
            text(&output)
        );
    }
    let missing_env = script("backup", &work.path().join("none.env"), &[], &[]);
    assert_eq!(
        missing_env.status.code(),
        Some(78),
        "{}",
        text(&missing_env)
    );
    assert!(
        stderr(&missing_env).contains("FLOTILLA_ENV_FILE"),
        "{}",
        text(&missing_env)
    );
    assert_eq!(archives(&out).len(), 2, "no refused run wrote an archive");

    // As root, both work as the data folder's owner, whose the files then are.
    if is_root() {
        let nobody = 65534;
        let owned = work.path().join("owned");
        fs::DirBuilder::new().mode(0o711).create(&owned).unwrap();
        std::os::unix::fs::chown(&owned, Some(nobody), Some(nobody)).unwrap();
        let vars = BTreeMap::from([
            ("FLOTILLA_DATA_DIR".to_owned(), owned.display().to_string()),
            ("FLOTILLA_LOG_STYLE".to_owned(), "never".to_owned()),
        ]);
        let owned_env = env_file(work.path(), &vars);
        let restored = script("restore", &owned_env, &[], &[kept[1].to_str().unwrap()]);
        assert!(restored.status.success(), "{}", text(&restored));
        let backup = script("backup", &owned_env, &[], &[]);
        assert!(backup.status.success(), "{}", text(&backup));
        let archive = the_archive(&owned.join("backups"));
        for path in [
            owned.join("flotilla.db"),
            owned.join("keys"),
            owned.join("bus.secret"),
            owned.join("factor.key"),
            owned.join("backups"),
            archive.clone(),
            checksum_of(&archive),
        ] {
            let meta = fs::metadata(&path).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid()),
                (nobody, nobody),
                "{}",
                path.display()
            );
        }
        for key in fs::read_dir(owned.join("keys")).unwrap() {
            assert_eq!(key.unwrap().metadata().unwrap().uid(), nobody);
        }
    } else {
        eprintln!("SKIPPED (ownership): not root, so the scripts cannot act as another user");
    }

    for args in [
        &[][..],
        &["/nonexistent.tar.gz"][..],
        &["a", "b"][..],
        &["--bogus"][..],
    ] {
        let output = script("restore", &env, &[], args);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&output)
        );
        assert!(stderr(&output).contains("usage: "), "{}", text(&output));
    }
}

/// A secret of the data folder as the services make it: hex digits, mode 0600.
fn write_secret(path: &Path, hex: &str) {
    fs::write(path, hex).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_factor_key_set_in_the_env_file_is_not_saved_and_a_restore_with_another_is_warned_about() {
    let work = TempDir::new("backup-factor");
    let data_dir = work.path().join("var");
    let vars = installation(&data_dir);
    // As login makes it at its start when FLOTILLA_FACTOR_KEY is unset.
    let file_key = "0f".repeat(32);
    write_secret(&data_dir.join("factor.key"), &file_key);
    let env_key = "a1".repeat(32);
    let shows_no_key = |output: &Output| {
        let all = text(output);
        assert!(
            !all.contains(&file_key) && !all.contains(&env_key),
            "a factor key was shown:\n{all}"
        );
    };

    // The host's own factor.key: saved.
    let out = work.path().join("backups-file");
    let backup = script(
        "backup",
        &env_file(work.path(), &vars),
        &[],
        &["--out", out.to_str().unwrap()],
    );
    assert!(backup.status.success(), "{}", text(&backup));
    shows_no_key(&backup);
    let file_archive = the_archive(&out);
    let listing = stdout(&tar(&["-tzf", file_archive.to_str().unwrap()]));
    assert!(
        listing.lines().any(|l| l.ends_with("/factor.key")),
        "{listing}"
    );
    assert!(
        manifest(&file_archive).contains("\nfactor_key=included ("),
        "{}",
        manifest(&file_archive)
    );

    // FLOTILLA_FACTOR_KEY in the env file: that key is the one used, and no factor.key
    // is saved (the data folder's is not the host's key then).
    let mut keyed = vars.clone();
    keyed.insert("FLOTILLA_FACTOR_KEY".to_owned(), env_key.clone());
    let out = work.path().join("backups-keyed");
    let backup = script(
        "backup",
        &env_file(work.path(), &keyed),
        &[],
        &["--out", out.to_str().unwrap()],
    );
    assert!(backup.status.success(), "{}", text(&backup));
    shows_no_key(&backup);
    assert!(
        stdout(&backup).contains("factors   not saved: FLOTILLA_FACTOR_KEY is set in the env file"),
        "{}",
        text(&backup)
    );
    let keyed_archive = the_archive(&out);
    let listing = stdout(&tar(&["-tzf", keyed_archive.to_str().unwrap()]));
    assert!(!listing.contains("factor.key"), "{listing}");
    assert!(
        listing.lines().any(|l| l.ends_with("/bus.secret")),
        "{listing}"
    );
    assert!(
        manifest(&keyed_archive).contains("\nfactor_key=not saved: FLOTILLA_FACTOR_KEY is set"),
        "{}",
        manifest(&keyed_archive)
    );

    // Each restore into a fresh data folder (its own SQLite database).
    let restore_into = |label: &str, key: Option<&str>, archive: &Path| -> (Output, PathBuf) {
        let dir = work.path().join(label);
        fs::DirBuilder::new().mode(0o711).create(&dir).unwrap();
        let mut vars = BTreeMap::from([
            ("FLOTILLA_DATA_DIR".to_owned(), dir.display().to_string()),
            ("FLOTILLA_LOG_STYLE".to_owned(), "never".to_owned()),
        ]);
        if let Some(key) = key {
            vars.insert("FLOTILLA_FACTOR_KEY".to_owned(), key.to_owned());
        }
        let output = script(
            "restore",
            &env_file(work.path(), &vars),
            &[],
            &[archive.to_str().unwrap()],
        );
        assert!(output.status.success(), "{label}: {}", text(&output));
        shows_no_key(&output);
        (output, dir)
    };
    let warned = |output: &Output| stderr(output).contains("warning: ");

    // The backup's factor.key onto a host without FLOTILLA_FACTOR_KEY: placed.
    let (output, dir) = restore_into("plain", None, &file_archive);
    assert_eq!(
        fs::read_to_string(dir.join("factor.key")).unwrap(),
        file_key
    );
    assert_eq!(mode(&dir.join("factor.key")), 0o600);
    assert!(
        stdout(&output).contains("factors   factor.key into "),
        "{}",
        text(&output)
    );
    assert!(!warned(&output), "{}", text(&output));
    // Onto a host whose FLOTILLA_FACTOR_KEY is the same key (in capitals): not placed,
    // nothing to warn about.
    let (output, dir) = restore_into("same", Some(&file_key.to_uppercase()), &file_archive);
    assert!(!dir.join("factor.key").exists());
    assert!(
        stdout(&output).contains("factors   not placed: FLOTILLA_FACTOR_KEY is set on this host"),
        "{}",
        text(&output)
    );
    assert!(!warned(&output), "{}", text(&output));
    // Onto a host with another key: restored, and warned about, saying where the
    // backup's key is.
    let (output, dir) = restore_into("other", Some(&"77".repeat(32)), &file_archive);
    assert!(!dir.join("factor.key").exists());
    let said = stderr(&output);
    assert!(
        said.contains("warning: FLOTILLA_FACTOR_KEY on this host is not the backup's factor key"),
        "{said}"
    );
    assert!(said.contains("/factor.key)"), "{said}");
    // The backup of a host that set the key, onto a host that does not: warned about.
    let (output, dir) = restore_into("unset", None, &keyed_archive);
    assert!(!dir.join("factor.key").exists());
    assert!(
        stdout(&output)
            .contains("factors   not in the backup: FLOTILLA_FACTOR_KEY was set on its host"),
        "{}",
        text(&output)
    );
    assert!(
        stderr(&output)
            .contains("warning: the backup's host set FLOTILLA_FACTOR_KEY and this one does not"),
        "{}",
        text(&output)
    );
    // ... and onto one that sets it: nothing to warn about.
    let (output, _) = restore_into("keyed", Some(&env_key), &keyed_archive);
    assert!(!warned(&output), "{}", text(&output));
}

/// Whether the tests run as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}
