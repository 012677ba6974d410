//! `~/.config/wayray/session.toml`: what a user's session starts.
//!
//! ```toml
//! desktop = "default"                   # wallpaper, panel, notifications, fuzzel on Super; "none": nothing
//! launcher = "fuzzel"                   # what a tap of Super starts (default desktop: fuzzel)
//! window_manager = "wr-wm-tiling"       # optional; the built-in floating WM otherwise
//! panel = "waybar -c ~/.bar"            # optional, besides (or instead of) the desktop's
//! autostart = ["foot", "firefox"]       # started in this order, after the WM and the panel
//! scale = 1.5                           # optional: "auto" or 0.5..=4; the server's otherwise
//! ```
//!
//! Every command is a shell command. A key the file does not name keeps its default: the
//! default desktop and `foot`, which is also what a user without the file gets (`autostart = []`
//! starts no terminal). A file that does not parse is logged and treated as missing, so a typo
//! never locks a user out of their desktop. The default desktop's programs read their
//! configuration from WayRay's shipped files unless the user has their own in `~/.config`.
//!
//! `scale` is the session output's scale wherever the session is shown, winning over the
//! server's `output_scale`; `"auto"` picks it from each screen's pixel density even where the
//! server fixes one. A `scale` that is not valid is logged and ignored on its own.

use serde::Deserialize;
use wayray_protocol::sessions::ScaleChoice;

/// Where the file is, relative to the user's home.
pub const RELATIVE_PATH: &str = ".config/wayray/session.toml";
/// Larger files are not read: it is a handful of commands.
pub const MAX_LEN: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionToml {
    pub desktop: Desktop,
    pub launcher: Option<String>,
    pub window_manager: Option<String>,
    pub panel: Option<String>,
    pub autostart: Vec<String>,
    /// Read apart from the rest (see [`SessionToml::parse`]).
    #[serde(skip)]
    pub scale: Option<ScaleChoice>,
}

/// Whether the session starts WayRay's default desktop around the user's programs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desktop {
    #[default]
    Default,
    None,
}

impl Default for SessionToml {
    fn default() -> Self {
        Self::builtin()
    }
}

const KNOWN_KEYS: [&str; 6] = [
    "desktop",
    "launcher",
    "window_manager",
    "panel",
    "autostart",
    "scale",
];

impl SessionToml {
    /// The session of a user without a session.toml.
    pub fn builtin() -> Self {
        SessionToml {
            desktop: Desktop::Default,
            launcher: None,
            window_manager: None,
            panel: None,
            autostart: vec!["foot".to_string()],
            scale: None,
        }
    }

    /// The compositor's flags for the desktop, the launcher, the window manager and the user's
    /// scale (`--desktop`, `--app-launcher`, `--wm`, `--scale`).
    pub fn session_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if self.desktop == Desktop::Default {
            flags.push("--desktop".to_string());
        }
        if let Some(cmd) = self
            .launcher
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            flags.push("--app-launcher".to_string());
            flags.push(cmd.to_string());
        }
        if let Some(cmd) = self
            .window_manager
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            flags.push("--wm".to_string());
            flags.push(cmd.to_string());
        }
        if let Some(scale) = self.scale {
            flags.push("--scale".to_string());
            flags.push(scale.to_string());
        }
        flags
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
        for key in table
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .cloned()
            .collect::<Vec<_>>()
        {
            table.remove(&key);
        }
        let scale = table.remove("scale").and_then(|value| {
            ScaleChoice::deserialize(value)
                .map_err(|e| warnings.push(format!("scale ignored: {}", e.message())))
                .ok()
        });
        let mut config = SessionToml::deserialize(table).map_err(|e| e.to_string())?;
        config.scale = scale;
        Ok((config, warnings))
    }

    /// The `--spawn` commands for the session compositor: panel, autostart. The window manager
    /// is started apart (`--wm`): only it may bind the WM protocol.
    pub fn spawn_commands(&self) -> Vec<String> {
        self.panel
            .iter()
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
    fn missing_file_starts_the_default_desktop_and_foot() {
        let (config, warnings) = resolve(None);
        assert_eq!(config.spawn_commands(), ["foot"]);
        assert_eq!(config.session_flags(), ["--desktop"]);
        assert!(warnings.is_empty());
    }

    #[test]
    fn the_users_scale_becomes_a_flag() {
        let (config, warnings) = resolve(Some("scale = 1.5"));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.session_flags(), ["--desktop", "--scale", "1.5"]);
    }

    #[test]
    fn desktop_none_and_a_launcher_of_ones_own() {
        let (config, warnings) =
            resolve(Some("desktop = \"none\"\nlauncher = \"wofi --show drun\""));
        assert!(warnings.is_empty());
        assert_eq!(
            config.session_flags(),
            ["--app-launcher", "wofi --show drun"]
        );
        let (config, warnings) = resolve(Some("desktop = \"plasma\""));
        assert_eq!(config, SessionToml::builtin());
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn commands_come_in_order_panel_autostart_and_the_wm_apart() {
        let text = r#"
            autostart = ["foot", "  ", "weston-simple-shm"]
            panel = "waybar -c ~/.bar"
            window_manager = "wr-wm-tiling"
        "#;
        let (config, warnings) = resolve(Some(text));
        assert!(warnings.is_empty());
        assert_eq!(
            config.spawn_commands(),
            ["waybar -c ~/.bar", "foot", "weston-simple-shm"]
        );
        assert_eq!(
            config.session_flags(),
            ["--desktop", "--wm", "wr-wm-tiling"]
        );
    }

    #[test]
    fn keys_a_file_does_not_name_keep_their_defaults() {
        let (config, _) = resolve(Some("window_manager = \"wm\""));
        assert_eq!(config.spawn_commands(), ["foot"]);
        assert_eq!(config.session_flags(), ["--desktop", "--wm", "wm"]);
        let (config, _) = resolve(Some(""));
        assert_eq!(config, SessionToml::builtin());
        let (config, _) = resolve(Some("autostart = []"));
        assert!(config.spawn_commands().is_empty());
        assert_eq!(config.session_flags(), ["--desktop"]);
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
