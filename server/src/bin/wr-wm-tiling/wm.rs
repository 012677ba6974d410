//! The window manager's state and its answers to the compositor's two sequences. Events (see
//! `events.rs`) only record what happened; [`Wm::manage`] and [`Wm::render`] act on it, each
//! making only the requests its sequence allows.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use wayland_client::{backend::ObjectId, Proxy, QueueHandle};
use wayray_wm_protocol::client::{
    wayray_wm_manager_v1::WayrayWmManagerV1,
    wayray_wm_seat_v1::WayrayWmSeatV1,
    wayray_wm_window_v1::{Edges, WayrayWmWindowV1},
    wayray_wm_workspace_v1::WayrayWmWorkspaceV1,
};

use crate::bindings::{Action, PointerAction};
use crate::layout::{neighbour, Direction, Rect, Tree, WindowId};
use crate::Config;

/// Border colours (0xRRGGBBAA).
const FOCUSED_BORDER: u32 = 0x4c8bf5ff;
const UNFOCUSED_BORDER: u32 = 0x3a3a3aff;
/// Workspaces per output: Super+1..9.
const WORKSPACES: usize = 9;

/// The output windows are laid out on. A WayRay session has one; the WM uses the first it is
/// told about.
#[derive(Clone, Debug)]
pub struct Output {
    pub name: String,
    pub width: i32,
    pub height: i32,
    /// What panels leave free: tiles go here.
    pub usable: Rect,
}

/// A window as this WM sees it.
pub struct Window {
    pub proxy: WayrayWmWindowV1,
    pub app_id: String,
    pub has_parent: bool,
    /// Minimum size equal to maximum size: a dialog or splash that wants to float.
    pub fixed_size: bool,
    /// The size the client committed (dimensions events).
    pub size: (i32, i32),
    /// Placed on a workspace yet: new windows are at the manage sequence after they appear.
    pub placed: bool,
    pub workspace: usize,
    pub floating: bool,
    /// Where a floating window's content is (None: centre it when it is next rendered).
    pub float_at: Option<(i32, i32)>,
    pub fullscreen: bool,
    /// What the compositor was last told, so requests go out only on change.
    told: Told,
}

#[derive(Default)]
struct Told {
    size: Option<(i32, i32)>,
    fullscreen: bool,
    tiled: Option<bool>,
    workspace: Option<usize>,
    shown: bool,
}

impl Window {
    pub fn new(proxy: WayrayWmWindowV1) -> Window {
        Window {
            proxy,
            app_id: String::new(),
            has_parent: false,
            fixed_size: false,
            size: (0, 0),
            placed: false,
            workspace: 0,
            floating: false,
            float_at: None,
            fullscreen: false,
            told: Told::default(),
        }
    }
}

#[derive(Default)]
struct Workspace {
    tiles: Tree,
    /// Floating windows, bottom first.
    floating: Vec<WindowId>,
    focused: Option<WindowId>,
    proxy: Option<WayrayWmWorkspaceV1>,
}

impl Workspace {
    fn windows(&self) -> Vec<WindowId> {
        let mut all = self.tiles.windows();
        all.extend(&self.floating);
        all
    }

    fn remove(&mut self, id: WindowId) {
        self.tiles.remove(id);
        self.floating.retain(|&f| f != id);
        if self.focused == Some(id) {
            self.focused = self
                .floating
                .last()
                .copied()
                .or(self.tiles.windows().last().copied());
        }
    }
}

/// Something the user or a client did, acted on in the next manage sequence.
#[derive(Debug)]
pub enum Pending {
    Key(Action),
    Pointer(PointerAction, Option<WindowId>),
    /// A click on a window.
    Interaction(WindowId),
    Fullscreen(WindowId, bool),
    Activate(WindowId),
    /// The client asked to be moved (or resized, at these edges) with the pointer.
    ClientMove(WindowId),
    ClientResize(WindowId, Edges),
}

pub struct Wm {
    config: Config,
    pub manager: WayrayWmManagerV1,
    pub seat: Option<WayrayWmSeatV1>,
    pub output: Option<Output>,
    pub windows: BTreeMap<WindowId, Window>,
    /// Protocol object → window.
    pub ids: HashMap<ObjectId, WindowId>,
    next_id: WindowId,
    workspaces: Vec<Workspace>,
    current: usize,
    /// The workspace last activated in a render sequence.
    shown_workspace: Option<usize>,
    /// The window the compositor says has the keyboard.
    pub keyboard: Option<WindowId>,
    pub pending: Vec<Pending>,
    /// Set when the WM must exit, with the reason.
    pub stop: Option<String>,
}

impl Wm {
    pub fn new(config: Config, manager: WayrayWmManagerV1) -> Wm {
        Wm {
            config,
            manager,
            seat: None,
            output: None,
            windows: BTreeMap::new(),
            ids: HashMap::new(),
            next_id: 1,
            workspaces: (0..WORKSPACES).map(|_| Workspace::default()).collect(),
            current: 0,
            shown_workspace: None,
            keyboard: None,
            pending: Vec::new(),
            stop: None,
        }
    }

    pub fn add_window(&mut self, proxy: WayrayWmWindowV1) {
        let id = self.next_id;
        self.next_id += 1;
        self.ids.insert(proxy.id(), id);
        self.windows.insert(id, Window::new(proxy));
    }

    pub fn window_id(&self, proxy: &WayrayWmWindowV1) -> Option<WindowId> {
        self.ids.get(&proxy.id()).copied()
    }

    pub fn remove_window(&mut self, id: WindowId) {
        if let Some(window) = self.windows.remove(&id) {
            self.ids.remove(&window.proxy.id());
            window.proxy.destroy();
        }
        for ws in &mut self.workspaces {
            ws.remove(id);
        }
        if self.keyboard == Some(id) {
            self.keyboard = None;
        }
    }

    /// The manage sequence: place new windows, act on input and requests, then tell the
    /// clients their sizes and states and the seat its focus.
    pub fn manage(&mut self) {
        let new: Vec<WindowId> = self
            .windows
            .iter()
            .filter(|(_, w)| !w.placed)
            .map(|(id, _)| *id)
            .collect();
        for id in new {
            self.place_new(id);
        }
        for pending in std::mem::take(&mut self.pending) {
            self.act(pending);
        }

        let Some(output) = self.output.clone() else {
            return; // nothing to lay out on yet
        };
        for ws in &self.workspaces {
            let tiles: HashMap<WindowId, Rect> = ws
                .tiles
                .layout(output.usable, self.config.gaps, self.config.border)
                .into_iter()
                .collect();
            for id in ws.windows() {
                let Some(window) = self.windows.get_mut(&id) else {
                    continue;
                };
                // Fullscreen: the output; floating: the client's own choice (0×0); tiled: its tile.
                let (size, tiled) = if window.fullscreen {
                    ((output.width, output.height), false)
                } else if let Some(tile) = tiles.get(&id) {
                    ((tile.w, tile.h), true)
                } else {
                    ((0, 0), false)
                };
                if window.told.size != Some(size) {
                    window.proxy.propose_dimensions(size.0, size.1);
                    window.told.size = Some(size);
                }
                if window.told.fullscreen != window.fullscreen {
                    if window.fullscreen {
                        window.proxy.set_fullscreen();
                    } else {
                        window.proxy.unset_fullscreen();
                    }
                    window.told.fullscreen = window.fullscreen;
                }
                if window.told.tiled != Some(tiled) {
                    let edges = if tiled { Edges::all() } else { Edges::None };
                    window.proxy.set_tiled(edges);
                    window.told.tiled = Some(tiled);
                }
            }
        }

        let focus = self.workspaces[self.current].focused;
        if focus != self.keyboard {
            if let Some(seat) = &self.seat {
                match focus.and_then(|id| self.windows.get(&id)) {
                    Some(window) => seat.focus_window(&window.proxy),
                    None => seat.clear_focus(),
                }
                self.keyboard = focus;
            }
        }
    }

    /// A new window joins the current workspace and takes the focus: tiled in the focused
    /// tile, or floating if it is a dialog or has a fixed size.
    fn place_new(&mut self, id: WindowId) {
        let Some(window) = self.windows.get_mut(&id) else {
            return;
        };
        window.placed = true;
        window.workspace = self.current;
        window.floating = window.has_parent || window.fixed_size;
        let ws = &mut self.workspaces[self.current];
        if window.floating {
            ws.floating.push(id);
        } else {
            ws.tiles.insert(id, ws.focused);
        }
        ws.focused = Some(id);
    }

    fn act(&mut self, pending: Pending) {
        tracing::debug!(?pending, "acting on");
        match pending {
            Pending::Key(action) => self.key(action),
            Pending::Pointer(action, Some(id)) => {
                self.focus(id);
                let Some(seat) = &self.seat else { return };
                let Some(window) = self.windows.get(&id).filter(|w| w.floating) else {
                    return; // tiles are not dragged: they stay in their tile
                };
                match action {
                    PointerAction::Move => seat.start_move(&window.proxy),
                    PointerAction::Resize => {
                        seat.start_resize(&window.proxy, Edges::Bottom | Edges::Right)
                    }
                }
            }
            Pending::Pointer(_, None) => {}
            Pending::Interaction(id) | Pending::Activate(id) => self.focus(id),
            Pending::Fullscreen(id, on) => {
                if let Some(window) = self.windows.get_mut(&id) {
                    window.fullscreen = on;
                }
            }
            Pending::ClientMove(id) | Pending::ClientResize(id, _) => {
                let (Some(seat), Some(window)) = (&self.seat, self.windows.get(&id)) else {
                    return;
                };
                if !window.floating {
                    return;
                }
                match pending {
                    Pending::ClientResize(_, edges) => seat.start_resize(&window.proxy, edges),
                    _ => seat.start_move(&window.proxy),
                }
            }
        }
    }

    /// Focuses `id`, showing its workspace and raising it if it floats.
    fn focus(&mut self, id: WindowId) {
        let Some(window) = self.windows.get(&id).filter(|w| w.placed) else {
            return;
        };
        self.current = window.workspace;
        let ws = &mut self.workspaces[self.current];
        ws.focused = Some(id);
        if let Some(at) = ws.floating.iter().position(|&f| f == id) {
            ws.floating.remove(at);
            ws.floating.push(id);
        }
    }

    fn key(&mut self, action: Action) {
        let focused = self.workspaces[self.current].focused;
        match action {
            Action::Terminal => spawn(&self.config.terminal),
            Action::Focus(dir) => {
                let rects = self.visible_rects();
                if let Some(next) = focused.and_then(|f| neighbour(&rects, f, dir)) {
                    self.focus(next);
                }
            }
            Action::Move(dir) => {
                if let Some(id) = focused {
                    self.move_window(id, dir);
                }
            }
            Action::Workspace(n) => self.current = n,
            Action::SendToWorkspace(n) => {
                if let Some(id) = focused.filter(|_| n != self.current) {
                    self.send_to_workspace(id, n);
                }
            }
            Action::ToggleFullscreen => {
                if let Some(window) = focused.and_then(|id| self.windows.get_mut(&id)) {
                    window.fullscreen = !window.fullscreen;
                }
            }
            Action::ToggleFloating => {
                if let Some(id) = focused {
                    self.toggle_floating(id);
                }
            }
            Action::Close => {
                if let Some(window) = focused.and_then(|id| self.windows.get(&id)) {
                    window.proxy.close();
                }
            }
        }
    }

    /// Swaps a tile with its neighbour in `dir`; nudges a floating window that way.
    fn move_window(&mut self, id: WindowId, dir: Direction) {
        let Some(output) = &self.output else { return };
        let ws = &mut self.workspaces[self.current];
        if ws.tiles.contains(id) {
            let tiles = ws
                .tiles
                .layout(output.usable, self.config.gaps, self.config.border);
            if let Some(other) = neighbour(&tiles, id, dir) {
                ws.tiles.swap(id, other);
            }
        } else if let Some(window) = self.windows.get_mut(&id) {
            const STEP: i32 = 48;
            let (dx, dy) = match dir {
                Direction::Left => (-STEP, 0),
                Direction::Right => (STEP, 0),
                Direction::Up => (0, -STEP),
                Direction::Down => (0, STEP),
            };
            if let Some((x, y)) = window.float_at {
                window.float_at = Some((x + dx, y + dy));
            }
        }
    }

    fn send_to_workspace(&mut self, id: WindowId, n: usize) {
        let Some(window) = self.windows.get_mut(&id) else {
            return;
        };
        window.workspace = n;
        let floating = window.floating;
        self.workspaces[self.current].remove(id);
        let target = &mut self.workspaces[n];
        if floating {
            target.floating.push(id);
        } else {
            target.tiles.insert(id, target.focused);
        }
        target.focused = Some(id);
    }

    fn toggle_floating(&mut self, id: WindowId) {
        let Some(window) = self.windows.get_mut(&id) else {
            return;
        };
        let ws = &mut self.workspaces[window.workspace];
        window.floating = !window.floating;
        if window.floating {
            ws.tiles.remove(id);
            ws.floating.push(id);
            window.float_at = None;
        } else {
            ws.floating.retain(|&f| f != id);
            ws.tiles.insert(id, None);
        }
    }

    /// Where the current workspace's windows are on screen: tiles' contents and floating
    /// windows at their size.
    fn visible_rects(&self) -> Vec<(WindowId, Rect)> {
        let Some(output) = &self.output else {
            return Vec::new();
        };
        let ws = &self.workspaces[self.current];
        let mut rects = ws
            .tiles
            .layout(output.usable, self.config.gaps, self.config.border);
        for &id in &ws.floating {
            if let Some(Window {
                float_at: Some((x, y)),
                size,
                ..
            }) = self.windows.get(&id)
            {
                rects.push((id, Rect::new(*x, *y, size.0, size.1)));
            }
        }
        rects
    }

    /// The render sequence: put every window of the current workspace in place — tiles, then
    /// floating windows above them, then a fullscreen one on top — and show the workspace.
    pub fn render(&mut self, qh: &QueueHandle<Wm>) {
        let Some(output) = self.output.clone() else {
            return;
        };
        // Windows join their workspace's object (made when first needed).
        for n in 0..WORKSPACES {
            for id in self.workspaces[n].windows() {
                let Some(window) = self.windows.get(&id) else {
                    continue;
                };
                if window.told.workspace != Some(n) {
                    let ws =
                        workspace_object(&mut self.workspaces[n], &self.manager, &output, n, qh);
                    ws.add_window(&window.proxy);
                    if let Some(window) = self.windows.get_mut(&id) {
                        window.told.workspace = Some(n);
                    }
                }
            }
        }

        let (gaps, border) = (self.config.gaps, self.config.border);
        let ws = &self.workspaces[self.current];
        // Bottom to top: tiles, floating windows (raised in their order), fullscreen ones.
        let mut stack: Vec<(WindowId, Rect)> = ws.tiles.layout(output.usable, gaps, border);
        for &id in &ws.floating {
            let Some(window) = self.windows.get(&id) else {
                continue;
            };
            // A floating window keeps its own size, centred until it is moved.
            let (w, h) = window.size;
            let (x, y) = window.float_at.unwrap_or_else(|| {
                let centred = output.usable.centred(w, h);
                (centred.x, centred.y)
            });
            stack.push((id, Rect::new(x, y, w, h)));
        }
        let full = Rect::new(0, 0, output.width, output.height);
        let (mut fullscreen, windowed): (Vec<_>, Vec<_>) = stack
            .into_iter()
            .partition(|(id, _)| self.windows.get(id).is_some_and(|w| w.fullscreen));
        fullscreen.iter_mut().for_each(|(_, rect)| *rect = full);
        for (id, rect) in windowed.into_iter().chain(fullscreen) {
            let Some(window) = self.windows.get_mut(&id) else {
                continue;
            };
            window.proxy.set_position(rect.x, rect.y);
            if window.fullscreen {
                window.proxy.set_borders(0, 0);
            } else {
                let focused = ws.focused == Some(id);
                let colour = if focused {
                    FOCUSED_BORDER
                } else {
                    UNFOCUSED_BORDER
                };
                window.proxy.set_borders(border, colour);
            }
            if window.floating || window.fullscreen {
                window.proxy.place_top();
                if window.floating && !window.fullscreen && rect.w > 0 {
                    window.float_at = Some((rect.x, rect.y));
                }
            }
            if !window.told.shown {
                window.proxy.show();
                window.told.shown = true;
            }
        }

        if self.shown_workspace != Some(self.current) {
            let n = self.current;
            workspace_object(&mut self.workspaces[n], &self.manager, &output, n, qh).activate();
            self.shown_workspace = Some(n);
        }

        let ws = &self.workspaces[self.current];
        let focused = ws.focused.and_then(|id| self.windows.get(&id));
        tracing::info!(
            "layout workspace={} windows={} focused={}",
            self.current + 1,
            ws.windows().len(),
            focused.map_or("none", |w| w.app_id.as_str()),
        );
    }
}

/// Workspace `n`'s protocol object, made on first use (named "1".."9" on the output).
fn workspace_object<'a>(
    ws: &'a mut Workspace,
    manager: &WayrayWmManagerV1,
    output: &Output,
    n: usize,
    qh: &QueueHandle<Wm>,
) -> &'a WayrayWmWorkspaceV1 {
    ws.proxy.get_or_insert_with(|| {
        manager.get_workspace(output.name.clone(), (n + 1).to_string(), qh, ())
    })
}

/// Starts `command` with `sh -c`, in its own process group (a Ctrl+C meant for the WM's
/// terminal does not reach it), without the WM's inherited Wayland socket.
fn spawn(command: &str) {
    let child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env_remove("WAYLAND_SOCKET")
        .stdin(Stdio::null())
        .process_group(0)
        .spawn();
    match child {
        Ok(mut child) => {
            tracing::info!(command, pid = child.id(), "started");
            // Reap it when it exits.
            std::thread::spawn(move || child.wait());
        }
        Err(e) => tracing::warn!(command, "cannot start: {e}"),
    }
}
