//! flotilla-pages: writes the static public site that nginx serves at `/`. It listens
//! on no port; run `flotilla-pages build` after a deploy and from the systemd timer.
//! Every file is written beside its final name and renamed into place, so nginx never
//! serves half a page.

use std::path::{Path, PathBuf};

use anyhow::Context;
use flotilla_kit::html::{escape, page};
use flotilla_kit::{ConfigError, Env};

/// What `build` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagesConfig {
    /// `FLOTILLA_PAGES_OUT` (default `<FLOTILLA_DATA_DIR>/www`): the folder nginx serves.
    pub out: PathBuf,
    /// `FLOTILLA_SITE_NAME` (default `flotilla`): the name shown on the pages.
    pub site_name: String,
}

impl PagesConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let data_dir = flotilla_kit::config::data_dir(env)?;
        Ok(Self {
            out: env.path("FLOTILLA_PAGES_OUT", data_dir.join("www"))?,
            site_name: env.string("FLOTILLA_SITE_NAME", "flotilla"),
        })
    }
}

const STYLESHEET: &str = include_str!("assets/site.css");

/// Writes the whole site and returns the files written, relative to the output folder.
pub fn build(config: &PagesConfig) -> anyhow::Result<Vec<&'static str>> {
    let name = escape(&config.site_name);
    let home = page(
        &config.site_name,
        &format!(
            "<p>Welcome to {name}. Create an account, sign in, and manage your profile.</p>\n\
             <nav>\n<ul class=\"actions\">\n\
             <li><a href=\"/signup\">Create an account</a></li>\n\
             <li><a href=\"/login\">Sign in</a></li>\n\
             <li><a href=\"/profile\">Your profile</a></li>\n\
             </ul>\n</nav>"
        ),
    );
    let not_found = page(
        "Page not found",
        "<p>There is no page at this address.</p>\n<p><a href=\"/\">Go to the home page</a></p>",
    );
    let files: [(&'static str, &str); 3] = [
        ("assets/site.css", STYLESHEET),
        ("404.html", &not_found),
        ("index.html", &home),
    ];
    for (relative, content) in files {
        write_atomically(&config.out.join(relative), content.as_bytes())?;
    }
    Ok(files.iter().map(|(relative, _)| *relative).collect())
}

fn write_atomically(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("an output file has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, content)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot move {} into place", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_home_404_and_stylesheet_with_the_name_escaped() {
        let dir = std::env::temp_dir().join(format!("flotilla-pages-{}", std::process::id()));
        let config = PagesConfig {
            out: dir.clone(),
            site_name: "Ada & <Co>".into(),
        };
        let written = build(&config).unwrap();
        assert_eq!(written, vec!["assets/site.css", "404.html", "index.html"]);
        let home = std::fs::read_to_string(dir.join("index.html")).unwrap();
        assert!(home.contains("Welcome to Ada &amp; &lt;Co&gt;."));
        assert!(home.contains("href=\"/signup\""));
        assert!(
            std::fs::read_to_string(dir.join("404.html"))
                .unwrap()
                .contains("Page not found")
        );
        assert!(!dir.join("index.html.tmp").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_output_folder_follows_the_data_folder() {
        let env = Env::from_fn(|k| (k == "FLOTILLA_DATA_DIR").then(|| "/srv/flotilla".to_string()));
        assert_eq!(
            PagesConfig::from_env(&env).unwrap().out,
            PathBuf::from("/srv/flotilla/www")
        );
    }
}
