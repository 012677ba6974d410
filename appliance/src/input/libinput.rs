//! Real input devices through libinput: keyboards, mice, touchpads, VM tablets and touch screens.
//!
//! Devices come from one of three places, tried in this order:
//! - `--input-device PATH` (repeatable): exactly those, opened directly (root, or the `input`
//!   group);
//! - the seat, through libseat (logind or seatd), with udev finding the devices: the normal case
//!   for an appliance that does not run as root;
//! - as root without a seat manager (a minimal appliance image): every /dev/input/event*, since
//!   without udevd libinput's udev backend would find devices but not know what they are.
//!
//! libinput's context cannot move between threads, so it lives on a thread of its own, which
//! blocks in poll(2) and sends each event into the appliance's channel as it comes.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use input::event::keyboard::{KeyState, KeyboardEvent, KeyboardEventTrait};
use input::event::pointer::{
    Axis, ButtonState, PointerEvent, PointerEventTrait, PointerScrollEvent,
};
use input::event::touch::{TouchEvent, TouchEventPosition, TouchEventSlot, TouchEventTrait};
use input::event::{DeviceEvent, Event, EventTrait};
use input::{Libinput, LibinputInterface};
use libseat::{Seat, SeatEvent};
use rustix::event::{poll, PollFd, PollFlags};
use wayray_protocol::{AxisSource, AxisValue, InputMessage};

use super::{EventSender, Feedback, InputEvent, InputSource};
use crate::config::INPUT_DEVICE_DIR;
use crate::pointer::Position;

/// How long a seat manager may take to hand over the seat.
const SEAT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum LibinputError {
    #[error("cannot start the input thread")]
    Thread(#[source] std::io::Error),
    #[error("the input thread ended before opening any device")]
    ThreadDied,
    #[error("cannot open input device {}", path.display())]
    OpenDevice {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("libinput does not accept {} as an input device", path.display())]
    NotInputDevice { path: PathBuf },
    #[error("seat {seat} has no input device libinput can use")]
    EmptySeat { seat: String },
    #[error("libinput cannot take over seat {seat}")]
    AssignSeat { seat: String },
    #[error("the seat manager did not hand over the seat within {} s", SEAT_TIMEOUT.as_secs())]
    SeatTimeout,
    #[error("cannot talk to the seat manager")]
    SeatDispatch(#[source] std::io::Error),
    #[error(
        "no input devices: there is no seat manager (libseat: {seat_error}) and wrclient does not \
         run as root; start seatd or logind, run as root, or pass --input-device /dev/input/eventN"
    )]
    NoSeat { seat_error: std::io::Error },
    #[error("no input device under {INPUT_DEVICE_DIR} could be opened")]
    NoDevices,
    #[error("cannot list {INPUT_DEVICE_DIR}")]
    ListDevices(#[source] std::io::Error),
    #[error("libinput failed")]
    Dispatch(#[source] std::io::Error),
}

/// Devices opened on the input thread, waiting for [`InputSource::start`].
pub struct LibinputSource {
    start: std_mpsc::SyncSender<EventSender>,
}

impl LibinputSource {
    /// Opens the devices (see the module docs for which) on the input thread and waits until
    /// they are open, so that "no usable device" is an error at startup, not a dead keyboard.
    pub fn open(devices: Vec<PathBuf>) -> Result<Self, LibinputError> {
        let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
        let (start_tx, start_rx) = std_mpsc::sync_channel::<EventSender>(1);
        std::thread::Builder::new()
            .name("libinput".into())
            .spawn(move || {
                let mut context = match Context::open(&devices) {
                    Ok(context) => context,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(context.devices));
                // Dropped without starting: the appliance is exiting.
                let Ok(events) = start_rx.recv() else {
                    return;
                };
                if let Err(e) = context.run(&events) {
                    tracing::error!(
                        error = %crate::report::error_chain(&e),
                        "input stopped: no more keyboard, mouse or touch events"
                    );
                }
            })
            .map_err(LibinputError::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(count)) => {
                tracing::info!(devices = count, "libinput input devices open");
                Ok(Self { start: start_tx })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LibinputError::ThreadDied),
        }
    }
}

impl InputSource for LibinputSource {
    fn start(self: Box<Self>, events: EventSender, _feedback: Feedback) {
        if self.start.send(events).is_err() {
            tracing::error!("the libinput thread is gone: no keyboard, mouse or touch input");
        }
    }
}

/// Opens devices for libinput.
enum Opener {
    /// Plain open(2): root, or a user in the `input` group.
    Direct,
    /// Through the seat manager, which may also revoke them on a session switch.
    Seat {
        seat: Rc<RefCell<Seat>>,
        /// libseat device ids by the fd handed to libinput, to close them again.
        devices: HashMap<RawFd, libseat::Device>,
    },
}

impl LibinputInterface for Opener {
    fn open_restricted(&mut self, path: &Path, flags: i32) -> Result<OwnedFd, i32> {
        match self {
            Opener::Direct => {
                let access = flags & rustix::fs::OFlags::ACCMODE.bits() as i32;
                OpenOptions::new()
                    .read(access != rustix::fs::OFlags::WRONLY.bits() as i32)
                    .write(access != rustix::fs::OFlags::RDONLY.bits() as i32)
                    .custom_flags(flags & !rustix::fs::OFlags::ACCMODE.bits() as i32)
                    .open(path)
                    .map(OwnedFd::from)
                    .map_err(|e| {
                        e.raw_os_error()
                            .unwrap_or(rustix::io::Errno::IO.raw_os_error())
                    })
            }
            Opener::Seat { seat, devices } => {
                // libseat's bindings panic on paths that are not UTF-8.
                if path.to_str().is_none() {
                    return Err(rustix::io::Errno::INVAL.raw_os_error());
                }
                let device = seat
                    .borrow_mut()
                    .open_device(&path)
                    .map_err(|errno| errno.0)?;
                let raw = device.as_fd().as_raw_fd();
                devices.insert(raw, device);
                // SAFETY: libseat_open_device hands the caller the fd to own (its users close
                // it after libseat_close_device); libinput gives it back in close_restricted.
                Ok(unsafe { OwnedFd::from_raw_fd(raw) })
            }
        }
    }

    fn close_restricted(&mut self, fd: OwnedFd) {
        if let Opener::Seat { seat, devices } = self {
            if let Some(device) = devices.remove(&fd.as_raw_fd()) {
                if let Err(errno) = seat.borrow_mut().close_device(device) {
                    tracing::debug!(%errno, "seat manager refused to close an input device");
                }
            }
        }
        drop(fd);
    }
}

/// The libinput context and, when there is one, the seat it runs on.
struct Context {
    libinput: Libinput,
    seat: Option<SeatHandle>,
    devices: usize,
}

struct SeatHandle {
    seat: Rc<RefCell<Seat>>,
    active: Rc<Cell<bool>>,
}

impl Context {
    fn open(devices: &[PathBuf]) -> Result<Self, LibinputError> {
        if !devices.is_empty() {
            return Self::open_paths(devices, true);
        }
        match open_seat().and_then(Self::open_seat) {
            Ok(context) => Ok(context),
            // A minimal image runs the appliance as root with neither a seat manager nor udevd.
            Err(e) if rustix::process::geteuid().is_root() => {
                tracing::info!(
                    reason = %crate::report::error_chain(&e),
                    "no usable seat; opening {INPUT_DEVICE_DIR}/event* directly as root"
                );
                Self::open_paths(&event_devices()?, false)
            }
            Err(e) => Err(e),
        }
    }

    /// The path backend: `paths` and nothing else. `strict`: every one must work (the user
    /// named them); otherwise unusable ones are skipped.
    fn open_paths(paths: &[PathBuf], strict: bool) -> Result<Self, LibinputError> {
        let mut libinput = Libinput::new_from_path(Opener::Direct);
        let mut devices = 0;
        for path in paths {
            let result = add_path(&mut libinput, path);
            match result {
                Ok(()) => devices += 1,
                Err(e) if strict => return Err(e),
                Err(e) => tracing::debug!(error = %crate::report::error_chain(&e), "skipped"),
            }
        }
        if devices == 0 {
            return Err(LibinputError::NoDevices);
        }
        Ok(Self {
            libinput,
            seat: None,
            devices,
        })
    }

    /// The udev backend on the seat libseat gave us.
    fn open_seat(handle: SeatHandle) -> Result<Self, LibinputError> {
        let name = handle.seat.borrow_mut().name().to_owned();
        let mut libinput = Libinput::new_with_udev(Opener::Seat {
            seat: handle.seat.clone(),
            devices: HashMap::new(),
        });
        libinput
            .udev_assign_seat(&name)
            .map_err(|()| LibinputError::AssignSeat { seat: name.clone() })?;
        libinput.dispatch().map_err(LibinputError::Dispatch)?;
        // Before any input can arrive, the queue holds only the devices libinput added.
        let mut devices = 0;
        for event in &mut libinput {
            if let Event::Device(DeviceEvent::Added(added)) = event {
                let device = added.device();
                tracing::info!(device = %device.name(), seat = %name, "input device");
                devices += 1;
            }
        }
        if devices == 0 {
            return Err(LibinputError::EmptySeat { seat: name });
        }
        Ok(Self {
            libinput,
            seat: Some(handle),
            devices,
        })
    }

    /// Waits for events and sends them on until `events` closes or something breaks.
    fn run(&mut self, events: &EventSender) -> Result<(), LibinputError> {
        loop {
            let (input_ready, seat_ready) = self.wait()?;
            if seat_ready {
                self.dispatch_seat()?;
            }
            if input_ready {
                self.libinput.dispatch().map_err(LibinputError::Dispatch)?;
                for event in &mut self.libinput {
                    if let Event::Device(DeviceEvent::Added(added)) = &event {
                        tracing::info!(device = %added.device().name(), "input device added");
                    }
                    let Some(event) = translate(&event) else {
                        continue;
                    };
                    if events.blocking_send(event).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Blocks until libinput or the seat manager has something: (libinput, seat).
    fn wait(&mut self) -> Result<(bool, bool), LibinputError> {
        let mut seat = self.seat.as_ref().map(|s| s.seat.borrow_mut());
        let seat_fd = match seat.as_mut() {
            Some(seat) => Some(
                seat.get_fd()
                    .map_err(|errno| LibinputError::SeatDispatch(errno.into()))?,
            ),
            None => None,
        };
        let mut fds = vec![PollFd::new(&self.libinput, PollFlags::IN)];
        if let Some(fd) = &seat_fd {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        loop {
            match poll(&mut fds, None) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(LibinputError::Dispatch(e.into())),
            }
        }
        let ready = |fd: Option<&PollFd<'_>>| fd.is_some_and(|fd| !fd.revents().is_empty());
        Ok((ready(fds.first()), ready(fds.get(1))))
    }

    /// Lets libseat process its messages; follows the seat being taken away (a VT switch) and
    /// given back by suspending and resuming libinput.
    fn dispatch_seat(&mut self) -> Result<(), LibinputError> {
        let Some(handle) = &self.seat else {
            return Ok(());
        };
        let was_active = handle.active.get();
        handle
            .seat
            .borrow_mut()
            .dispatch(0)
            .map_err(|errno| LibinputError::SeatDispatch(errno.into()))?;
        match (was_active, handle.active.get()) {
            (true, false) => {
                tracing::info!("seat taken away: input paused");
                self.libinput.suspend();
            }
            (false, true) => {
                tracing::info!("seat back: input resumed");
                if self.libinput.resume().is_err() {
                    tracing::warn!("libinput could not resume its devices");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Opens the seat through libseat and waits until the seat manager enables it.
fn open_seat() -> Result<SeatHandle, LibinputError> {
    let active = Rc::new(Cell::new(false));
    let flag = active.clone();
    let seat = Seat::open(move |seat, event| match event {
        SeatEvent::Enable => flag.set(true),
        SeatEvent::Disable => {
            flag.set(false);
            // Acknowledging is required; devices stop working until Enable.
            if let Err(errno) = seat.disable() {
                tracing::warn!(%errno, "cannot acknowledge losing the seat");
            }
        }
    })
    .map_err(|errno| LibinputError::NoSeat {
        seat_error: errno.into(),
    })?;
    let seat = Rc::new(RefCell::new(seat));
    let deadline = Instant::now() + SEAT_TIMEOUT;
    while !active.get() {
        if Instant::now() >= deadline {
            return Err(LibinputError::SeatTimeout);
        }
        seat.borrow_mut()
            .dispatch(100)
            .map_err(|errno| LibinputError::SeatDispatch(errno.into()))?;
    }
    Ok(SeatHandle { seat, active })
}

/// Every /dev/input/event*, in order.
fn event_devices() -> Result<Vec<PathBuf>, LibinputError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(INPUT_DEVICE_DIR)
        .map_err(LibinputError::ListDevices)?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("event"))
        .map(|entry| entry.path())
        .collect();
    paths.sort();
    Ok(paths)
}

/// Adds one device to a path-backend context, with the reason when it does not work.
fn add_path(libinput: &mut Libinput, path: &Path) -> Result<(), LibinputError> {
    // libinput only says "no"; opening it here first tells a missing file or a permission
    // problem apart from a file that is not an input device.
    OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|source| LibinputError::OpenDevice {
            path: path.to_owned(),
            source,
        })?;
    let not_input = || LibinputError::NotInputDevice {
        path: path.to_owned(),
    };
    let name = path.to_str().ok_or_else(not_input)?;
    let device = libinput.path_add_device(name).ok_or_else(not_input)?;
    tracing::info!(device = %device.name(), path = %path.display(), "input device");
    Ok(())
}

/// One libinput event as the appliance's input event; `None` for what the session does not
/// need (device changes, gestures, tablet tools, the legacy axis event that duplicates the
/// scroll events).
fn translate(event: &Event) -> Option<InputEvent> {
    let event = match event {
        Event::Keyboard(KeyboardEvent::Key(key)) => {
            let pressed = key.key_state() == KeyState::Pressed;
            // Two keyboards holding the same key make one press and one release for the seat.
            let held = key.seat_key_count();
            if (pressed && held != 1) || (!pressed && held != 0) {
                return None;
            }
            InputEvent::Message(InputMessage::Key {
                time_ms: key.time(),
                keycode: key.key(),
                pressed,
            })
        }
        Event::Pointer(PointerEvent::Motion(motion)) => InputEvent::PointerRelative {
            time_ms: motion.time(),
            dx: motion.dx(),
            dy: motion.dy(),
            dx_unaccel: motion.dx_unaccelerated(),
            dy_unaccel: motion.dy_unaccelerated(),
        },
        Event::Pointer(PointerEvent::MotionAbsolute(motion)) => InputEvent::PointerAbsolute {
            time_ms: motion.time(),
            // Scaled to a width of 1: a fraction of the output, which only the appliance knows.
            at: Position::Fraction {
                x: motion.absolute_x_transformed(1),
                y: motion.absolute_y_transformed(1),
            },
        },
        Event::Pointer(PointerEvent::Button(button)) => {
            let pressed = button.button_state() == ButtonState::Pressed;
            let held = button.seat_button_count();
            if (pressed && held != 1) || (!pressed && held != 0) {
                return None;
            }
            InputEvent::Message(InputMessage::PointerButton {
                time_ms: button.time(),
                button: button.button(),
                pressed,
            })
        }
        Event::Pointer(PointerEvent::ScrollWheel(wheel)) => {
            let axis = |axis| {
                if !wheel.has_axis(axis) {
                    return AxisValue::default();
                }
                AxisValue {
                    value: wheel.scroll_value(axis),
                    v120: Some(wheel.scroll_value_v120(axis).round() as i32),
                    stop: false,
                }
            };
            scroll(wheel.time(), AxisSource::Wheel, axis)
        }
        Event::Pointer(PointerEvent::ScrollFinger(finger)) => {
            scroll(finger.time(), AxisSource::Finger, continuous(finger))
        }
        Event::Pointer(PointerEvent::ScrollContinuous(cont)) => {
            scroll(cont.time(), AxisSource::Continuous, continuous(cont))
        }
        Event::Touch(TouchEvent::Down(down)) => InputEvent::TouchDown {
            time_ms: down.time(),
            slot: down.seat_slot(),
            at: Position::Fraction {
                x: down.x_transformed(1),
                y: down.y_transformed(1),
            },
        },
        Event::Touch(TouchEvent::Motion(motion)) => InputEvent::TouchMotion {
            time_ms: motion.time(),
            slot: motion.seat_slot(),
            at: Position::Fraction {
                x: motion.x_transformed(1),
                y: motion.y_transformed(1),
            },
        },
        Event::Touch(TouchEvent::Up(up)) => InputEvent::Message(InputMessage::TouchUp {
            time_ms: up.time(),
            slot: up.seat_slot(),
        }),
        Event::Touch(TouchEvent::Frame(_)) => InputEvent::Message(InputMessage::TouchFrame),
        Event::Touch(TouchEvent::Cancel(_)) => InputEvent::Message(InputMessage::TouchCancel),
        _ => return None,
    };
    Some(event)
}

/// Finger and continuous scrolling: pixels, and a zero on an axis that is present means the
/// motion stopped (kinetic scrolling may start).
fn continuous(event: &impl PointerScrollEvent) -> impl Fn(Axis) -> AxisValue + '_ {
    move |axis| {
        if !event.has_axis(axis) {
            return AxisValue::default();
        }
        let value = event.scroll_value(axis);
        AxisValue {
            value,
            v120: None,
            stop: value == 0.0,
        }
    }
}

fn scroll(time_ms: u32, source: AxisSource, axis: impl Fn(Axis) -> AxisValue) -> InputEvent {
    InputEvent::Message(InputMessage::PointerAxis {
        time_ms,
        source,
        horizontal: axis(Axis::Horizontal),
        vertical: axis(Axis::Vertical),
    })
}
