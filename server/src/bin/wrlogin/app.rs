//! The Wayland side of the greeter: one fullscreen xdg toplevel drawn into `wl_shm` buffers,
//! keyboard input through xkbcommon, and the calloop loop that also receives login outcomes.
//! Everything it decides is delegated to [`Form`]; everything it draws to [`Painter`].
//!
//! As a locker (`--lock`) the same form is an ext-session-lock surface instead of a window: it
//! takes the session's lock, asks for the password and unlocks once wrsessd accepts it.

use std::time::Duration;

use smithay_client_toolkit::{
    compositor::{CompositorHandler, CompositorState},
    delegate_compositor, delegate_keyboard, delegate_output, delegate_registry, delegate_seat,
    delegate_session_lock, delegate_shm, delegate_xdg_shell, delegate_xdg_window,
    output::{OutputHandler, OutputState},
    reexports::{
        calloop::{
            channel,
            timer::{TimeoutAction, Timer},
            EventLoop, LoopHandle,
        },
        calloop_wayland_source::WaylandSource,
        client::{
            globals::registry_queue_init,
            protocol::{wl_keyboard, wl_output, wl_seat, wl_shm, wl_surface},
            Connection, QueueHandle,
        },
    },
    registry::{ProvidesRegistryState, RegistryState},
    registry_handlers,
    seat::{
        keyboard::{KeyEvent, KeyboardHandler, Keysym, Modifiers},
        Capability, SeatHandler, SeatState,
    },
    session_lock::{
        SessionLock, SessionLockHandler, SessionLockState, SessionLockSurface,
        SessionLockSurfaceConfigure,
    },
    shell::{
        xdg::{
            window::{Window, WindowConfigure, WindowDecorations, WindowHandler},
            XdgShell,
        },
        WaylandSurface,
    },
    shm::{
        slot::{Buffer, SlotPool},
        Shm, ShmHandler,
    },
};

use crate::{
    form::{Action, Form, Key, Outcome},
    link::LoginLink,
    render::{Canvas, Labels, Painter, LOCK_PROMPT, LOGIN_PROMPT},
};

/// Size used until the compositor or the output says otherwise.
const FALLBACK_SIZE: (u32, u32) = (1280, 800);
/// How long "Welcome, …" stays up before the greeter exits and the user's session takes over.
const WELCOME_DELAY: Duration = Duration::from_millis(1200);

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum GreeterError {
    #[error("cannot connect to the Wayland display (is WAYLAND_DISPLAY set?): {0}")]
    Connect(String),
    #[error("the compositor lacks {0}")]
    MissingGlobal(&'static str),
    #[error("cannot set up the event loop: {0}")]
    Setup(String),
    #[error("lost the Wayland connection: {0}")]
    Dispatch(String),
    #[error("the compositor refused the lock (another locker holds it)")]
    LockRefused,
}

/// What the greeter was started with.
pub struct Config {
    pub painter: Painter,
    pub host: String,
    pub link: LoginLink,
    /// Run as the session's locker for this user (`--lock`) instead of as a greeter.
    pub lock_user: Option<String>,
    /// Shown under the greeter's form until the first attempt.
    pub notice: Option<String>,
}

/// What the form is shown in.
enum Shell {
    /// The greeter's fullscreen window.
    Window(Window),
    /// The locker's lock surface, made once the compositor says the session is locked.
    Lock {
        compositor: CompositorState,
        lock: SessionLock,
        surface: Option<SessionLockSurface>,
        /// The compositor confirmed the lock.
        locked: bool,
    },
}

impl Shell {
    fn wl_surface(&self) -> Option<&wl_surface::WlSurface> {
        match self {
            Shell::Window(window) => Some(window.wl_surface()),
            Shell::Lock { surface, .. } => surface.as_ref().map(|s| s.wl_surface()),
        }
    }
}

/// The window's size: the compositor's configure wins; without one (a configure of 0×0 lets
/// the client choose) the output's current mode, so the form fills the screen anyway.
pub fn window_size(configured: Option<(u32, u32)>, output_mode: Option<(i32, i32)>) -> (u32, u32) {
    if let Some((w, h)) = configured.filter(|&(w, h)| w > 0 && h > 0) {
        return (w, h);
    }
    match output_mode {
        Some((w, h)) if w > 0 && h > 0 => (w as u32, h as u32),
        _ => FALLBACK_SIZE,
    }
}

/// What a key does in the form; `None` for keys the form ignores.
pub fn form_key(keysym: Keysym, utf8: Option<&str>, mods: Modifiers) -> Option<Key> {
    match keysym {
        Keysym::Tab if mods.shift => Some(Key::PreviousField),
        Keysym::ISO_Left_Tab | Keysym::Up | Keysym::KP_Up => Some(Key::PreviousField),
        Keysym::Tab | Keysym::Down | Keysym::KP_Down => Some(Key::NextField),
        Keysym::Return | Keysym::KP_Enter | Keysym::ISO_Enter => Some(Key::Enter),
        Keysym::BackSpace => Some(Key::Backspace),
        Keysym::Escape => Some(Key::Escape),
        // Shortcuts are not text (Ctrl+A would otherwise type "\u{1}", which the form drops
        // anyway, and Alt+letter would type the letter).
        _ if mods.ctrl || mods.alt || mods.logo => None,
        _ => utf8
            .filter(|t| !t.is_empty() && !t.chars().any(char::is_control))
            .map(|t| Key::Text(t.to_string())),
    }
}

struct Greeter {
    registry: RegistryState,
    seat: SeatState,
    outputs: OutputState,
    shm: Shm,
    shell: Shell,
    pool: SlotPool,
    /// At most two buffers: one the compositor may still hold, one to draw into.
    buffers: Vec<Buffer>,
    keyboard: Option<wl_keyboard::WlKeyboard>,
    modifiers: Modifiers,
    /// The size from the last configure, if it gave one.
    configured: Option<(u32, u32)>,
    size: (u32, u32),
    /// The first configure arrived; drawing before it is a protocol error.
    mapped: bool,
    /// A frame callback is outstanding: the next draw waits for it.
    frame_pending: bool,
    /// Something changed since the last draw.
    dirty: bool,
    form: Form,
    painter: Painter,
    host: String,
    link: LoginLink,
    outcomes: channel::Sender<Outcome>,
    loop_handle: LoopHandle<'static, Greeter>,
    qh: QueueHandle<Greeter>,
    conn: Connection,
    exit: Option<Result<(), GreeterError>>,
}

/// Runs the greeter until a login is accepted (then returns `Ok`) or the connection fails.
pub fn run(config: Config) -> Result<(), GreeterError> {
    let conn = Connection::connect_to_env().map_err(|e| GreeterError::Connect(e.to_string()))?;
    let (globals, queue) =
        registry_queue_init(&conn).map_err(|e| GreeterError::Connect(e.to_string()))?;
    let qh = queue.handle();
    let mut event_loop: EventLoop<Greeter> =
        EventLoop::try_new().map_err(|e| GreeterError::Setup(e.to_string()))?;
    let loop_handle = event_loop.handle();
    WaylandSource::new(conn.clone(), queue)
        .insert(loop_handle.clone())
        .map_err(|e| GreeterError::Setup(e.error.to_string()))?;

    let compositor = CompositorState::bind(&globals, &qh)
        .map_err(|_| GreeterError::MissingGlobal("wl_compositor"))?;
    let shm = Shm::bind(&globals, &qh).map_err(|_| GreeterError::MissingGlobal("wl_shm"))?;
    let (shell, form) = match &config.lock_user {
        None => {
            // sctk binds the xdg-decoration manager if the compositor has one, but the window
            // never asks for a decoration object: no title bar, the form is the whole screen.
            let xdg = XdgShell::bind(&globals, &qh)
                .map_err(|_| GreeterError::MissingGlobal("xdg_wm_base"))?;
            let surface = compositor.create_surface(&qh);
            let window = xdg.create_window(surface, WindowDecorations::None, &qh);
            window.set_title("WayRay login");
            window.set_app_id("org.wayray.wrlogin");
            window.set_fullscreen(None);
            // The first commit carries no buffer; the compositor answers with a configure.
            window.commit();
            let mut form = Form::new();
            if let Some(notice) = &config.notice {
                tracing::info!(notice, "showing the launcher's notice");
                form.set_notice(notice);
            }
            (Shell::Window(window), form)
        }
        Some(user) => {
            // The lock surface is made once the compositor confirms the lock (`locked`).
            let lock = SessionLockState::new(&globals, &qh)
                .lock(&qh)
                .map_err(|_| GreeterError::MissingGlobal("ext_session_lock_manager_v1"))?;
            let shell = Shell::Lock {
                compositor,
                lock,
                surface: None,
                locked: false,
            };
            (shell, Form::locked(user))
        }
    };

    let (w, h) = FALLBACK_SIZE;
    let pool = SlotPool::new((w * h * 4) as usize, &shm)
        .map_err(|e| GreeterError::Setup(format!("cannot create the shm pool: {e}")))?;

    let (outcomes, outcome_source) = channel::channel::<Outcome>();
    loop_handle
        .insert_source(outcome_source, |event, _, greeter| {
            if let channel::Event::Msg(outcome) = event {
                greeter.on_outcome(outcome);
            }
        })
        .map_err(|e| GreeterError::Setup(e.error.to_string()))?;

    let mut greeter = Greeter {
        registry: RegistryState::new(&globals),
        seat: SeatState::new(&globals, &qh),
        outputs: OutputState::new(&globals, &qh),
        shm,
        shell,
        pool,
        buffers: Vec::new(),
        keyboard: None,
        modifiers: Modifiers::default(),
        configured: None,
        size: FALLBACK_SIZE,
        mapped: false,
        frame_pending: false,
        dirty: true,
        form,
        painter: config.painter,
        host: config.host,
        link: config.link,
        outcomes,
        loop_handle,
        qh,
        conn,
        exit: None,
    };

    loop {
        // Blocks until the compositor, a key-repeat timer, a login outcome or the welcome timer
        // has something: no polling.
        if let Err(err) = event_loop.dispatch(None, &mut greeter) {
            return Err(GreeterError::Dispatch(err.to_string()));
        }
        if let Some(result) = greeter.exit.take() {
            return result;
        }
    }
}

impl Greeter {
    fn output_mode(&self) -> Option<(i32, i32)> {
        self.outputs.outputs().find_map(|output| {
            let info = self.outputs.info(&output)?;
            info.modes.iter().find(|m| m.current).map(|m| m.dimensions)
        })
    }

    /// Recomputes the size from the output (the session's output follows the attached
    /// appliance's screen); redraws if it changed.
    fn update_size(&mut self) {
        let size = window_size(self.configured, self.output_mode());
        if size != self.size {
            tracing::debug!(width = size.0, height = size.1, "greeter resized");
            self.size = size;
            self.dirty = true;
            self.redraw_if_dirty();
        }
    }

    /// Draws if something changed and the compositor is ready for a frame; otherwise the
    /// pending frame callback draws.
    fn redraw_if_dirty(&mut self) {
        if self.dirty && self.mapped && !self.frame_pending {
            self.draw();
        }
    }

    fn draw(&mut self) {
        let Some(surface) = self.shell.wl_surface().cloned() else {
            return;
        };
        let (width, height) = self.size;
        let stride = width as i32 * 4;
        let free = self.buffers.iter().position(|b| {
            b.height() == height as i32
                && b.stride() == stride
                && b.canvas(&mut self.pool).is_some()
        });
        let buffer = match free {
            Some(i) => self.buffers.remove(i),
            None => match self.pool.create_buffer(
                width as i32,
                height as i32,
                stride,
                wl_shm::Format::Xrgb8888,
            ) {
                Ok((buffer, _)) => buffer,
                Err(err) => {
                    tracing::error!(%err, width, height, "cannot allocate a buffer");
                    return;
                }
            },
        };
        let Some(pixels) = buffer.canvas(&mut self.pool) else {
            tracing::error!("a fresh buffer is busy");
            return;
        };
        let Some(mut canvas) = Canvas::new(pixels, width as usize, height as usize) else {
            tracing::error!(width, height, "buffer smaller than the window");
            return;
        };
        let prompt = match self.shell {
            Shell::Window(_) => LOGIN_PROMPT,
            Shell::Lock { .. } => LOCK_PROMPT,
        };
        self.painter.draw(
            &mut canvas,
            &self.form,
            &Labels {
                host: &self.host,
                prompt,
            },
        );

        surface.damage_buffer(0, 0, width as i32, height as i32);
        surface.frame(&self.qh, surface.clone());
        if let Err(err) = buffer.attach_to(&surface) {
            tracing::error!(?err, "cannot attach the buffer");
            return;
        }
        surface.commit();
        self.frame_pending = true;
        self.dirty = false;
        // Newest last; an older one the compositor no longer needs can be reused next time.
        self.buffers.push(buffer);
        if self.buffers.len() > 2 {
            self.buffers.remove(0);
        }
    }

    fn on_key(&mut self, event: &KeyEvent) {
        let Some(key) = form_key(event.keysym, event.utf8.as_deref(), self.modifiers) else {
            return;
        };
        match self.form.key(key) {
            Action::Nothing => {}
            Action::Redraw => self.dirty = true,
            Action::Submit(creds) => {
                tracing::info!(user = %creds.username, "login submitted");
                let outcomes = self.outcomes.clone();
                self.link.start(creds, move |outcome| {
                    // Only fails if the loop is gone, and then nobody is waiting for it.
                    let _ = outcomes.send(outcome);
                });
                self.dirty = true;
            }
        }
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        let accepted = outcome == Outcome::Accepted;
        self.form.finish(outcome);
        self.dirty = true;
        self.redraw_if_dirty();
        if accepted {
            if let Shell::Lock { lock, .. } = &self.shell {
                // The desktop comes back at once; nothing to wait for.
                tracing::info!("password accepted; unlocking");
                lock.unlock();
                if let Err(err) = self.conn.flush() {
                    tracing::warn!(%err, "cannot flush the unlock");
                }
                self.exit = Some(Ok(()));
                return;
            }
            let timer = Timer::from_duration(WELCOME_DELAY);
            let inserted = self.loop_handle.insert_source(timer, |_, _, greeter| {
                greeter.exit = Some(Ok(()));
                TimeoutAction::Drop
            });
            if let Err(err) = inserted {
                tracing::warn!(err = %err.error, "no welcome timer; exiting now");
                self.exit = Some(Ok(()));
            }
        }
    }
}

impl Greeter {
    /// The lock surface, on the session's (one) output, once the lock is confirmed and the
    /// output known.
    fn make_lock_surface(&mut self) {
        let output = self.outputs.outputs().next();
        let Shell::Lock {
            compositor,
            lock,
            surface,
            locked,
        } = &mut self.shell
        else {
            return;
        };
        if !*locked || surface.is_some() {
            return;
        }
        let Some(output) = output else {
            tracing::debug!("locked; waiting for the output");
            return;
        };
        let wl_surface = compositor.create_surface(&self.qh);
        *surface = Some(lock.create_lock_surface(wl_surface, &output, &self.qh));
    }
}

impl SessionLockHandler for Greeter {
    fn locked(&mut self, _: &Connection, _: &QueueHandle<Self>, _: SessionLock) {
        tracing::info!("session locked; showing the lock screen");
        if let Shell::Lock { locked, .. } = &mut self.shell {
            *locked = true;
        }
        self.make_lock_surface();
    }

    fn finished(&mut self, _: &Connection, _: &QueueHandle<Self>, _: SessionLock) {
        let was_locked = matches!(self.shell, Shell::Lock { locked: true, .. });
        if was_locked {
            tracing::info!("the compositor ended the lock");
            self.exit = Some(Ok(()));
        } else {
            self.exit = Some(Err(GreeterError::LockRefused));
        }
    }

    fn configure(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: SessionLockSurface,
        configure: SessionLockSurfaceConfigure,
        _: u32,
    ) {
        let (w, h) = configure.new_size;
        self.configured = Some((w, h));
        let size = window_size(self.configured, self.output_mode());
        let first = !self.mapped;
        self.mapped = true;
        if first || size != self.size {
            self.size = size;
            if first {
                tracing::info!(width = size.0, height = size.1, "lock screen shown");
            }
            self.draw();
        }
    }
}

impl CompositorHandler for Greeter {
    fn scale_factor_changed(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: i32,
    ) {
    }

    fn transform_changed(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: wl_output::Transform,
    ) {
    }

    fn frame(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &wl_surface::WlSurface, _: u32) {
        self.frame_pending = false;
        self.redraw_if_dirty();
    }

    fn surface_enter(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: &wl_output::WlOutput,
    ) {
    }

    fn surface_leave(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: &wl_output::WlOutput,
    ) {
    }
}

impl OutputHandler for Greeter {
    fn output_state(&mut self) -> &mut OutputState {
        &mut self.outputs
    }

    fn new_output(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {
        self.make_lock_surface();
        self.update_size();
    }

    fn update_output(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {
        self.update_size();
    }

    fn output_destroyed(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {
        self.update_size();
    }
}

impl WindowHandler for Greeter {
    /// A greeter closed by a window-manager shortcut would leave the appliance with an empty
    /// screen and no way to log in: it stays.
    fn request_close(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &Window) {
        tracing::info!("ignoring a request to close the greeter");
    }

    fn configure(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &Window,
        configure: WindowConfigure,
        _: u32,
    ) {
        self.configured = match configure.new_size {
            (Some(w), Some(h)) => Some((w.get(), h.get())),
            _ => None,
        };
        let size = window_size(self.configured, self.output_mode());
        let first = !self.mapped;
        self.mapped = true;
        if first || size != self.size {
            self.size = size;
            if first {
                tracing::info!(width = size.0, height = size.1, "greeter shown");
            }
            // A configure is answered by a commit even while a frame is pending.
            self.draw();
        }
    }
}

impl SeatHandler for Greeter {
    fn seat_state(&mut self) -> &mut SeatState {
        &mut self.seat
    }

    fn new_seat(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_seat::WlSeat) {}

    fn new_capability(
        &mut self,
        _: &Connection,
        qh: &QueueHandle<Self>,
        seat: wl_seat::WlSeat,
        capability: Capability,
    ) {
        if capability != Capability::Keyboard || self.keyboard.is_some() {
            return;
        }
        let keyboard = self.seat.get_keyboard_with_repeat(
            qh,
            &seat,
            None,
            self.loop_handle.clone(),
            Box::new(|greeter: &mut Greeter, _, event| {
                greeter.on_key(&event);
                greeter.redraw_if_dirty();
            }),
        );
        match keyboard {
            Ok(keyboard) => self.keyboard = Some(keyboard),
            Err(err) => tracing::error!(%err, "cannot use the seat's keyboard"),
        }
    }

    fn remove_capability(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: wl_seat::WlSeat,
        capability: Capability,
    ) {
        if capability == Capability::Keyboard {
            if let Some(keyboard) = self.keyboard.take() {
                keyboard.release();
            }
        }
    }

    fn remove_seat(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_seat::WlSeat) {}
}

impl KeyboardHandler for Greeter {
    fn enter(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_keyboard::WlKeyboard,
        _: &wl_surface::WlSurface,
        _: u32,
        _: &[u32],
        _: &[Keysym],
    ) {
        tracing::debug!("keyboard focus");
    }

    fn leave(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_keyboard::WlKeyboard,
        _: &wl_surface::WlSurface,
        _: u32,
    ) {
    }

    fn press_key(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_keyboard::WlKeyboard,
        _: u32,
        event: KeyEvent,
    ) {
        self.on_key(&event);
        self.redraw_if_dirty();
    }

    fn release_key(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_keyboard::WlKeyboard,
        _: u32,
        _: KeyEvent,
    ) {
    }

    fn update_modifiers(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_keyboard::WlKeyboard,
        _: u32,
        modifiers: Modifiers,
        _: u32,
    ) {
        self.modifiers = modifiers;
    }
}

impl ShmHandler for Greeter {
    fn shm_state(&mut self) -> &mut Shm {
        &mut self.shm
    }
}

impl ProvidesRegistryState for Greeter {
    fn registry(&mut self) -> &mut RegistryState {
        &mut self.registry
    }
    registry_handlers![OutputState, SeatState];
}

delegate_compositor!(Greeter);
delegate_output!(Greeter);
delegate_shm!(Greeter);
delegate_seat!(Greeter);
delegate_keyboard!(Greeter);
delegate_xdg_shell!(Greeter);
delegate_xdg_window!(Greeter);
delegate_registry!(Greeter);
delegate_session_lock!(Greeter);

#[cfg(test)]
mod tests {
    use super::*;

    fn mods(shift: bool, ctrl: bool) -> Modifiers {
        Modifiers {
            shift,
            ctrl,
            ..Default::default()
        }
    }

    #[test]
    fn the_configure_size_wins_then_the_output_mode_then_a_default() {
        assert_eq!(
            window_size(Some((800, 600)), Some((1920, 1080))),
            (800, 600)
        );
        assert_eq!(window_size(None, Some((1920, 1080))), (1920, 1080));
        assert_eq!(window_size(Some((0, 0)), Some((1024, 768))), (1024, 768));
        assert_eq!(window_size(None, Some((0, 0))), FALLBACK_SIZE);
        assert_eq!(window_size(None, None), FALLBACK_SIZE);
    }

    #[test]
    fn keys_map_to_form_keys() {
        let none = mods(false, false);
        assert_eq!(
            form_key(Keysym::Tab, Some("\t"), none),
            Some(Key::NextField)
        );
        assert_eq!(
            form_key(Keysym::Tab, None, mods(true, false)),
            Some(Key::PreviousField)
        );
        assert_eq!(
            form_key(Keysym::ISO_Left_Tab, None, mods(true, false)),
            Some(Key::PreviousField)
        );
        assert_eq!(form_key(Keysym::Up, None, none), Some(Key::PreviousField));
        assert_eq!(form_key(Keysym::Down, None, none), Some(Key::NextField));
        assert_eq!(form_key(Keysym::Return, Some("\r"), none), Some(Key::Enter));
        assert_eq!(
            form_key(Keysym::KP_Enter, Some("\r"), none),
            Some(Key::Enter)
        );
        assert_eq!(
            form_key(Keysym::BackSpace, Some("\u{8}"), none),
            Some(Key::Backspace)
        );
        assert_eq!(
            form_key(Keysym::Escape, Some("\u{1b}"), none),
            Some(Key::Escape)
        );
        assert_eq!(
            form_key(Keysym::a, Some("a"), none),
            Some(Key::Text("a".into()))
        );
        assert_eq!(
            form_key(Keysym::A, Some("A"), mods(true, false)),
            Some(Key::Text("A".into()))
        );
        assert_eq!(
            form_key(Keysym::udiaeresis, Some("ü"), none),
            Some(Key::Text("ü".into()))
        );
        assert_eq!(form_key(Keysym::a, Some("\u{1}"), mods(false, true)), None);
        assert_eq!(form_key(Keysym::Shift_L, None, none), None);
        assert_eq!(form_key(Keysym::Left, None, none), None);
    }
}
