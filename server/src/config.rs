//! `wrsrvd` configuration: a TOML file with documented defaults, overridden by command-line flags.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use ipnet::IpNet;

use serde::Deserialize;
use wayray_protocol::sessions::ScaleChoice;

/// Settings of one `wrsrvd`. Every field has a default, so an empty or missing file is valid.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// UDP address of the QUIC endpoint appliances connect to. Default `0.0.0.0:7390`.
    pub listen: SocketAddr,
    /// Where the server keeps its TLS certificate and key (created on first start).
    /// Default `/var/lib/wayray`.
    pub state_dir: PathBuf,
    /// Size of the session output in pixels until an appliance asks for another. Default 1280×800.
    pub output_width: u32,
    pub output_height: u32,
    /// Size the session output to the attached appliance's screen (its display mode, told in
    /// Hello), and resize it when the session moves to another screen or the screen changes, so
    /// every appliance shows the session pixel for pixel. `false` keeps `output_width` ×
    /// `output_height` and appliances show it centred or cut. Default `true`.
    pub output_follows_appliance: bool,
    /// Scale of the session output: `"auto"` picks it from the appliance screen's pixel density
    /// (its physical size, from the monitor's EDID), so a 27" 4K monitor shows a desktop about as
    /// large as a 27" 1440p one (scale 1.5) and a screen of unknown size gets 1; a number
    /// (`1`, `1.5`, 0.5..=4) fixes it for every screen. A user's `scale` in session.toml wins
    /// over this. Default `"auto"`.
    pub output_scale: ScaleChoice,
    /// Per-token sessions through the session launcher `wrsessd` (greeter, PAM, the user's own
    /// session) instead of one shared session. Default `false`.
    pub launcher: bool,
    /// What a user session shown again after it was detached (card out, appliance gone,
    /// session moved) shows first: `"lock"`, its lock screen asking for the user's password
    /// (nothing of the desktop reaches the appliance before the unlock); `"direct"`, the desktop
    /// at once; `"auto"`, lock for pseudo-tokens (appliances without a card) and cards that
    /// proved nothing, direct for cards that proved their key. The attach right after a login in
    /// the greeter never locks. Default `"auto"`.
    pub reattach: crate::daemon::Reattach,
    /// A user session shown on no appliance for this many seconds is ended (0: never).
    /// Default 86400 (a day), like a Sun Ray server's disconnected-session timeout.
    pub suspended_timeout_secs: u64,
    /// Frames sent but not yet acknowledged before the server stops rendering and merges damage
    /// into the next frame instead. Default 2: one on screen, one on the wire.
    pub max_frames_in_flight: usize,
    /// Wayland socket name under `$XDG_RUNTIME_DIR`; empty picks the first free `wayland-N`.
    pub wayland_socket: String,
    /// With no appliance attached, clients still get frame callbacks at this interval (ms), so they
    /// stay responsive without burning CPU on frames nobody sees. Default 1000.
    pub detached_frame_interval_ms: u64,
    /// Refresh rate of the session output in Hz: at most this many frames per second are rendered
    /// and sent, and clients get frame callbacks at most this often. Default 60.
    pub refresh_hz: u32,
    /// The name the server certificate is issued for; appliances check it (SNI). Default
    /// `wayray-server`.
    pub server_name: String,
    /// xcursor theme of the cursors the server draws: the arrow over the background and the
    /// shapes clients name through cursor-shape-v1 (clients drawing their own cursor pick their
    /// own theme). Unset: `$XCURSOR_THEME`, else `default`, the system's default theme. Adwaita
    /// and DMZ-White are tried after it, and with no theme installed a built-in arrow is used.
    pub cursor_theme: Option<String>,
    /// Nominal size in pixels of those cursors (1..=256); the theme's nearest size is used.
    /// Unset: `$XCURSOR_SIZE`, else 24.
    pub cursor_size: Option<u32>,
    /// Bandwidth cap per appliance in kbit/s, like a Sun Ray server's per-terminal limit. Frames
    /// for the appliance wait so its display stream stays under the cap; the session then
    /// renders changing regions less often (their damage merges into the next frame) and video
    /// regions get a lower bitrate, while static text stays exact. 0: no cap, the connection's
    /// congestion control alone decides. Default 0.
    pub bandwidth_limit_kbps: u64,
    /// Caps for appliances by address, checked in order before `bandwidth_limit_kbps`, e.g. a
    /// branch office behind a thin link: `[[appliance_bandwidth]]` with
    /// `network = "10.20.0.0/16"` and `limit_kbps = 2000` (0: no cap for that network).
    pub appliance_bandwidth: Vec<BandwidthRule>,
    /// Send regions that keep changing with photo-like content (video, animations) as H.264,
    /// lossy while they play and refreshed losslessly once they stop; text and UI are never
    /// lossy. `false` sends every pixel losslessly (more bytes for video). Default `true`.
    pub video_regions: bool,
    /// Give every session an X11 display (`DISPLAY=:N` for its clients) so X11 programs run,
    /// through Xwayland started when the first X client connects and again after it exits.
    /// `false`: no X11 display, Wayland clients only. Default `true`.
    pub xwayland: bool,
    /// Smart cards that cannot prove they hold a key (memory cards, cards without a PIV card
    /// authentication key), whose token anyone who held the card a second can copy:
    /// `"refuse"` shows them a notice and no session; `"lock"` accepts them, and every
    /// re-attach then shows the lock screen first. A card that once proved its key must always
    /// prove it. Default `"refuse"`.
    pub unproven_cards: crate::cards::UnprovenCards,
    /// Which appliances get sessions, by the certificate each one makes on its first start
    /// (mutual TLS; `wradm appliances` lists them):
    /// - `"open"`: any appliance, with or without a certificate (demos, a closed lab network);
    ///   appliances with one are still listed, and revoked ones are refused.
    /// - `"enrol"`: an appliance the server has not seen is listed as pending and shows
    ///   "waiting for approval" until an administrator runs `wradm appliances approve ID`;
    ///   it then gets its session at once, without reconnecting.
    /// - `"required"`: only approved appliances; any other certificate fails the TLS handshake
    ///   (it is still listed as pending, so it can be approved).
    ///
    /// Revoked appliances (`wradm appliances revoke ID`) are refused under every policy.
    /// Default `"enrol"`.
    pub appliance_auth: ApplianceAuth,
    /// System-call filter of the daemon and every session compositor (README.md,
    /// "Confinement"): `true` kills a process that makes a call outside its allow-list, `"log"`
    /// allows it but has the kernel log it (`dmesg | grep type=1326`), `false` installs no
    /// filter. Flag `--seccomp`. Default `true`.
    pub seccomp: crate::confine::SeccompMode,
    /// The system user the daemon continues as once its sockets and store are open, when it is
    /// started as root; the state directory is handed to it. Empty: stay root. Default `wayray`
    /// (created by `scripts/lib.sh`'s set-up).
    pub user: String,
    /// Sound: the session's audio plays on the appliance's speaker and its microphone records
    /// in the session (README.md, "Audio"). `false` tells every appliance the server uses
    /// neither. Default `true`.
    pub audio: bool,
    /// A pool of servers sharing their users through etcd (README.md, "A pool of servers"):
    /// `[pool]` with `endpoints = ["http://HOST:2379", …]`, and optionally `name`, `advertise`,
    /// `capacity`, `lease_ttl_secs`, `prefix` (see `PoolConfig`). Default: no pool.
    pub pool: crate::pool::PoolConfig,
    /// The authenticated admin API and Prometheus metrics (README.md, "Admin API and
    /// metrics"): the `[api]` table.
    pub api: ApiConfig,
    /// USB forwarding (README.md, "USB forwarding"): the `[usb]` table, with `enabled`, the
    /// default `filter`, and `[[usb.network]]` / `[[usb.user]]` filters (see `UsbConfig`).
    /// Default: forward everything but HID devices, where the kernel has `vhci-hcd`.
    pub usb: crate::usb::UsbConfig,
}

/// `[api]`: the HTTP admin API (`wradm --server URL`) and `/metrics`. Every request needs
/// `Authorization: Bearer <token>`, the token being the contents of `token_file`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// TCP address to serve it on, `HOST:PORT` (port 0 picks a free one); `""` or `"off"`
    /// serves none. Flag `--api-listen`. It speaks plain HTTP: keep it on localhost or a
    /// management network. Default `"127.0.0.1:7391"`.
    pub listen: String,
    /// The bearer token's file: created on first start with 32 random bytes as 64 hex digits,
    /// mode 0600; `wradm --token-file` reads it. Default `STATE_DIR/api-token`.
    pub token_file: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7391".into(),
            token_file: None,
        }
    }
}

impl ApiConfig {
    /// Where to serve the API; `None` when it is turned off.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let text = self.listen.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        text.parse()
            .map(Some)
            .map_err(|_| ConfigError::ApiListen(self.listen.clone()))
    }

    /// The token file, `state_dir/api-token` unless configured.
    pub fn token_path(&self, state_dir: &std::path::Path) -> PathBuf {
        self.token_file
            .clone()
            .unwrap_or_else(|| state_dir.join("api-token"))
    }
}

/// The `appliance_auth` policy: which appliances get sessions (see [`Config::appliance_auth`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ApplianceAuth {
    /// Any appliance, certificate or not.
    Open,
    /// Unknown appliances wait for `wradm appliances approve`.
    #[default]
    Enrol,
    /// Only approved appliances complete the TLS handshake.
    Required,
}

impl ApplianceAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Enrol => "enrol",
            Self::Required => "required",
        }
    }
}

/// A bandwidth cap for the appliances connecting from one network.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BandwidthRule {
    /// CIDR network the appliance's address must be in (`10.20.0.0/16`, `fd00::/8`).
    pub network: IpNet,
    pub limit_kbps: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], wayray_protocol::DEFAULT_PORT)),
            state_dir: PathBuf::from("/var/lib/wayray"),
            output_width: 1280,
            output_height: 800,
            output_follows_appliance: true,
            output_scale: ScaleChoice::Auto,
            launcher: false,
            reattach: crate::daemon::Reattach::Auto,
            suspended_timeout_secs: 86400,
            max_frames_in_flight: 2,
            wayland_socket: String::new(),
            detached_frame_interval_ms: 1000,
            refresh_hz: 60,
            server_name: "wayray-server".into(),
            cursor_theme: None,
            cursor_size: None,
            bandwidth_limit_kbps: 0,
            appliance_bandwidth: Vec::new(),
            video_regions: true,
            xwayland: true,
            unproven_cards: crate::cards::UnprovenCards::Refuse,
            appliance_auth: ApplianceAuth::default(),
            seccomp: crate::confine::SeccompMode::Enforce,
            user: "wayray".into(),
            audio: true,
            pool: crate::pool::PoolConfig::default(),
            api: ApiConfig::default(),
            usb: crate::usb::UsbConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("output size {0}x{1} is out of range (16..=8192 on each side)")]
    OutputSize(u32, u32),
    #[error("refresh_hz {0} is out of range (1..=1000)")]
    Refresh(u32),
    #[error("max_frames_in_flight must be at least 1")]
    InFlight,
    #[error("cursor_size {0} is out of range (1..={max})", max = wayray_protocol::cursor::MAX_CURSOR_SIZE)]
    CursorSize(u32),
    #[error("cursor_theme is empty; leave it out to use $XCURSOR_THEME or the default theme")]
    CursorTheme,
    #[error("[api] listen = {0:?} is neither HOST:PORT nor \"off\"")]
    ApiListen(String),
    #[error(transparent)]
    Usb(#[from] crate::usb::policy::PolicyError),
}

impl Config {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let ok = |v: u32| (16..=8192).contains(&v);
        if !ok(self.output_width) || !ok(self.output_height) {
            return Err(ConfigError::OutputSize(
                self.output_width,
                self.output_height,
            ));
        }
        if !(1..=1000).contains(&self.refresh_hz) {
            return Err(ConfigError::Refresh(self.refresh_hz));
        }
        if self.max_frames_in_flight == 0 {
            return Err(ConfigError::InFlight);
        }
        if let Some(size) = self.cursor_size.filter(|s| !cursor_size_ok(*s)) {
            return Err(ConfigError::CursorSize(size));
        }
        if self.cursor_theme.as_deref() == Some("") {
            return Err(ConfigError::CursorTheme);
        }
        self.api.listen_addr()?;
        self.usb.validate()?;
        Ok(())
    }

    /// The bandwidth cap in bit/s for an appliance connecting from `addr`, `None` for no cap.
    pub fn bandwidth_limit_bps(&self, addr: IpAddr) -> Option<u64> {
        // An IPv4 appliance on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        let kbps = self
            .appliance_bandwidth
            .iter()
            .find(|rule| rule.network.contains(&addr))
            .map_or(self.bandwidth_limit_kbps, |rule| rule.limit_kbps);
        (kbps > 0).then(|| kbps.saturating_mul(1000))
    }

    /// `cursor_theme`, else `$XCURSOR_THEME`, else `default`.
    pub fn resolved_cursor_theme(&self) -> String {
        let env = std::env::var("XCURSOR_THEME").ok();
        resolve_cursor_theme(self.cursor_theme.as_deref(), env.as_deref())
    }

    /// `cursor_size`, else `$XCURSOR_SIZE`, else 24.
    pub fn resolved_cursor_size(&self) -> u32 {
        let env = std::env::var("XCURSOR_SIZE").ok();
        resolve_cursor_size(self.cursor_size, env.as_deref())
    }
}

const DEFAULT_CURSOR_THEME: &str = "default";
const DEFAULT_CURSOR_SIZE: u32 = 24;

fn cursor_size_ok(size: u32) -> bool {
    (1..=wayray_protocol::cursor::MAX_CURSOR_SIZE).contains(&size)
}

fn resolve_cursor_theme(config: Option<&str>, env: Option<&str>) -> String {
    config
        .or(env.filter(|t| !t.is_empty()))
        .unwrap_or(DEFAULT_CURSOR_THEME)
        .to_owned()
}

fn resolve_cursor_size(config: Option<u32>, env: Option<&str>) -> u32 {
    if let Some(size) = config {
        return size;
    }
    match env.map(|s| s.trim().parse::<u32>()) {
        Some(Ok(size)) if cursor_size_ok(size) => size,
        Some(_) => {
            tracing::warn!(value = ?env, "ignoring invalid $XCURSOR_SIZE");
            DEFAULT_CURSOR_SIZE
        }
        None => DEFAULT_CURSOR_SIZE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn fields_override_and_unknown_keys_fail() {
        let c: Config = toml::from_str("output_width = 1920\noutput_height = 1080").unwrap();
        assert_eq!((c.output_width, c.output_height), (1920, 1080));
        assert!(toml::from_str::<Config>("outptu_width = 3").is_err());
    }

    #[test]
    fn appliance_auth_is_one_of_three_words() {
        assert_eq!(Config::default().appliance_auth, ApplianceAuth::Enrol);
        for (text, policy) in [
            ("open", ApplianceAuth::Open),
            ("enrol", ApplianceAuth::Enrol),
            ("required", ApplianceAuth::Required),
        ] {
            let c: Config = toml::from_str(&format!("appliance_auth = {text:?}")).unwrap();
            assert_eq!(c.appliance_auth, policy);
            assert_eq!(policy.as_str(), text);
        }
        assert!(toml::from_str::<Config>("appliance_auth = \"closed\"").is_err());
    }

    #[test]
    fn api_listens_on_localhost_unless_turned_off() {
        let c = Config::default();
        assert_eq!(
            c.api.listen_addr().unwrap(),
            Some(SocketAddr::from(([127, 0, 0, 1], 7391)))
        );
        assert_eq!(
            c.api.token_path(std::path::Path::new("/s")),
            PathBuf::from("/s/api-token")
        );
        for off in ["\"\"", "\"off\""] {
            let c: Config = toml::from_str(&format!("[api]\nlisten = {off}")).unwrap();
            assert_eq!(c.api.listen_addr().unwrap(), None);
        }
        let c: Config = toml::from_str("[api]\nlisten = \"[::1]:0\"\ntoken_file = \"/t\"").unwrap();
        assert_eq!(
            c.api.listen_addr().unwrap(),
            Some("[::1]:0".parse().unwrap())
        );
        assert_eq!(
            c.api.token_path(std::path::Path::new("/s")),
            PathBuf::from("/t")
        );
        let c: Config = toml::from_str("[api]\nlisten = \"localhost\"").unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::ApiListen(_))));
        assert!(toml::from_str::<Config>("[api]\nlisen = \"off\"").is_err());
    }

    #[test]
    fn validation_rejects_nonsense() {
        let c = Config {
            output_width: 0,
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            max_frames_in_flight: 0,
            ..Config::default()
        };
        assert!(c.validate().is_err());
        assert!(Config::default().validate().is_ok());
        for size in [0, 257] {
            let c = Config {
                cursor_size: Some(size),
                ..Config::default()
            };
            assert!(matches!(c.validate(), Err(ConfigError::CursorSize(_))));
        }
        let c = Config {
            cursor_theme: Some(String::new()),
            ..Config::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::CursorTheme)));
    }

    #[test]
    fn the_example_file_states_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/wrsrvd.example.toml");
        let c = Config::load(std::path::Path::new(path)).unwrap();
        assert_eq!(c, Config::default());
        // The commented rule is valid too.
        let text = std::fs::read_to_string(path).unwrap();
        let rule: String = text
            .lines()
            .skip_while(|l| !l.starts_with("# [[appliance_bandwidth]]"))
            .map(|l| format!("{}\n", l.trim_start_matches("# ")))
            .collect();
        let c: Config = toml::from_str(&rule).unwrap();
        assert_eq!(c.appliance_bandwidth.len(), 1);
    }

    #[test]
    fn bandwidth_rules_match_networks_in_order() {
        let c: Config = toml::from_str(
            r#"
            bandwidth_limit_kbps = 10000
            [[appliance_bandwidth]]
            network = "10.20.30.0/24"
            limit_kbps = 0
            [[appliance_bandwidth]]
            network = "10.20.0.0/16"
            limit_kbps = 2000
            "#,
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(c.bandwidth_limit_bps(ip("10.20.1.2")), Some(2_000_000));
        assert_eq!(
            c.bandwidth_limit_bps(ip("::ffff:10.20.1.2")),
            Some(2_000_000)
        );
        assert_eq!(c.bandwidth_limit_bps(ip("10.20.30.4")), None);
        assert_eq!(c.bandwidth_limit_bps(ip("192.0.2.1")), Some(10_000_000));
        assert_eq!(Config::default().bandwidth_limit_bps(ip("192.0.2.1")), None);
        let bad = "[[appliance_bandwidth]]\nnetwork = \"10.0.0.300/8\"\nlimit_kbps = 1";
        assert!(toml::from_str::<Config>(bad).is_err());
    }

    #[test]
    fn output_scale_is_auto_or_a_number() {
        let scale = |text: &str| toml::from_str::<Config>(text).ok().map(|c| c.output_scale);
        assert_eq!(scale(""), Some(ScaleChoice::Auto));
        assert_eq!(scale("output_scale = \"auto\""), Some(ScaleChoice::Auto));
        assert_eq!(scale("output_scale = 1.5"), Some(ScaleChoice::Fixed(1.5)));
        assert_eq!(scale("output_scale = 2"), Some(ScaleChoice::Fixed(2.0)));
        for bad in [
            "output_scale = 0",
            "output_scale = \"big\"",
            "output_scale = 9.0",
        ] {
            assert!(scale(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn cursor_settings_prefer_config_then_environment() {
        assert_eq!(
            resolve_cursor_theme(Some("DMZ-White"), Some("x")),
            "DMZ-White"
        );
        assert_eq!(resolve_cursor_theme(None, Some("Adwaita")), "Adwaita");
        assert_eq!(resolve_cursor_theme(None, Some("")), "default");
        assert_eq!(resolve_cursor_theme(None, None), "default");
        assert_eq!(resolve_cursor_size(Some(32), Some("48")), 32);
        assert_eq!(resolve_cursor_size(None, Some("48")), 48);
        assert_eq!(resolve_cursor_size(None, Some("huge")), 24);
        assert_eq!(resolve_cursor_size(None, Some("0")), 24);
        assert_eq!(resolve_cursor_size(None, None), 24);
        let c: Config = toml::from_str("cursor_theme = \"Adwaita\"\ncursor_size = 32").unwrap();
        assert_eq!(
            (c.cursor_theme.as_deref(), c.cursor_size),
            (Some("Adwaita"), Some(32))
        );
    }
}
