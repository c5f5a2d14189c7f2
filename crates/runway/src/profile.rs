//! Client profiles, for using a runway server from another machine: `runway login` saves
//! where the server is and the key to sign in with, so that later commands need no flags.
//! The config directory (`RUNWAY_CONFIG_DIR`, else `$XDG_CONFIG_HOME/runway`, else
//! `~/.config/runway`) holds `config.toml` (each profile's endpoints, region and CA
//! certificate) and `credentials` (mode 0600, in the AWS shared-credentials format, so the
//! AWS CLI and boto3 can use the same profile).

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The profile `runway login` writes and commands use when none is named.
pub const DEFAULT_PROFILE: &str = "default";
const CONFIG_FILE: &str = "config.toml";
const CREDENTIALS_FILE: &str = "credentials";

/// Where a server is, as a profile remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Profile {
    /// The API's URL.
    pub endpoint: String,
    /// The registry's URL.
    pub registry: Option<String>,
    /// The router's HTTPS URL (for apps' URLs).
    pub https: Option<String>,
    /// The region requests are signed for.
    pub region: String,
    /// The CA certificate the API and registry are checked against, instead of the
    /// system's; a copy kept in the config directory.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// The config directory.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("RUNWAY_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(dir.into());
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("runway"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("runway")),
        None => bail!("cannot find a config directory: set RUNWAY_CONFIG_DIR or HOME"),
    }
}

fn read_config(dir: &Path) -> Result<ConfigFile> {
    let path = dir.join(CONFIG_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("invalid {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Profile `name` in `dir`, if there is one.
pub fn load(dir: &Path, name: &str) -> Result<Option<Profile>> {
    Ok(read_config(dir)?.profiles.remove(name))
}

/// The credentials file of `dir`.
pub fn credentials_path(dir: &Path) -> PathBuf {
    dir.join(CREDENTIALS_FILE)
}

/// Saves `profile` as `name` in `dir` (created mode 0700), with its access key in the
/// credentials file (mode 0600); other profiles stay as they are.
pub fn save(dir: &Path, name: &str, profile: &Profile, key_id: &str, secret: &str) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let path = credentials_path(dir);
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let credentials = with_section(
        &existing,
        name,
        &format!("aws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"),
    );
    runway_store::fs::write_atomic(&path, credentials.as_bytes(), 0o600)?;
    let mut config = read_config(dir)?;
    config.profiles.insert(name.to_string(), profile.clone());
    let text = toml::to_string(&config).context("cannot encode the profiles")?;
    runway_store::fs::write_atomic(&dir.join(CONFIG_FILE), text.as_bytes(), 0o600)?;
    Ok(())
}

/// `text` (an INI file) with section `[name]` replaced by `body`, or added at the end.
fn with_section(text: &str, name: &str, body: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(section) = trimmed.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            skipping = section.trim() == name;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !out.is_empty() && !out.ends_with("\n\n") {
        out.push('\n');
    }
    out.push_str(&format!("[{name}]\n{body}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_saved_beside_each_other_and_keys_stay_private() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("runway");
        let profile = Profile {
            endpoint: "https://runway.example.com:8090".into(),
            registry: Some("https://runway.example.com:5000".into()),
            https: Some("https://runway.example.com:8443".into()),
            region: "eu-west-1".into(),
            ca_file: Some(config.join("default-ca.pem")),
        };
        save(&config, DEFAULT_PROFILE, &profile, "RWAYONE", "secret-one").unwrap();
        let staging = Profile {
            endpoint: "https://staging.example.com:8090".into(),
            ca_file: None,
            ..profile.clone()
        };
        save(&config, "staging", &staging, "RWAYTWO", "secret-two").unwrap();
        // Logging in again replaces the profile's key, not the others'.
        save(
            &config,
            DEFAULT_PROFILE,
            &profile,
            "RWAYTHREE",
            "secret-three",
        )
        .unwrap();
        assert_eq!(load(&config, DEFAULT_PROFILE).unwrap(), Some(profile));
        assert_eq!(load(&config, "staging").unwrap(), Some(staging));
        assert_eq!(load(&config, "other").unwrap(), None);
        let credentials = std::fs::read_to_string(credentials_path(&config)).unwrap();
        assert_eq!(
            credentials,
            "[staging]\naws_access_key_id = RWAYTWO\naws_secret_access_key = secret-two\n\n[default]\naws_access_key_id = RWAYTHREE\naws_secret_access_key = secret-three\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&credentials_path(&config)), 0o600);
        assert_eq!(mode(&config), 0o700);
        assert!(
            !std::fs::read_to_string(config.join(CONFIG_FILE))
                .unwrap()
                .contains("secret")
        );
    }
}
