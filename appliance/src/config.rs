//! What the appliance is told to do: command line flags, an optional TOML file for the settings
//! an installed appliance keeps (server, trust, screen, keyboard, input devices), and the
//! defaults for both.
//!
//! Flags are all `Option`s so that "not given" is visible: a flag beats the file, the file beats
//! the default, and the defaults live only in the `DEFAULT_*` constants below.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use wayray_protocol::codec::MAX_DIMENSION;
use wayray_protocol::PhysicalSize;

use crate::keymap::XkbNames;

/// UDP port `wrsrvd` listens on unless told otherwise.
pub use wayray_protocol::DEFAULT_PORT;
/// Name the server's self-signed certificate is issued for.
pub const DEFAULT_SERVER_NAME: &str = "wayray-server";
/// Where an installed appliance keeps what must survive a reboot (known server certificates).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/wayray-appliance";
/// The card `--display drm` drives unless told otherwise.
pub const DEFAULT_CARD: &str = "/dev/dri/card0";
/// A common small panel size, so a headless demo without `--screen` still gets a usable desktop.
pub const DEFAULT_SCREEN: ScreenSize = ScreenSize {
    width: 1280,
    height: 800,
};

/// Command line of `wrclient`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "wrclient",
    version,
    about = "WayRay appliance firmware: shows the desktop session a WayRay server (wrsrvd) streams to it over QUIC.",
    after_help = "Logging: set RUST_LOG (default \"info,libseat=warn\"), e.g. RUST_LOG=debug or RUST_LOG=wrclient=debug,quinn=warn.\n\
                  Signals: SIGINT/SIGTERM say goodbye to the server and exit 0; SIGUSR1 writes the --screenshot."
)]
pub struct Cli {
    /// Server to connect to, as HOST or HOST:PORT (IPv6 as [ADDR]:PORT); the port defaults to 7390.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub server: Option<ServerAddr>,

    /// Name sent as TLS SNI; the server's self-signed certificate is issued for it [default: wayray-server].
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,

    /// Trust exactly this server certificate (DER or PEM) instead of trusting the first one the server presents.
    #[arg(long, value_name = "PATH")]
    pub server_cert: Option<PathBuf>,

    /// Directory for state that must survive restarts: certificates of servers trusted on first use are kept
    /// in STATE_DIR/known_servers/HOST_PORT.der [default: /var/lib/wayray-appliance].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Screen size announced to the server, which sizes the session's desktop to it [default: 1280x800; with
    /// --display drm, the display mode's size, which wins over this].
    #[arg(long, value_name = "WxH")]
    pub screen: Option<ScreenSize>,

    /// The screen's visible size in millimetres, e.g. 597x336 for a 27" 16:9 monitor; the server scales the
    /// desktop to the pixel density this gives. Headless displays have no size of their own; with --display drm
    /// it replaces what the monitor's EDID says (some projectors and TVs report none or a wrong one)
    /// [default: the EDID's size, none when headless].
    #[arg(long, value_name = "WxH")]
    pub physical_size: Option<PhysicalSizeArg>,

    /// Where the picture goes: drm (the card's first connected display, through KMS, as on an appliance) or
    /// headless (memory only: for --screenshot and --frame-log) [default: drm with --card or --mode, else
    /// headless].
    #[arg(long, value_enum, value_name = "KIND")]
    pub display: Option<DisplayKind>,

    /// DRM device for --display drm (implies it) [default: /dev/dri/card0].
    #[arg(long, value_name = "PATH")]
    pub card: Option<PathBuf>,

    /// Display mode for --display drm (implies it), e.g. 1024x768 or 1920x1080@60 [default: the display's
    /// preferred mode].
    #[arg(long, value_name = "WxH[@HZ]")]
    pub mode: Option<ModeRequest>,

    /// TOML file with any of: server, server-name, server-cert, state-dir, screen, physical-size, display, card, mode, input, input-device (a list),
    /// xkb-layout, xkb-variant, xkb-model, xkb-options, audio-device, microphone-device, audio-out-wav, audio-in-wav,
    /// no-audio, no-usb, seccomp (same meaning as the flags; a flag given on the command
    /// line wins).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Where keyboard, mouse and touch input comes from: real devices through libinput, the --input-script, or
    /// nowhere [default: script with --input-script; else libinput if /dev/input exists (continuing without
    /// input if no device can be opened); else none].
    #[arg(long, value_enum, value_name = "SOURCE")]
    pub input: Option<InputKind>,

    /// Replay input from this script once a server has welcomed the appliance (implies --input script). One
    /// command per line, `#` starts a comment line: wait MS, wait-frame, keymap LAYOUT [VARIANT], type TEXT,
    /// type-delay MS, key|press|release NAME, combo MOD+…+KEY, move X Y, rel DX DY, button NAME down|up,
    /// click NAME, scroll DX DY (v120 units), scroll-finger DX DY, scroll-stop, touch down|move SLOT X Y,
    /// touch up SLOT, touch frame, touch cancel, exit (say goodbye and exit 0).
    #[arg(long, value_name = "PATH")]
    pub input_script: Option<PathBuf>,

    /// Read only this input device, e.g. /dev/input/event3 (repeatable; implies --input libinput). Without it
    /// libinput takes the seat's devices through libseat, or, as root without a seat manager, every
    /// /dev/input/event*.
    #[arg(long, value_name = "PATH")]
    pub input_device: Vec<PathBuf>,

    /// XKB keyboard layout, e.g. de or us,de [default: $XKB_DEFAULT_LAYOUT, else XKBLAYOUT in
    /// /etc/default/keyboard, else us]; the server interprets keys with it.
    #[arg(long, value_name = "LAYOUT")]
    pub xkb_layout: Option<String>,

    /// XKB layout variant, e.g. nodeadkeys; it belongs to the layout given with it [default: the variant that
    /// comes with the layout].
    #[arg(long, value_name = "VARIANT")]
    pub xkb_variant: Option<String>,

    /// XKB keyboard model [default: $XKB_DEFAULT_MODEL, else XKBMODEL in /etc/default/keyboard, else pc105].
    #[arg(long, value_name = "MODEL")]
    pub xkb_model: Option<String>,

    /// XKB options, e.g. ctrl:nocaps,compose:ralt [default: $XKB_DEFAULT_OPTIONS, else XKBOPTIONS in
    /// /etc/default/keyboard, else none].
    #[arg(long, value_name = "OPTIONS")]
    pub xkb_options: Option<String>,

    /// Append "<seq> <digest> <width>x<height>" for every frame shown (digest: 16 hex digits of
    /// wayray_protocol::frame_digest of the whole framebuffer), so tests can compare with the server's log.
    #[arg(long, value_name = "PATH")]
    pub frame_log: Option<PathBuf>,

    /// Write what is on screen as a PNG to this path on exit and whenever SIGUSR1 arrives.
    #[arg(long, value_name = "PATH")]
    pub screenshot: Option<PathBuf>,

    /// Draw the cursor into --screenshot (by default a screenshot is the server's framebuffer alone, so it
    /// can be compared with the server's).
    #[arg(long)]
    pub screenshot_cursor: bool,

    /// Append "<keycode> <ns>" for every key press sent: nanoseconds from writing the press to the input
    /// stream until the next frame that changed something is on screen (input-to-photon benchmarks).
    #[arg(long, value_name = "PATH")]
    pub latency_log: Option<PathBuf>,

    /// Follow the smart-card reader NAME through pcscd (exactly, or the first whose name starts with
    /// it); with an empty NAME (`--card-reader ''`) the first reader there is. The card's token
    /// selects the session; pulling the card detaches it.
    #[arg(long, value_name = "NAME")]
    pub card_reader: Option<String>,

    /// With no card in the reader present no token (the screen asks for a card) instead of the
    /// pseudo-token `pseudo.<id>` (of its certificate) that gives this terminal its own session.
    #[arg(long)]
    pub require_card: bool,

    /// Present this fixed token instead of cards and the pseudo-token (kiosks, tests).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Run this many seconds (fractions allowed), then say goodbye, write the screenshot and exit 0 (demos, tests).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub exit_after: Option<Duration>,

    /// Once this many frames have been shown and acknowledged, say goodbye, write the screenshot and exit 0 (tests).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub exit_after_frames: Option<u64>,

    /// ALSA PCM the session's sound plays on, e.g. hw:0,0 or plughw:1 [default: default]. If it cannot be
    /// opened the appliance warns once and tells the server it has no speaker.
    #[arg(long, value_name = "NAME")]
    pub audio_device: Option<String>,

    /// ALSA PCM the microphone records from; opened only while the session asks for it [default: the
    /// --audio-device].
    #[arg(long, value_name = "NAME")]
    pub microphone_device: Option<String>,

    /// Write the session's sound to this WAV file (48 kHz stereo 16-bit, on a real-time clock: time
    /// without sound is recorded as silence) instead of playing it through ALSA (tests, demos).
    #[arg(long, value_name = "FILE")]
    pub audio_out_wav: Option<PathBuf>,

    /// The microphone plays this WAV file (48 kHz 16-bit PCM, mixed down to mono) in a loop at real-time
    /// pace instead of recording through ALSA (tests, demos).
    #[arg(long, value_name = "FILE")]
    pub audio_in_wav: Option<PathBuf>,

    /// No sound: tell the server this appliance has neither speaker nor microphone.
    #[arg(long)]
    pub no_audio: bool,

    /// Append what the audio path does (per packet, talkspurt, sound onset and shown frame, and a summary
    /// at exit) to this file; README.md, "Audio on the appliance", describes the lines.
    #[arg(long, value_name = "FILE")]
    pub audio_report: Option<PathBuf>,

    /// Keep every USB device on the appliance, whatever the server's USB policy allows
    /// (README.md, "USB forwarding").
    #[arg(long)]
    pub no_usb: bool,

    /// System-call filter: true (a call outside wrclient's allow-list kills it), log (the kernel
    /// logs such calls: `dmesg | grep type=1326`) or false (none, for debugging) [default: true].
    #[arg(long, env = "WAYRAY_SECCOMP", value_name = "true|log|false")]
    pub seccomp: Option<crate::confine::SeccompMode>,
}

/// Settings an installed appliance may keep in `--config`; keys are the flag names.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ConfigFile {
    server: Option<String>,
    server_name: Option<String>,
    server_cert: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    screen: Option<String>,
    physical_size: Option<String>,
    display: Option<String>,
    card: Option<PathBuf>,
    mode: Option<String>,
    input: Option<String>,
    input_device: Option<Vec<PathBuf>>,
    xkb_layout: Option<String>,
    xkb_variant: Option<String>,
    xkb_model: Option<String>,
    xkb_options: Option<String>,
    audio_device: Option<String>,
    microphone_device: Option<String>,
    audio_out_wav: Option<PathBuf>,
    audio_in_wav: Option<PathBuf>,
    no_audio: Option<bool>,
    no_usb: Option<bool>,
    seccomp: Option<crate::confine::SeccompMode>,
}

/// Displays `--display` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DisplayKind {
    /// Frames stay in memory (screenshots, frame log).
    Headless,
    /// The card's first connected display through DRM/KMS.
    Drm,
}

/// Where the picture goes, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplayChoice {
    Headless,
    Drm {
        card: PathBuf,
        mode: Option<ModeRequest>,
    },
}

/// Input sources `--input` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputKind {
    /// Keyboards, mice, touchpads and touch screens through libinput.
    Libinput,
    /// The --input-script.
    Script,
    /// No input (a display-only appliance).
    None,
}

/// Where input comes from, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputChoice {
    /// Real devices: `devices` if given, else the seat's. `required` is false when nobody asked
    /// for it (the default on a machine with /dev/input), so a machine without usable devices
    /// still shows the session.
    Libinput {
        devices: Vec<PathBuf>,
        required: bool,
    },
    Script(PathBuf),
    None,
}

/// Where input devices live; their presence makes libinput the default input.
pub const INPUT_DEVICE_DIR: &str = "/dev/input";

/// Everything resolved: what the rest of the firmware runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerAddr,
    pub server_name: String,
    pub server_cert: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub screen: ScreenSize,
    /// `--physical-size`: announced instead of what the display reports.
    pub physical_size: Option<PhysicalSize>,
    pub display: DisplayChoice,
    pub frame_log: Option<PathBuf>,
    pub screenshot: Option<PathBuf>,
    pub screenshot_cursor: bool,
    pub latency_log: Option<PathBuf>,
    pub exit_after: Option<Duration>,
    pub exit_after_frames: Option<u64>,
    pub input: InputChoice,
    /// Keyboard layout names from the flags or the file; the environment and the system fill in
    /// the rest (see `keymap::Rmlvo::system`).
    pub xkb: XkbNames,
    pub tokens: crate::token::TokenPolicy,
    /// `--seccomp` / `seccomp`: wrclient's system-call filter.
    pub seccomp: crate::confine::SeccompMode,
    /// Speaker, microphone and the audio report.
    pub audio: crate::audio::AudioConfig,
    /// `--no-usb` / `no-usb`: whether devices may be forwarded at all.
    pub usb: crate::usb::UsbConfig,
}

#[derive(Debug, thiserror::Error)]
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
    #[error("invalid `{key}` in config file {path}: {reason}")]
    Value {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
    #[error(
        "no server to connect to: pass --server HOST[:PORT] or set `server` in the --config file"
    )]
    NoServer,
    #[error("--input {0} conflicts with --input-script; leave one out")]
    InputConflict(&'static str),
    #[error("--input script needs --input-script PATH")]
    NoInputScript,
    #[error("--card and --mode need --display drm, not --display headless")]
    DrmOptionsWithoutDrm,
    #[error("--input-device needs --input libinput, not --input {0}")]
    DevicesWithoutLibinput(&'static str),
}

impl Config {
    /// Merges the command line over the `--config` file (if any) over the defaults.
    pub fn resolve(cli: Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_config_file(path)?,
            None => ConfigFile::default(),
        };
        let file_path = cli.config.clone().unwrap_or_default();
        let value_error = |key, reason: String| ConfigError::Value {
            path: file_path.clone(),
            key,
            reason,
        };

        let server = match (cli.server, file.server) {
            (Some(server), _) => server,
            (None, Some(text)) => text.parse().map_err(|e| value_error("server", e))?,
            (None, None) => return Err(ConfigError::NoServer),
        };
        let screen = match (cli.screen, file.screen) {
            (Some(screen), _) => screen,
            (None, Some(text)) => text.parse().map_err(|e| value_error("screen", e))?,
            (None, None) => DEFAULT_SCREEN,
        };
        let physical_size = match (cli.physical_size, file.physical_size) {
            (Some(size), _) => Some(size.0),
            (None, Some(text)) => Some(
                text.parse::<PhysicalSizeArg>()
                    .map_err(|e| value_error("physical-size", e))?
                    .0,
            ),
            (None, None) => None,
        };
        let display_kind = match (cli.display, file.display) {
            (Some(kind), _) => Some(kind),
            (None, Some(text)) => Some(
                <DisplayKind as clap::ValueEnum>::from_str(&text, true).map_err(|_| {
                    value_error("display", format!("`{text}` is not drm or headless"))
                })?,
            ),
            (None, None) => None,
        };
        let mode = match (cli.mode, file.mode) {
            (Some(mode), _) => Some(mode),
            (None, Some(text)) => Some(text.parse().map_err(|e| value_error("mode", e))?),
            (None, None) => None,
        };
        let card = cli.card.or(file.card);
        let display = match display_kind {
            Some(DisplayKind::Headless) if card.is_some() || mode.is_some() => {
                return Err(ConfigError::DrmOptionsWithoutDrm)
            }
            Some(DisplayKind::Headless) => DisplayChoice::Headless,
            None if card.is_none() && mode.is_none() => DisplayChoice::Headless,
            Some(DisplayKind::Drm) | None => DisplayChoice::Drm {
                card: card.unwrap_or_else(|| PathBuf::from(DEFAULT_CARD)),
                mode,
            },
        };
        // Input is decided as a whole: any input flag overrides all of the file's input keys,
        // so `--input-script` works on an appliance whose file lists its devices.
        let (input_kind, input_script, input_devices) = if cli.input.is_some()
            || cli.input_script.is_some()
            || !cli.input_device.is_empty()
        {
            (cli.input, cli.input_script, cli.input_device)
        } else {
            let kind = file
                .input
                .map(|text| {
                    <InputKind as clap::ValueEnum>::from_str(&text, true).map_err(|_| {
                        value_error("input", format!("`{text}` is not libinput, script or none"))
                    })
                })
                .transpose()?;
            (kind, None, file.input_device.unwrap_or_default())
        };
        let input = choose_input(
            input_kind,
            input_script,
            input_devices,
            Path::new(INPUT_DEVICE_DIR).exists(),
        )?;
        // A variant belongs to its layout: the file's variant does not carry over to a layout
        // given on the command line.
        let (layout, variant) = match cli.xkb_layout {
            Some(layout) => (Some(layout), cli.xkb_variant),
            None => (file.xkb_layout, cli.xkb_variant.or(file.xkb_variant)),
        };
        let xkb = XkbNames {
            layout,
            variant,
            model: cli.xkb_model.or(file.xkb_model),
            options: cli.xkb_options.or(file.xkb_options),
        };
        let audio_device = cli
            .audio_device
            .or(file.audio_device)
            .unwrap_or_else(|| crate::audio::DEFAULT_DEVICE.to_owned());
        let audio = crate::audio::AudioConfig {
            enabled: !(cli.no_audio || file.no_audio.unwrap_or(false)),
            microphone_device: cli
                .microphone_device
                .or(file.microphone_device)
                .unwrap_or_else(|| audio_device.clone()),
            device: audio_device,
            out_wav: cli.audio_out_wav.or(file.audio_out_wav),
            in_wav: cli.audio_in_wav.or(file.audio_in_wav),
            report: cli.audio_report,
        };
        let usb = crate::usb::UsbConfig {
            enabled: !(cli.no_usb || file.no_usb.unwrap_or(false)),
            ..Default::default()
        };
        Ok(Self {
            server,
            audio,
            usb,
            server_name: cli
                .server_name
                .or(file.server_name)
                .unwrap_or_else(|| DEFAULT_SERVER_NAME.to_owned()),
            server_cert: cli.server_cert.or(file.server_cert),
            state_dir: cli
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            screen,
            physical_size,
            display,
            frame_log: cli.frame_log,
            screenshot: cli.screenshot,
            screenshot_cursor: cli.screenshot_cursor,
            latency_log: cli.latency_log,
            tokens: crate::token::TokenPolicy {
                card_reader: cli.card_reader,
                require_card: cli.require_card,
                fixed: cli.token,
            },
            exit_after: cli.exit_after,
            exit_after_frames: cli.exit_after_frames,
            seccomp: cli.seccomp.or(file.seccomp).unwrap_or_default(),
            input,
            xkb,
        })
    }
}

/// `--input`, `--input-script` and `--input-device` together; `have_devices` says whether
/// /dev/input exists, which decides the default.
fn choose_input(
    kind: Option<InputKind>,
    script: Option<PathBuf>,
    devices: Vec<PathBuf>,
    have_devices: bool,
) -> Result<InputChoice, ConfigError> {
    let name = |kind| match kind {
        InputKind::Libinput => "libinput",
        InputKind::Script => "script",
        InputKind::None => "none",
    };
    match (kind, script) {
        (Some(kind @ (InputKind::Libinput | InputKind::None)), Some(_)) => {
            Err(ConfigError::InputConflict(name(kind)))
        }
        (Some(InputKind::Script), None) => Err(ConfigError::NoInputScript),
        (Some(kind), _) if !devices.is_empty() && kind != InputKind::Libinput => {
            Err(ConfigError::DevicesWithoutLibinput(name(kind)))
        }
        (None, Some(_)) if !devices.is_empty() => {
            Err(ConfigError::DevicesWithoutLibinput("script"))
        }
        (_, Some(script)) => Ok(InputChoice::Script(script)),
        (Some(InputKind::Libinput), None) => Ok(InputChoice::Libinput {
            devices,
            required: true,
        }),
        (Some(InputKind::None), None) => Ok(InputChoice::None),
        (None, None) if !devices.is_empty() => Ok(InputChoice::Libinput {
            devices,
            required: true,
        }),
        (None, None) if have_devices => Ok(InputChoice::Libinput {
            devices,
            required: false,
        }),
        (None, None) => Ok(InputChoice::None),
    }
}

fn read_config_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is not a usable duration"))
}

/// Where the server is, as the user wrote it: the host name is kept (not just an address) because
/// it is resolved again on every reconnect and names the server's pinned certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
}

impl FromStr for ServerAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad_port = |port: &str| format!("`{port}` in `{text}` is not a port number");
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            // [v6] or [v6]:port
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{text}` lacks the closing `]` of an IPv6 address"))?;
            let port = match after {
                "" => DEFAULT_PORT,
                _ => {
                    let port = after
                        .strip_prefix(':')
                        .ok_or_else(|| format!("expected `:PORT` after `]` in `{text}`"))?;
                    port.parse().map_err(|_| bad_port(port))?
                }
            };
            (host, port)
        } else {
            match text.rsplit_once(':') {
                // More than one colon without brackets: a bare IPv6 address.
                Some((host, _)) if host.contains(':') => (text, DEFAULT_PORT),
                Some((host, port)) => (host, port.parse().map_err(|_| bad_port(port))?),
                None => (text, DEFAULT_PORT),
            }
        };
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Size of the appliance's screen in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenSize {
    pub width: u32,
    pub height: u32,
}

impl FromStr for ScreenSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (w, h) = text
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("`{text}` is not WIDTHxHEIGHT, e.g. 1280x800"))?;
        let dimension = |s: &str| match s.parse::<u32>() {
            Ok(v) if (1..=MAX_DIMENSION).contains(&v) => Ok(v),
            _ => Err(format!(
                "`{s}` in `{text}` is not a size between 1 and {MAX_DIMENSION} pixels"
            )),
        };
        Ok(Self {
            width: dimension(w)?,
            height: dimension(h)?,
        })
    }
}

impl fmt::Display for ScreenSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// Largest side `--physical-size` accepts: 10 m (a video wall) is already beyond any monitor.
const MAX_PHYSICAL_MM: u32 = 10_000;

/// `--physical-size WxH` in millimetres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysicalSizeArg(pub PhysicalSize);

impl FromStr for PhysicalSizeArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (w, h) = text
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("`{text}` is not WIDTHxHEIGHT in millimetres, e.g. 597x336"))?;
        let side = |s: &str| match s.trim().parse::<u32>() {
            Ok(v) if (1..=MAX_PHYSICAL_MM).contains(&v) => Ok(v),
            _ => Err(format!(
                "`{s}` in `{text}` is not a size between 1 and {MAX_PHYSICAL_MM} mm"
            )),
        };
        Ok(Self(PhysicalSize {
            width_mm: side(w)?,
            height_mm: side(h)?,
        }))
    }
}

/// A display mode asked for with `--mode`: a size and maybe a refresh rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeRequest {
    pub width: u32,
    pub height: u32,
    /// Hz, as the kernel rounds it (59.95 Hz is 60).
    pub refresh: Option<u32>,
}

impl ModeRequest {
    /// Whether a mode of `width`×`height` at `refresh` Hz is the one asked for.
    #[cfg_attr(not(feature = "drm"), allow(dead_code))]
    pub fn matches(&self, width: u32, height: u32, refresh: u32) -> bool {
        (width, height) == (self.width, self.height) && self.refresh.is_none_or(|r| r == refresh)
    }
}

impl FromStr for ModeRequest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (size, refresh) = match text.split_once('@') {
            Some((size, hz)) => match hz.parse::<u32>() {
                Ok(hz @ 1..=1000) => (size, Some(hz)),
                _ => return Err(format!("`{hz}` in `{text}` is not a refresh rate in Hz")),
            },
            None => (text, None),
        };
        let ScreenSize { width, height } = size.parse()?;
        Ok(Self {
            width,
            height,
            refresh,
        })
    }
}

impl fmt::Display for ModeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)?;
        match self.refresh {
            Some(hz) => write!(f, "@{hz}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn addr(host: &str, port: u16) -> ServerAddr {
        ServerAddr {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn server_addresses() {
        assert_eq!("srv".parse(), Ok(addr("srv", DEFAULT_PORT)));
        assert_eq!("srv:9000".parse(), Ok(addr("srv", 9000)));
        assert_eq!("10.0.0.1:1".parse(), Ok(addr("10.0.0.1", 1)));
        assert_eq!("[::1]:9000".parse(), Ok(addr("::1", 9000)));
        assert_eq!("[::1]".parse(), Ok(addr("::1", DEFAULT_PORT)));
        assert_eq!("fe80::1".parse(), Ok(addr("fe80::1", DEFAULT_PORT)));
        assert_eq!(addr("::1", 9000).to_string(), "[::1]:9000");
        for bad in [
            "",
            ":7390",
            "srv:port",
            "srv:70000",
            "[::1",
            "[::1]x",
            "[]:1",
        ] {
            assert!(bad.parse::<ServerAddr>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn screen_sizes() {
        assert_eq!(
            "1920x1080".parse(),
            Ok(ScreenSize {
                width: 1920,
                height: 1080
            })
        );
        for bad in ["1920", "0x100", "100x0", "x", "100x99999", "-1x5"] {
            assert!(bad.parse::<ScreenSize>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn physical_sizes() {
        assert_eq!(
            "597x336".parse(),
            Ok(PhysicalSizeArg(PhysicalSize {
                width_mm: 597,
                height_mm: 336
            }))
        );
        for bad in ["597", "0x336", "597x0", "x", "99999x1", "-1x5", "1.5x2"] {
            assert!(bad.parse::<PhysicalSizeArg>().is_err(), "{bad:?} accepted");
        }
        let cli = Cli::try_parse_from(["wrclient", "--server", "srv"]).unwrap();
        assert_eq!(Config::resolve(cli).unwrap().physical_size, None);
        let cli =
            Cli::try_parse_from(["wrclient", "--server", "srv", "--physical-size", "597x336"])
                .unwrap();
        assert_eq!(
            Config::resolve(cli).unwrap().physical_size,
            PhysicalSize::known(597, 336)
        );
    }

    #[test]
    fn defaults_apply_and_help_states_them() {
        let cli = Cli::try_parse_from(["wrclient", "--server", "srv"]).unwrap();
        let config = Config::resolve(cli).unwrap();
        assert_eq!(config.server, addr("srv", DEFAULT_PORT));
        assert_eq!(config.server_name, DEFAULT_SERVER_NAME);
        assert_eq!(config.state_dir, Path::new(DEFAULT_STATE_DIR));
        assert_eq!(config.screen, DEFAULT_SCREEN);

        // The help text spells the defaults out by hand; keep it honest.
        let help = Cli::command().render_long_help().to_string();
        for default in [
            DEFAULT_PORT.to_string(),
            DEFAULT_SERVER_NAME.to_owned(),
            DEFAULT_STATE_DIR.to_owned(),
            DEFAULT_SCREEN.to_string(),
        ] {
            assert!(help.contains(&default), "help does not mention {default}");
        }
    }

    #[test]
    fn command_line_beats_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wrclient.toml");
        std::fs::write(
            &path,
            "server = \"filehost:1234\"\nscreen = \"640x480\"\nstate-dir = \"/tmp/x\"\n",
        )
        .unwrap();
        let path_arg = path.to_str().unwrap();

        let cli = Cli::try_parse_from(["wrclient", "--config", path_arg]).unwrap();
        let config = Config::resolve(cli).unwrap();
        assert_eq!(config.server, addr("filehost", 1234));
        assert_eq!(config.screen.to_string(), "640x480");
        assert_eq!(config.state_dir, Path::new("/tmp/x"));

        let cli = Cli::try_parse_from([
            "wrclient", "--config", path_arg, "--server", "cli", "--screen", "800x600",
        ])
        .unwrap();
        let config = Config::resolve(cli).unwrap();
        assert_eq!(config.server, addr("cli", DEFAULT_PORT));
        assert_eq!(config.screen.to_string(), "800x600");
    }

    #[test]
    fn config_file_errors_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wrclient.toml");
        std::fs::write(&path, "screen = \"big\"\nserver = \"s\"\n").unwrap();
        let cli = Cli::try_parse_from(["wrclient", "--config", path.to_str().unwrap()]).unwrap();
        let err = Config::resolve(cli).unwrap_err().to_string();
        assert!(
            err.contains("screen") && err.contains("wrclient.toml"),
            "{err}"
        );

        std::fs::write(&path, "sever = \"typo\"\n").unwrap();
        let cli = Cli::try_parse_from(["wrclient", "--config", path.to_str().unwrap()]).unwrap();
        assert!(matches!(
            Config::resolve(cli),
            Err(ConfigError::Parse { .. })
        ));

        let cli = Cli::try_parse_from(["wrclient"]).unwrap();
        assert!(matches!(Config::resolve(cli), Err(ConfigError::NoServer)));
    }

    #[test]
    fn example_config_file_is_valid_and_states_the_defaults() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/wrclient.example.toml");
        let cli = Cli::try_parse_from(["wrclient", "--config", example]).unwrap();
        let config = Config::resolve(cli).unwrap();
        assert_eq!(config.server, addr("wayray.example.net", DEFAULT_PORT));
        assert_eq!(config.server_name, DEFAULT_SERVER_NAME);
        assert_eq!(config.state_dir, Path::new(DEFAULT_STATE_DIR));
        assert_eq!(config.screen, DEFAULT_SCREEN);
        assert_eq!(config.audio.device, crate::audio::DEFAULT_DEVICE);
        assert!(config.audio.enabled);
    }

    #[test]
    fn input_choice() {
        let dev = || vec![PathBuf::from("/dev/input/event3")];
        let script = || Some(PathBuf::from("demo.script"));
        let libinput = |devices, required| InputChoice::Libinput { devices, required };
        assert_eq!(
            choose_input(None, script(), vec![], true).unwrap(),
            InputChoice::Script("demo.script".into())
        );
        assert_eq!(
            choose_input(Some(InputKind::Script), script(), vec![], false).unwrap(),
            InputChoice::Script("demo.script".into())
        );
        assert_eq!(
            choose_input(None, None, vec![], true).unwrap(),
            libinput(vec![], false)
        );
        assert_eq!(
            choose_input(None, None, vec![], false).unwrap(),
            InputChoice::None
        );
        assert_eq!(
            choose_input(None, None, dev(), false).unwrap(),
            libinput(dev(), true)
        );
        assert_eq!(
            choose_input(Some(InputKind::Libinput), None, vec![], false).unwrap(),
            libinput(vec![], true)
        );
        assert!(matches!(
            choose_input(Some(InputKind::Libinput), script(), vec![], true),
            Err(ConfigError::InputConflict("libinput"))
        ));
        assert!(matches!(
            choose_input(Some(InputKind::Script), None, vec![], true),
            Err(ConfigError::NoInputScript)
        ));
        assert!(matches!(
            choose_input(Some(InputKind::None), None, dev(), true),
            Err(ConfigError::DevicesWithoutLibinput("none"))
        ));
        assert!(matches!(
            choose_input(None, script(), dev(), true),
            Err(ConfigError::DevicesWithoutLibinput("script"))
        ));
    }

    #[test]
    fn keyboard_and_input_from_the_config_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wrclient.toml");
        std::fs::write(
            &path,
            "server = \"s\"\nxkb-layout = \"de\"\nxkb-variant = \"nodeadkeys\"\nxkb-options = \"ctrl:nocaps\"\ninput = \"libinput\"\ninput-device = [\"/dev/input/event1\"]\n",
        )
        .unwrap();
        let path_arg = path.to_str().unwrap();
        let cli = Cli::try_parse_from(["wrclient", "--config", path_arg]).unwrap();
        let config = Config::resolve(cli).unwrap();
        assert_eq!(config.xkb.layout.as_deref(), Some("de"));
        assert_eq!(config.xkb.variant.as_deref(), Some("nodeadkeys"));
        assert_eq!(config.xkb.model, None);
        assert_eq!(
            config.input,
            InputChoice::Libinput {
                devices: vec!["/dev/input/event1".into()],
                required: true
            }
        );

        let cli = Cli::try_parse_from([
            "wrclient",
            "--config",
            path_arg,
            "--xkb-layout",
            "fr",
            "--input",
            "none",
            "--input-device",
            "/dev/input/event2",
        ])
        .unwrap();
        assert!(matches!(
            Config::resolve(cli),
            Err(ConfigError::DevicesWithoutLibinput("none"))
        ));
        // An input flag overrides the file's input settings as a whole.
        let cli = Cli::try_parse_from([
            "wrclient",
            "--config",
            path_arg,
            "--xkb-layout",
            "fr",
            "--input-script",
            "x.script",
        ])
        .unwrap();
        let config = Config::resolve(cli).unwrap();
        assert_eq!(config.input, InputChoice::Script("x.script".into()));
        assert_eq!(config.xkb.layout.as_deref(), Some("fr"));
        assert_eq!(
            config.xkb.variant, None,
            "de's variant must not stick to fr"
        );
        assert_eq!(config.xkb.options.as_deref(), Some("ctrl:nocaps"));

        std::fs::write(&path, "server = \"s\"\ninput = \"mouse\"\n").unwrap();
        let cli = Cli::try_parse_from(["wrclient", "--config", path_arg]).unwrap();
        let err = Config::resolve(cli).unwrap_err().to_string();
        assert!(err.contains("`input`"), "{err}");
    }

    #[test]
    fn display_choice() {
        let resolve = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(["wrclient", "--server", "s"].iter().chain(args)).unwrap();
            Config::resolve(cli)
        };
        assert_eq!(resolve(&[]).unwrap().display, DisplayChoice::Headless);
        assert_eq!(
            resolve(&["--display", "drm"]).unwrap().display,
            DisplayChoice::Drm {
                card: DEFAULT_CARD.into(),
                mode: None
            }
        );
        let mode = ModeRequest {
            width: 1024,
            height: 768,
            refresh: Some(60),
        };
        assert_eq!(
            resolve(&["--card", "/dev/dri/card1", "--mode", "1024x768@60"])
                .unwrap()
                .display,
            DisplayChoice::Drm {
                card: "/dev/dri/card1".into(),
                mode: Some(mode)
            }
        );
        assert!(matches!(
            resolve(&["--display", "headless", "--mode", "1024x768"]),
            Err(ConfigError::DrmOptionsWithoutDrm)
        ));
        assert_eq!(mode.to_string(), "1024x768@60");
        assert!(mode.matches(1024, 768, 60) && !mode.matches(1024, 768, 75));
        let any_rate: ModeRequest = "800x600".parse().unwrap();
        assert!(any_rate.matches(800, 600, 75) && !any_rate.matches(600, 800, 75));
        for bad in ["800x600@", "800x600@0", "800@60", "800x600@fast"] {
            assert!(bad.parse::<ModeRequest>().is_err(), "{bad:?} accepted");
        }
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains(DEFAULT_CARD));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wrclient.toml");
        std::fs::write(
            &path,
            "server = \"s\"\ndisplay = \"drm\"\nmode = \"640x480\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from(["wrclient", "--config", path.to_str().unwrap()]).unwrap();
        assert!(matches!(
            Config::resolve(cli).unwrap().display,
            DisplayChoice::Drm {
                mode: Some(ModeRequest { width: 640, .. }),
                ..
            }
        ));
        std::fs::write(&path, "server = \"s\"\ndisplay = \"fb\"\n").unwrap();
        let cli = Cli::try_parse_from(["wrclient", "--config", path.to_str().unwrap()]).unwrap();
        let err = Config::resolve(cli).unwrap_err().to_string();
        assert!(err.contains("`display`"), "{err}");
    }

    #[test]
    fn audio_flags_and_file() {
        let resolve = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(["wrclient", "--server", "s"].iter().chain(args)).unwrap();
            Config::resolve(cli).unwrap().audio
        };
        assert_eq!(resolve(&[]), crate::audio::AudioConfig::default());
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("[default: default]"));
        let audio = resolve(&["--audio-device", "hw:1"]);
        assert_eq!(
            (audio.device.as_str(), audio.microphone_device.as_str()),
            ("hw:1", "hw:1")
        );
        let audio = resolve(&["--audio-device", "hw:1", "--microphone-device", "hw:2"]);
        assert_eq!(audio.microphone_device, "hw:2");
        assert!(!resolve(&["--no-audio"]).enabled);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wrclient.toml");
        std::fs::write(
            &path,
            "server = \"s\"\naudio-device = \"plughw:0\"\naudio-out-wav = \"/tmp/o.wav\"\nno-audio = true\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from(["wrclient", "--config", path.to_str().unwrap()]).unwrap();
        let audio = Config::resolve(cli).unwrap().audio;
        assert_eq!(audio.device, "plughw:0");
        assert_eq!(audio.microphone_device, "plughw:0");
        assert_eq!(audio.out_wav.as_deref(), Some(Path::new("/tmp/o.wav")));
        assert!(!audio.enabled);
    }

    #[test]
    fn usb_forwarding_is_on_unless_the_flag_or_file_says_no() {
        let resolve = |args: &[&str]| {
            let mut argv = vec!["wrclient", "--server", "s"];
            argv.extend_from_slice(args);
            Config::resolve(Cli::try_parse_from(argv).unwrap())
                .unwrap()
                .usb
        };
        assert!(resolve(&[]).enabled);
        assert!(!resolve(&["--no-usb"]).enabled);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wrclient.toml");
        std::fs::write(&path, "no-usb = true\n").unwrap();
        assert!(!resolve(&["--config", path.to_str().unwrap()]).enabled);
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--no-usb"));
    }

    #[test]
    fn exit_after_takes_fractional_seconds() {
        let cli =
            Cli::try_parse_from(["wrclient", "--server", "s", "--exit-after", "1.5"]).unwrap();
        assert_eq!(cli.exit_after, Some(Duration::from_millis(1500)));
        assert!(Cli::try_parse_from(["wrclient", "--exit-after", "-1"]).is_err());
        assert!(Cli::try_parse_from(["wrclient", "--exit-after-frames", "0"]).is_err());
    }
}
