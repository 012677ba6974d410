//! Input: where key, pointer and touch events come from ([`InputSource`]: a script, or real
//! devices through libinput, one file each) and how they become wire messages ([`Input::route`]),
//! moving the local pointer on the way.
//!
//! Sources run on their own task or thread and send [`InputEvent`]s into a channel; the
//! connection loop drains it next to the network, so a key release never waits behind a frame.

use std::sync::OnceLock;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use wayray_protocol::{InputMessage, Keymap};

use crate::config::InputChoice;
use crate::keymap::Layout;
use crate::pointer::{Pointer, Position};
use crate::report::error_chain;

pub mod keys;
#[cfg(feature = "libinput")]
pub mod libinput;
pub mod script;
pub mod typing;

/// Events a source may have queued before the appliance takes them. A bound, so a stalled
/// connection loop makes a source wait instead of piling up memory.
const EVENT_QUEUE: usize = 256;

/// What a source reports. Positions and relative motion stay device-level here because only the
/// appliance knows the output size and where its pointer is.
#[derive(Debug, Clone, PartialEq)]
pub enum InputEvent {
    /// Goes to the server as it is (keys, buttons, scrolling, touch frames, keymap changes).
    Message(InputMessage),
    /// A mouse moved: the pointer moves by this much (stopping at the output's edges).
    PointerRelative {
        time_ms: u32,
        dx: f64,
        dy: f64,
        dx_unaccel: f64,
        dy_unaccel: f64,
    },
    /// The pointer jumps to a position (tablets, VM tablets, scripts).
    PointerAbsolute { time_ms: u32, at: Position },
    TouchDown {
        time_ms: u32,
        slot: u32,
        at: Position,
    },
    TouchMotion {
        time_ms: u32,
        slot: u32,
        at: Position,
    },
    /// As if a `width`×`height` monitor replaced the screen (a script's `screen`, for tests):
    /// not input, but it must happen in order with the script's input.
    SimulateHotplug { width: u32, height: u32 },
    /// The source is done and the appliance should exit (a script's `exit`).
    Exit,
}

pub type EventSender = mpsc::Sender<InputEvent>;

/// What a source may want to know about the session; scripts pace themselves by it.
#[derive(Debug, Clone)]
pub struct Feedback {
    /// Frames presented so far.
    pub frames: watch::Receiver<u64>,
    /// Whether a server has welcomed the appliance and takes input now.
    pub connected: watch::Receiver<bool>,
}

/// Something that produces input events: real devices or a script.
pub trait InputSource: Send {
    /// Starts delivering events to `events` from the source's own task or thread, and returns.
    /// Called inside the tokio runtime. The source stops when `events` is closed.
    fn start(self: Box<Self>, events: EventSender, feedback: Feedback);
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Script(#[from] script::ScriptError),
    #[cfg(feature = "libinput")]
    #[error(transparent)]
    Libinput(#[from] libinput::LibinputError),
    #[cfg(not(feature = "libinput"))]
    #[error("this wrclient was built without libinput (cargo feature `libinput`): use --input-script or --input none")]
    NoLibinput,
}

/// Opens the source `choice` names. `keyboard` is the layout a script types with until it
/// switches. Devices nobody asked for explicitly may be missing: then the appliance shows the
/// session without input.
pub fn open_source(
    choice: &InputChoice,
    keyboard: &Layout,
) -> Result<Option<Box<dyn InputSource>>, InputError> {
    match choice {
        InputChoice::None => Ok(None),
        InputChoice::Script(path) => {
            Ok(Some(Box::new(script::ScriptSource::load(path, keyboard)?)))
        }
        InputChoice::Libinput { devices, required } => match open_libinput(devices.clone()) {
            Ok(source) => Ok(Some(source)),
            Err(e) if !*required => {
                tracing::warn!(error = %error_chain(&e), "no input devices; continuing without input");
                Ok(None)
            }
            Err(e) => Err(e),
        },
    }
}

#[cfg(feature = "libinput")]
fn open_libinput(devices: Vec<std::path::PathBuf>) -> Result<Box<dyn InputSource>, InputError> {
    Ok(Box::new(libinput::LibinputSource::open(devices)?))
}

#[cfg(not(feature = "libinput"))]
fn open_libinput(_devices: Vec<std::path::PathBuf>) -> Result<Box<dyn InputSource>, InputError> {
    Err(InputError::NoLibinput)
}

/// Milliseconds on a monotonic clock, for the `time_ms` of events that have no device time.
pub fn now_ms() -> u32 {
    static START: OnceLock<Instant> = OnceLock::new();
    // Wraps after 49 days, as the u32 times of wl_keyboard and libinput do.
    START.get_or_init(Instant::now).elapsed().as_millis() as u32
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send `messages` in order; `pointer` is the pointer's new position if it moved.
    Send {
        messages: Vec<InputMessage>,
        pointer: Option<(f64, f64)>,
    },
    /// Pretend a `width`×`height` monitor replaced the screen, and follow it as a hotplug.
    SimulateHotplug { width: u32, height: u32 },
    /// The source asked the appliance to exit.
    Exit,
}

/// The appliance's input: events from its sources, the local pointer, and the keymap the
/// server must use (re-sent in every Hello, so a reconnect keeps the layout).
pub struct Input {
    events: mpsc::Receiver<InputEvent>,
    pointer: Pointer,
    keymap: Keymap,
    connected: watch::Sender<bool>,
    sender: Option<EventSender>,
}

impl Input {
    /// No source yet; the pointer starts in the middle of a `width`×`height` output.
    pub fn new(keymap: Keymap, width: u32, height: u32) -> Self {
        let (sender, events) = mpsc::channel(EVENT_QUEUE);
        Self {
            events,
            pointer: Pointer::centred(width, height),
            keymap,
            connected: watch::Sender::new(false),
            sender: Some(sender),
        }
    }

    /// Starts `source` (inside the runtime); `frames` counts the frames presented. Without a
    /// source, `next` simply never returns.
    pub fn start(&mut self, source: Option<Box<dyn InputSource>>, frames: watch::Receiver<u64>) {
        let sender = self.sender.take();
        if let (Some(source), Some(sender)) = (source, sender) {
            source.start(
                sender,
                Feedback {
                    frames,
                    connected: self.connected.subscribe(),
                },
            );
        }
    }

    /// The next event. Cancel-safe, so it can sit in a `select!`; pending forever once every
    /// source has ended.
    pub async fn next(&mut self) -> InputEvent {
        match self.events.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        }
    }

    /// The keymap to announce in Hello: the latest one any source switched to.
    pub fn keymap(&self) -> &Keymap {
        &self.keymap
    }

    pub fn pointer(&self) -> (f64, f64) {
        self.pointer.position()
    }

    /// The session output changed size. Returns the pointer's new position if it had to move.
    pub fn set_output(&mut self, width: u32, height: u32) -> Option<(f64, f64)> {
        self.pointer
            .set_output(width, height)
            .then(|| self.pointer.position())
    }

    /// Tells sources whether a server takes input now.
    pub fn set_connected(&self, connected: bool) {
        self.connected.send_replace(connected);
    }

    /// Turns an event into the messages for the server, moving the local pointer.
    pub fn route(&mut self, event: InputEvent) -> Action {
        let (messages, pointer) = match event {
            InputEvent::Exit => return Action::Exit,
            InputEvent::SimulateHotplug { width, height } => {
                return Action::SimulateHotplug { width, height }
            }
            InputEvent::Message(message) => {
                if let InputMessage::Keymap(keymap) = &message {
                    self.keymap = keymap.clone();
                }
                (vec![message], None)
            }
            InputEvent::PointerRelative {
                time_ms,
                dx,
                dy,
                dx_unaccel,
                dy_unaccel,
            } => {
                let (x, y) = self.pointer.move_by(dx, dy);
                (
                    vec![
                        InputMessage::PointerRelative {
                            time_ms,
                            dx,
                            dy,
                            dx_unaccel,
                            dy_unaccel,
                        },
                        InputMessage::PointerMotion { time_ms, x, y },
                    ],
                    Some((x, y)),
                )
            }
            InputEvent::PointerAbsolute { time_ms, at } => {
                let (x, y) = self.pointer.move_to(at);
                (
                    vec![InputMessage::PointerMotion { time_ms, x, y }],
                    Some((x, y)),
                )
            }
            InputEvent::TouchDown { time_ms, slot, at } => {
                let (x, y) = self.pointer.place(at);
                (
                    vec![InputMessage::TouchDown {
                        time_ms,
                        slot,
                        x,
                        y,
                    }],
                    None,
                )
            }
            InputEvent::TouchMotion { time_ms, slot, at } => {
                let (x, y) = self.pointer.place(at);
                (
                    vec![InputMessage::TouchMotion {
                        time_ms,
                        slot,
                        x,
                        y,
                    }],
                    None,
                )
            }
        };
        Action::Send { messages, pointer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Input {
        let keymap = Keymap {
            text: "us keymap".into(),
            layout: "us".into(),
        };
        Input::new(keymap, 100, 50)
    }

    #[test]
    fn relative_motion_moves_the_pointer_and_reports_both() {
        let mut input = input();
        let action = input.route(InputEvent::PointerRelative {
            time_ms: 5,
            dx: 100.0,
            dy: -3.0,
            dx_unaccel: 50.0,
            dy_unaccel: -1.5,
        });
        assert_eq!(
            action,
            Action::Send {
                messages: vec![
                    InputMessage::PointerRelative {
                        time_ms: 5,
                        dx: 100.0,
                        dy: -3.0,
                        dx_unaccel: 50.0,
                        dy_unaccel: -1.5
                    },
                    InputMessage::PointerMotion {
                        time_ms: 5,
                        x: 99.0,
                        y: 22.0
                    },
                ],
                pointer: Some((99.0, 22.0)),
            }
        );
    }

    #[test]
    fn touch_is_placed_on_the_output_without_moving_the_pointer() {
        let mut input = input();
        let action = input.route(InputEvent::TouchDown {
            time_ms: 1,
            slot: 2,
            at: Position::Fraction { x: 0.5, y: 2.0 },
        });
        assert_eq!(
            action,
            Action::Send {
                messages: vec![InputMessage::TouchDown {
                    time_ms: 1,
                    slot: 2,
                    x: 50.0,
                    y: 49.0
                }],
                pointer: None,
            }
        );
        assert_eq!(input.pointer(), (50.0, 25.0));
    }

    #[test]
    fn a_keymap_change_is_kept_for_the_next_hello() {
        let mut input = input();
        let de = Keymap {
            text: "de keymap".into(),
            layout: "de".into(),
        };
        input.route(InputEvent::Message(InputMessage::Keymap(de.clone())));
        assert_eq!(input.keymap(), &de);
        assert_eq!(input.route(InputEvent::Exit), Action::Exit);
    }

    #[test]
    fn a_pretend_hotplug_is_no_input() {
        let mut input = input();
        let event = InputEvent::SimulateHotplug {
            width: 640,
            height: 480,
        };
        assert_eq!(
            input.route(event),
            Action::SimulateHotplug {
                width: 640,
                height: 480
            }
        );
        // The pointer follows the session's output, not the screen: it moves with the next frame.
        assert_eq!(input.pointer(), (50.0, 25.0));
    }
}
