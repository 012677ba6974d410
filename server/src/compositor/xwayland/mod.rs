//! X11 clients through Xwayland, started on demand.
//!
//! Most sessions never run an X11 program, and an idle Xwayland costs tens of megabytes per
//! session, so a session only *listens* on its X11 display (`:N`, with its lock file,
//! `/tmp/.X11-unix/XN` and the abstract socket) and starts Xwayland when the first X client
//! connects. Clients of the session get `DISPLAY=:N` from the start.
//!
//! Smithay 0.7's [`XWayland::spawn`] creates the display's sockets itself and passes them to the
//! `Xwayland` it starts with `-listenfd`; it cannot take sockets made beforehand, and only it can
//! create the Wayland client X11Wm needs. So the session spawns it at once, but with `PATH`
//! leading to a private directory whose `Xwayland` is wrsrvd itself (see [`stub`]): that small
//! waiter holds the listening sockets, sleeps until one of them has a connection, then `exec`s
//! the real Xwayland in the same process with the same file descriptors, which accepts the
//! waiting client. No connection is proxied or lost, and no Xwayland runs before it is needed.
//!
//! When Xwayland exits (all X clients gone: it runs with `-terminate`) or crashes, its windows
//! are removed and the session listens again, so the next X client starts a fresh one.

pub mod stub;

use std::{
    cell::RefCell,
    ffi::OsString,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use smithay::{
    desktop::Window,
    reexports::{
        calloop::{
            generic::Generic,
            timer::{TimeoutAction, Timer},
            Interest, Mode, PostAction, RegistrationToken,
        },
        wayland_server::{protocol::wl_surface::WlSurface, Client, DisplayHandle, Resource},
    },
    utils::{IsAlive, Rectangle},
    wayland::{seat::WaylandFocus, selection::SelectionTarget, xwayland_shell::XWaylandShellState},
    xwayland::{X11Surface, X11Wm, XWayland},
};

use super::state::WayRay;

/// The wl_surface of an X11 window found through its WL_SURFACE_ID. Smithay 0.7 pairs X11
/// windows with wl_surfaces only through xwayland-shell-v1, which Xwayland implements from
/// 23.1 on; older ones (Debian 12 ships 22.1) only announce the surface's id, which Smithay
/// records and leaves to the compositor, so X11 windows are paired here, after each dispatch.
#[derive(Default)]
struct LegacySurface(RefCell<Option<WlSurface>>);

/// The wl_surface an X11 window is drawn into, when Smithay did not pair it itself (older
/// Xwayland): rendering, hit-testing and frame callbacks use it then.
pub fn legacy_surface(window: &Window) -> Option<WlSurface> {
    if window.wl_surface().is_some() {
        return None;
    }
    let x11 = window.x11_surface()?;
    let slot = x11.user_data().get::<LegacySurface>()?;
    let surface = slot.0.borrow().clone();
    surface.filter(|s| s.alive())
}

/// The root wl_surface of a window, Wayland or X11 (paired either way).
pub fn window_surface(window: &Window) -> Option<WlSurface> {
    window
        .wl_surface()
        .map(|s| s.into_owned())
        .or_else(|| legacy_surface(window))
}

/// Xwayland failing this many times in a row before becoming ready stops the restarts: X11 is
/// broken on this machine, and the session goes on without it.
const MAX_FAILED_STARTS: u32 = 5;
/// Pause before listening again after a failed start.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// The session's X11 display and, while an X client uses it, its Xwayland.
pub struct XwaylandState {
    /// xwayland-shell-v1, with which Xwayland pairs its wl_surfaces with X11 windows.
    pub shell: XWaylandShellState,
    /// The window manager connection of the current (or last) Xwayland. The last one is kept
    /// after Xwayland exits, because a commit already queued from its Wayland client may still
    /// ask for it; a new Xwayland replaces it.
    pub wm: Option<X11Wm>,
    /// `:N`, fixed for the session's lifetime once chosen.
    display: Option<u32>,
    /// The spawned Xwayland (or its waiter) and its Wayland client.
    instance: Option<Instance>,
    /// Where the real `Xwayland` is, and the `PATH` that finds the waiter instead.
    launch: Option<Launch>,
    failed_starts: u32,
    /// MIME types of the Wayland clipboard, so an Xwayland started later offers it too.
    pub(crate) wayland_clipboard: Option<Vec<String>>,
}

struct Instance {
    xwayland: XWayland,
    client: Client,
    /// Watches for Xwayland's readiness until it is ready.
    ready_source: Option<RegistrationToken>,
    ready: bool,
}

struct Launch {
    real: PathBuf,
    stub_dir: stub::StubDir,
    path: OsString,
}

impl XwaylandState {
    pub fn new(dh: &DisplayHandle) -> Self {
        Self {
            shell: XWaylandShellState::new::<WayRay>(dh),
            wm: None,
            display: None,
            instance: None,
            launch: None,
            failed_starts: 0,
            wayland_clipboard: None,
        }
    }

    /// Whether Xwayland itself (not only the waiter) runs and its window manager is connected.
    pub fn running(&self) -> bool {
        self.instance.as_ref().is_some_and(|i| i.ready)
    }
}

/// Where X servers put their sockets; Smithay expects it to exist.
const X11_SOCKET_DIR: &str = "/tmp/.X11-unix";

/// Creates the X11 socket directory as X servers do (world-writable, sticky) when a fresh
/// machine has none yet.
fn ensure_socket_dir() -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new()
        .mode(0o1777)
        .create(X11_SOCKET_DIR)
    {
        Ok(()) => {
            // The umask may have taken bits away.
            std::fs::set_permissions(X11_SOCKET_DIR, std::fs::Permissions::from_mode(0o1777))
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

/// Finds an executable `name` on `path`, skipping `skip`.
fn find_in_path(name: &str, path: &OsString, skip: Option<&Path>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .filter(|dir| Some(dir.as_path()) != skip)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

impl WayRay {
    /// Makes the session listen on an X11 display (without starting Xwayland). Returns the
    /// display number for `DISPLAY`, or `None` when X11 is unavailable (logged).
    pub fn listen_for_x11(&mut self) -> Option<u32> {
        let path =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        let Some(real) = find_in_path("Xwayland", &path, None) else {
            tracing::warn!("Xwayland is not installed; X11 programs cannot run in this session");
            return None;
        };
        if let Err(err) = ensure_socket_dir() {
            tracing::error!(%err, "cannot create {X11_SOCKET_DIR}; X11 disabled");
            return None;
        }
        let stub_dir = match stub::StubDir::create() {
            Ok(dir) => dir,
            Err(err) => {
                tracing::error!(%err, "cannot prepare the lazy Xwayland start; X11 disabled");
                return None;
            }
        };
        let mut stub_path = OsString::from(stub_dir.path());
        stub_path.push(":");
        stub_path.push(&path);
        self.xwayland.launch = Some(Launch {
            real,
            stub_dir,
            path: stub_path,
        });
        self.spawn_x11_waiter();
        self.xwayland.display
    }

    /// Spawns Xwayland behind the waiter on the session's display (a free one the first time).
    fn spawn_x11_waiter(&mut self) {
        let Some(launch) = &self.xwayland.launch else {
            return;
        };
        let orig_path = std::env::var_os("PATH").unwrap_or_default();
        let envs: Vec<(&str, OsString)> = vec![
            ("PATH", launch.path.clone()),
            (
                stub::REAL_XWAYLAND_ENV,
                launch.real.clone().into_os_string(),
            ),
            (stub::ORIGINAL_PATH_ENV, orig_path),
        ];
        tracing::debug!(stub = %launch.stub_dir.path().display(), "listening for X11 clients");
        let spawned = XWayland::spawn(
            &self.display_handle,
            self.xwayland.display,
            envs,
            true,
            Stdio::null(),
            Stdio::inherit(),
            |_| {},
        );
        let (xwayland, client) = match spawned {
            Ok(spawned) => spawned,
            Err(err) => {
                tracing::error!(%err, display = ?self.xwayland.display, "cannot listen on an X11 display; X11 disabled");
                return;
            }
        };
        let number = xwayland.display_number();
        if self.xwayland.display.is_none() {
            let name = format!(":{number}");
            tracing::info!(display = %name, "x11 display listening");
        }
        self.xwayland.display = Some(number);

        // Smithay's own event source would spin on a waiter or Xwayland that dies before it is
        // ready (its readiness pipe then reads end-of-file forever), so readiness is polled here.
        let fd = match xwayland.poll_fd().try_clone_to_owned() {
            Ok(fd) => fd,
            Err(err) => {
                tracing::error!(%err, "cannot watch Xwayland's readiness; X11 disabled");
                return;
            }
        };
        let token = self.loop_handle.insert_source(
            Generic::new(fd, Interest::READ, Mode::Level),
            |_, _, state| Ok(state.poll_x11_ready()),
        );
        let token = match token {
            Ok(token) => token,
            Err(err) => {
                tracing::error!(%err, "cannot watch Xwayland's readiness; X11 disabled");
                return;
            }
        };
        self.xwayland.instance = Some(Instance {
            xwayland,
            client,
            ready_source: Some(token),
            ready: false,
        });
    }

    fn poll_x11_ready(&mut self) -> PostAction {
        let Some(instance) = self.xwayland.instance.as_mut() else {
            return PostAction::Remove;
        };
        match instance.xwayland.take_socket() {
            Ok(Some(socket)) => {
                instance.ready_source = None;
                self.x11_ready(socket);
                PostAction::Remove
            }
            Ok(None) => {
                let alive = self
                    .display_handle
                    .backend_handle()
                    .get_client_data(instance.client.id())
                    .is_ok();
                if alive {
                    PostAction::Continue
                } else {
                    instance.ready_source = None;
                    self.x11_failed("Xwayland exited before it was ready");
                    PostAction::Remove
                }
            }
            Err(err) => {
                instance.ready_source = None;
                self.x11_failed(&err.to_string());
                PostAction::Remove
            }
        }
    }

    fn x11_ready(&mut self, socket: UnixStream) {
        let Some(instance) = self.xwayland.instance.as_mut() else {
            return;
        };
        let client = instance.client.clone();
        match X11Wm::start_wm(self.loop_handle.clone(), socket, client) {
            Ok(wm) => {
                instance.ready = true;
                self.xwayland.failed_starts = 0;
                self.xwayland.wm = Some(wm);
                let name = self.xwayland.display.map(|d| format!(":{d}"));
                tracing::info!(display = %name.unwrap_or_default(), "xwayland started");
                if let Some(mime_types) = self.xwayland.wayland_clipboard.clone() {
                    self.offer_selection_to_x11(SelectionTarget::Clipboard, Some(mime_types));
                }
            }
            Err(err) => self.x11_failed(&format!("cannot become its window manager: {err}")),
        }
    }

    fn x11_failed(&mut self, why: &str) {
        self.xwayland.failed_starts += 1;
        tracing::warn!(
            why,
            failures = self.xwayland.failed_starts,
            "xwayland failed to start"
        );
        self.stop_x11_instance();
        if self.xwayland.failed_starts >= MAX_FAILED_STARTS {
            tracing::error!("Xwayland keeps failing; X11 programs cannot run in this session");
            return;
        }
        let timer =
            self.loop_handle
                .insert_source(Timer::from_duration(RESTART_DELAY), |_, _, state| {
                    state.spawn_x11_waiter();
                    TimeoutAction::Drop
                });
        if let Err(err) = timer {
            tracing::error!(%err, "cannot schedule the X11 display's restart");
        }
    }

    /// Xwayland's window manager connection closed: Xwayland exited or crashed.
    pub(crate) fn x11_exited(&mut self) {
        tracing::info!("xwayland exited");
        self.stop_x11_instance();
        self.spawn_x11_waiter();
    }

    /// Removes the X11 windows and ends the Xwayland instance (its lock file and sockets go).
    fn stop_x11_instance(&mut self) {
        let x11: Vec<Window> = self
            .space
            .elements()
            .filter(|w| w.x11_surface().is_some())
            .cloned()
            .collect();
        for window in &x11 {
            self.space.unmap_elem(window);
        }
        if !x11.is_empty() {
            tracing::info!(windows = x11.len(), "removed the windows of X11 clients");
            let top = self.space.elements().next_back().cloned();
            self.focus_window(top, smithay::utils::SERIAL_COUNTER.next_serial());
        }
        if let Some(instance) = self.xwayland.instance.take() {
            if let Some(token) = instance.ready_source {
                self.loop_handle.remove(token);
            }
            // Dropping the handle disconnects its Wayland client and removes the lock file and
            // socket, so the display can be listened on again.
            drop(instance.xwayland);
        }
        self.needs_render = true;
    }

    /// Runs after every dispatch for the X11 windows on screen: pairs them with their
    /// wl_surface where Smithay could not (see [`legacy_surface`]), and keeps X11's idea of
    /// where each managed window is in step with the space, after moves, snaps and output
    /// resizes (X clients place menus in root coordinates).
    pub fn refresh_x11_windows(&mut self) {
        let mut paired = Vec::new();
        for window in self.space.elements() {
            let Some(x11) = window.x11_surface() else {
                continue;
            };
            if window.wl_surface().is_none() && self.pair_by_surface_id(x11) {
                paired.push(x11.clone());
            }
            if x11.is_override_redirect() || !x11.alive() {
                continue;
            }
            let Some(loc) = self.space.element_location(window) else {
                continue;
            };
            let geo = x11.geometry();
            if geo.loc != loc {
                if let Err(err) = x11.configure(Rectangle::new(loc, geo.size)) {
                    tracing::debug!(%err, "cannot move an X11 window");
                }
            }
        }
        for x11 in paired {
            self.x11_surface_paired(&x11);
        }
    }

    /// Looks up the wl_surface Xwayland named for `x11` with WL_SURFACE_ID; `true` when it was
    /// newly found.
    fn pair_by_surface_id(&self, x11: &X11Surface) -> bool {
        // Deprecated in Smithay for Xwayland 23.1 and later, which use xwayland-shell instead;
        // Debian 12's Xwayland still only announces the id.
        #[allow(deprecated)]
        let Some(id) = x11.wl_surface_id() else {
            return false;
        };
        x11.user_data().insert_if_missing(LegacySurface::default);
        let Some(slot) = x11.user_data().get::<LegacySurface>() else {
            return false;
        };
        let current = slot.0.borrow().clone();
        if current.is_some_and(|s| s.alive() && s.id().protocol_id() == id) {
            return false;
        }
        let Some(client) = self.xwayland.instance.as_ref().map(|i| &i.client) else {
            return false;
        };
        match client.object_from_protocol_id::<WlSurface>(&self.display_handle, id) {
            Ok(surface) if surface.alive() => {
                tracing::debug!(
                    window = x11.window_id(),
                    id,
                    "paired X11 window by WL_SURFACE_ID"
                );
                *slot.0.borrow_mut() = Some(surface);
                true
            }
            // Not created yet: the X server may announce it first.
            _ => false,
        }
    }
}
