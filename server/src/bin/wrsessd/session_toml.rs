//! `~/.config/wayray/session.toml`: what a user's session starts.
//!
//! ```toml
//! window_manager = "wr-wm-tiling"       # optional; the built-in floating WM otherwise
//! panel = "waybar"                      # optional
//! autostart = ["foot", "firefox"]       # started in this order, after the WM and the panel
//! scale = 1.5                           # optional: "auto" or 0.5..=4; the server's otherwise
//! ```
//!
//! `scale` is the session output's scale wherever the session is shown, winning over the
//! server's `output_scale`; `"auto"` picks it from each screen's pixel density even where the
//! server fixes one. A `scale` that is not valid is logged and ignored on its own.
//!
//! The other values are shell commands. Without the file the session starts `foot`; a file that does
//! not parse is logged and treated as missing, so a typo never locks a user out of their desktop.
//! A file that parses means exactly what it says: no `autostart` key starts nothing more.

use serde::Deserialize;
use wayray_protocol::sessions::ScaleChoice;

/// Where the file is, relative to the user's home.
pub const RELATIVE_PATH: &str = ".config/wayray/session.toml";
/// Larger files are not read: it is a handful of commands.
pub const MAX_LEN: u64 = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SessionToml {
    pub window_manager: Option<String>,
    pub panel: Option<String>,
    pub autostart: Vec<String>,
    /// Read apart from the rest (see [`SessionToml::parse`]).
    #[serde(skip)]
    pub scale: Option<ScaleChoice>,
}

const KNOWN_KEYS: [&str; 4] = ["window_manager", "panel", "autostart", "scale"];

impl SessionToml {
    /// The session of a user without a session.toml.
    pub fn builtin() -> Self {
        SessionToml {
            window_manager: None,
            panel: None,
            autostart: vec!["foot".to_string()],
            scale: None,
        }
    }

    /// Parses the file's text; unknown keys are returned so they can be logged (a misspelt
    /// key should be visible, not silently ignored), and so is a `scale` that is not valid,
    /// which costs only the scale: a display preference never keeps the clients from starting.
    pub fn parse(text: &str) -> Result<(Self, Vec<String>), String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut warnings: Vec<String> = table
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .map(|k| format!("unknown key {k:?} ignored (known: {KNOWN_KEYS:?})"))
            .collect();
        let scale = table.remove("scale").and_then(|value| {
            ScaleChoice::deserialize(value)
                .map_err(|e| warnings.push(format!("scale ignored: {}", e.message())))
                .ok()
        });
        let mut config = SessionToml::deserialize(table).map_err(|e| e.to_string())?;
        config.scale = scale;
        Ok((config, warnings))
    }

    /// The `--spawn` commands for the session compositor: window manager, panel, autostart.
    pub fn spawn_commands(&self) -> Vec<String> {
        self.window_manager
            .iter()
            .chain(self.panel.iter())
            .chain(self.autostart.iter())
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// The session for a file's contents (`None`: no file), with what is worth a warning.
pub fn resolve(text: Option<&str>) -> (SessionToml, Vec<String>) {
    let Some(text) = text else {
        return (SessionToml::builtin(), Vec::new());
    };
    match SessionToml::parse(text) {
        Ok((config, warnings)) => (config, warnings),
        Err(err) => (
            SessionToml::builtin(),
            vec![format!("not valid, using the defaults: {err}")],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_starts_foot() {
        let (config, warnings) = resolve(None);
        assert_eq!(config.spawn_commands(), ["foot"]);
        assert!(warnings.is_empty());
    }

    #[test]
    fn commands_come_in_order_wm_panel_autostart() {
        let text = r#"
            autostart = ["foot", "  ", "weston-simple-shm"]
            panel = "waybar -c ~/.bar"
            window_manager = "wr-wm-tiling"
        "#;
        let (config, warnings) = resolve(Some(text));
        assert!(warnings.is_empty());
        assert_eq!(
            config.spawn_commands(),
            [
                "wr-wm-tiling",
                "waybar -c ~/.bar",
                "foot",
                "weston-simple-shm"
            ]
        );
    }

    #[test]
    fn a_file_without_autostart_starts_only_what_it_names() {
        let (config, _) = resolve(Some("window_manager = \"wm\""));
        assert_eq!(config.spawn_commands(), ["wm"]);
        let (config, _) = resolve(Some(""));
        assert!(config.spawn_commands().is_empty());
    }

    #[test]
    fn broken_file_falls_back_to_the_defaults() {
        for text in ["autostart = \"foot\"", "window_manager = ", "panel = 3"] {
            let (config, warnings) = resolve(Some(text));
            assert_eq!(config, SessionToml::builtin(), "{text}");
            assert_eq!(warnings.len(), 1, "{text}");
        }
    }

    #[test]
    fn scale_is_auto_a_number_or_ignored_alone() {
        assert_eq!(resolve(None).0.scale, None);
        assert_eq!(resolve(Some("")).0.scale, None);
        let (config, warnings) = resolve(Some("scale = 1.5\nautostart = [\"a\"]"));
        assert_eq!(config.scale, Some(ScaleChoice::Fixed(1.5)));
        assert!(warnings.is_empty());
        assert_eq!(
            resolve(Some("scale = \"auto\"")).0.scale,
            Some(ScaleChoice::Auto)
        );
        assert_eq!(
            resolve(Some("scale = 2")).0.scale,
            Some(ScaleChoice::Fixed(2.0))
        );
        for bad in ["scale = 0", "scale = \"huge\"", "scale = [1]"] {
            let (config, warnings) = resolve(Some(&format!("{bad}\nautostart = [\"a\"]")));
            assert_eq!(config.scale, None, "{bad}");
            assert_eq!(config.spawn_commands(), ["a"], "{bad}");
            assert_eq!(warnings.len(), 1, "{bad}");
            assert!(warnings[0].contains("scale"), "{bad}: {warnings:?}");
        }
    }

    #[test]
    fn unknown_keys_are_reported() {
        let (config, warnings) = resolve(Some("windowmanager = \"x\"\nautostart = [\"a\"]"));
        assert_eq!(config.spawn_commands(), ["a"]);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("windowmanager"));
    }
}
