//! A real browser for the tests: Debian's Chromium, headless, driven through chromedriver
//! with fantoccini, behind a blocking API (the tests are synchronous; the browser owns a
//! current-thread tokio runtime). [`Browser::check_page`] runs axe-core's WCAG 2.1 A/AA
//! rules on the page at each width and colour scheme and reads the console for errors;
//! [`walk`] drives every HTML flow of the fleet like a person, page by page.
//!
//! What fantoccini has no method for goes through chromedriver's own endpoints
//! ([`SessionCommand`]): the console (`se/log`) and the DevTools protocol
//! (`goog/cdp/execute`: the viewport, the colour scheme, full-page screenshots, and a
//! virtual authenticator that answers the pages' passkey requests).

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use fantoccini::wd::{Capabilities, TimeoutConfiguration, WebDriverCompatibleCommand};
use fantoccini::{Client, Locator};
use http::Method;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::fleet::{missing, on_path};
use crate::{Proc, TempDir, free_port, wait_until};

mod walk;
pub use walk::{PASSWORD, walk};

/// axe-core, vendored unmodified (see vendor/axe-core/README.md for its source and hash).
const AXE: &str = include_str!("../vendor/axe-core/axe.min.js");
const AXE_VERSION: &str = "4.14.1";
/// The rules the pages must pass: WCAG 2.0 and 2.1, levels A and AA.
const WCAG_TAGS: [&str; 4] = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];

/// The widths every page is checked at, in CSS pixels: a small phone and a laptop.
pub const WIDTHS: [u32; 2] = [360, 1280];
/// The viewport's height; screenshots take the whole page whatever it is.
const HEIGHT: u32 = 800;
/// How long a page, a script or a condition may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// How Chromium logs a response's error status (of the document, or of a resource).
const DOCUMENT_STATUS: &str = "Failed to load resource: the server responded with a status of";

/// The packages that give the browser and its driver (and the fonts the pages name).
pub const BROWSER_PACKAGES: &str = "chromium chromium-driver fonts-liberation";

/// `prefers-color-scheme`, as the browser reports it to the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorScheme {
    Light,
    Dark,
}

impl ColorScheme {
    pub const BOTH: [ColorScheme; 2] = [ColorScheme::Light, ColorScheme::Dark];

    pub fn as_str(self) -> &'static str {
        match self {
            ColorScheme::Light => "light",
            ColorScheme::Dark => "dark",
        }
    }
}

/// chromedriver (Debian's chromium-driver), or a failure that says how to get it.
pub fn chromedriver() -> PathBuf {
    on_path("chromedriver")
        .or_else(|| Some(PathBuf::from("/usr/bin/chromedriver")).filter(|p| p.is_file()))
        .unwrap_or_else(|| missing("chromedriver", BROWSER_PACKAGES))
}

/// Chromium itself, which chromedriver is told to start.
pub fn chromium() -> PathBuf {
    on_path("chromium")
        .or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.is_file()))
        .unwrap_or_else(|| missing("chromium", BROWSER_PACKAGES))
}

/// One headless Chromium session, and the chromedriver that runs it (stopped on drop).
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    width: u32,
    scheme: ColorScheme,
    /// Console errors read before a navigation, for the next `console_errors`.
    console: Vec<String>,
    // Dropped after the session is closed: the driver, then the browser's profile.
    driver: Proc,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session at 1280 px, light.
    pub fn start() -> Browser {
        let chromium = chromium();
        let port = free_port();
        let mut command = std::process::Command::new(chromedriver());
        command.arg(format!("--port={port}"));
        let mut driver = Proc::spawn("chromedriver", command);
        let base = format!("http://127.0.0.1:{port}");
        let status = reqwest::blocking::Client::new();
        let ready = wait_until(TIMEOUT, || {
            driver.try_exit().is_some()
                || status
                    .get(format!("{base}/status"))
                    .send()
                    .and_then(|r| r.json::<Value>())
                    .is_ok_and(|v| v["value"]["ready"] == true)
        });
        assert!(
            ready && driver.try_exit().is_none(),
            "chromedriver did not start:\n{}",
            driver.logs()
        );
        let profile = TempDir::new("chromium");
        let mut caps = Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={},{HEIGHT}", WIDTHS[1]),
                    "--hide-scrollbars", "--font-render-hinting=none", "--lang=en-US",
                    "--no-first-run", "--no-default-browser-check",
                ]
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime
            .block_on(
                fantoccini::ClientBuilder::new(HttpConnector::new())
                    .capabilities(caps)
                    .connect(&base),
            )
            .unwrap_or_else(|e| panic!("no browser session: {e}\n{}", driver.logs()));
        runtime
            .block_on(client.update_timeouts(TimeoutConfiguration::new(
                Some(TIMEOUT),
                Some(TIMEOUT),
                Some(Duration::ZERO),
            )))
            .unwrap();
        let mut browser = Browser {
            runtime,
            client: Some(client),
            width: WIDTHS[1],
            scheme: ColorScheme::Light,
            console: Vec::new(),
            driver,
            _profile: profile,
        };
        browser.set_width(WIDTHS[1]);
        browser.set_color_scheme(ColorScheme::Light);
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    /// Runs one of fantoccini's calls to completion, or fails naming it.
    fn run<T, E: std::fmt::Display>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> T {
        self.runtime
            .block_on(call)
            .unwrap_or_else(|e| panic!("browser: {what}: {e}"))
    }

    /// A chromedriver command of this session that fantoccini has no method for.
    fn command(&self, method: Method, path: &'static str, body: Option<Value>) -> Value {
        let command = SessionCommand { method, path, body };
        let what = format!("{command:?}");
        self.run(&what, self.client().issue_cmd(command))
    }

    /// A DevTools protocol command on the page's tab.
    fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.command(
            Method::POST,
            "goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
    }

    /// A script's result (`return …` in `script`).
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.run("execute", self.client().execute(script, args))
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&mut self, url: &str) {
        self.read_console();
        self.run(&format!("goto {url}"), self.client().goto(url));
    }

    pub fn current_url(&self) -> url::Url {
        self.run("current_url", self.client().current_url())
    }

    /// The current page's path and query, e.g. `/login?next=%2Fadmin`.
    pub fn path(&self) -> String {
        let url = self.current_url();
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The page's markup as the browser holds it now.
    pub fn source(&self) -> String {
        self.run("source", self.client().source())
    }

    /// The text a person reads on the page.
    pub fn text(&self) -> String {
        self.execute(
            "return document.body ? document.body.innerText : '';",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Whether an element matches `css`.
    pub fn exists(&self, css: &str) -> bool {
        !self
            .run(
                &format!("find_all {css}"),
                self.client().find_all(Locator::Css(css)),
            )
            .is_empty()
    }

    fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.runtime
            .block_on(self.client().find(Locator::Css(css)))
            .unwrap_or_else(|e| {
                panic!("browser: no {css} on {}: {e}\n{}", self.path(), self.text())
            })
    }

    /// The `value` of the first element matching `css`.
    pub fn value(&self, css: &str) -> String {
        let element = self.find(css);
        self.run("value", element.prop("value")).unwrap_or_default()
    }

    /// Types `value` into the field `name` of the form posting to `action`, as a person
    /// does: the field cleared, then key by key.
    pub fn fill(&mut self, action: &str, name: &str, value: &str) {
        let field = self.find(&format!("{} [name='{name}']", form(action)));
        self.run("clear", field.clear());
        self.run("send_keys", field.send_keys(value));
    }

    /// Ticks the checkbox `name` of the form posting to `action` (if it is not yet).
    pub fn tick(&mut self, action: &str, name: &str) {
        let css = format!("{} input[name='{name}']", form(action));
        let checked = self.execute(
            "return document.querySelector(arguments[0]).checked;",
            vec![json!(css)],
        );
        if checked != true {
            let box_ = self.find(&css);
            self.run("click", box_.click());
        }
    }

    /// Clicks the submit button of the form posting to `action` and waits for the page
    /// that answers.
    pub fn submit(&mut self, action: &str) {
        self.click(&format!("{} [type=submit]", form(action)));
    }

    /// Clicks the element matching `css` (a link, a button) and waits for the next page.
    pub fn click(&mut self, css: &str) {
        let element = self.find(css);
        self.read_console();
        // A mark on the old document, gone once the new one is there.
        self.execute("window.flotillaOldPage = true;", vec![]);
        self.run(&format!("click {css}"), element.click());
        let loaded = wait_until(TIMEOUT, || {
            self.runtime
                .block_on(self.client().execute(
                    "return document.readyState === 'complete' && !window.flotillaOldPage;",
                    vec![],
                ))
                .is_ok_and(|v| v == true)
        });
        assert!(loaded, "browser: clicking {css} loaded no new page");
    }

    /// The text content of each element matching `css`, trimmed, in the page's order.
    pub fn texts(&self, css: &str) -> Vec<String> {
        let found = self.execute(
            "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent.trim());",
            vec![json!(css)],
        );
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect()
    }

    /// Whether an element matches `css` and is shown (not `hidden`, nor inside a hidden
    /// one): a control the script reveals once it is ready.
    pub fn shown(&self, css: &str) -> bool {
        self.execute(
            "const e = document.querySelector(arguments[0]); return !!e && e.checkVisibility();",
            vec![json!(css)],
        ) == true
    }

    /// Waits until the page's path starts with `prefix` (a page that moves on by itself,
    /// such as a script's post); whether it did.
    pub fn wait_for_path(&mut self, prefix: &str) -> bool {
        wait_until(TIMEOUT, || {
            self.runtime
                .block_on(self.client().current_url())
                .is_ok_and(|url| url.path().starts_with(prefix))
        }) && wait_until(TIMEOUT, || {
            self.runtime
                .block_on(
                    self.client()
                        .execute("return document.readyState === 'complete';", vec![]),
                )
                .is_ok_and(|v| v == true)
        })
    }

    /// Gives the tab a virtual authenticator (DevTools' WebAuthn domain): a platform
    /// authenticator with resident keys whose user is always verified and present, as
    /// a phone or laptop with its screen lock answers a site's passkey requests, with no
    /// dialog to click. Its id, for [`Browser::passkeys`].
    pub fn add_virtual_authenticator(&self) -> String {
        self.cdp("WebAuthn.enable", json!({"enableUI": false}));
        let added = self.cdp(
            "WebAuthn.addVirtualAuthenticator",
            json!({"options": {
                "protocol": "ctap2", "transport": "internal",
                "hasResidentKey": true, "hasUserVerification": true,
                "isUserVerified": true, "automaticPresenceSimulation": true,
            }}),
        );
        added["authenticatorId"]
            .as_str()
            .unwrap_or_else(|| panic!("browser: no virtual authenticator: {added}"))
            .to_owned()
    }

    /// The credentials (passkeys) the virtual authenticator `id` holds: DevTools'
    /// `WebAuthn.Credential`s (`credentialId`, `rpId`, `userHandle`, `signCount`, …).
    pub fn passkeys(&self, id: &str) -> Vec<Value> {
        let held = self.cdp("WebAuthn.getCredentials", json!({"authenticatorId": id}));
        held["credentials"].as_array().cloned().unwrap_or_default()
    }

    /// Whether the virtual authenticator `id` answers at once (`true`, as added) or
    /// leaves every request waiting for a touch that never comes (`false`): a person
    /// who lets the browser's passkey offer pass and types the password instead.
    pub fn set_passkey_presence(&self, id: &str, present: bool) {
        self.cdp(
            "WebAuthn.setAutomaticPresenceSimulation",
            json!({"authenticatorId": id, "enabled": present}),
        );
    }

    /// Takes the virtual authenticator `id` away, with its passkeys.
    pub fn remove_virtual_authenticator(&self, id: &str) {
        self.cdp(
            "WebAuthn.removeVirtualAuthenticator",
            json!({"authenticatorId": id}),
        );
    }

    /// The viewport's width in CSS pixels (a phone's below 600: touch, mobile layout).
    pub fn set_width(&mut self, width: u32) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": width < 600}),
        );
        self.width = width;
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    /// What `prefers-color-scheme` answers, on this page and the next ones.
    pub fn set_color_scheme(&mut self, scheme: ColorScheme) {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme.as_str()}]}),
        );
        self.scheme = scheme;
    }

    pub fn color_scheme(&self) -> ColorScheme {
        self.scheme
    }

    /// A PNG of the whole page (beyond the viewport), once its fonts are loaded.
    pub fn screenshot(&self) -> Vec<u8> {
        self.run(
            "fonts",
            self.client().execute_async(
                "const done = arguments[arguments.length - 1]; document.fonts.ready.then(() => done(true));",
                vec![],
            ),
        );
        let metrics = self.cdp("Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let shot = self.cdp(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {
                    "x": 0, "y": 0, "scale": 1,
                    "width": size["width"].as_f64().unwrap_or(f64::from(self.width)).ceil(),
                    "height": size["height"].as_f64().unwrap_or(f64::from(HEIGHT)).ceil(),
                }
            }),
        );
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .unwrap()
    }

    /// The console's errors (SEVERE entries: exceptions, refused or failed loads, CSP
    /// violations) since the last call. The document's own status (a 404 page, a 422
    /// form) is the flow's to check, not an error of the page.
    pub fn console_errors(&mut self) -> Vec<String> {
        self.read_console();
        std::mem::take(&mut self.console)
    }

    /// Moves the console's entries into `console` (each read empties the browser's
    /// buffer), while the page they belong to is still the current one.
    fn read_console(&mut self) {
        let document = format!("{} - ", self.current_url());
        let entries = self.command(Method::POST, "se/log", Some(json!({"type": "browser"})));
        let errors = entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .filter_map(|e| e["message"].as_str())
            .filter(|m| !(m.starts_with(&document) && m.contains(DOCUMENT_STATUS)))
            .map(str::to_owned);
        self.console.extend(errors);
    }

    /// axe-core's WCAG 2.1 A/AA violations on the page as it is laid out now.
    pub fn audit(&self) -> Vec<Violation> {
        let injected = self.execute(
            &[
                "if (!window.axe) {\n",
                AXE,
                "\n}\nreturn window.axe ? axe.version : null;",
            ]
            .concat(),
            vec![],
        );
        assert_eq!(injected, AXE_VERSION, "axe-core was not injected");
        let result = self.run(
            "axe.run",
            self.client().execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, {
                    runOnly: { type: 'tag', values: arguments[0] },
                    resultTypes: ['violations']
                }).then(r => done({ violations: r.violations.map(v => ({
                    id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map(n => ({ target: n.target.join(' '), html: n.html }))
                })) }), e => done({ error: String(e) }));"#,
                vec![json!(WCAG_TAGS)],
            ),
        );
        assert!(result["error"].is_null(), "axe failed: {}", result["error"]);
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        result["violations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| Violation {
                id: text(&v["id"]),
                impact: text(&v["impact"]),
                help: text(&v["help"]),
                nodes: v["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| (text(&n["target"]), text(&n["html"])))
                    .collect(),
            })
            .collect()
    }

    /// What is wrong with the page, at each width and colour scheme: axe-core's
    /// violations, a page wider than the viewport, errors in the console. Empty when
    /// nothing is. Leaves the browser at 1280 px, light.
    pub fn page_problems(&mut self, label: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for width in WIDTHS {
            for scheme in ColorScheme::BOTH {
                self.set_width(width);
                self.set_color_scheme(scheme);
                let at = format!(
                    "{label} ({}) at {width} px, {}",
                    self.path(),
                    scheme.as_str()
                );
                for violation in self.audit() {
                    problems.push(format!("{at}: {violation}"));
                }
                let wider = self.execute(
                    "const w = document.documentElement.scrollWidth; return w > arguments[0] ? w : null;",
                    vec![json!(width)],
                );
                if let Some(scroll) = wider.as_u64() {
                    problems.push(format!(
                        "{at}: the page is {scroll} px wide, wider than the viewport (it scrolls sideways)"
                    ));
                }
            }
        }
        self.set_width(WIDTHS[1]);
        self.set_color_scheme(ColorScheme::Light);
        for error in self.console_errors() {
            problems.push(format!("{label} ({}): console error: {error}", self.path()));
        }
        problems
    }

    /// Fails unless the page passes [`Browser::page_problems`].
    pub fn check_page(&mut self, label: &str) {
        let problems = self.page_problems(label);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// chromedriver's output, for failure messages.
    pub fn driver_logs(&self) -> String {
        self.driver.logs()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
    }
}

/// The form that posts to `action`.
fn form(action: &str) -> String {
    format!("form[action='{action}']")
}

/// One rule of axe-core the page breaks, and where.
#[derive(Debug, Clone)]
pub struct Violation {
    pub id: String,
    pub impact: String,
    pub help: String,
    /// Each element that breaks it: its CSS selector and its markup.
    pub nodes: Vec<(String, String)>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.id, self.impact, self.help)?;
        for (target, html) in &self.nodes {
            write!(f, "\n    {target}: {html}")?;
        }
        Ok(())
    }
}

/// A chromedriver endpoint under the session (`session/{id}/{path}`).
#[derive(Debug)]
struct SessionCommand {
    method: Method,
    path: &'static str,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for SessionCommand {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/{}",
            session.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}
