//! A scripted input source (`--input-script PATH`) for tests, demos and benchmarks: a text file
//! of key, pointer and touch commands, replayed once a server has welcomed the appliance (events
//! before that would be dropped).
//!
//! One command per line; blank lines and lines starting with `#` are ignored:
//!
//! | command | effect |
//! | --- | --- |
//! | `wait MS` | sleep MS milliseconds |
//! | `wait-frame` | wait until the next frame from the server has been presented |
//! | `keymap LAYOUT [VARIANT]` | switch layout (rules evdev, model pc105), send it to the server |
//! | `type TEXT` | type the rest of the line (after one space) with the current layout |
//! | `type-delay MS` | pause between the characters of `type` (default 10) |
//! | `key NAME`, `press NAME`, `release NAME` | evdev key (`enter`, `f4`, `leftalt`, `a`…) |
//! | `combo MOD+…+KEY` | e.g. `alt+f4`: modifiers down in order, key, modifiers up in reverse |
//! | `move X Y` | pointer to output pixel (X, Y) |
//! | `rel DX DY` | relative pointer motion |
//! | `button left\|right\|middle down\|up`, `click NAME` | mouse buttons |
//! | `scroll DX DY` | wheel scroll in v120 units (`scroll 0 120`: one detent down) |
//! | `scroll-finger DX DY`, `scroll-stop` | touchpad scrolling in pixels, and its end |
//! | `touch down SLOT X Y`, `touch move SLOT X Y`, `touch up SLOT`, `touch frame`, `touch cancel` | touch |
//! | `screen WIDTHxHEIGHT` | as if a monitor of that size replaced the screen (headless display only): the same rescan as a real hotplug, so the appliance sends the server `ScreenChanged` and later Hellos carry the size |
//! | `exit` | say goodbye to the server and exit 0 |
//!
//! A scroll axis given as 0 carries no motion (value 0, no v120), so `scroll 0 120` is a purely
//! vertical scroll. The whole script is checked when it is loaded, so a typo or a character the
//! layout cannot type fails at startup with its line number instead of halfway through a demo.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wayray_protocol::input::{MAX_EVDEV_CODE, MAX_TOUCH_SLOT};
use wayray_protocol::{AxisSource, AxisValue, InputMessage, Keymap};

use super::keys;
use super::{now_ms, EventSender, Feedback, InputEvent, InputSource};
use crate::config::ScreenSize;
use crate::keymap::{Layout, Rmlvo};
use crate::pointer::Position;

/// Pause between typed characters unless `type-delay` says otherwise: fast, yet slow enough for
/// a client that handles one key per frame.
pub const DEFAULT_TYPE_DELAY: Duration = Duration::from_millis(10);
/// What one wheel detent (120 v120 units) scrolls, in pixels, as libinput reports a click.
const WHEEL_DETENT_PIXELS: f64 = 15.0;
/// The protocol's bound on one scroll event.
const MAX_V120: i32 = 120 * 100;

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read input script {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("input script {}, line {line}: {reason}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// A mistake on one line of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LineError {
    line: usize,
    reason: String,
}

/// A loaded, checked script.
pub struct ScriptSource {
    path: PathBuf,
    steps: Vec<Step>,
}

impl ScriptSource {
    /// Reads and checks the script. `keyboard` is the layout `type` uses until a `keymap`
    /// command switches it (the one the appliance announces in Hello).
    pub fn load(path: &Path, keyboard: &Layout) -> Result<Self, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.to_owned(),
            source,
        })?;
        let steps = compile(&text, keyboard).map_err(|e| ScriptError::Line {
            path: path.to_owned(),
            line: e.line,
            reason: e.reason,
        })?;
        Ok(Self {
            path: path.to_owned(),
            steps,
        })
    }
}

impl InputSource for ScriptSource {
    fn start(self: Box<Self>, events: EventSender, feedback: Feedback) {
        tokio::spawn(replay(self.path, self.steps, events, feedback));
    }
}

async fn replay(path: PathBuf, steps: Vec<Step>, events: EventSender, feedback: Feedback) {
    let Feedback {
        mut frames,
        mut connected,
    } = feedback;
    if connected.wait_for(|connected| *connected).await.is_err() {
        return;
    }
    tracing::info!(path = %path.display(), "input script started");
    for step in steps {
        match step {
            Step::Emit(op) => {
                if events.send(op.event(now_ms())).await.is_err() {
                    return;
                }
            }
            Step::Sleep(duration) => {
                wayray_transport::sleep_until(std::time::Instant::now() + duration).await
            }
            Step::WaitFrame => {
                frames.borrow_and_update();
                if frames.changed().await.is_err() {
                    return;
                }
            }
            Step::Exit => {
                tracing::info!(path = %path.display(), "input script says exit");
                let _ = events.send(InputEvent::Exit).await;
                return;
            }
        }
    }
    tracing::info!(path = %path.display(), "input script finished");
}

/// What a script does, one step at a time; timestamps are taken when a step runs.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Emit(Op),
    Sleep(Duration),
    WaitFrame,
    Exit,
}

/// One input event without its time.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Keymap(Keymap),
    Key { keycode: u32, pressed: bool },
    Move { x: f64, y: f64 },
    Rel { dx: f64, dy: f64 },
    Button { button: u32, pressed: bool },
    Wheel { dx: i32, dy: i32 },
    Finger { dx: f64, dy: f64 },
    FingerStop,
    TouchDown { slot: u32, x: f64, y: f64 },
    TouchMotion { slot: u32, x: f64, y: f64 },
    TouchUp { slot: u32 },
    TouchFrame,
    TouchCancel,
    Screen { width: u32, height: u32 },
}

impl Op {
    fn event(self, time_ms: u32) -> InputEvent {
        let message = match self {
            Op::Keymap(keymap) => InputMessage::Keymap(keymap),
            Op::Key { keycode, pressed } => InputMessage::Key {
                time_ms,
                keycode,
                pressed,
            },
            Op::Move { x, y } => {
                return InputEvent::PointerAbsolute {
                    time_ms,
                    at: Position::Pixels { x, y },
                }
            }
            Op::Rel { dx, dy } => {
                return InputEvent::PointerRelative {
                    time_ms,
                    dx,
                    dy,
                    dx_unaccel: dx,
                    dy_unaccel: dy,
                }
            }
            Op::Button { button, pressed } => InputMessage::PointerButton {
                time_ms,
                button,
                pressed,
            },
            Op::Wheel { dx, dy } => {
                let axis = |v120: i32| match v120 {
                    0 => AxisValue::default(),
                    _ => AxisValue {
                        value: f64::from(v120) / 120.0 * WHEEL_DETENT_PIXELS,
                        v120: Some(v120),
                        stop: false,
                    },
                };
                InputMessage::PointerAxis {
                    time_ms,
                    source: AxisSource::Wheel,
                    horizontal: axis(dx),
                    vertical: axis(dy),
                }
            }
            Op::Finger { dx, dy } => {
                let axis = |value: f64| AxisValue {
                    value,
                    v120: None,
                    stop: false,
                };
                InputMessage::PointerAxis {
                    time_ms,
                    source: AxisSource::Finger,
                    horizontal: axis(dx),
                    vertical: axis(dy),
                }
            }
            Op::FingerStop => {
                let stop = AxisValue {
                    value: 0.0,
                    v120: None,
                    stop: true,
                };
                InputMessage::PointerAxis {
                    time_ms,
                    source: AxisSource::Finger,
                    horizontal: stop,
                    vertical: stop,
                }
            }
            Op::TouchDown { slot, x, y } => {
                return InputEvent::TouchDown {
                    time_ms,
                    slot,
                    at: Position::Pixels { x, y },
                }
            }
            Op::TouchMotion { slot, x, y } => {
                return InputEvent::TouchMotion {
                    time_ms,
                    slot,
                    at: Position::Pixels { x, y },
                }
            }
            Op::TouchUp { slot } => InputMessage::TouchUp { time_ms, slot },
            Op::TouchFrame => InputMessage::TouchFrame,
            Op::TouchCancel => InputMessage::TouchCancel,
            Op::Screen { width, height } => return InputEvent::SimulateHotplug { width, height },
        };
        InputEvent::Message(message)
    }
}

/// Turns script text into steps, resolving key names and typed characters on the way.
fn compile(text: &str, keyboard: &Layout) -> Result<Vec<Step>, LineError> {
    let mut steps = Vec::new();
    let mut layout = keyboard.clone();
    let mut type_delay = DEFAULT_TYPE_DELAY;
    for (index, line) in text.lines().enumerate() {
        let at_line = |reason: String| LineError {
            line: index + 1,
            reason,
        };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (command, rest) = match line.find(char::is_whitespace) {
            Some(end) => (&line[..end], &line[end..]),
            None => (line, ""),
        };
        if command == "type" {
            // Verbatim after the one separating space, so leading and trailing spaces type too.
            let mut text = rest.chars();
            text.next();
            let text = text.as_str();
            if text.is_empty() {
                return Err(at_line("`type` needs text to type".into()));
            }
            type_text(&mut steps, text, &layout, type_delay).map_err(at_line)?;
            continue;
        }
        let args: Vec<&str> = rest.split_whitespace().collect();
        parse_command(command, &args, &mut steps, &mut layout, &mut type_delay).map_err(at_line)?;
    }
    Ok(steps)
}

fn parse_command(
    command: &str,
    args: &[&str],
    steps: &mut Vec<Step>,
    layout: &mut Layout,
    type_delay: &mut Duration,
) -> Result<(), String> {
    let emit = |steps: &mut Vec<Step>, op| steps.push(Step::Emit(op));
    let key = |steps: &mut Vec<Step>, keycode, pressed| {
        steps.push(Step::Emit(Op::Key { keycode, pressed }))
    };
    match (command, args) {
        ("wait", [ms]) => steps.push(Step::Sleep(millis(ms)?)),
        ("wait-frame", []) => steps.push(Step::WaitFrame),
        ("type-delay", [ms]) => *type_delay = millis(ms)?,
        ("keymap", [name]) | ("keymap", [name, _]) => {
            let variant = args.get(1).copied().unwrap_or("");
            *layout = Layout::compile(&Rmlvo::layout(name, variant)).map_err(|e| e.to_string())?;
            emit(steps, Op::Keymap(layout.wire.clone()));
        }
        ("key", [name]) => {
            let code = key_code(name)?;
            key(steps, code, true);
            key(steps, code, false);
        }
        ("press", [name]) => key(steps, key_code(name)?, true),
        ("release", [name]) => key(steps, key_code(name)?, false),
        ("combo", [combo]) => {
            let mut parts: Vec<&str> = combo.split('+').collect();
            let last = parts.pop().filter(|k| !k.is_empty());
            let Some(last) = last.filter(|_| !parts.is_empty()) else {
                return Err(format!("`{combo}` is not MODIFIER+…+KEY, e.g. alt+f4"));
            };
            let modifiers = parts
                .iter()
                .map(|m| keys::modifier_code(m).ok_or_else(|| format!("unknown modifier `{m}`")))
                .collect::<Result<Vec<_>, _>>()?;
            let code = key_code(last)?;
            for &m in &modifiers {
                key(steps, m, true);
            }
            key(steps, code, true);
            key(steps, code, false);
            for &m in modifiers.iter().rev() {
                key(steps, m, false);
            }
        }
        ("move", [x, y]) => emit(
            steps,
            Op::Move {
                x: coordinate(x)?,
                y: coordinate(y)?,
            },
        ),
        ("rel", [dx, dy]) => emit(
            steps,
            Op::Rel {
                dx: coordinate(dx)?,
                dy: coordinate(dy)?,
            },
        ),
        ("button", [name, edge]) => {
            let pressed = match *edge {
                "down" => true,
                "up" => false,
                _ => return Err(format!("`{edge}` is neither `down` nor `up`")),
            };
            emit(
                steps,
                Op::Button {
                    button: button_code(name)?,
                    pressed,
                },
            );
        }
        ("click", [name]) => {
            let button = button_code(name)?;
            emit(
                steps,
                Op::Button {
                    button,
                    pressed: true,
                },
            );
            emit(
                steps,
                Op::Button {
                    button,
                    pressed: false,
                },
            );
        }
        ("scroll", [dx, dy]) => emit(
            steps,
            Op::Wheel {
                dx: v120(dx)?,
                dy: v120(dy)?,
            },
        ),
        ("scroll-finger", [dx, dy]) => emit(
            steps,
            Op::Finger {
                dx: coordinate(dx)?,
                dy: coordinate(dy)?,
            },
        ),
        ("scroll-stop", []) => emit(steps, Op::FingerStop),
        ("touch", ["down", slot, x, y]) => emit(
            steps,
            Op::TouchDown {
                slot: touch_slot(slot)?,
                x: coordinate(x)?,
                y: coordinate(y)?,
            },
        ),
        ("touch", ["move", slot, x, y]) => emit(
            steps,
            Op::TouchMotion {
                slot: touch_slot(slot)?,
                x: coordinate(x)?,
                y: coordinate(y)?,
            },
        ),
        ("touch", ["up", slot]) => emit(
            steps,
            Op::TouchUp {
                slot: touch_slot(slot)?,
            },
        ),
        ("touch", ["frame"]) => emit(steps, Op::TouchFrame),
        ("touch", ["cancel"]) => emit(steps, Op::TouchCancel),
        ("screen", [size]) => {
            let ScreenSize { width, height } = size.parse()?;
            emit(steps, Op::Screen { width, height });
        }
        ("exit", []) => steps.push(Step::Exit),
        _ => return Err(usage(command)),
    }
    Ok(())
}

/// Presses and releases the keys that type `text` in `layout`, modifiers around each key.
fn type_text(
    steps: &mut Vec<Step>,
    text: &str,
    layout: &Layout,
    delay: Duration,
) -> Result<(), String> {
    for (i, c) in text.chars().enumerate() {
        let stroke = layout
            .chars
            .keystroke(c)
            .ok_or_else(|| format!("keymap {} has no key that types {c:?}", layout.wire.layout))?;
        if i > 0 && !delay.is_zero() {
            steps.push(Step::Sleep(delay));
        }
        let key = |keycode, pressed| Step::Emit(Op::Key { keycode, pressed });
        steps.extend(stroke.modifiers().map(|m| key(m, true)));
        steps.push(key(stroke.keycode, true));
        steps.push(key(stroke.keycode, false));
        steps.extend(stroke.modifiers().rev().map(|m| key(m, false)));
    }
    Ok(())
}

/// How a command is written, for an error on a line that uses it wrongly.
fn usage(command: &str) -> String {
    let form = match command {
        "wait" => "wait MS",
        "wait-frame" => "wait-frame",
        "type-delay" => "type-delay MS",
        "keymap" => "keymap LAYOUT [VARIANT]",
        "key" | "press" | "release" => "key|press|release NAME",
        "combo" => "combo MOD+…+KEY",
        "move" => "move X Y",
        "rel" => "rel DX DY",
        "button" => "button left|right|middle down|up",
        "click" => "click left|right|middle",
        "scroll" => "scroll DX DY",
        "scroll-finger" => "scroll-finger DX DY",
        "scroll-stop" => "scroll-stop",
        "touch" => {
            "touch down SLOT X Y | touch move SLOT X Y | touch up SLOT | touch frame | touch cancel"
        }
        "screen" => "screen WIDTHxHEIGHT",
        "exit" => "exit",
        _ => return format!("unknown command `{command}`"),
    };
    format!("expected `{form}`")
}

fn millis(text: &str) -> Result<Duration, String> {
    text.parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("`{text}` is not a number of milliseconds"))
}

fn coordinate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{text}` is not a number")),
    }
}

fn v120(text: &str) -> Result<i32, String> {
    match text.parse::<i32>() {
        Ok(v) if v.unsigned_abs() <= MAX_V120.unsigned_abs() => Ok(v),
        _ => Err(format!(
            "`{text}` is not a scroll amount in v120 units (120 per detent, at most {MAX_V120})"
        )),
    }
}

fn touch_slot(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(slot) if slot <= MAX_TOUCH_SLOT => Ok(slot),
        _ => Err(format!(
            "`{text}` is not a touch slot (0 to {MAX_TOUCH_SLOT})"
        )),
    }
}

fn key_code(name: &str) -> Result<u32, String> {
    keys::key_code(name)
        .filter(|&code| code <= MAX_EVDEV_CODE)
        .ok_or_else(|| format!("unknown key `{name}`"))
}

fn button_code(name: &str) -> Result<u32, String> {
    keys::button_code(name).ok_or_else(|| format!("unknown button `{name}` (left, right, middle)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Layout {
        Layout::compile(&Rmlvo::layout("us", "")).unwrap()
    }

    fn keys_of(steps: &[Step]) -> Vec<(u32, bool)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Emit(Op::Key { keycode, pressed }) => Some((*keycode, *pressed)),
                _ => None,
            })
            .collect()
    }

    fn ops(steps: Vec<Step>) -> Vec<Op> {
        steps
            .into_iter()
            .filter_map(|s| match s {
                Step::Emit(op) => Some(op),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn typing_follows_the_current_keymap() {
        let steps = compile("type yz\nkeymap de\n  # comment\n\ntype yz\n", &us()).unwrap();
        assert_eq!(
            keys_of(&steps),
            [
                (21, true),
                (21, false),
                (44, true),
                (44, false),
                (44, true),
                (44, false),
                (21, true),
                (21, false)
            ]
        );
        assert!(
            matches!(&steps[5], Step::Emit(Op::Keymap(k)) if k.layout == "de"),
            "{:?}",
            &steps[5]
        );
        // One pause between the two characters of each `type`.
        let sleeps = steps
            .iter()
            .filter(|s| **s == Step::Sleep(DEFAULT_TYPE_DELAY));
        assert_eq!(sleeps.count(), 2);
    }

    #[test]
    fn typing_holds_shift_and_altgr_around_the_key() {
        let steps = compile("type-delay 0\ntype A \nkeymap de nodeadkeys\ntype @", &us()).unwrap();
        assert_eq!(
            keys_of(&steps),
            [
                (42, true),
                (30, true),
                (30, false),
                (42, false),
                (57, true),
                (57, false),
                (100, true),
                (16, true),
                (16, false),
                (100, false),
            ]
        );
        assert!(!steps.iter().any(|s| matches!(s, Step::Sleep(_))));
    }

    #[test]
    fn keys_combos_and_buttons() {
        let steps = compile(
            "key Enter\npress leftshift\nrelease leftshift\ncombo ctrl+alt+f4\nclick right\nbutton middle down",
            &us(),
        )
        .unwrap();
        let ops = ops(steps);
        let key = |keycode, pressed| Op::Key { keycode, pressed };
        let button = |button, pressed| Op::Button { button, pressed };
        assert_eq!(
            ops,
            [
                key(28, true),
                key(28, false),
                key(42, true),
                key(42, false),
                key(29, true),
                key(56, true),
                key(62, true),
                key(62, false),
                key(56, false),
                key(29, false),
                button(0x111, true),
                button(0x111, false),
                button(0x112, true),
            ]
        );
    }

    #[test]
    fn pointer_scroll_and_touch_events() {
        let steps = compile(
            "wait 25\nwait-frame\nmove 10 20.5\nrel -3 4\nscroll 0 120\nscroll-finger 1.5 0\nscroll-stop\ntouch down 1 5 6\ntouch move 1 7 8\ntouch up 1\ntouch frame\ntouch cancel\nexit\n",
            &us(),
        )
        .unwrap();
        assert_eq!(steps[0], Step::Sleep(Duration::from_millis(25)));
        assert_eq!(steps[1], Step::WaitFrame);
        assert_eq!(steps.last(), Some(&Step::Exit));
        let events: Vec<InputEvent> = ops(steps).into_iter().map(|op| op.event(7)).collect();
        let finger = |value, stop| AxisValue {
            value,
            v120: None,
            stop,
        };
        assert_eq!(
            events,
            [
                InputEvent::PointerAbsolute {
                    time_ms: 7,
                    at: Position::Pixels { x: 10.0, y: 20.5 }
                },
                InputEvent::PointerRelative {
                    time_ms: 7,
                    dx: -3.0,
                    dy: 4.0,
                    dx_unaccel: -3.0,
                    dy_unaccel: 4.0
                },
                InputEvent::Message(InputMessage::PointerAxis {
                    time_ms: 7,
                    source: AxisSource::Wheel,
                    horizontal: AxisValue::default(),
                    vertical: AxisValue {
                        value: 15.0,
                        v120: Some(120),
                        stop: false
                    },
                }),
                InputEvent::Message(InputMessage::PointerAxis {
                    time_ms: 7,
                    source: AxisSource::Finger,
                    horizontal: finger(1.5, false),
                    vertical: finger(0.0, false),
                }),
                InputEvent::Message(InputMessage::PointerAxis {
                    time_ms: 7,
                    source: AxisSource::Finger,
                    horizontal: finger(0.0, true),
                    vertical: finger(0.0, true),
                }),
                InputEvent::TouchDown {
                    time_ms: 7,
                    slot: 1,
                    at: Position::Pixels { x: 5.0, y: 6.0 }
                },
                InputEvent::TouchMotion {
                    time_ms: 7,
                    slot: 1,
                    at: Position::Pixels { x: 7.0, y: 8.0 }
                },
                InputEvent::Message(InputMessage::TouchUp {
                    time_ms: 7,
                    slot: 1
                }),
                InputEvent::Message(InputMessage::TouchFrame),
                InputEvent::Message(InputMessage::TouchCancel),
            ]
        );
    }

    #[test]
    fn screen_pretends_a_monitor_swap() {
        let steps = compile("wait-frame\nscreen 640x480\n", &us()).unwrap();
        assert_eq!(steps[0], Step::WaitFrame);
        assert_eq!(
            ops(steps)
                .into_iter()
                .map(|op| op.event(7))
                .collect::<Vec<_>>(),
            [InputEvent::SimulateHotplug {
                width: 640,
                height: 480
            }]
        );
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let cases = [
            ("wait\n", 1, "wait MS"),
            ("\n# c\nwait soon\n", 3, "milliseconds"),
            ("key nosuchkey", 1, "unknown key `nosuchkey`"),
            ("combo f4", 1, "MODIFIER+"),
            ("combo hyper+f4", 1, "unknown modifier `hyper`"),
            ("type ok\ntype ß", 2, "has no key that types 'ß'"),
            ("type", 1, "needs text"),
            ("keymap no-such-layout", 1, "no-such-layout"),
            ("button left sideways", 1, "`sideways`"),
            ("click wheel", 1, "unknown button"),
            ("scroll 0 99999999", 1, "v120"),
            ("touch down 99 1 1", 1, "touch slot"),
            ("move 1 NaN", 1, "not a number"),
            ("teleport 1 2", 1, "unknown command `teleport`"),
            ("exit now", 1, "expected `exit`"),
            ("screen", 1, "expected `screen WIDTHxHEIGHT`"),
            ("screen big", 1, "`big` is not WIDTHxHEIGHT"),
            ("screen 0x480", 1, "between 1 and"),
        ];
        for (script, line, needle) in cases {
            let err = compile(script, &us()).unwrap_err();
            assert_eq!(err.line, line, "{script:?}: {err:?}");
            assert!(err.reason.contains(needle), "{script:?}: {err:?}");
        }
    }

    #[test]
    fn load_reports_the_path_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.script");
        std::fs::write(&path, "wait 1\nfly\n").unwrap();
        let err = ScriptSource::load(&path, &us()).err().unwrap().to_string();
        assert!(
            err.contains("demo.script") && err.contains("line 2"),
            "{err}"
        );
        let missing = ScriptSource::load(&dir.path().join("none"), &us());
        assert!(matches!(missing, Err(ScriptError::Read { .. })));
    }
}
